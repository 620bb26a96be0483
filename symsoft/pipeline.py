"""generate(spec, out): derive -> prove -> Bundle -> document -> emitters -> writer.

Every stage is a public function whose output can be inspected: build_bundle (derived and
proved), prove (the Bundle and the document's checked content), render_all (file texts),
generate (written files). Proving ends before the first emitter runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from symsoft.derivation import (
    closed_forms,
    fixed_k,
    general_k,
    general_k_family,
    options,
    reference,
)
from symsoft.derivation.bundle import Bundle, WorkedExample
from symsoft.document.builder import build_document
from symsoft.document.pdf import INSTALL_HINT, PdfError, build_pdf, pdflatex_available
from symsoft.document.view import Document, document_name, figure_names
from symsoft.emit.c import emit_c
from symsoft.emit.latex import emit_latex, figure_files, latex_text
from symsoft.emit.markdown import emit_markdown
from symsoft.emit.numpy import emit_numpy
from symsoft.emit.vectors import emit_vectors, vectors_name
from symsoft.family.members import stem
from symsoft.spec import Spec
from symsoft.stamp import PLACEHOLDER, stamp
from symsoft.version import __version__
from symsoft.writer import check_writable, write_files


@dataclass(frozen=True)
class Proved:
    """Everything the emitters lay out, derived and proved: the Bundle and, when a document
    target is asked for, the document's checked content."""

    bundle: Bundle
    document: Document | None


def _document(proved: Proved) -> Document:
    if proved.document is None:
        raise ValueError("no document was built: prove() was not asked for a document target")
    return proved.document


Emitter = Callable[[Proved], dict[str, str] | dict[str, str | bytes]]
EMITTERS: dict[str, Emitter] = {
    "numpy": lambda proved: emit_numpy(proved.bundle),
    "c": lambda proved: emit_c(proved.bundle),
    "latex": lambda proved: emit_latex(_document(proved)),
    "markdown": lambda proved: emit_markdown(_document(proved)),
    "vectors": lambda proved: emit_vectors(proved.bundle),
}
DOCUMENT_TARGETS = frozenset({"latex", "markdown", "pdf"})
# the PDF is compiled from the LaTeX, by pdflatex when it is installed
TARGETS = (*EMITTERS, "pdf")


def output_names(spec: Spec, targets: Iterable[str] = TARGETS) -> list[str]:
    """The files generate() writes, known before any work is done."""
    k, base = spec.k, stem(spec.k, spec.prefix)
    names = {
        "numpy": [f"{base}.py"],
        "c": [f"{base}.h", f"{base}.c"],
        # the figures sit beside the document that includes or links them
        "latex": [document_name(k, spec.lang, "tex"), *figure_names(k, spec.lang, "pdf")],
        "markdown": [document_name(k, spec.lang, "md"), *figure_names(k, spec.lang, "svg")],
        "vectors": [vectors_name(k, spec.prefix)],
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
    sym = fixed_k.fixed_k(spec.k)
    kernel = closed_forms.kernel_forms()
    option_forms = options.option_forms(spec.k, kernel)
    return Bundle(
        k=spec.k,
        version=__version__,
        masked_rows=spec.masked_rows,
        numpy_only=spec.numpy_only,
        lang=spec.lang,
        z=sym.z,
        y=sym.y,
        identities=closed_forms.prove_all(sym, kernel),
        general_identities=general_k.general_k_identities(),
        kernel=kernel,
        worked=worked_example(spec),
        prefix=spec.prefix,
        family_identities=general_k_family.family_identities(),
        options=option_forms,
        option_identities=options.prove_options(spec.k, kernel, option_forms),
    )


Step = Callable[[str], None]


def _no_progress(label: str) -> None:
    pass


def steps(targets: Iterable[str]) -> int:
    """How many times generate() reports progress."""
    return 2 + len(list(targets))


def _no_notes(message: str) -> None:
    pass


def prove(spec: Spec, targets: Iterable[str] = TARGETS) -> Proved:
    """Derive and prove the Bundle, and build and check the document if a target needs it."""
    bundle = build_bundle(spec)
    wants_document = not DOCUMENT_TARGETS.isdisjoint(targets)
    return Proved(bundle, build_document(bundle) if wants_document else None)


def render_all(
    proved: Proved, targets: Iterable[str] = EMITTERS, progress: Step = _no_progress
) -> dict[str, str | bytes]:
    """The files of the emitter targets: text, and the LaTeX's figures as PDF bytes (the
    document's PDF is not one: see generate), each stamped with the digest of its content
    (symsoft.stamp)."""
    files: dict[str, str | bytes] = {}
    for target in targets:
        if target in EMITTERS:
            progress(f"emitting {target}")
            files.update(EMITTERS[target](proved))
    return {name: stamp(content) for name, content in files.items()}


def _stamped_pdf(document: Document, spec: Spec, pdf_name: str) -> bytes:
    """The document's PDF, with symsoft's header and stamp in its Info dictionary (pdfTeX
    writes it uncompressed, so the stamp's placeholder can be filled in after compiling)."""
    line = f"generated by symsoft {__version__} for K={spec.k}; do not edit; {PLACEHOLDER}"
    tex = f"\\pdfinfo{{/SymsoftHeader ({line})}}\n{latex_text(document)}"
    pdf = build_pdf(tex, pdf_name, figure_files(document))
    return bytes(stamp(pdf))


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
    proved = prove(spec, targets)
    files = render_all(proved, targets, progress)
    if "pdf" in targets:
        progress(f"compiling {pdf_name}")
        document = _document(proved)
        try:
            files[pdf_name] = _stamped_pdf(document, spec, pdf_name)
        except PdfError as error:
            notes(f"{pdf_name} not written: {error}")
    progress(f"writing {out}")
    return write_files(out, files, force)
