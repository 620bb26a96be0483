"""The derivation document: it compiles, it renders, it says what the numbers are.

The .tex is compiled with pdflatex (log free of overfull boxes and undefined references) and
read back with pdftotext; every math span of the Markdown is rendered by KaTeX. Expected
numbers are computed here with math.exp, independently of the code under test. Missing tools
fail under CI and skip elsewhere (tests.conftest.require_tool).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import symsoft.document.builder as document
from symsoft.derivation.bundle import Bundle
from symsoft.document import checks, pdf
from symsoft.emit.latex import emit_latex, figure_files, latex_text
from symsoft.emit.markdown import emit_markdown, markdown_text
from symsoft.errors import ProofError
from symsoft.pipeline import build_bundle
from symsoft.spec import Spec, make_spec
from tests.conftest import ON_CI, require_tool
from tests.references import assert_clean_log

KS = (1, 2, 3, 10, 50)
ROOT = Path(__file__).parent.parent
CUSTOM = {
    "k": 4,
    "example": [1.0, 2.0, 3.0, 4.0],
    "labels": ["apple", "pear", "plum", "fig_tree"],
    "true_class": 2,
}


@pytest.fixture(scope="module")
def bundle():
    """bundle(k) or bundle(custom=True) -> Bundle, each built once for the module."""
    cache: dict[object, tuple[Spec, Bundle]] = {}

    def get(k: int = 3, custom: bool = False) -> tuple[Spec, Bundle]:
        key = "custom" if custom else k
        if key not in cache:
            spec = make_spec(**CUSTOM) if custom else make_spec(k)
            cache[key] = (spec, build_bundle(spec))
        return cache[key]

    return get


_DOCUMENTS: dict[tuple[int, str], document.Document] = {}


def laid_out(b: Bundle, lang: str | None = None) -> document.Document:
    """The checked document of b in lang (b.lang by default), built once per bundle and lang."""
    key = (id(b), lang or b.lang)
    if key not in _DOCUMENTS:
        _DOCUMENTS[key] = document.build_document(b, lang)
    return _DOCUMENTS[key]


def compile_document(doc: document.Document) -> pdf.PdfResult:
    """The document's PDF, its figures beside the .tex as the LaTeX target writes them."""
    return pdf.compile_tex(latex_text(doc), f"derivation_k{doc.k}", figure_files(doc))


def pdf_text(data: bytes) -> str:
    """The PDF's text (pdftotext -layout); pages end with a form feed."""
    pdftotext = require_tool("pdftotext")
    return subprocess.run(
        [pdftotext, "-layout", "-", "-"], input=data, capture_output=True, check=True
    ).stdout.decode()


def page_count(data: bytes) -> int:
    pdfinfo = require_tool("pdfinfo")
    info = subprocess.run([pdfinfo, "-"], input=data, capture_output=True, check=True)
    return int(re.search(r"^Pages:\s+(\d+)", info.stdout.decode(), re.M).group(1))


_COMPILED: dict[tuple[object, str], tuple[str, str, bytes]] = {}


@pytest.fixture(scope="module")
def compiled(bundle):
    """compiled(k, lang) -> (log, text of the PDF), each compiled once."""

    def get(k: int | str, lang: str = "en") -> tuple[str, str]:
        log, text, _ = compiled_pdf(bundle, k, lang)
        return log, text

    return get


def compiled_pdf(bundle, k: int | str, lang: str = "en") -> tuple[str, str, bytes]:
    """(log, text, PDF bytes) of the document for k ("custom": the custom example)."""
    if (k, lang) not in _COMPILED:
        require_tool("pdflatex")
        _, b = bundle(custom=True) if k == "custom" else bundle(k)
        result = compile_document(laid_out(b, lang))
        _COMPILED[(k, lang)] = (result.log, pdf_text(result.pdf), result.pdf)
    return _COMPILED[(k, lang)]


def expected_numbers(spec: Spec) -> list[str]:
    """The worked example's numbers as the tutorial shows them, computed independently; above
    8 classes the tables show the first three rows and the last one."""
    exps = [math.exp(v) for v in spec.example]
    total = math.fsum(exps)
    probs = [e / total for e in exps]
    winner = max(range(spec.k), key=lambda n: probs[n])
    shown = range(spec.k) if spec.k <= 8 else [0, 1, 2, spec.k - 1]
    return [
        *(f"{exps[n]:.3f}" for n in shown if exps[n] < 1e6),
        f"{total:.3f}",
        *(f"{probs[n]:.3f}" for n in shown if probs[n] >= 1e-3),
        f"{100 * probs[winner]:.1f}",
        f"{-math.log(probs[spec.true_class]) + 0.0:.3f}",  # the loss for the true class
    ]


