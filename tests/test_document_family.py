"""The document's sections on the members built on the softmax (issue 18): log-sum-exp, the
log-softmax products, distillation with a temperature, the cross-entropy's Hessian and H v.

They exist in both languages and in the Markdown, the LaTeX and the PDF; every displayed
equality is checked and a wrong one stops generation; the worked example's numbers are
computed here with torch (float64, autograd and torch.func), independently of the code under
test.
"""

# ruff: noqa: RUF001 -- the Chinese titles use full-width punctuation, PDFs a typographic '
from __future__ import annotations

import dataclasses
import math

import pytest
import sympy
import torch
import torch.nn.functional as F

import symsoft.document.builder as document
from symsoft.derivation import general_k as gk
from symsoft.document import checks, family_sections
from symsoft.emit.latex import latex_text
from symsoft.emit.markdown import markdown_text
from symsoft.errors import ProofError
from symsoft.pipeline import build_bundle
from symsoft.spec import make_spec
from tests.test_document import compiled_pdf, laid_out

TITLES = {
    "en": (
        "Log-sum-exp",
        "Backward through log-softmax",
        "Knowledge distillation with a temperature",
        "Second order: the cross-entropy's Hessian",
    ),
    "zh": (
        "Log-sum-exp",
        "log-softmax 的反向传播",
        "带温度的知识蒸馏",
        "二阶导数：交叉熵的黑塞矩阵",
    ),
}
EQUATIONS = (
    "logsumexp-stable",
    "logsumexp-gradient",
    "logsumexp-log-softmax",
    "log-softmax-jacobian",
    "log-softmax-jvp",
    "log-softmax-vjp",
    "log-softmax-vjp-cross-entropy",
    "kd-log",
    "kd-gradient",
    "hessian-entry",
    "hessian-matrix",
    "hessian-symmetric-kernel",
    "hessian-quadratic-form",
    "hvp",
)
# the Bundle's fixed-K identities (each member's form differentiated from its definition)
# that the sections show beside their own chains
BUNDLE_PROOFS = {
    "stable-logsumexp",
    "logsumexp-gradient",
    "log-softmax-jacobian-closed-form",
    "kernel-log-softmax-jvp",
    "kernel-log-softmax-vjp",
    "distillation-kl-gradient",
    "kernel-distillation-kl-grad",
    "cross-entropy-hessian-closed-form",
    "cross-entropy-hessian-symmetric",
    "kernel-cross-entropy-hessian",
    "kernel-cross-entropy-hvp",
}


def f3(x: float) -> str:
    """A number as the document rounds it (three decimals, no "-0.000")."""
    text = f"{x:.3f}"
    return text[1:] if text == "-0.000" else text


# --- the sections exist, in both languages and every format ----------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_sections_exist_in_markdown_and_latex(lang, bundle):
    _, b = bundle(3)
    doc = laid_out(b, lang)
    md, tex = markdown_text(doc), latex_text(doc)
    for number, title in enumerate(TITLES[lang], start=7):
        assert f"## {number} {title}" in md, title
        assert f"\\section{{{title}}}" in tex, title
    keys = [e.key for e in doc.equations()]
    for key in EQUATIONS:
        assert key in keys and f"\\label{{eq:{key}}}" in tex, key
    # the appendix's table of functions links each member to the equations deriving it
    for name in ("logsumexp", "log_softmax_vjp", "distillation_kl_grad", "cross_entropy_hvp"):
        assert f"`{name}`" in md


@pytest.mark.parametrize(("k", "lang"), [(1, "en"), (2, "en"), (3, "en"), (10, "en"), (3, "zh")])
def test_the_sections_are_in_the_pdf(k, lang, bundle):
    _, text, _ = compiled_pdf(bundle, k, lang)
    # compared without spaces: pdftotext drops some between Latin and Chinese characters
    flat = "".join(text.split()).replace("’", "'")
    for title in TITLES[lang]:
        assert "".join(title.split()) in flat, (k, lang, title)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_every_new_equality_is_checked(k, bundle):
    _, b = bundle(k)
    doc = laid_out(b)
    shown = {e.key: e for e in doc.equations()}
    for key in EQUATIONS:
        assert shown[key].proofs, key
    names = {p.name for e in doc.equations() for p in e.proofs}
    # every symbolic-K step of the family is shown, and the Bundle's own proofs beside them
    assert {identity.name for identity in b.family_identities} <= names
    assert names >= BUNDLE_PROOFS
    assert shown["kd-definition"].kind == "definition" and not shown["kd-definition"].proofs


