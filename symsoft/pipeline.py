"""generate(spec, out): derive -> prove -> Bundle -> emitters -> writer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from symsoft import __version__, derive, general_k, reference, simplify
from symsoft.bundle import Bundle, WorkedExample
from symsoft.doc_view import document_name
from symsoft.emit.c import emit_c
from symsoft.emit.latex import emit_latex
from symsoft.emit.markdown import emit_markdown
from symsoft.emit.numpy import emit_numpy
from symsoft.pdf import INSTALL_HINT, PdfError, build_pdf, pdflatex_available
from symsoft.spec import Spec
from symsoft.vectors import emit_vectors
from symsoft.writer import check_writable, write_files

Emitter = Callable[[Bundle], dict[str, str]]
EMITTERS: dict[str, Emitter] = {
    "numpy": emit_numpy,
    "c": emit_c,
    "latex": emit_latex,
    "markdown": emit_markdown,
    "vectors": emit_vectors,
}
# the PDF is compiled from the LaTeX, by pdflatex when it is installed
TARGETS = (*EMITTERS, "pdf")


def output_names(spec: Spec, targets: Iterable[str] = TARGETS) -> list[str]:
    """The files generate() writes, known before any work is done."""
    k = spec.k
    names = {
        "numpy": [f"softmax_k{k}.py"],
        "c": [f"softmax_k{k}.h", f"softmax_k{k}.c"],
        "latex": [document_name(k, spec.lang, "tex")],
        "markdown": [document_name(k, spec.lang, "md")],
        "vectors": [f"vectors_k{k}.json"],
        "pdf": [document_name(k, spec.lang, "pdf")],
    }
    return sorted(name for target in targets for name in names[target])


def worked_example(spec: Spec) -> WorkedExample:
    z, y = spec.example, [1.0 if i == spec.true_class else 0.0 for i in range(spec.k)]
    probabilities = tuple(float(p) for p in reference.softmax(z))
    exponentials = tuple(float(reference.mpmath.exp(v)) for v in z)
    return WorkedExample(
        logits=z,
        labels=spec.labels,
        exponentials=exponentials,
        total=float(reference.mpmath.fsum(reference.mpmath.exp(v) for v in z)),
        probabilities=probabilities,
        winner=max(range(spec.k), key=lambda i: probabilities[i]),
        true_class=spec.true_class,
        loss=float(reference.cross_entropy(z, y)),
        gradient=tuple(float(g) for g in reference.cross_entropy_grad(z, y)),
    )


def build_bundle(spec: Spec) -> Bundle:
    """Derive and prove everything for spec; raises ProofError if any proof fails."""
    sym = derive.fixed_k(spec.k)
    forms = simplify.kernel_forms()
    return Bundle(
        k=spec.k,
        version=__version__,
        masked_rows=spec.masked_rows,
        numpy_only=spec.numpy_only,
        lang=spec.lang,
        z=sym.z,
        y=sym.y,
        identities=simplify.prove_all(sym, forms),
        general_identities=general_k.general_k_identities(),
        kernel=forms,
        worked=worked_example(spec),
    )


Step = Callable[[str], None]


def _no_progress(label: str) -> None:
    pass


def steps(targets: Iterable[str]) -> int:
    """How many times generate() reports progress."""
    return 2 + len(list(targets))


def _no_notes(message: str) -> None:
    pass


def render_all(
    bundle: Bundle, targets: Iterable[str] = EMITTERS, progress: Step = _no_progress
) -> dict[str, str]:
    """The text files of the emitter targets (the PDF is not one: see generate)."""
    files: dict[str, str] = {}
    for target in targets:
        if target in EMITTERS:
            progress(f"emitting {target}")
            files.update(EMITTERS[target](bundle))
    return files


def generate(
    spec: Spec,
    out: Path,
    *,
    force: bool = False,
    targets: Iterable[str] = TARGETS,
    progress: Step = _no_progress,
    notes: Callable[[str], None] = _no_notes,
) -> list[Path]:
    """Derive, prove, emit and write; a PDF that cannot be made is a note, not an error."""
    targets = list(targets)
    pdf_name = document_name(spec.k, spec.lang, "pdf")
    if "pdf" in targets and not pdflatex_available():
        notes(f"{pdf_name} not written: pdflatex is not installed; {INSTALL_HINT}")
        targets.remove("pdf")
    check_writable(out, output_names(spec, targets), force)  # fail before the slow part
    progress(f"deriving and proving for K={spec.k}")
    bundle = build_bundle(spec)
    files: dict[str, str | bytes] = dict(render_all(bundle, targets, progress))
    if "pdf" in targets:
        progress(f"compiling {pdf_name}")
        tex = emit_latex(bundle)[document_name(spec.k, spec.lang, "tex")]
        try:
            files[pdf_name] = build_pdf(tex, pdf_name)
        except PdfError as error:
            notes(f"{pdf_name} not written: {error}")
    progress(f"writing {out}")
    return write_files(out, files, force)
