"""The derivation document as a handout (issue 21): what it teaches, its figures, its
corrections, its proportion at large K, its layout and its Chinese version.

Expected numbers are computed here with math and NumPy, independently of the code under test;
the figures are read back from their SVG. PDFs are compiled with the real pdflatex.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy
import pytest
import sympy

from symsoft.derivation import general_k as gk
from symsoft.document import checks, figures
from symsoft.document.text import EN, ZH
from symsoft.emit.markdown import markdown_text
from symsoft.errors import ProofError
from symsoft.pipeline import generate, output_names
from symsoft.spec import make_spec
from symsoft.version import __version__
from tests.test_document import compiled_pdf, laid_out, math_spans, page_count

SVG = "{http://www.w3.org/2000/svg}"


def example(k: int = 3) -> tuple[list[float], list[float]]:
    """The default example's logits and softmax, computed here."""
    z = list(make_spec(k).example)
    e = [math.exp(v) for v in z]
    return z, [x / math.fsum(e) for x in e]


# --- what it teaches -------------------------------------------------------------------------


def test_the_lesson_teaches_the_ideas_the_references_explain(bundle):
    _, b = bundle(3)
    md = markdown_text(laid_out(b))
    for phrase in (
        "natural logarithm",
        "sum of the numerators",  # the one-line proof that the probabilities sum to one
        "soft argmax",
        "temperature",
        "rank $K - 1$",
        "kernel of $J$ is spanned by $\\mathbf{1}$",
        "symmetric positive semidefinite",
        "covariance matrix of the one-hot class vector",
        "Hessian",
        "convex",
        "logistic sigmoid",
        "logistic regression",
        "finite-difference",
        "At initialisation",
        "linear layer",
        "The same class.",  # the i = j / i != j case split
        "Another class.",
    ):
        assert phrase in md, phrase
    assert r"\frac{\partial L}{\partial W} = \left(s - y\right) x^{T}" in md
    assert f"\\log 3 \\approx {math.log(3):.3f}" in md  # the loss at initialisation, log K


def test_derived_once_in_the_readers_order(bundle):
    _, b = bundle(3)
    doc = laid_out(b)
    lesson = [s.key for s in doc.sections if not s.appendix]
    assert lesson == [
        "softmax",
        "example",
        "jacobian",
        "cross-entropy",
        "two-classes",
        "stability",
        # issue 18: the members built on the softmax, after the stability they rely on
        "logsumexp",
        "log-softmax-products",
        "distillation",
        "second-order",
        "options",  # issue 17: the cross-entropy's options
    ]
    # no second derivation for a symbolic K: the general steps back the displayed ones
    general = [s for s in doc.sections if s.key == "general"]
    assert not general
    # the general formulas use a symbolic K, the explicit matrix the given one
    md = markdown_text(doc)
    assert r"\sum_{k=1}^{K} e^{z_{k}}" in md and "s_{3} \\left(1 - s_{3}\\right)" in md
    # the implementation material is a separate part, after the lesson
    appendix = [s for s in doc.sections if s.appendix]
    assert [s.key for s in appendix] == ["code", "checks"]
    assert appendix[0].part and not any(s.part for s in doc.sections if not s.appendix)


NEW_EQUATIONS = (
    "sums-to-one",
    "jacobian-diagonal",
    "jacobian-off-diagonal",
    "psd",
    "covariance",
    "hessian",
    "equal-logits",
    "linear-layer",
    "sigmoid",
    "two-class-loss",
)


@pytest.mark.parametrize("k", [1, 3, 50])
def test_every_new_equality_is_checked(k, bundle):
    _, b = bundle(k)
    doc = laid_out(b)
    shown = {e.key: e for e in doc.equations()}
    for key in NEW_EQUATIONS:
        if key == "jacobian-off-diagonal" and k == 1:
            assert key not in shown  # no pair i != j with one class
            continue
        assert shown[key].proofs, key
    # every step the lesson adds is proved for symbolic K and shown
    names = {p.name for e in doc.equations() for p in e.proofs}
    assert {i.name for i in gk.lesson_identities()} <= names
    # the numbers of the example's Jacobian are evaluated, not proved, and say so
    assert shown["jacobian-example"].kind == "evaluation"