# --- a wrong step stops generation -----------------------------------------------------------

T, p, q, Sum, log = checks.T, checks.p, checks.q, sympy.Sum, sympy.log
i, K = gk.i, gk.K


@pytest.mark.parametrize(
    "loss",
    [
        T * Sum(q[i] * (log(q[i]) - log(p[i])), (i, 1, K)),  # T instead of T^2
        T**2 * Sum(p[i] * (log(p[i]) - log(q[i])), (i, 1, K)),  # KL's arguments swapped
        Sum(q[i] * (log(q[i]) - log(p[i])), (i, 1, K)),  # without the temperature's factor
    ],
    ids=["T-not-squared", "arguments-swapped", "no-T-squared"],
)
def test_a_wrong_distillation_loss_stops_the_document(loss, monkeypatch):
    monkeypatch.setattr(family_sections, "KD_LOSS", loss)
    with pytest.raises(ProofError, match="distillation-gradient"):
        document.build_document(build_bundle(make_spec(3)))


def test_the_hessian_without_its_sum_of_targets_stops_the_document(monkeypatch):
    monkeypatch.setattr(family_sections, "_times_sum_y", lambda *f: sympy.Mul(*f))
    with pytest.raises(ProofError, match="cross-entropy-hessian-entry"):
        document.build_document(build_bundle(make_spec(2)))


def test_a_missing_bundle_proof_stops_the_document(bundle):
    _, b = bundle(3)
    kept = tuple(x for x in b.identities if x.name != "kernel-cross-entropy-hvp")
    with pytest.raises(ProofError, match="kernel-cross-entropy-hvp"):
        document.build_document(dataclasses.replace(b, identities=kept))


def test_wrong_products_and_derivatives_are_refused():
    s, v, z, j, g = gk.s, gk.v, gk.z, gk.j, checks.g
    delta = sympy.KroneckerDelta
    plain, tempered = checks.FixedKChecker(4), checks.FixedKChecker(4, tempered=True)
    jvp = Sum(sympy.Derivative(log(s[i]), z[j]) * v[j], (j, 1, K))
    with pytest.raises(ProofError, match="equality 1"):  # <s, v> confused with s_i sum v
        plain.chain("wrong-jvp", [jvp, v[i] - s[i] * Sum(v[j], (j, 1, K))], [i])
    vjp = Sum(sympy.Derivative(log(s[i]), z[j]) * g[i], (i, 1, K))
    with pytest.raises(ProofError, match="equality 1"):  # the JVP's form for the VJP
        plain.chain("wrong-vjp", [vjp, g[j] - Sum(s[i] * g[i], (i, 1, K))], [j])
    with pytest.raises(ProofError, match="equality 1"):  # the chain rule's 1/T forgotten
        tempered.chain(
            "wrong-tempered", [sympy.Derivative(log(p[i]), z[j]), delta(i, j) - p[j]], [i, j]
        )
    hvp = Sum(checks.Hij[i, j] * v[j], (j, 1, K))
    with pytest.raises(ProofError, match="equality 1"):  # H v without sum(y)
        plain.chain(
            "wrong-hvp",
            [hvp, s[i] * (v[i] - Sum(s[j] * v[j], (j, 1, K)))],
            [i],
            assume=checks.sum_y_constant,
        )


# --- the worked example's numbers, against torch ---------------------------------------------


