"""Issue 14's reductions against torch, forward and gradient, on every backend of
tests/conftest.py: min and prod (op rows), any, all, argmax, argmin, var and std
(composites in graphc.dsl); float32 and float64, odd sizes (1, 7, 129), zero-size dims,
NaN and inf; ties (argmax/argmin take the first index, as NumPy), prod's gradient with
zeros (as torch.prod's), check_grads on each differentiable one."""

import numpy as np
import pytest
import torch

import graphc as gc
from graphc.testing import check_grads
from tests.strategies import assert_close
from tests.torch_like import run_reading as run, special_values, torch_of

# (shape, axis, keepdims): odd sizes, one axis, two, all (None), a zero-size dim
CASES = [((7, 129), 1, False), ((7, 129), 0, True), ((3, 7, 5), (0, 2), False),
         ((129,), None, False), ((1,), 0, True), ((0, 7), 1, False)]


def values(shape, dtype, seed=0, special=True):
    return special_values(shape, dtype, seed, special, scale=2.0)


def torch_dims(axis, ndim):
    return tuple(range(ndim)) if axis is None else axis


def torch_min(t, axis, keepdims):
    return torch.amin(t, dim=torch_dims(axis, t.ndim), keepdim=keepdims)


def torch_prod(t, axis, keepdims):
    """torch.prod takes one dim: the dims one after another, the highest first."""
    dims = (axis,) if isinstance(axis, int) else torch_dims(axis, t.ndim)
    for d in sorted(dims, reverse=True):
        t = torch.prod(t, dim=d, keepdim=keepdims)
    return t


def torch_any(t, axis, keepdims):
    return torch.any(t, dim=torch_dims(axis, t.ndim), keepdim=keepdims)


def torch_all(t, axis, keepdims):
    return torch.all(t, dim=torch_dims(axis, t.ndim), keepdim=keepdims)


REDUCTIONS = {"min": torch_min, "prod": torch_prod, "any": torch_any, "all": torch_all}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(REDUCTIONS))
def test_reductions_forward_against_torch(op, dtype, backend):
    feeds, outs, wants = {}, [], []
    for k, (shape, axis, keep) in enumerate(CASES):
        if op == "min" and 0 in shape and axis != 0:
            continue                      # a min of nothing raises: tested below
        x = gc.input(f"x{k}", shape, dtype)
        feeds[f"x{k}"] = values(shape, dtype, k) * (0.5 if op == "prod" else 1)
        if op in ("any", "all"):
            feeds[f"x{k}"].reshape(-1)[::2] = 0
        outs.append(getattr(gc, op)(x, axis=axis, keepdims=keep))
        wants.append(REDUCTIONS[op](torch_of(feeds[f"x{k}"]), axis, keep).numpy())
    for got, want in zip(run(backend, outs, feeds), wants):
        assert got.shape == want.shape and got.dtype == want.dtype
        assert_close(got, want, dtype) if want.dtype.kind == "f" else (
            np.testing.assert_array_equal(got, want))


def test_min_of_ints_and_bools_and_an_empty_min_raises(backend):
    i, b = gc.input("i", (7, 129), "int64"), gc.input("b", (7, 129), "bool")
    iv = np.random.default_rng(1).integers(-2**62, 2**62, (7, 129))
    bv = iv % 3 != 0
    got_i, got_b, got_p = backend.run([gc.min(i, 1), gc.min(b, 0), gc.prod(b, 1)], i=iv, b=bv)
    np.testing.assert_array_equal(got_i, iv.min(1))
    np.testing.assert_array_equal(got_b, bv.min(0))
    assert got_p.dtype == np.int64
    np.testing.assert_array_equal(got_p, bv.prod(1))
    x = gc.input("x", (0, 3))
    with pytest.raises(gc.GraphcError, match="min"):
        backend.run(gc.min(x, 0), x=np.zeros((0, 3), np.float32))