def test_wrong_new_steps_are_refused():
    i, j, k, s, v, K = gk.i, gk.j, gk.k, gk.s, gk.v, gk.K
    delta = sympy.KroneckerDelta
    checker = checks.FixedKChecker(4)
    covariance = sympy.Sum(s[k] * (delta(i, k) - s[i]) * (delta(j, k) - s[j]), (k, 1, K))
    with pytest.raises(ProofError, match="equality 1"):
        checker.chain("wrong-covariance", [covariance, s[i] * (delta(i, j) + s[j])], [i, j])
    with pytest.raises(ProofError, match="equality 1"):  # i != j: no delta
        checker.chain("wrong-off-diagonal", [sympy.Derivative(s[i], gk.z[j]), s[i] * s[j]], [i, j])
    mean = sympy.Sum(s[j] * v[j], (j, 1, K))
    with pytest.raises(ProofError):  # the variance without its weights
        gk.check_equal(
            "wrong-variance",
            sympy.Sum(s[i] * v[i] * (v[i] - mean), (i, 1, K)),
            sympy.Sum((v[i] - mean) ** 2, (i, 1, K)),
        )
    with pytest.raises(ProofError):  # equal logits give 1/K, not 1/(K + 1)
        gk.check_equal("wrong-uniform", s[i], 1 / (K + 1), (gk.equal_logits,))


def _value(expr: sympy.Basic, point: dict[sympy.Basic, float], n: int) -> float:
    """expr at K = n and the point, evaluated with the definitions written out by SymPy."""
    indices = {gk.i: 2, gk.j: 3}
    expr = gk.expand_definitions(expr).subs({gk.K: n, gk.D: 3}).doit()
    expr = expr.subs(indices).doit()
    return float(sympy.N(expr.subs(point)))


@pytest.mark.parametrize("identity", gk.lesson_identities(), ids=lambda d: d.name)
def test_lesson_identities_hold_numerically(identity):
    """Each step the lesson adds, at K = 4, against its right-hand side (both numeric)."""
    n = 4
    rng = numpy.random.default_rng(sum(map(ord, identity.name)))
    logits = rng.normal(size=n)
    if "equal-logits" in identity.name:
        logits[:] = 0.7
    targets = rng.random(n)
    targets /= targets.sum()  # the steps that assume it need targets summing to one
    point: dict[sympy.Basic, float] = {gk.a: 0.7}
    for m in range(1, n + 1):
        point[gk.z[m]] = logits[m - 1]
        point[gk.y[m]] = targets[m - 1]
        point[gk.v[m]] = rng.normal()
        point[gk.b[m]] = rng.normal()
        for q in range(1, 4):
            point[gk.W[m, q]] = rng.normal()
    for q in range(1, 4):
        point[gk.x[q]] = rng.normal()
    assert _value(identity.lhs, point, n) == pytest.approx(_value(identity.rhs, point, n))


# --- the worked example's numbers ------------------------------------------------------------


def test_tutorial_sum_exact_sum_and_why(bundle):
    _, b = bundle(3)
    md = markdown_text(laid_out(b))
    z, _ = example(3)
    rounded = sum(round(math.exp(v), 3) for v in z)
    exact = math.fsum(math.exp(v) for v in z)
    assert f"{rounded:.3f}" == "11.212"  # the tutorial's column, computed here
    assert f"adds up to ${rounded:.3f}$" in md
    assert f"$S = {exact:.6f}\\ldots$" in md and f"rounds to ${exact:.3f}$" in md


def test_the_examples_jacobian_and_finite_differences(bundle):
    _, b = bundle(3)
    md = markdown_text(laid_out(b))
    _, p = example(3)
    for r in range(3):
        for q in range(3):
            assert f"{p[r] * ((r == q) - p[q]):.3f}" in md
    # the central differences of the loss at the example, computed here
    z = numpy.array(example(3)[0])
    h = 1e-5

    def loss(values):
        return float(numpy.log(numpy.exp(values).sum()) - values[0])

    for n in range(3):
        step = numpy.zeros(3)
        step[n] = h
        central = (loss(z + step) - loss(z - step)) / (2 * h)
        assert f"{central:.6f}" in md
        assert f"{p[n] - (n == 0):.6f}" in md


