"""Issue 14's composites built in graphc.dsl from existing ops: cumsum, cumprod,
logcumsumexp (a log-step scan of adds, slices and concats), stack, einsum (sums,
transposes, reshapes and matmuls); against torch, forward and gradient, on every
backend; odd sizes (1, 7, 129), zero-size dims, NaN and inf; check_grads."""

import numpy as np
import pytest
import torch

import graphc as gc
from graphc.testing import check_grads
from tests.strategies import assert_close
from tests.torch_like import run_reading as run, special_values as values, torch_of

SCANS = {"cumsum": torch.cumsum, "cumprod": torch.cumprod, "logcumsumexp": torch.logcumsumexp}
# (shape, axis): odd sizes along and across the axis, a zero-size dim either way
CASES = [((7, 129), 1), ((7, 129), 0), ((1,), 0), ((0, 7), 1), ((7, 0), 1), ((3, 7, 5), -2)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(SCANS))
def test_scans_forward_against_torch(op, dtype, backend):
    feeds, outs, wants = {}, [], []
    for k, (shape, axis) in enumerate(CASES):
        x = gc.input(f"x{k}", shape, dtype)
        xv = values(shape, dtype, k) * (0.3 if op == "cumprod" else 1) + (
            1 if op == "cumprod" else 0)
        feeds[f"x{k}"] = xv
        outs.append(getattr(gc, op)(x, axis))
        wants.append(SCANS[op](torch_of(xv), dim=axis).numpy())
    for got, want in zip(run(backend, outs, feeds), wants):
        assert got.shape == want.shape and got.dtype == want.dtype
        assert_close(got, want, dtype, what=op)


def test_scans_of_the_flattened_value_and_of_bools_as_numpy(backend):
    x, b = gc.input("x", (3, 5), "float64"), gc.input("b", (4, 3), "bool")
    xv, bv = values((3, 5), "float64", special=False), np.arange(12).reshape(4, 3) % 3 == 0
    got = backend.run([gc.cumsum(x), gc.cumprod(x), gc.cumsum(b, 0), gc.cumprod(b, 1)],
                      x=xv, b=bv)
    wants = [np.cumsum(xv), np.cumprod(xv), np.cumsum(bv, 0), np.cumprod(bv, 1)]
    for g, w in zip(got, wants):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(SCANS))
def test_scans_gradient_against_torch(op, dtype, backend):
    """cumprod's with zeros among the factors (one, and two in a row)."""
    x = gc.input("x", (7, 129), dtype)
    w = gc.input("w", (129,), dtype)
    xv = values((7, 129), dtype, 2, special=False) * 0.1 + (1 if op == "cumprod" else 0)
    xv[1, 5] = 0
    xv[2, 3] = xv[2, 60] = 0
    wv = np.random.default_rng(3).standard_normal(129).astype(dtype)
    (got,) = run(backend, [gc.grad(gc.sum(getattr(gc, op)(x, 1) * w), x)], {"x": xv, "w": wv})
    tx = torch_of(xv).requires_grad_()
    (SCANS[op](tx, dim=1) * torch_of(wv)).sum().backward()
    assert_close(got, tx.grad.numpy(), dtype, what=f"d {op}")


@pytest.mark.parametrize("op", sorted(SCANS))
def test_scans_check_grads(op):
    x = np.random.default_rng(4).uniform(0.5, 1.5, (3, 7))
    if op == "cumprod":
        x[1, 2] = 0.0
    check_grads(lambda v: getattr(gc, op)(v, 1) * 1.5, {"x": x})


def test_logcumsumexp_does_not_overflow(backend):
    x = gc.input("x", (5,), "float64")
    xv = np.array([1000.0, 1000.0, -np.inf, 1e4, -1e4])
    np.testing.assert_allclose(backend.run(gc.logcumsumexp(x, 0), x=xv),
                               torch.logcumsumexp(torch_of(xv), 0).numpy(), rtol=1e-12)


def test_a_scan_needs_a_fixed_axis():
    with pytest.raises(gc.ShapeError, match="scan: axis 0 of .* fixed size"):
        gc.cumsum(gc.input("x", ("batch", 3)), 0)


# --- stack ------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, -1])
def test_stack_against_torch_and_its_gradient(axis, backend):
    a, b = gc.input("a", (7, 129)), gc.input("b", (7, 129))
    av, bv = values((7, 129), "float32", 5), values((7, 129), "float32", 6)
    y = gc.stack([a, b * 2], axis)
    got, ga, gb = backend.run([y] + gc.grad(gc.sum(y * y), [a, b]), a=av, b=bv)
    ta, tb = torch_of(av).requires_grad_(), torch_of(bv).requires_grad_()
    ty = torch.stack([ta, tb * 2], axis)
    (ty * ty).sum().backward()
    assert_close(got, ty.detach().numpy(), "float32")
    assert_close(ga, ta.grad.numpy(), "float32")
    assert_close(gb, tb.grad.numpy(), "float32")


