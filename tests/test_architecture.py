"""The one-way flow of docs/architecture.md, enforced: each module imports only its inputs."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "symsoft"

# module -> symsoft modules it may import (anything not listed may import only stdlib/deps)
ALLOWED = {
    "spec": {"errors"},
    "derive": set(),
    "bundle": set(),
    "general_k": {"bundle", "errors"},
    "simplify": {"derive", "bundle", "errors"},
    "printers": set(),
    "render": {"__init__"},
    "reference": set(),
    "emit.kernels": set(),
    "emit.c": {"bundle", "emit.kernels", "printers", "render"},
    "emit.numpy": {"bundle", "emit.kernels", "printers", "render"},
    "vectors": {"bundle", "reference"},
    "writer": {"errors"},
    "build": {"errors"},
    "ckernels": {"emit.kernels"},
    "accuracy": {"reference"},
    "cache": set(),
    "doc_printer": set(),
    "doc_text": set(),
    "doc_view": {"doc_printer", "doc_text"},
    "doc_checks": {"derive", "simplify", "general_k", "errors"},
    "document": {
        "bundle",
        "doc_checks",
        "doc_printer",
        "doc_text",
        "doc_view",
        "emit.kernels",
        "errors",
        "general_k",
        "reference",
    },
    "emit.latex": {"bundle", "doc_view", "document", "render"},
    "emit.markdown": {"bundle", "doc_view", "document", "render"},
    "pdf": {"errors"},
    "load": {"__init__", "build", "cache", "ckernels", "errors", "spec", "pipeline", "writer"},
}
# only these touch the file system: the writer for outputs; the others for work folders and
# the compiled-kernel cache
WRITERS = {"writer", "build", "pdf", "cache", "load"}


def symsoft_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("symsoft"):
            base = node.module.removeprefix("symsoft").lstrip(".")
            if base:
                found.add(base)
            else:  # from symsoft import x
                found.update(
                    alias.name if alias.name != "__version__" else "__init__"
                    for alias in node.names
                )
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("symsoft.") for a in node.names if a.name.startswith("symsoft.")
            )
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def test_modules_import_only_what_the_flow_allows():
    for module, allowed in ALLOWED.items():
        path = PACKAGE / (module.replace(".", "/") + ".py")
        extra = symsoft_imports(path) - allowed
        assert not extra, f"{module} imports {sorted(extra)}; allowed: {sorted(allowed)}"


def test_emitters_and_stages_do_not_write_files():
    for path in PACKAGE.rglob("*.py"):
        if module_name(path) in WRITERS or module_name(path).startswith("gradcheck"):
            continue
        text = path.read_text()
        for call in ("write_text(", "write_bytes(", "open("):
            assert call not in text, f"{module_name(path)} calls {call}: only writer.py writes"