def test_corrections(bundle):
    _, b = bundle(3)
    md = markdown_text(laid_out(b))
    # J is singular, but the logits are determined up to a common constant
    assert "cannot be recovered" not in md
    assert "up to one additive constant" in md
    assert "Differentiating with respect to $t$ gives $J \\mathbf{1} = \\mathbf{0}$" in md
    # the sum overflows first: 1000 equal logits above log(max) - log 1000
    info = numpy.finfo(numpy.float64)
    assert f"{math.log(float(info.max)) - math.log(1000):.2f}" in md
    assert f"{math.log(float(info.tiny)):.2f}" in md  # where underflow (subnormals) starts
    # the code steps: labelled, named results, r_c defined in the block, the rounding told
    assert r"\ell_{c} &\leftarrow" in md and r"r_{c} &\leftarrow \sum_{k \neq c} u_{k}" in md
    assert r"- \log s_{c} &\leftarrow" not in md
    assert "rounded once" in md and "TwoSum" in md
    # how the equalities were checked, next to the claim
    intro = md[: md.index("## 1 ")]
    assert "$K \\leq 6$" in intro and "first, second, middle and last index" in intro
    assert "symbolic $K$" in intro
    assert "sum to exactly 0" in md


def test_one_class_says_zero(bundle):
    _, b = bundle(1)
    md = markdown_text(laid_out(b))
    assert "is negative" not in md
    assert "$s_{c} - 1$ is 0" in md


# --- figures ---------------------------------------------------------------------------------


def _polyline(path: ET.Element) -> list[tuple[float, float]]:
    numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", path.get("d", ""))]
    return list(zip(numbers[::2], numbers[1::2], strict=True))


def _group(svg: str, gid: str) -> ET.Element:
    root = ET.fromstring(svg)
    for g in root.iter(f"{SVG}g"):
        if g.get("id") == gid:
            return g
    raise AssertionError(f"no element {gid} in the SVG")


def _assert_linear(drawn: list[float], values: list[float]) -> None:
    """drawn = a + b * value for every point (the plot's scale), to the SVG's precision."""
    slope = (drawn[-1] - drawn[0]) / (values[-1] - values[0])
    for d, v in zip(drawn, values, strict=True):
        assert d == pytest.approx(drawn[0] + slope * (v - values[0]), abs=0.02)


def test_figures_are_drawn_from_the_worked_example(bundle):
    _, b = bundle(3)
    z, p = example(3)
    doc = laid_out(b)
    drawn = {f.key: f for f in doc.figures()}
    assert list(drawn) == ["temperature", "probabilities", "jacobian"]
    # the probabilities as bars: heights proportional to the probabilities
    heights = []
    for n in range(3):
        (path,) = _group(drawn["probabilities"].svg, f"bar_{n + 1}").iter(f"{SVG}path")
        ys = [y for _, y in _polyline(path)]
        heights.append(max(ys) - min(ys))
    for n in range(3):
        assert heights[n] / heights[0] == pytest.approx(p[n] / p[0], rel=1e-4)
    # the temperature curves: s(z / T) for each class, computed here
    data = figures.temperature_data(b.worked)
    for n, row in zip(data.classes, data.values, strict=True):
        for t, value in zip(data.x, row, strict=True):
            scaled = [math.exp(v / t) for v in z]
            assert value == pytest.approx(scaled[n] / math.fsum(scaled), rel=1e-12)
    for n in range(3):
        (path,) = _group(drawn["temperature"].svg, f"curve_{n + 1}").iter(f"{SVG}path")
        points = _polyline(path)
        assert len(points) == len(data.x)
        _assert_linear([y for _, y in points], list(data.values[n]))
        _assert_linear([x for x, _ in points], [math.log(t) for t in data.x])
    # the Jacobian as a heat map: its entries, printed in the cells
    svg = drawn["jacobian"].svg
    for r in range(3):
        for q in range(3):
            assert f"<!-- {p[r] * ((r == q) - p[q]):.3f} -->" in svg.replace("\u2212", "-")