# --- LaTeX -----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", KS)
def test_tex_compiles_cleanly_and_shows_the_worked_example(k, bundle, compiled):
    spec, _ = bundle(k)
    log, text = compiled(k)
    assert_clean_log(log)
    flat = " ".join(text.split())
    for value in expected_numbers(spec):
        assert value in flat, f"{value} missing from the PDF text for K={k}"
    assert "every equality displayed below was checked by symsoft" in flat.lower()


def test_tex_numbers_are_the_tutorials(bundle, compiled):
    _, text = compiled(3)
    flat = " ".join(text.split())
    for value in ("7.389", "2.718", "1.105", "11.213", "0.659", "0.242", "0.099"):
        assert value in flat
    assert "65.9" in flat and "24.2" in flat and "9.9" in flat
    assert "largest logit belongs to cat" in flat
    # overflow limits evaluated from numpy.finfo
    assert "88.72" in flat and "709.78" in flat


@pytest.mark.parametrize("k", (3, 10))
def test_chinese_tex_compiles(k, bundle, compiled):
    spec, _ = bundle(k)
    log, text = compiled(k, "zh")
    assert_clean_log(log)
    flat = " ".join(text.split())
    assert "雅可比矩阵" in flat and "交叉熵" in flat
    for value in expected_numbers(spec):
        assert value in flat


def test_custom_example_and_labels(bundle, compiled):
    spec, b = bundle(custom=True)
    log, text = compiled("custom")
    assert_clean_log(log)
    flat = " ".join(text.split())
    for value in expected_numbers(spec):
        assert value in flat
    assert "fig" in flat and "tree" in flat  # escaped in LaTeX (the underscore is a rule)
    md = markdown_text(laid_out(b))
    assert "fig\\_tree" in md and "$54.598$" in md and "$0.644$" in md
    assert "true class $c = 3$ (plum)" in md


def test_tex_is_standalone_and_uses_base_packages_only(bundle):
    _, b = bundle(3)
    tex = latex_text(laid_out(b))
    assert tex.startswith("% generated by symsoft")
    assert "\\date{}" in tex
    packages = set()
    for names in re.findall(r"\\usepackage(?:\[[^]]*\])?\{([^}]*)\}", tex):
        packages.update(name.strip() for name in names.split(","))
    # texlive-latex-base / -recommended, lmodern (and CJKutf8 for zh only)
    base = {"amsmath", "amssymb", "geometry", "booktabs", "longtable", "parskip", "graphicx"}
    assert packages <= base | {"fontenc", "lmodern"}
    # T1 encoding, so that copied names keep their underscores
    assert "\\usepackage[T1]{fontenc}" in tex and "\\usepackage{lmodern}" in tex


# --- Markdown --------------------------------------------------------------------------------


def math_spans(md: str) -> list[dict[str, object]]:
    """Every $$...$$ block and $...$ span of the Markdown (outside code and comments)."""
    spans: list[dict[str, object]] = []
    md = re.sub(r"<!--.*?-->", "", md, flags=re.S)

    def display(match: re.Match[str]) -> str:
        spans.append({"tex": match.group(1), "display": True})
        return ""

    md = re.sub(r"^\$\$\n(.*?)\n\$\$$", display, md, flags=re.S | re.M)
    md = re.sub(r"`[^`]*`", "", md)
    for match in re.finditer(r"(?<!\\)\$(.+?)(?<!\\)\$", md):
        spans.append({"tex": match.group(1), "display": False})
    leftover = re.sub(r"(?<!\\)\$(.+?)(?<!\\)\$", "", md)
    assert "$" not in leftover.replace("\\$", ""), "unbalanced $ in the Markdown"
    return spans


def katex_package() -> Path:
    require_tool("node")
    candidates = [ROOT / ".ci" / "node" / "node_modules" / "katex"]
    cli = shutil.which("katex")
    if cli is not None:
        candidates.insert(0, Path(cli).parent.parent / "katex")
    for path in candidates:
        if (path / "package.json").exists():
            return path
    message = "KaTeX is not installed (npm install --prefix .ci/node katex@0.16)"
    if ON_CI:
        pytest.fail(message)
    pytest.skip(message)


def test_markdown_math_renders_with_katex(bundle):
    package = katex_package()
    spans: list[dict[str, object]] = []
    for k in KS:
        _, b = bundle(k)
        for lang in ("en", "zh"):
            spans += math_spans(markdown_text(laid_out(b, lang)))
    _, custom = bundle(custom=True)
    spans += math_spans(markdown_text(laid_out(custom)))
    assert len(spans) > 500
    done = subprocess.run(
        ["node", str(ROOT / "tests" / "katex_check.js"), str(package)],
        input=json.dumps(spans).encode(),
        capture_output=True,
        check=True,
    )
    failures = json.loads(done.stdout)
    assert failures == [], failures[:5]


