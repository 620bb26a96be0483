"""generate(spec, out): derive -> prove -> Bundle -> emitters -> writer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from symsoft import __version__, derive, general_k, reference, simplify
from symsoft.bundle import Bundle, WorkedExample
from symsoft.emit.c import emit_c
from symsoft.emit.latex import emit_latex
from symsoft.emit.numpy import emit_numpy
from symsoft.spec import Spec
from symsoft.vectors import emit_vectors
from symsoft.writer import check_writable, write_files

Emitter = Callable[[Bundle], dict[str, str]]
EMITTERS: dict[str, Emitter] = {
    "numpy": emit_numpy,
    "c": emit_c,
    "latex": emit_latex,
    "vectors": emit_vectors,
}


def output_names(k: int, targets: Iterable[str] = EMITTERS) -> list[str]:
    """The files generate() writes, known before any work is done."""
    names = {
        "numpy": [f"softmax_k{k}.py"],
        "c": [f"softmax_k{k}.h", f"softmax_k{k}.c"],
        "latex": [f"derivation_k{k}.tex"],
        "vectors": [f"vectors_k{k}.json"],
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


def render_all(
    bundle: Bundle, targets: Iterable[str] = EMITTERS, progress: Step = _no_progress
) -> dict[str, str]:
    files: dict[str, str] = {}
    for target in targets:
        progress(f"emitting {target}")
        files.update(EMITTERS[target](bundle))
    return files


def generate(
    spec: Spec,
    out: Path,
    *,
    force: bool = False,
    targets: Iterable[str] = EMITTERS,
    progress: Step = _no_progress,
) -> list[Path]:
    targets = list(targets)
    check_writable(out, output_names(spec.k, targets), force)  # fail before the slow part
    progress(f"deriving and proving for K={spec.k}")
    files = render_all(build_bundle(spec), targets, progress)
    progress(f"writing {out}")
    return write_files(out, files, force)
