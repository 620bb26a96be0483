"""The document's section on the cross-entropy's options (issue 17): weights, ignore_index,
the reductions, label smoothing, temperature and z-loss.

It exists in both languages and every format; its equalities are checked and a wrong one
stops generation; the worked combination's numbers, and the values the libraries' bugs would
give, are computed here with torch.nn.functional.cross_entropy and autograd in float64,
independently of the code under test.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import symsoft.document.builder as document
from symsoft.document import checks, options_section
from symsoft.emit.latex import latex_text
from symsoft.emit.markdown import markdown_text
from symsoft.errors import ProofError
from symsoft.pipeline import build_bundle
from symsoft.spec import make_spec
from tests.test_document import compiled_pdf, laid_out
from tests.test_document_family import f3

TITLES = {"en": "Cross-entropy with the options of training", "zh": "带训练选项的交叉熵"}
IGNORE = -100


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_section_exists_in_markdown_and_latex(lang, bundle):
    _, b = bundle(3)
    doc = laid_out(b, lang)
    md, tex = markdown_text(doc), latex_text(doc)
    assert f"## 11 {TITLES[lang]}" in md and f"\\section{{{TITLES[lang]}}}" in tex
    for key in ("options-smoothed-label", "options-gradient", "options-reduced-gradient"):
        assert f"\\label{{eq:{key}}}" in tex
    for name in ("pytorch#73205", "pytorch#69339", "Liger-Kernel#968"):
        assert name in md


@pytest.mark.parametrize(("k", "lang"), [(1, "en"), (2, "en"), (3, "en"), (10, "en"), (3, "zh")])
def test_the_section_is_in_the_pdf(k, lang, bundle):
    _, text, _ = compiled_pdf(bundle, k, lang)
    assert "".join(TITLES[lang].split()) in "".join(text.split())


@pytest.mark.parametrize("k", [1, 3, 10])
def test_its_equalities_are_checked(k, bundle):
    _, b = bundle(k)
    shown = {e.key: e for e in laid_out(b).equations()}
    for key in ("options-smoothed-label", "options-gradient", "options-reduced-gradient"):
        assert shown[key].proofs, key
    names = {p.name for e in shown.values() for p in e.proofs}
    assert {
        "general-k-smoothed-label-loss",
        "general-k-tempered-sum-derivative",
        "general-k-options-gradient",
    } <= names
    for key in ("options-definition", "options-reductions"):
        assert shown[key].kind == "definition"


def _corrupt(monkeypatch, name: str, change) -> None:
    chain = checks.FixedKChecker.chain

    def corrupted(self, chain_name, steps, *args, **kwargs):
        if chain_name == name:
            steps = [*steps[:-1], change(steps[-1])]
        return chain(self, chain_name, steps, *args, **kwargs)

    monkeypatch.setattr(checks.FixedKChecker, "chain", corrupted)


@pytest.mark.parametrize(
    "change",
    [
        lambda last: last * checks.T,  # the 1/T of the chain rule forgotten
        lambda last: last - checks.LAM * options_section.LSE * checks.p[checks.gk.j] / checks.T,
    ],
    ids=["one-over-T-forgotten", "z-loss-factor-2-forgotten"],
)
def test_a_wrong_gradient_stops_the_document(change, monkeypatch):
    _corrupt(monkeypatch, "options-gradient", change)
    with pytest.raises(ProofError, match="options-gradient"):
        document.build_document(build_bundle(make_spec(3)))


def test_smoothing_without_its_one_over_k_stops_the_document(monkeypatch):
    w, y, i, eps = checks.w, checks.gk.y, checks.gk.i, checks.EPS
    monkeypatch.setattr(options_section, "TARGET", w[i] * ((1 - eps) * y[i] + eps))
    with pytest.raises(ProofError, match="options-smoothed-label"):
        document.build_document(build_bundle(make_spec(3)))


def test_unproved_options_stop_the_document(bundle):
    _, b = bundle(3)
    with pytest.raises(ProofError, match="general-k-smoothed-label-loss"):
        document.build_document(dataclasses.replace(b, option_identities=()))
    symbolic_only = tuple(x for x in b.option_identities if x.name.startswith("general-k"))
    with pytest.raises(ProofError, match="reductions, which were not proved"):
        document.build_document(dataclasses.replace(b, option_identities=symbolic_only))


@pytest.mark.parametrize("k", [3, 10])
def test_the_worked_combination_against_torch(k, bundle):
    spec, b = bundle(k)
    section = markdown_text(laid_out(b))
    section = section[section.index("## 11 ") : section.index("# Implementation")]
    eps, lam = options_section.WORKED_SMOOTHING, options_section.WORKED_Z_LOSS
    first = torch.tensor(spec.example, dtype=torch.float64)
    logits = torch.stack([first, first.flip(0)]).requires_grad_(True)
    labels = torch.tensor([spec.true_class, IGNORE])
    weight = torch.ones(k, dtype=torch.float64)
    weight[spec.true_class] = options_section.WORKED_TRUE_WEIGHT
    D = weight[spec.true_class]  # the second row is ignored
    kwargs = {"weight": weight, "ignore_index": IGNORE, "label_smoothing": eps}
    # the z-loss of PaLM: lam lse^2 per row kept, reduced like the cross-entropy
    z_loss = lam * torch.logsumexp(logits[0], 0) ** 2
    loss = F.cross_entropy(logits, labels, reduction="mean", **kwargs) + z_loss / D
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.all(grad[1] == 0)
    loss = loss.detach()
    assert f"L \\approx {f3(float(loss))}" in section
    probabilities = torch.softmax(first, 0)
    rows = range(k) if k <= 8 else [0, 1, 2, k - 1]
    for n in rows:
        target = float(weight[n]) * ((1 - eps) * (n == spec.true_class) + eps / k)
        cells = [f3(target), f3(float(probabilities[n])), f3(float(grad[0, n]))]
        assert " | ".join(f"${x}$" for x in cells) + " |" in section, n
    # pytorch#73205: the ignored row's smoothing term, counted, would add this
    smoothing = eps / k * (weight * -torch.log_softmax(first.flip(0), 0)).sum() / D
    assert f"would give ${f3(float(loss + smoothing))}$ instead of ${f3(float(loss))}$" in section
    # Liger-Kernel#968: under none the first row's gradient is its own loss's, undivided
    row = first.clone().requires_grad_(True)
    own = F.cross_entropy(row.unsqueeze(0), labels[:1], reduction="none", **kwargs).sum()
    own = own + lam * torch.logsumexp(row, 0) ** 2
    (own_grad,) = torch.autograd.grad(own, row)
    c = spec.true_class
    assert f"${f3(float(own_grad[c]))}$ at the first row" in section
    assert f"mean gives ${f3(float(grad[0, c]))}$" in section