def test_figures_are_deterministic_and_carry_no_date(bundle):
    _, b = bundle(3)
    for data in figures.figure_data(b.worked):
        first, second = figures.render(data), figures.render(data)
        assert first.svg == second.svg and first.pdf == second.pdf
        assert "<dc:date>" not in first.svg and b"/CreationDate" not in first.pdf
        assert b"/Producer" not in first.pdf


def test_the_markdown_target_writes_the_svgs_it_links(tmp_path):
    spec = make_spec(3)
    names = output_names(spec, ["markdown", "latex"])
    for key in ("temperature", "probabilities", "jacobian"):
        assert f"derivation_k3-{key}.svg" in names and f"derivation_k3-{key}.pdf" in names
    written = generate(spec, tmp_path, targets=["markdown"])
    md = (tmp_path / "derivation_k3.md").read_text()
    for key in ("temperature", "probabilities", "jacobian"):
        svg = tmp_path / f"derivation_k3-{key}.svg"
        assert svg in written and f"]({svg.name})" in md
        ET.fromstring(svg.read_text())  # well-formed
        assert svg.read_text().splitlines()[1].startswith("<!-- generated by symsoft")


# --- proportion, layout, languages -----------------------------------------------------------


def test_large_k_tables_are_short(bundle):
    _, b = bundle(50)
    md = markdown_text(laid_out(b))
    assert "| class 3 |" in md and "| class 50 |" in md
    assert "| class 4 |" not in md and "| class 49 |" not in md
    assert r"| $\vdots$ |" in md
    assert "| sum over all classes |" in md


def test_page_counts_and_page_ends(bundle):
    pages = {}
    for k, lang in ((3, "en"), (3, "zh"), (50, "en")):
        _, text, data = compiled_pdf(bundle, k, lang)
        pages[(k, lang)] = page_count(data)
        for number, page in enumerate(text.split("\f")[:-1], start=1):
            lines = [line.strip() for line in page.splitlines() if line.strip()]
            body = [line for line in lines if not line.isdigit()]  # the page number
            assert body and not body[-1].endswith((":", "\uff1a")), (k, lang, number, body[-1])
    assert pages[(50, "en")] <= pages[(3, "en")] + 2


def test_pdf_text_keeps_names_whole(bundle):
    _, text, _ = compiled_pdf(bundle, 3)
    flat = " ".join(text.split())
    for name in ("softmax_k3.py", "softmax_k3.h", "softmax_k3.c", "softmax_jacobian_k3_f64"):
        assert name in flat  # T1: the underscore copies as an underscore; never broken
    # the version in a footnote at the foot of page 1, not in the title or author line
    first_page = text.split("\f")[0]
    heading = first_page[: first_page.index("These notes")]
    assert "Softmax, its Jacobian and the cross-entropy gradient" in heading
    assert "symsoft" not in heading
    assert f"Generated by symsoft {__version__}" in " ".join(first_page.split())


def test_chinese_has_the_same_content(bundle):
    assert set(EN) == set(ZH)
    _, b = bundle(3)
    zh = markdown_text(laid_out(b, "zh"))
    for label in ("猫", "狗", "鸟"):
        assert label in zh
    assert "cat" not in zh and "Kronecker" not in zh and "克罗内克" in zh
    en_doc, zh_doc = laid_out(b, "en"), laid_out(b, "zh")
    assert [e.key for e in en_doc.equations()] == [e.key for e in zh_doc.equations()]
    assert [f.key for f in en_doc.figures()] == [f.key for f in zh_doc.figures()]


def test_markdown_inline_maths_has_no_escapes_github_drops(bundle):
    for k in (1, 3, 50):
        _, b = bundle(k)
        for lang in ("en", "zh"):
            for span in math_spans(markdown_text(laid_out(b, lang))):
                if not span["display"]:
                    assert not re.search(r"\\[^A-Za-z]", span["tex"]), span["tex"]
    _, b = bundle(3)
    assert "$65.9$\u00a0%" in markdown_text(laid_out(b))
