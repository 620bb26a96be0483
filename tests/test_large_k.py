"""K = 1024: generation proves every identity and every displayed equality (representative
entries, O(K) each), writes every default target including the derivation document, and the
loop-form kernels compile with the strict flags and match mpmath, the dense Jacobian and
finite differences on a few rows. A wrong formula is still refused at this K. Generation time
is not asserted here (benchmarks/bench_generation.py measures it: about 15 s at K = 1024)."""

from __future__ import annotations

import dataclasses

import numpy
import pytest
import sympy
from sympy import Derivative, KroneckerDelta, Sum, exp, log

import symsoft.document.builder as document
from symsoft.derivation import closed_forms, fixed_k, reference
from symsoft.derivation import general_k as gk
from symsoft.document import checks, pdf
from symsoft.emit.latex import figure_files, latex_text
from symsoft.errors import ProofError
from symsoft.pipeline import build_bundle
from symsoft.spec import make_spec
from tests.conftest import Generated, require_tool
from tests.references import assert_clean_log, assert_softmax_within_budget, rows
from tests.test_document import page_count

K = 1024


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Generated:
    """Every emitter target (NumPy, C, LaTeX, Markdown, vectors) at K, from one proved Bundle."""
    return Generated(K, tmp_path_factory.mktemp("large-k"))


def test_every_identity_is_proved(large):
    names = [identity.name for identity in large.bundle.identities]
    assert {"kernel-softmax-jvp", "kernel-softmax-vjp", "jacobian-equals-transpose"} <= set(names)
    matrices = [i for i in large.bundle.identities if isinstance(i.lhs, sympy.MatrixBase)]
    assert all(i.lhs.shape[0] <= 4 for i in matrices)  # representative entries, never K^2


FIGURES = ("jacobian", "probabilities", "temperature")


def test_every_default_target_is_written(large):
    assert sorted(large.files) == [
        *(f"derivation_k{K}-{name}.{ext}" for name in FIGURES for ext in ("pdf", "svg")),
        f"derivation_k{K}.md",
        f"derivation_k{K}.tex",
        f"softmax_k{K}.c",
        f"softmax_k{K}.h",
        f"softmax_k{K}.py",
        f"vectors_k{K}.json",
    ]
    assert all((large.folder / name).is_file() for name in large.files)


def test_document_checks_representative_entries(large):
    doc = large.proved.document  # the one the emitters laid out
    # every equation is proved, but for definitions and the example's Jacobian in numbers
    assert all(e.proofs for e in doc.equations() if e.kind not in ("definition", "evaluation"))
    md = large.files[f"derivation_k{K}.md"]
    # i and j each at 1, 2, K/2 + 1 and K: 16 of the K^2 entries; i alone: 4 of K
    assert f"$16$ of ${K * K}$" in md and f"$4$ of ${K}$" in md
    # tables list the first rows, an ellipsis and the last row; the matrix only its corners
    tables = md.count("| class |")  # the header of each table of classes
    assert tables >= 6 and md.count("| class ") <= 5 * tables  # a header and four rows each
    assert f"| class {K} |" in md and "| class 4 |" not in md
    assert r"\ddots" in md


def test_document_compiles_and_stays_in_proportion(large):
    """K = 1024 is no longer than K = 3 plus 2 pages (it was 49 pages against 9)."""
    require_tool("pdflatex")
    figures = {
        f"derivation_k{K}-{name}.pdf": large.files[f"derivation_k{K}-{name}.pdf"]
        for name in FIGURES
    }
    result = pdf.compile_tex(large.files[f"derivation_k{K}.tex"], f"derivation_k{K}", figures)
    assert result.pdf.startswith(b"%PDF")
    assert_clean_log(result.log)  # also no overfull box from the longest C names
    small = document.build_document(build_bundle(make_spec(3)))
    reference_pdf = pdf.compile_tex(latex_text(small), "derivation_k3", figure_files(small)).pdf
    assert page_count(result.pdf) <= page_count(reference_pdf) + 2


def test_a_wrong_displayed_equality_stops_the_document(large, monkeypatch):
    """The document's own chain for the loss gradient, with -y_j dropped from its last step."""
    chain = checks.FixedKChecker.chain

    def corrupted(self, name, steps, *args, **kwargs):
        if name == "cross-entropy-gradient":
            steps = [*steps[:-1], steps[-1] + gk.y[gk.j]]
        return chain(self, name, steps, *args, **kwargs)

    monkeypatch.setattr(checks.FixedKChecker, "chain", corrupted)
    with pytest.raises(ProofError, match=r"cross-entropy-gradient \(equality 3, j = 1\)"):
        document.build_document(large.bundle)


@pytest.fixture(scope="module")
def checker() -> checks.FixedKChecker:
    return checks.FixedKChecker(K)