def test_katex_check_catches_the_tutorials_error():
    package = katex_package()
    broken = [{"tex": r"s_i = \frac{e^{z_i}}{S} \)", "display": False}]
    done = subprocess.run(
        ["node", str(ROOT / "tests" / "katex_check.js"), str(package)],
        input=json.dumps(broken).encode(),
        capture_output=True,
        check=True,
    )
    assert "Can't use function" in done.stdout.decode()


@pytest.mark.parametrize("k", (3, 50))
def test_markdown_shows_the_worked_example(k, bundle):
    spec, b = bundle(k)
    md = markdown_text(laid_out(b))
    for value in expected_numbers(spec):
        assert value in md
    assert md.count("\\tag{") == md.count("$$") // 2  # every display is numbered


# --- structure and guarantees ----------------------------------------------------------------


@pytest.mark.parametrize("k", (1, 3, 10))
def test_every_displayed_equality_was_checked(k, bundle):
    _, b = bundle(k)
    doc = document.build_document(b)
    equations = doc.equations()
    definitions = {
        "softmax-definition",
        "jacobian-definition",
        "loss-definition",
        "logsumexp-definition",
        "kd-definition",
        "options-definition",
        "options-reductions",
    }
    for equation in equations:
        if equation.key in definitions:
            assert equation.kind == "definition" and not equation.proofs
        elif equation.key == "jacobian-example":  # numbers, evaluated (an approximation)
            assert equation.kind == "evaluation" and r"\approx" in equation.body
        else:
            assert equation.proofs, f"({equation.number}) {equation.key} shows no check"
    # the general-K section presents the Bundle's own checked steps
    names = {p.name for e in equations for p in e.proofs}
    assert {i.name for i in b.general_identities} <= names


def test_a_failed_check_stops_the_document(bundle, monkeypatch):
    # without expanding logarithms, log s_i = z_i - log S cannot be proved
    monkeypatch.setattr(checks.FixedKChecker, "log_rules", lambda self: {})
    spec = make_spec(2)
    with pytest.raises(ProofError, match="log-softmax"):
        document.build_document(build_bundle(spec))


def test_a_wrong_formula_is_refused():
    from sympy import Derivative, KroneckerDelta

    from symsoft.derivation.general_k import i, j, s, z

    checker = checks.FixedKChecker(3)
    with pytest.raises(ProofError, match="equality 1"):
        checker.chain(
            "wrong", [Derivative(s[i], z[j]), s[i] * (KroneckerDelta(i, j) + s[j])], [i, j]
        )


def test_output_is_deterministic_and_named_by_language():
    first = document.build_document(build_bundle(make_spec(3)))
    second = document.build_document(build_bundle(make_spec(3)))
    for emit in (emit_latex, emit_markdown):
        assert emit(first) == emit(second)  # the figures' bytes included
    figures = ("temperature", "probabilities", "jacobian")
    assert set(emit_latex(first)) == {"derivation_k3.tex"} | {
        f"derivation_k3-{f}.pdf" for f in figures
    }
    assert set(emit_markdown(first)) == {"derivation_k3.md"} | {
        f"derivation_k3-{f}.svg" for f in figures
    }
    zh = document.build_document(build_bundle(make_spec(3, lang="zh")))
    assert set(emit_latex(zh)) == {"derivation_k3.zh.tex"} | {
        f"derivation_k3.zh-{f}.pdf" for f in figures
    }
    assert set(emit_markdown(zh)) == {"derivation_k3.zh.md"} | {
        f"derivation_k3.zh-{f}.svg" for f in figures
    }
    assert "\\begin{CJK}{UTF8}{gbsn}" in emit_latex(zh)["derivation_k3.zh.tex"]


def test_missing_pdflatex_is_explained(monkeypatch):
    monkeypatch.setattr(pdf.shutil, "which", lambda name: None)
    assert not pdf.pdflatex_available()
    with pytest.raises(pdf.PdfError, match="apt-get install texlive-latex-base"):
        pdf.build_pdf("\\documentclass{article}", "derivation_k3.tex")


def test_pdf_is_reproducible(bundle):
    require_tool("pdflatex")
    _, b = bundle(2)
    doc = laid_out(b)
    tex, figures = latex_text(doc), figure_files(doc)
    first = pdf.build_pdf(tex, "derivation_k2.pdf", figures)
    assert first == pdf.build_pdf(tex, "derivation_k2.pdf", figures)
    # the figures are in it: one image XObject per figure, from matplotlib's PDFs
    assert first.count(b"/Subtype /Form") >= len(figures)
