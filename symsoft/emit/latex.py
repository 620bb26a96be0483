"""Document -> derivation_k{K}.tex (or .zh.tex): the derivation document as standalone LaTeX.

symsoft.document builds and checks the content before any emitter runs; this module only
turns its runs into LaTeX text and hands flat strings to templates/derivation.tex.jinja.
"""

from __future__ import annotations

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
from symsoft.emit.render import render

# A longer table may break across pages (longtable), and then also away from the sentence that
# introduces it: the table of functions (18 rows, small type) stays whole, the appendix's list
# of checks breaks.
LONG_TABLE_ROWS = 24

_SPECIAL = {
    "\\": r"\textbackslash{}",
    "_": r"\_",
    "&": r"\&",
    "%": r"\%",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "^": r"\^{}",
    "~": r"\~{}",
    "\u00a0": "~",  # a space that does not break
}


def tex_text(text: str) -> str:
    """Escape the characters LaTeX treats specially in running text."""
    return "".join(_SPECIAL.get(ch, ch) for ch in text)


def _code(code: Code) -> str:
    if code.file:  # a file name stays on one line
        return rf"\mbox{{\texttt{{{tex_text(code.text)}}}}}"
    # typewriter text never hyphenates: allow breaks after '-' and '_' in long names
    escaped = tex_text(code.text).replace("-", r"-\allowbreak{}")
    escaped = escaped.replace(r"\_", r"\_\allowbreak{}")
    return rf"\texttt{{{escaped}}}"


def runs(text: Text) -> str:
    out = []
    for run in text:
        if isinstance(run, Math):
            out.append(f"${run.tex}$")
        elif isinstance(run, Code):
            out.append(_code(run))
        elif isinstance(run, Ref) and run.kind == "eq":
            out.append(rf"\eqref{{eq:{run.key}}}")
        elif isinstance(run, Ref):
            out.append(rf"\ref{{{run.kind}:{run.key}}}")
        else:
            out.append(tex_text(run))
    return "".join(out)


def _block(block: Block, doc: Document) -> dict[str, object]:
    if isinstance(block, Figure):
        return {
            "kind": "figure",
            "file": figure_name(doc.k, doc.lang, block.key, "pdf"),
            "label": f"fig:{block.key}",
            "caption": runs(block.caption),
            "prefix": tex_text(TEXT[doc.lang]["figure"]),
        }
    if isinstance(block, Paragraph):
        return {"kind": "paragraph", "lead": runs(block.lead), "text": runs(block.text)}
    if isinstance(block, Equation):
        return {"kind": "equation", "label": f"eq:{block.key}", "body": block.body}
    if isinstance(block, Table):
        return {
            "kind": "table",
            "long": len(block.rows) > LONG_TABLE_ROWS,  # may break across pages
            "align": block.align,
            "header": [runs(cell) for cell in block.header],
            "rows": [[runs(cell) for cell in row] for row in block.rows],
            "total": [runs(cell) for cell in block.total],
            "small": block.small,
        }
    raise TypeError(f"unknown block {block!r}")


def latex_text(doc: Document) -> str:
    return render(
        "derivation.tex.jinja",
        doc.k,
        "float32, float64",
        cjk=doc.lang == "zh",
        title=runs(doc.title),
        author=runs(doc.author),
        footnote=runs(doc.footnote),
        intro=[_block(block, doc) for block in doc.intro],
        sections=[
            {
                "label": f"sec:{section.key}",
                "title": runs(section.title),
                "appendix": section.appendix,
                "part": runs(section.part),
                "blocks": [_block(block, doc) for block in section.blocks],
            }
            for section in doc.sections
        ],
    )


def figure_files(doc: Document) -> dict[str, bytes]:
    """The figures as PDF, which the .tex includes from its own folder."""
    return {figure_name(doc.k, doc.lang, f.key, "pdf"): f.pdf for f in doc.figures()}


def emit_latex(doc: Document) -> dict[str, str | bytes]:
    """The .tex and, beside it, the figures it includes."""
    return {document_name(doc.k, doc.lang, "tex"): latex_text(doc), **figure_files(doc)}
