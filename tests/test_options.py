"""The cross-entropy's options (issue 17): proved for every combination, and the emitted
functions against torch.nn.functional.cross_entropy with autograd (float64), the mpmath
reference for masked classes, and the edge cases PyTorch defines (an all-ignored batch)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy
import pytest
import torch
import torch.nn.functional as F

from symsoft.derivation import closed_forms, options, reference
from symsoft.errors import ProofError
from symsoft.family.members import MEMBERS

K = 3
BACKENDS = ("numpy", "numpy-only", "c")
WEIGHTS = numpy.array([0.5, 0.0, 2.0])  # a zero weight, on a class some labels have


def test_combinations_are_the_api_product():
    """Every way the API can be called, counted here from the options themselves."""
    switches = list(itertools.product((False, True), repeat=4))
    expected = {
        (targets, reduction, *on, ignore)
        for targets in ("probabilities", "labels")
        for reduction in ("none", "sum", "mean")
        for on in switches
        for ignore in ((False, True) if targets == "labels" else (False,))
    }
    got = {
        (
            c.targets,
            c.reduction,
            c.weight,
            c.label_smoothing,
            c.temperature,
            c.z_loss,
            c.ignore_index,
        )
        for c in options.COMBINATIONS
    }
    assert got == expected and len(options.COMBINATIONS) == len(expected) == 144


@pytest.mark.parametrize("k", [1, 3, 12])
def test_every_combination_proved(generated, k):
    bundle = generated(k).bundle
    names = {identity.name for identity in bundle.option_identities}
    assert {f"options-{c.name}" for c in options.COMBINATIONS} <= names
    for member in MEMBERS:
        assert set(options.required_proofs(member)) <= names, member.name
    takes = {m.name for m in MEMBERS if "reduction" in m.options}
    assert takes == {
        "cross_entropy",
        "cross_entropy_grad",
        "cross_entropy_with_grad",
        "cross_entropy_index",
        "cross_entropy_grad_index",
        "cross_entropy_with_grad_index",
    }


def _forms(k: int = 3):
    kernel = closed_forms.kernel_forms()
    return kernel, options.option_forms(k, kernel)


@pytest.mark.parametrize(
    "wrong",
    [
        "z_loss_factor_2_forgotten",
        "temperature_forgotten",
        "smoothing_over_k_minus_1",
        "label_weight_forgotten",
        "mean_over_n",
    ],
)
def test_proof_refuses_the_usual_bugs(wrong):
    kernel, f = _forms()
    bad = {
        "z_loss_factor_2_forgotten": {
            "gradient": (kernel.s_i * f.sum_a - f.a_i + f.lam * f.lse * kernel.s_i) * f.g
        },
        "temperature_forgotten": {"row_factor": f.scale},
        "smoothing_over_k_minus_1": {"target": f.w_i * ((1 - f.eps) * kernel.y_i + f.eps / 2)},
        "label_weight_forgotten": {
            "gradient_label": (
                kernel.s_i * f.rest_a - kernel.rest / kernel.S + 2 * f.lam * f.lse * kernel.s_i
            )
            * f.g
        },
        "mean_over_n": {"row_factor": 1 / f.T},
    }[wrong]
    with pytest.raises(ProofError):
        options.prove_options(3, kernel, dataclasses.replace(f, **bad))


# --- against PyTorch ------------------------------------------------------------------------


def _torch(z, target, *, weight, ignore_index, reduction, eps, T, lam):
    """Loss and d loss / d z from F.cross_entropy and autograd; temperature and z-loss as the
    issue defines them (z / T first; lam lse^2 per row, 0 when ignored, reduced alike)."""
    zt = torch.tensor(numpy.moveaxis(z, -1, 1), requires_grad=True)  # torch's classes: axis 1
    q = zt / T
    t = torch.tensor(target if target.dtype.kind in "iu" else numpy.moveaxis(target, -1, 1))
    kw = {"label_smoothing": eps}
    if weight is not None:
        kw["weight"] = torch.tensor(weight)
    if ignore_index is not None:
        kw["ignore_index"] = ignore_index
    loss = F.cross_entropy(q, t, reduction=reduction, **kw)
    lse2 = torch.logsumexp(q, 1) ** 2
    if t.dtype == torch.int64:
        kept = t != ignore_index if ignore_index is not None else torch.ones_like(t, dtype=bool)
        w = torch.tensor(weight) if weight is not None else torch.ones(z.shape[-1], dtype=q.dtype)
        D = (w[t.clamp(0, z.shape[-1] - 1)] * kept).sum()
    else:
        kept, D = torch.ones(lse2.shape, dtype=bool), torch.tensor(float(lse2.numel()))
    zl = torch.where(kept, lam * lse2, 0)
    loss = loss + {"none": zl, "sum": zl.sum(), "mean": zl.sum() / D}[reduction]
    loss.sum().backward()
    return loss.detach().numpy(), numpy.moveaxis(zt.grad.numpy(), 1, -1)


def _call(kernels, labels: bool, z, target, **kw):
    """Every function for this kind of target: (loss, grad) of each, which must agree."""
    if labels:
        fused = kernels.cross_entropy_with_grad_index(z, target, **kw)
        loss = kernels.cross_entropy_index(z, target, **kw)
        grad = kernels.cross_entropy_grad_index(z, target, **kw)
    else:
        kw.pop("ignore_index")
        fused = kernels.cross_entropy_with_grad(z, target, **kw)
        loss = kernels.cross_entropy(z, target, **kw)
        grad = kernels.cross_entropy_grad(z, target, **kw)
    return [fused, (loss, grad)]


def _inputs(shape=(6,)):
    rng = numpy.random.default_rng(17)
    z = rng.normal(0, 2, (*shape, K))
    y = rng.dirichlet(numpy.ones(K), shape)
    labels = rng.integers(0, K, shape)
    labels.flat[:2] = [1, 2]  # the zero-weight class and the ignored one both occur
    return z, y, labels


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_combination_against_torch(generated, backend):
    kernels = generated(K).backend(backend)
    z, y, labels = _inputs()
    for combo in options.COMBINATIONS:
        labelled = combo.targets == "labels"
        kw = {
            "weight": WEIGHTS if combo.weight else None,
            "ignore_index": 2 if combo.ignore_index else None,
            "reduction": combo.reduction,
            "label_smoothing": 0.3 if combo.label_smoothing else 0.0,
            "temperature": 0.6 if combo.temperature else 1.0,
            "z_loss": 0.2 if combo.z_loss else 0.0,
        }
        target = labels if labelled else y
        want_loss, want_grad = _torch(
            z,
            target,
            weight=kw["weight"],
            ignore_index=kw["ignore_index"],
            reduction=combo.reduction,
            eps=kw["label_smoothing"],
            T=kw["temperature"],
            lam=kw["z_loss"],
        )
        for loss, grad in _call(kernels, labelled, z, target, **kw):
            numpy.testing.assert_allclose(
                loss, want_loss, rtol=1e-13, atol=1e-15, err_msg=combo.name
            )
            numpy.testing.assert_allclose(
                grad, want_grad, rtol=1e-13, atol=1e-15, err_msg=combo.name
            )
            assert numpy.shape(loss) == (() if combo.reduction != "none" else z.shape[:-1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_leading_axes_and_float32(generated, backend):
    """(2, 3, K) batches; float32 within 64 u of the float64 reference (relative to the
    largest value of the output, as for a sum of K products)."""
    kernels = generated(K).backend(backend)
    z, _, labels = _inputs((2, 3))
    kw = dict(weight=WEIGHTS, reduction="mean", label_smoothing=0.1, temperature=1.7, z_loss=0.01)
    want_loss, want_grad = _torch(
        z, labels, ignore_index=0, eps=0.1, T=1.7, lam=0.01, weight=WEIGHTS, reduction="mean"
    )
    for dtype, rtol in ((numpy.float64, 1e-13), (numpy.float32, 64 * 2.0**-24)):
        for loss, grad in _call(kernels, True, z.astype(dtype), labels, ignore_index=0, **kw):
            assert grad.dtype == dtype and numpy.asarray(loss).dtype == dtype
            scale = numpy.max(numpy.abs(want_grad))
            numpy.testing.assert_allclose(loss, want_loss, rtol=rtol)
            numpy.testing.assert_allclose(grad, want_grad, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_ignored_batch(generated, backend):
    """PyTorch: mean over no rows is 0 / 0 = NaN, its gradient 0; sum is 0; none is zeros."""
    kernels = generated(K).backend(backend)
    z = _inputs()[0]
    labels = numpy.full(z.shape[:-1], 1)
    for reduction in ("none", "sum", "mean"):
        kw = dict(ignore_index=1, reduction=reduction, label_smoothing=0.2, z_loss=0.1)
        want_loss, want_grad = _torch(
            z,
            labels,
            weight=None,
            eps=0.2,
            T=1.0,
            lam=0.1,
            **{k: kw[k] for k in ("ignore_index", "reduction")},
        )
        for loss, grad in _call(kernels, True, z, labels, **kw):
            numpy.testing.assert_array_equal(loss, want_loss)
            numpy.testing.assert_array_equal(grad, want_grad)
            assert numpy.all(grad == 0) and (reduction != "mean" or numpy.isnan(loss))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_over_zero_weights_is_nan_like_torch(generated, backend):
    """Rows kept but all of weight 0: D = 0 and PyTorch gives NaN for loss and gradient."""
    kernels = generated(K).backend(backend)
    z = _inputs()[0]
    labels = numpy.full(z.shape[:-1], 1)  # WEIGHTS[1] == 0
    want_loss, want_grad = _torch(
        z, labels, weight=WEIGHTS, ignore_index=None, reduction="mean", eps=0.0, T=1.0, lam=0.0
    )
    assert numpy.isnan(want_loss) and numpy.all(numpy.isnan(want_grad))
    for loss, grad in _call(
        kernels, True, z, labels, weight=WEIGHTS, ignore_index=None, reduction="mean"
    ):
        assert numpy.isnan(loss) and numpy.all(numpy.isnan(grad))


def _mp_rows(z, target, labelled, **kw):
    rows = []
    for r in range(len(z)):
        args = {"label": int(target[r])} if labelled else {"y": target[r].tolist()}
        loss, grad = reference.cross_entropy_options(z[r].tolist(), **args, **kw)
        rows.append((float(loss), [float(g) for g in grad]))
    return numpy.array([r[0] for r in rows]), numpy.array([r[1] for r in rows])


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_classes(generated, backend):
    """-inf logits with target 0 there (and weight 0 where smoothing would reach them): the
    loss is finite, the masked class's gradient is -a_j = 0; against the 50-digit reference,
    and against torch wherever torch does not compute 0 * inf."""
    kernels = generated(K).backend(backend)
    z, y, labels = _inputs()
    z[:, 1] = -numpy.inf
    y[:, 1] = 0
    y /= y.sum(axis=-1, keepdims=True)
    labels[labels == 1] = 0
    for labelled, eps in itertools.product((False, True), (0.0, 0.25)):
        target = labels if labelled else y
        kw = dict(weight=WEIGHTS, label_smoothing=eps, temperature=0.8, z_loss=0.05)
        want_loss, want_grad = _mp_rows(z, target, labelled, **kw)
        for loss, grad in _call(
            kernels, labelled, z, target, ignore_index=None, reduction="none", **kw
        ):
            numpy.testing.assert_allclose(loss, want_loss, rtol=1e-14)
            numpy.testing.assert_allclose(grad, want_grad, rtol=1e-14, atol=1e-16)
            assert numpy.all(grad[:, 1] == 0)
        t_loss, t_grad = _torch(
            z, target, ignore_index=None, reduction="none", eps=eps, T=0.8, lam=0.05, weight=WEIGHTS
        )
        defined = ~numpy.isnan(t_loss)
        # torch's 0 * inf: a weight-0 class reached by smoothing, or a target-0 class
        assert defined.all() == (labelled and eps == 0)
        numpy.testing.assert_allclose(loss[defined], t_loss[defined], rtol=1e-13)
        numpy.testing.assert_allclose(grad[defined], t_grad[defined], rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("backend", BACKENDS)
def test_smoothing_reaches_a_masked_class(generated, backend):
    """Smoothing puts eps / K on a -inf logit of weight > 0: the loss is +inf, as in torch."""
    kernels = generated(K).backend(backend)
    z, _, labels = _inputs()
    z[:, 1] = -numpy.inf
    labels[labels == 1] = 0
    loss = kernels.cross_entropy_index(z, labels, label_smoothing=0.1)
    want = _torch(
        z, labels, weight=None, ignore_index=None, reduction="none", eps=0.1, T=1.0, lam=0.0
    )[0]
    assert numpy.all(numpy.isposinf(loss)) and numpy.all(numpy.isposinf(want))


@pytest.mark.parametrize("backend", BACKENDS)
def test_temperature_of_softmax_and_log_softmax(generated, backend):
    kernels = generated(K).backend(backend)
    z = _inputs()[0]
    q = torch.tensor(z) / 0.3
    numpy.testing.assert_allclose(
        kernels.softmax(z, temperature=0.3), torch.softmax(q, -1), rtol=1e-14
    )
    numpy.testing.assert_allclose(
        kernels.log_softmax(z, temperature=0.3), torch.log_softmax(q, -1), rtol=1e-14
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_defaults_take_the_plain_path(generated, backend):
    """Defaults passed explicitly give today's bits; neutral values that are not the
    defaults (weights of 1, reduction none) take the options path and agree closely."""
    kernels = generated(K).backend(backend)
    z, y, labels = _inputs()
    defaults = dict(weight=None, reduction="none", label_smoothing=0.0, temperature=1.0, z_loss=0.0)
    for plain, explicit, neutral in [
        (
            kernels.cross_entropy(z, y),
            kernels.cross_entropy(z, y, **defaults),
            kernels.cross_entropy(z, y, weight=numpy.ones(K)),
        ),
        (
            kernels.cross_entropy_grad_index(z, labels),
            kernels.cross_entropy_grad_index(z, labels, ignore_index=None, **defaults),
            kernels.cross_entropy_grad_index(z, labels, ignore_index=-100),
        ),
        (
            kernels.softmax(z),
            kernels.softmax(z, temperature=1.0),
            kernels.softmax(z, temperature=1.0 + 2**-52),
        ),
    ]:
        assert numpy.array_equal(plain, explicit)
        numpy.testing.assert_allclose(neutral, plain, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("temperature", -1.0),
        ("temperature", 0.0),
        ("temperature", float("inf")),
        ("label_smoothing", -0.1),
        ("label_smoothing", 1.5),
        ("z_loss", -1.0),
        ("reduction", "avg"),
        ("weight", numpy.ones(K + 1)),
        ("weight", numpy.array([1.0, -1.0, 1.0])),
        ("weight", numpy.array([1.0, numpy.nan, 1.0])),
        ("ignore_index", 1.5),
    ],
)
def test_bad_options_name_themselves(generated, backend, option, value):
    kernels = generated(K).backend(backend)
    z, _, labels = _inputs()
    with pytest.raises(ValueError, match=option):
        kernels.cross_entropy_with_grad_index(z, labels, **{option: value})
    if option == "temperature":
        with pytest.raises(ValueError, match=option):
            kernels.softmax(z, temperature=value)


@pytest.mark.parametrize("backend", ("numpy", "numpy-only"))
def test_labels_out_of_range_unless_ignored(generated, backend):
    kernels = generated(K).backend(backend)
    z = _inputs()[0]
    labels = numpy.array([0, -100, 1, 2, -100, 0])
    with pytest.raises(IndexError):
        kernels.cross_entropy_index(z, labels)
    loss = kernels.cross_entropy_index(z, labels, ignore_index=-100)
    assert loss[1] == 0 and loss[4] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_rows_zero_with_options(generated, backend):
    """--masked-rows zero: a row of -inf is left out as 0 (loss and gradient), also when
    reduced; the C and Python paths agree with the same batch without that row (sum)."""
    kernels = generated(K, "zero").backend(backend)
    z, _, labels = _inputs()
    z[2] = -numpy.inf
    kw = dict(weight=WEIGHTS, label_smoothing=0.2, temperature=0.9, z_loss=0.1)
    loss, grad = kernels.cross_entropy_with_grad_index(z, labels, reduction="sum", **kw)
    assert numpy.all(grad[2] == 0)
    keep = numpy.arange(len(z)) != 2
    want_loss, want_grad = _torch(
        z[keep],
        labels[keep],
        weight=WEIGHTS,
        ignore_index=None,
        reduction="sum",
        eps=0.2,
        T=0.9,
        lam=0.1,
    )
    numpy.testing.assert_allclose(loss, want_loss, rtol=1e-13)
    numpy.testing.assert_allclose(grad[keep], want_grad, rtol=1e-13, atol=1e-15)


def test_general_k_steps_are_checked():
    names = [identity.name for identity in options.general_k_option_identities()]
    assert names == [
        "general-k-tempered-sum-derivative",
        "general-k-smoothed-label-loss",
        "general-k-options-gradient",
        "general-k-options-gradient-label",
    ]
    gradient = options.general_k_option_identities()[2]
    wrong = gradient.rhs * 2  # e.g. the 1/T taken twice over: must not reduce to the derivative
    with pytest.raises(ProofError):
        options.gk.check_equal("wrong", gradient.lhs.doit(), wrong)


@pytest.mark.parametrize("k", [1, 2, 16, 33])
def test_c_agrees_with_numpy_at_other_k(generated, k):
    """The C options path over each way normalise_<sfx> computes a block (flat loop at small
    K, lanes from 16, a tail of lanes at 33), against the NumPy-only module; K = 1 too."""
    g = generated(k)
    rng = numpy.random.default_rng(k)
    z = rng.normal(0, 3, (37, k))
    labels = rng.integers(0, k, 37)
    y = rng.dirichlet(numpy.ones(k), 37)
    w = rng.uniform(0, 2, k)
    kw = dict(weight=w, reduction="mean", label_smoothing=0.15, temperature=1.3, z_loss=0.02)
    for dtype, tol in ((numpy.float64, 1e-13), (numpy.float32, 1e-5)):
        zt = z.astype(dtype)
        for got, want in [
            (
                g.c.cross_entropy_with_grad_index(zt, labels, ignore_index=0, **kw),
                g.numpy_only_module.cross_entropy_with_grad_index(zt, labels, ignore_index=0, **kw),
            ),
            (
                g.c.cross_entropy_with_grad(zt, y.astype(dtype), **kw),
                g.numpy_only_module.cross_entropy_with_grad(zt, y.astype(dtype), **kw),
            ),
            (
                (g.c.softmax(zt, temperature=0.5),),
                (g.numpy_only_module.softmax(zt, temperature=0.5),),
            ),
        ]:
            for a, b in zip(got, want, strict=True):
                assert numpy.asarray(a).dtype == dtype
                numpy.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_array_api_module_takes_torch_tensors_with_options(generated):
    """Torch tensors in (weights too), torch tensors out, NumPy's values."""
    module = generated(K).numpy_module
    z, y, labels = _inputs()
    kw = dict(reduction="mean", label_smoothing=0.2, temperature=0.8, z_loss=0.05)
    for fn, target in (
        (module.cross_entropy_with_grad_index, labels),
        (module.cross_entropy_with_grad, y),
    ):
        extra = {"ignore_index": 2} if target is labels else {}
        loss, grad = fn(
            torch.tensor(z), torch.tensor(target), weight=torch.tensor(WEIGHTS), **kw, **extra
        )
        want_loss, want_grad = fn(z, target, weight=WEIGHTS, **kw, **extra)
        assert isinstance(loss, torch.Tensor) and isinstance(grad, torch.Tensor)
        numpy.testing.assert_allclose(loss.numpy(), want_loss, rtol=1e-15)
        numpy.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-15)
    with pytest.raises(TypeError, match="weight"):  # a NumPy weight for torch logits
        module.cross_entropy_index(torch.tensor(z), torch.tensor(labels), weight=WEIGHTS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_reduction_over_many_rows(generated, backend):
    """The sum over 2^17 rows in float32 stays within a few u of the float64 value (a plain
    running sum in C lost 1.8e-4 relatively at 10^5 rows)."""
    kernels = generated(K).backend(backend)
    rng = numpy.random.default_rng(5)
    z = rng.normal(0, 3, (1 << 17, K))
    labels = rng.integers(0, K, len(z))
    w = numpy.array([0.7, 1.3, 2.1])
    for reduction in ("sum", "mean"):
        kw = dict(reduction=reduction, label_smoothing=0.1, temperature=2.0, z_loss=1e-4)
        single = kernels.cross_entropy_index(z.astype(numpy.float32), labels, weight=w, **kw)
        double = kernels.cross_entropy_index(z, labels, weight=w, **kw)
        assert abs(float(single) - float(double)) <= 8 * 2.0**-24 * abs(float(double))
