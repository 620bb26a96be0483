"""The array-API module traced whole: torch.compile(fullgraph=True) and jax.jit give what the
eager calls give (a graph break, e.g. from numpy.errstate or a data-dependent label check,
is an error under fullgraph)."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy
import pytest
import torch

from symsoft.family.members import INPUT_KINDS, MEMBERS

K = 5
jax.config.update("jax_enable_x64", True)
# Dynamo notes that it traces through array_api_compat's lru_cache'd helpers: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache")
# eager: Dynamo's graph capture, where fullgraph=True fails on any graph break, without the
# seconds Inductor spends generating code for each function
BACKEND = "eager"


def arguments(member, dtype: str) -> list[numpy.ndarray]:
    rng = numpy.random.default_rng(11)
    z = rng.normal(size=(6, K)) * 5
    z[1, :2] = -numpy.inf  # masked classes
    args = [z.astype(dtype)]
    for name in member.inputs[1:]:
        if INPUT_KINDS[name] == "labels":
            args.append(numpy.array([0, 2, 4, 1, 3, 0]))
        else:
            y = rng.random(size=(6, K))
            y[1, :2] = 0
            args.append(y.astype(dtype))
    return args


def as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


@pytest.fixture(scope="module")
def module(generated):
    return generated(K).numpy_module


def test_torch_compile_fullgraph_equals_eager(module, monkeypatch):
    """Every member in one compiled function (one Dynamo trace: they take seconds each): a
    graph break in any of them fails the compilation."""
    # imported as a user imports it (Dynamo looks up the module of a function it inlines)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    inputs = {m.name: [torch.from_numpy(a) for a in arguments(m, "float64")] for m in MEMBERS}

    def every_member(inputs):
        return {name: getattr(module, name)(*args) for name, args in inputs.items()}

    torch._dynamo.reset()
    compiled = torch.compile(every_member, fullgraph=True, dynamic=False, backend=BACKEND)
    got, want = compiled(inputs), every_member(inputs)
    eps = numpy.finfo("float64").eps
    for name in inputs:
        for out, ref in zip(as_tuple(got[name]), as_tuple(want[name]), strict=True):
            assert type(out) is torch.Tensor and out.dtype == ref.dtype, name
            numpy.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=8 * eps, atol=8 * eps)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m.name)
def test_jax_jit_equals_numpy(module, member, dtype):
    args = arguments(member, dtype)
    got = as_tuple(jax.jit(getattr(module, member.name))(*(jnp.asarray(a) for a in args)))
    want = as_tuple(getattr(module, member.name)(*args))
    eps = numpy.finfo(dtype).eps
    for out, ref in zip(got, want, strict=True):
        assert isinstance(out, jax.Array) and out.dtype == ref.dtype
        numpy.testing.assert_allclose(numpy.asarray(out), ref, rtol=16 * eps, atol=16 * eps)


def test_an_out_of_range_label_under_compile_is_a_nan_row(module):
    z = torch.zeros(3, K, dtype=torch.float64)
    compiled = torch.compile(
        module.cross_entropy_index, fullgraph=True, dynamic=False, backend=BACKEND
    )
    loss = compiled(z, torch.tensor([0, K, -1]))
    assert loss[0].item() == pytest.approx(numpy.log(K)) and torch.isnan(loss[1:]).all()
