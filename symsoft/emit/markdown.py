"""Document -> derivation_k{K}.md (or .zh.md): the derivation document as Markdown.

Maths is written as $...$ and $$...$$ with \\tag{n} numbers, as GitHub and KaTeX-based
documentation sites render it; the content is symsoft.document's, as for the LaTeX.
"""

from __future__ import annotations

from collections.abc import Mapping

from symsoft.document.text import TEXT
from symsoft.document.view import (
    Block,
    Code,
    Document,
    Equation,
    Figure,
    Math,
    Paragraph,
    Ref,
    Table,
    Text,
    document_name,
    figure_name,
)
from symsoft.emit.render import header, render

_SPECIAL = set("\\`*_[]<>#|$")
_ALIGN = {"l": ":---", "r": "---:", "c": ":---:"}


def md_text(text: str) -> str:
    """Escape what Markdown would read as markup in running text."""
    return "".join(f"\\{ch}" if ch in _SPECIAL else ch for ch in text)


def runs(text: Text, numbers: Mapping[str, str]) -> str:
    out = []
    for run in text:
        if isinstance(run, Math):
            out.append(f"${run.tex}$")
        elif isinstance(run, Code):
            out.append(f"`{run.text}`")
        elif isinstance(run, Ref):
            number = numbers[f"{run.kind}:{run.key}"]
            out.append(f"({number})" if run.kind == "eq" else number)
        else:
            out.append(md_text(run))
    return "".join(out)


def _block(block: Block, numbers: Mapping[str, str], doc: Document) -> dict[str, object]:
    if isinstance(block, Figure):
        prefix = md_text(f"{TEXT[doc.lang]['figure']} {block.number}")
        return {
            "kind": "figure",
            "file": figure_name(doc.k, doc.lang, block.key, "svg"),
            "alt": prefix,
            "caption": f"{prefix}: {runs(block.caption, numbers)}",
        }
    if isinstance(block, Paragraph):
        return {
            "kind": "paragraph",
            "lead": runs(block.lead, numbers),
            "text": runs(block.text, numbers),
        }
    if isinstance(block, Equation):
        return {"kind": "equation", "number": block.number, "body": block.body}
    if isinstance(block, Table):
        rows = [[runs(cell, numbers) for cell in row] for row in block.rows]
        if block.total:
            rows.append([runs(cell, numbers) for cell in block.total])
        return {
            "kind": "table",
            "header": [runs(cell, numbers) for cell in block.header],
            "rule": [_ALIGN[a] for a in block.align],
            "rows": rows,
        }
    raise TypeError(f"unknown block {block!r}")


def markdown_text(doc: Document) -> str:
    n = doc.numbers
    return render(
        "derivation.md.jinja",
        doc.k,
        "float32, float64",
        title=runs(doc.title, n),
        author=runs(doc.author, n),
        footnote=runs(doc.footnote, n),
        intro=[_block(block, n, doc) for block in doc.intro],
        sections=[
            {
                "number": section.number,
                "title": runs(section.title, n),
                "part": runs(section.part, n),
                "blocks": [_block(block, n, doc) for block in section.blocks],
            }
            for section in doc.sections
        ],
    )


def emit_markdown(doc: Document) -> dict[str, str]:
    """The .md and, beside it, the figures it links as SVG."""
    files = {document_name(doc.k, doc.lang, "md"): markdown_text(doc)}
    for figure in doc.figures():
        name = figure_name(doc.k, doc.lang, figure.key, "svg")
        files[name] = _with_header(
            figure.svg, header(f"figures.py ({figure.key})", doc.k, "float64")
        )
    return files


def _with_header(svg: str, text: str) -> str:
    """The generated-by line as the first comment, right after the XML declaration."""
    declaration, rest = svg.split("\n", 1)
    return f"{declaration}\n<!-- {text} -->\n{rest}"