i, j, c, s, z, y = gk.i, gk.j, gk.c, gk.s, gk.z, gk.y
WRONG = {
    # sums over the K classes, in numerators, denominators, logarithms and derivatives
    "row-sum": ([Sum(s[i] * (KroneckerDelta(i, j) - s[j]), (j, 1, K)), s[i]], [i], {}),
    "sums-to-two": ([Sum(s[i], (i, 1, K)), sympy.Integer(2)], [], {}),
    "normaliser-derivative": ([Derivative(checks.normaliser(K), z[j]), 2 * exp(z[j])], [j], {}),
    "loss-gradient": (
        [Derivative(checks.L, z[j]), s[j] * Sum(y[i], (i, 1, K)) - y[j] + y[1] - y[2]],
        [j],
        {},
    ),
    "simplex-without-assumption": ([Derivative(checks.L, z[j]), s[j] - y[j]], [j], {}),
    "shift": (
        [exp(z[i] - checks.m) / checks.normaliser(K, 2 * checks.m), s[i]],
        [i],
        {},
    ),
    "log-sum-exp": (
        [log(checks.S), checks.m + log(checks.normaliser(K, 2 * checks.m))],
        [],
        {"logs": True},
    ),
    "log-of-another-sum": (
        [log(checks.S), log(Sum(exp(2 * z[i]), (i, 1, K)))],
        [],
        {"logs": True},
    ),
}


@pytest.mark.parametrize("name", WRONG)
def test_a_wrong_formula_is_refused(checker, name):
    steps, free, options = WRONG[name]
    with pytest.raises(ProofError, match=f"{name} \\(equality 1"):
        checker.chain(name, steps, free, **options)


@pytest.mark.parametrize(
    ("field", "wrong"),
    [
        ("jvp", lambda f: f.s_i * (f.v_i + f.sv)),
        ("vjp", lambda f: f.v_i - f.sv),
        ("jvp_term", lambda f: f.v_i),
    ],
)
def test_a_wrong_kernel_form_is_refused_above_the_entrywise_limit(field, wrong):
    k = 2 * closed_forms.ENTRYWISE_PROOF_K_MAX  # representative entries, sums over all k classes
    forms = closed_forms.kernel_forms()
    broken = dataclasses.replace(forms, **{field: wrong(forms)})
    with pytest.raises(ProofError):
        closed_forms.prove_all(fixed_k.fixed_k(k), broken)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_kernels_match_mpmath(large, backend):
    kern = large.numpy_module if backend == "numpy" else large.c
    rng = numpy.random.default_rng(1)
    z = rng.normal(size=(3, K)) * 4
    z[1] += 300.0
    z[2, ::7] = -numpy.inf  # masked classes
    labels = numpy.array([0, K - 1, 3])
    s = kern.softmax(z)
    assert_softmax_within_budget(s[:2], rows(reference.softmax, z[:2]), z[:2])
    assert numpy.all(s[2, ::7] == 0)
    numpy.testing.assert_allclose(s[2], rows(reference.softmax, z[2:])[0], rtol=1e-12)
    expected = rows(reference.log_softmax, z)
    finite = numpy.isfinite(expected)
    log_s = kern.log_softmax(z)
    assert numpy.all(numpy.isneginf(log_s[~finite]))
    numpy.testing.assert_allclose(log_s[finite], expected[finite], rtol=1e-13)
    y = numpy.eye(K)[labels]
    loss, grad = kern.cross_entropy_with_grad(z, y)
    numpy.testing.assert_allclose(loss, rows(reference.cross_entropy, z, y), rtol=1e-13)
    numpy.testing.assert_allclose(
        grad, rows(reference.cross_entropy_grad, z, y), rtol=1e-12, atol=1e-18
    )
    numpy.testing.assert_allclose(kern.cross_entropy_index(z, labels), loss, rtol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_jacobian_vector_products(large, backend):
    kern = large.numpy_module if backend == "numpy" else large.c
    rng = numpy.random.default_rng(2)
    z = rng.normal(size=(2, K))
    v = rng.normal(size=(2, K))
    jac = kern.softmax_jacobian(z)
    assert jac.shape == (2, K, K)
    dense = numpy.einsum("rij,rj->ri", jac, v)
    numpy.testing.assert_allclose(kern.softmax_jvp(z, v), dense, rtol=1e-9, atol=1e-17)
    numpy.testing.assert_allclose(
        kern.softmax_vjp(z, v), numpy.einsum("rij,ri->rj", jac, v), rtol=1e-9, atol=1e-17
    )
    h = 1e-5
    fd = (kern.softmax(z + h * v) - kern.softmax(z - h * v)) / (2 * h)
    numpy.testing.assert_allclose(kern.softmax_jvp(z, v), fd, rtol=1e-6, atol=1e-12)


def test_c_matches_numpy_in_float32(large):
    rng = numpy.random.default_rng(3)
    z = (rng.normal(size=(20, K)) * 3).astype(numpy.float32)
    v = rng.normal(size=(20, K)).astype(numpy.float32)
    numpy.testing.assert_allclose(
        large.c.softmax(z), large.numpy_module.softmax(z), rtol=2e-6, atol=1e-30
    )
    numpy.testing.assert_allclose(
        large.c.softmax_jvp(z, v), large.numpy_module.softmax_jvp(z, v), rtol=1e-4, atol=1e-7
    )