def _example(k: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    spec = make_spec(k)
    z = torch.tensor(spec.example, dtype=torch.float64)
    y = torch.zeros_like(z)
    y[spec.true_class] = 1.0
    return z, y, int(torch.argmax(z)), spec.true_class


def _rows(k: int) -> list[int]:
    """The classes the tables list (the first three and the last above eight classes)."""
    return list(range(k)) if k <= 8 else [0, 1, 2, k - 1]


@pytest.mark.parametrize("k", [3, 10])
def test_log_sum_exp_numbers(k, bundle):
    _, b = bundle(k)
    md = markdown_text(laid_out(b))
    z, _, _, _ = _example(k)
    top = float(z.max())
    shifted = float(torch.exp(z - z.max()).sum())
    assert f"\\approx {f3(shifted)}" in md
    assert f"\\approx {f3(float(torch.logsumexp(z, 0)))}" in md
    assert f"\\log {k} \\approx {f3(top + math.log(k))}" in md
    # its gradient is the softmax: torch's gradient of logsumexp, in the table of Section 2
    x = z.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(torch.logsumexp(x, 0), x)
    for n in _rows(k):
        assert f"${f3(float(gradient[n]))}$" in md


@pytest.mark.parametrize("k", [3, 10])
def test_log_softmax_product_numbers(k, bundle):
    _, b = bundle(k)
    md = markdown_text(laid_out(b))
    z, y, winner, _ = _example(k)
    unit = torch.zeros_like(z)
    unit[winner] = 1.0
    _, jvp = torch.func.jvp(lambda x: torch.log_softmax(x, 0), (z,), (unit,))
    _, pullback = torch.func.vjp(lambda x: torch.log_softmax(x, 0), z)
    (vjp,) = pullback(-y)
    section = md[md.index("## 8 ") : md.index("## 9 ")]
    for n in _rows(k):
        assert f"| ${f3(float(jvp[n]))}$ | ${f3(float(vjp[n]))}$ |" in section


@pytest.mark.parametrize("k", [3, 10])
def test_distillation_numbers(k, bundle):
    _, b = bundle(k)
    md = markdown_text(laid_out(b))
    temperature = family_sections.DISTILLATION_TEMPERATURE
    z, _, _, _ = _example(k)
    teacher = z.flip(0)  # the document's teacher: the logits in reverse order
    student = z.clone().unsqueeze(0).requires_grad_(True)
    loss = (
        F.kl_div(
            F.log_softmax(student / temperature, -1),
            F.log_softmax(teacher.unsqueeze(0) / temperature, -1),
            log_target=True,
            reduction="batchmean",
        )
        * temperature**2
    )
    (gradient,) = torch.autograd.grad(loss, student)
    p = torch.softmax(z / temperature, 0)
    q = torch.softmax(teacher / temperature, 0)
    section = md[md.index("## 9 ") : md.index("## 10 ")]
    for n in _rows(k):
        row = [f3(float(x)) for x in (p[n], q[n], gradient[0, n])]
        assert "| " + " | ".join(f"${x}$" for x in row) + " |" in section
    assert f"\\approx {f3(float(loss.detach()))}" in section


@pytest.mark.parametrize("k", [3, 10])
def test_hessian_numbers(k, bundle):
    _, b = bundle(k)
    md = markdown_text(laid_out(b))
    z, y, _, _ = _example(k)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return -(y * torch.log_softmax(x, 0)).sum()

    hessian = torch.func.hessian(loss)(z)
    eigenvalues = torch.linalg.eigvalsh(hessian).tolist()
    section = md[md.index("## 10 ") : md.index("# Implementation")]
    if k <= 6:
        assert ", ".join(f3(x) for x in eigenvalues) in section
    else:
        for x in (eigenvalues[0], eigenvalues[1], eigenvalues[-1]):
            assert f"${f3(x)}$" in section
    assert abs(eigenvalues[0]) < 1e-12 and eigenvalues[1] > 0  # rank K - 1: one zero
    gradient = torch.func.grad(loss)(z)
    _, product = torch.func.jvp(torch.func.grad(loss), (z,), (gradient,))
    for n in _rows(k):
        assert f"| ${f3(float(gradient[n]))}$ | ${f3(float(product[n]))}$ |" in section
    curvature = float(gradient @ hessian @ gradient)
    assert f"g^{{T}} H g \\approx {f3(curvature)}" in section
    assert f"\\approx {f3(float(gradient @ gradient) / curvature)}" in section
