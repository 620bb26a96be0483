"""The one-way flow of docs/architecture.md, enforced: each stage imports only earlier stages.

A stage is a package under symsoft/ (or one of the few top-level modules). Inside a stage,
modules may import each other; across stages, only in the direction the flow allows.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "symsoft"

# stage -> the stages it may import (anything not listed may import only stdlib/deps)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "version": set(),
    "progress": set(),
    "stamp": set(),
    "spec": {"errors"},
    "family": {"errors"},
    "proof": {"errors"},
    "derivation": {"errors", "family", "proof"},
    "document": {"derivation", "errors", "family", "proof", "stamp"},
    "emit": {"derivation", "document", "errors", "family", "stamp", "version"},
    "writer": {"errors", "stamp"},
    "pipeline": {
        "derivation",
        "document",
        "emit",
        "errors",
        "family",  # the kernels' file names, known before any work (output_names)
        "spec",
        "stamp",
        "version",
        "writer",
    },
    "runtime": {
        "derivation",
        "errors",
        "family",
        "pipeline",
        "spec",
        "stamp",
        "version",
        "writer",
    },
    "gradcheck": {"derivation", "errors", "family", "runtime", "spec"},
    "cli": {"errors", "gradcheck", "pipeline", "progress", "spec", "version"},
    "__main__": {"cli"},
    "__init__": {"gradcheck", "runtime", "spec", "version"},
}
# only these touch the file system: the writer for outputs; the PDF build, the runtime's
# compiler and cache, and the checker (which compiles C and runs user code) in work folders
WRITERS = {"writer", "document.pdf", "runtime", "gradcheck"}


def stage_of(module: str) -> str:
    return module.split(".")[0]


def symsoft_imports(path: Path) -> set[str]:
    """The symsoft modules path imports, as dotted names below symsoft ('' for symsoft)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("symsoft"):
            base = node.module.removeprefix("symsoft").lstrip(".")
            if base:
                found.add(base)
            else:  # from symsoft import x: a subpackage or module, or a name of __init__
                found.update(
                    alias.name
                    if (PACKAGE / alias.name).exists() or (PACKAGE / f"{alias.name}.py").exists()
                    else "__init__"
                    for alias in node.names
                )
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("symsoft.") for a in node.names if a.name.startswith("symsoft.")
            )
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_known_stage():
    unknown = {module_name(p) for p in modules() if stage_of(module_name(p)) not in ALLOWED}
    assert not unknown, f"modules outside every stage: {sorted(unknown)}; add them to ALLOWED"


def test_modules_import_only_what_the_flow_allows():
    for path in modules():
        stage = stage_of(module_name(path))
        for imported in symsoft_imports(path):
            target = stage_of(imported)
            assert target == stage or target in ALLOWED[stage], (
                f"{module_name(path)} imports symsoft.{imported}: stage {stage!r} may import "
                f"only {sorted(ALLOWED[stage])}"
            )


def test_the_allowed_imports_have_no_cycle():
    """The flow is one way: no stage can reach itself through the allowed imports."""

    def reaches(start: str, seen: set[str]) -> set[str]:
        for nxt in ALLOWED[start] - seen:
            seen.add(nxt)
            reaches(nxt, seen)
        return seen

    assert all(stage not in reaches(stage, set()) for stage in ALLOWED)


def test_the_prover_knows_nothing_about_softmax():
    for path in (PACKAGE / "proof").rglob("*.py"):
        code = ast.unparse(ast.parse(path.read_text()))  # without comments and docstrings
        code = code.replace(ast.get_docstring(ast.parse(path.read_text())) or "", "")
        assert "softmax" not in code.lower(), f"{module_name(path)} mentions softmax"


def test_emitters_and_stages_do_not_write_files():
    for path in modules():
        name = module_name(path)
        if name in WRITERS or stage_of(name) in WRITERS:
            continue
        text = path.read_text()
        for call in ("write_text(", "write_bytes(", "open("):
            assert call not in text, f"{name} calls {call}: only writer.py writes"
