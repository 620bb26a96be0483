"""The templates stay split by concern: templates/softmax.c.jinja and softmax.py.jinja only
compose their parts, each part stays short enough to read in one sitting, and every member
of the family has its own body in each language (templates/c/kernels/NAME.c.jinja,
templates/python/NAME.py.jinja) and nothing else does.

(The split itself changed no output byte: tests/test_golden.py holds that.)
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from jinja2 import meta, nodes

from symsoft.family.members import NAMES

TEMPLATES = Path(__file__).parent.parent / "templates"
# top template -> the folder of its parts, and where each member's body lives in it
TOPS = {
    "softmax.c.jinja": ("c", "c/kernels/{}.c.jinja"),
    "softmax.py.jinja": ("python", "python/{}.py.jinja"),
}
LINE_LIMIT = 200

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES))


def _parse(name: str) -> nodes.Template:
    return _ENV.parse((TEMPLATES / name).read_text())


def _referenced(name: str, member_body: str) -> set[str]:
    """The templates name includes or imports, directly or through the parts it reaches; a
    name computed at render time is allowed only for the members' bodies."""
    found: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        refs = list(meta.find_referenced_templates(_parse(current)))
        if None in refs:
            assert current in TOPS, f"a template name computed at render time in {current}"
            refs = [r for r in refs if r is not None] + [member_body.format(m) for m in NAMES]
        for ref in refs:
            if ref not in found:
                found.add(ref)
                todo.append(ref)
    return found


def _parts(folder: str) -> set[str]:
    return {p.relative_to(TEMPLATES).as_posix() for p in (TEMPLATES / folder).rglob("*.jinja")}


def test_each_part_is_short():
    long = {
        name: lines
        for folder, _ in TOPS.values()
        for name in _parts(folder)
        if (lines := len((TEMPLATES / name).read_text().splitlines())) > LINE_LIMIT
    }
    assert not long, f"parts over {LINE_LIMIT} lines; split them by concern: {long}"


def test_every_member_has_a_body_and_the_top_templates_reach_every_part():
    for top, (folder, member_body) in TOPS.items():
        for member in NAMES:
            assert (TEMPLATES / member_body.format(member)).is_file(), (member, top)
        # a part nothing includes is dead code; a reference outside the folder a second home
        assert _referenced(top, member_body) == _parts(folder), top


def test_the_top_c_template_holds_no_c_code():
    """Its own text is the file's opening (#includes) and comments: no definition, statement
    or block, which belong in a part."""
    top = _parse("softmax.c.jinja")
    assert not list(top.find_all(nodes.Macro)), "macros belong in the parts"
    text = "".join(data.data for data in top.find_all(nodes.TemplateData))
    code = [
        line for line in text.splitlines() if any(c in line for c in "{};") or "#define" in line
    ]
    assert not code, f"C code in softmax.c.jinja; move it into a part under templates/c/: {code}"


def test_the_top_python_template_defines_no_member():
    text = (TEMPLATES / "softmax.py.jinja").read_text()
    defined = [name for name in NAMES if f"def {name}(" in text]
    assert not defined, f"member functions belong in templates/python/: {defined}"
