"""The C template stays split by concern: templates/softmax.c.jinja only composes the parts
under templates/c/, and each part stays short enough to read in one sitting.

(The split itself changed no output byte: tests/test_golden.py holds that.)
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from jinja2 import meta, nodes

TEMPLATES = Path(__file__).parent.parent / "templates"
TOP = "softmax.c.jinja"
PARTS = "c"
LINE_LIMIT = 200

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES))


def _parse(name: str) -> nodes.Template:
    return _ENV.parse((TEMPLATES / name).read_text())


def _referenced(name: str) -> set[str]:
    """The templates name includes or imports, directly or through the parts it reaches."""
    found: set[str] = set()
    todo = [name]
    while todo:
        for ref in meta.find_referenced_templates(_parse(todo.pop())):
            assert ref is not None, f"a template name computed at render time in {name}"
            if ref not in found:
                found.add(ref)
                todo.append(ref)
    return found


def _parts() -> set[str]:
    return {p.relative_to(TEMPLATES).as_posix() for p in (TEMPLATES / PARTS).rglob("*.jinja")}


def test_each_part_is_short():
    long = {
        name: lines
        for name in _parts()
        if (lines := len((TEMPLATES / name).read_text().splitlines())) > LINE_LIMIT
    }
    assert not long, f"parts over {LINE_LIMIT} lines; split them by concern: {long}"


def test_the_top_template_reaches_every_part_and_nothing_else():
    # a part nothing includes is dead code; a reference outside c/ would be a second home
    assert _referenced(TOP) == _parts()


def test_the_top_template_holds_no_c_code():
    """Its own text is the file's opening (#includes) and comments: no definition, statement
    or block, which belong in a part."""
    top = _parse(TOP)
    assert not list(top.find_all(nodes.Macro)), "macros belong in the parts"
    text = "".join(data.data for data in top.find_all(nodes.TemplateData))
    code = [
        line for line in text.splitlines() if any(c in line for c in "{};") or "#define" in line
    ]
    assert not code, f"C code in {TOP}; move it into a part under templates/{PARTS}/: {code}"