@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_argmax_argmin_against_numpy_and_torch(op, backend):
    """Ties take the first index; nan counts as the extremum (its first index)."""
    x = gc.input("x", (7, 129))
    xv = np.round(values((7, 129), "float32", 3, special=False))    # many ties
    xv[2, 40], xv[2, 90], xv[4, 5] = np.nan, np.nan, np.inf
    outs = [getattr(gc, op)(x, axis=1), getattr(gc, op)(x, axis=0, keepdims=True),
            getattr(gc, op)(x), getattr(gc, op)(x, keepdims=True), getattr(gc, op)(x, -1)]
    got = run(backend, outs, {"x": xv})
    f = getattr(np, op)
    wants = [f(xv, axis=1), f(xv, axis=0, keepdims=True), f(xv), f(xv, keepdims=True),
             f(xv, axis=-1)]
    for g, w in zip(got, wants):
        assert g.dtype == np.int64
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(got[0], getattr(torch, op)(torch_of(xv), dim=1).numpy())


def test_argmax_needs_a_fixed_nonempty_axis():
    with pytest.raises(gc.ShapeError, match="argmax: axis 0 of .* fixed size >= 1"):
        gc.argmax(gc.input("x", ("batch", 3)), axis=0)
    with pytest.raises(gc.ShapeError, match="argmin: axis 1"):
        gc.argmin(gc.input("x", (2, 0)), axis=1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("correction", [0, 1, 2])
def test_var_and_std_against_torch(correction, dtype, backend):
    feeds, outs, wants = {}, [], []
    for k, (shape, axis, keep) in enumerate(CASES[:5]):
        x = gc.input(f"x{k}", shape, dtype)
        feeds[f"x{k}"] = values(shape, dtype, k, special=(k == 0))
        t = torch_of(feeds[f"x{k}"])
        dims = torch_dims(axis, t.ndim)
        outs += [gc.var(x, axis, correction, keep), gc.std(x, axis, correction=correction,
                                                              keepdims=keep)]
        wants += [torch.var(t, dim=dims, correction=correction, keepdim=keep).numpy(),
                  torch.std(t, dim=dims, correction=correction, keepdim=keep).numpy()]
    for got, want in zip(run(backend, outs, feeds), wants):
        assert_close(got, want, dtype)


def prod_values(dtype):
    """Rows with no zero, one zero and two zeros (prod's three gradient cases)."""
    x = values((7, 129), dtype, 4, special=False) * 0.1 + 1
    x[1, 3] = 0
    x[2, 5] = x[2, 100] = 0
    x[3, :] = 0
    return x


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_against_torch(dtype, backend):
    x = gc.input("x", (7, 129), dtype)
    w = gc.input("w", (7, 1), dtype)
    xv = prod_values(dtype)
    xv[4, 7] = xv[4, 9] = xv[4].min() - 1           # a tie at the min
    wv = np.arange(1, 8, dtype=dtype).reshape(7, 1)
    terms = [gc.prod(x, 1, keepdims=True), gc.min(x, 1, keepdims=True),
             gc.var(x, 1, keepdims=True), gc.std(x, 1, correction=0, keepdims=True)]
    got = run(backend, [gc.grad(gc.sum(t * w), x) for t in terms], {"x": xv, "w": wv})
    tw = torch_of(wv)
    for g, f in zip(got, [lambda t: torch.prod(t, 1, keepdim=True),
                          lambda t: torch.amin(t, 1, keepdim=True),
                          lambda t: torch.var(t, 1, keepdim=True),
                          lambda t: torch.std(t, 1, correction=0, keepdim=True)]):
        tx = torch_of(xv).requires_grad_()
        (f(tx) * tw).sum().backward()
        assert_close(g, tx.grad.numpy(), dtype)


@pytest.mark.parametrize("op", ["prod", "min", "var", "std"])
def test_check_grads(op):
    x = np.random.default_rng(5).uniform(0.5, 2, (3, 7))
    if op == "prod":
        x[1, 2] = 0.0                              # a zero factor: the product of the rest
    check_grads(lambda v: getattr(gc, op)(v, axis=1) * 1.5, {"x": x})