def test_stack_names_its_mistakes():
    with pytest.raises(gc.ShapeError, match=r"stack: shapes f32\[2,3\] and f32\[3\] differ"):
        gc.stack([gc.input("a", (2, 3)), gc.input("b", (3,))])
    with pytest.raises(gc.ShapeError, match="stack: needs at least one value"):
        gc.stack([])


# --- flip -------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)])
def test_flip_against_torch_and_its_gradient(axis, backend):
    x = gc.input("x", (7, 1, 129))
    xv = values((7, 1, 129), "float32", 7)
    y = gc.flip(x, axis) * gc.const(np.arange(7 * 129, dtype=np.float32).reshape(7, 1, 129))
    got, gx = backend.run([y] + gc.grad(gc.sum(y * y), [x]), x=xv)
    tx = torch_of(xv).requires_grad_()
    dims = (0, 1, 2) if axis is None else (axis,) if isinstance(axis, int) else axis
    ty = torch.flip(tx, dims) * torch.arange(7 * 129, dtype=torch.float32).reshape(7, 1, 129)
    (ty * ty).sum().backward()
    assert_close(got, ty.detach().numpy(), "float32")
    assert_close(gx, tx.grad.numpy(), "float32")


def test_flip_names_its_mistakes():
    with pytest.raises(gc.ShapeError, match=r"flip: axis 2 is not an axis of f32\[2,3\]"):
        gc.flip(gc.input("a", (2, 3)), 2)
    with pytest.raises(gc.ShapeError, match="batch"):
        gc.flip(gc.input("b", ("batch", 3)), 0)


# --- einsum -----------------------------------------------------------------------------

EINSUMS = [("ij,jk->ik", [(7, 129), (129, 1)]), ("bij,bjk->bik", [(2, 7, 3), (2, 3, 5)]),
           ("ij->ji", [(7, 129)]), ("ij->", [(7, 5)]), ("i,i->", [(129,), (129,)]),
           ("i,j->ij", [(7,), (5,)]), ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 7, 5)]),
           ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]), ("ijk,ikl", [(2, 3, 4), (2, 4, 5)]),
           ("ij,kj->ik", [(3, 0), (5, 0)]), ("i,ij->j", [(3,), (3, 4)]), ("ijk->kj", [(2, 3, 4)])]


@pytest.mark.parametrize("spec,shapes", EINSUMS, ids=[s for s, _ in EINSUMS])
def test_einsum_against_torch_and_its_gradient(spec, shapes, backend):
    xs = [gc.input(f"x{k}", s, "float64") for k, s in enumerate(shapes)]
    vals = [values(s, "float64", k, special=False) for k, s in enumerate(shapes)]
    y = gc.einsum(spec, *xs)
    got = run(backend, [y] + gc.grad(gc.sum(y * y), xs), {f"x{k}": v for k, v in enumerate(vals)})
    ts = [torch_of(v).requires_grad_() for v in vals]
    ty = torch.einsum(spec, *ts)
    (ty * ty).sum().backward()
    assert_close(got[0], ty.detach().numpy(), "float64", what=spec)
    for g, t in zip(got[1:], ts):
        assert_close(g, t.grad.numpy(), "float64", what=f"d {spec}")


def test_einsum_check_grads():
    rng = np.random.default_rng(7)
    check_grads(lambda a, b: gc.einsum("bij,jk->bki", a, b),
                {"a": rng.standard_normal((2, 3, 4)), "b": rng.standard_normal((4, 5))})


@pytest.mark.parametrize("spec,shapes,message", [
    ("ii->i", [(3, 3)], "repeats an index"), ("...i,i", [(2, 3), (3,)], "'...' is not"),
    ("ij,jk", [(2, 3)], "names 2 operands, got 1"), ("ij,jk", [(2, 3), (4, 5)],
                                                     "index 'j' is 3 in f32\\[2,3\\] and 4"),
    ("ijk", [(2, 3)], "subscripts 'ijk' for an operand of f32\\[2,3\\]"),
    ("ij->iz", [(2, 3)], "names one no operand has")])
def test_einsum_names_its_mistakes(spec, shapes, message):
    with pytest.raises(gc.ShapeError, match=message) as info:
        gc.einsum(spec, *[gc.input(f"x{k}", s) for k, s in enumerate(shapes)])
    assert "test_composites_more.py" in str(info.value)
