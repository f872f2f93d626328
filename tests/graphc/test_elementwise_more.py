"""Issue 14's elementwise ops against torch, forward and gradient, on every backend of
tests/conftest.py: float32 and float64, odd sizes (1, 7, 129), a zero-size dim, NaN, inf
and large values among the operands, broadcasting for the binary ones; check_grads
(central differences) on each differentiable one; the type rule's error naming the op,
the operand and the user's line. (Each op's block-crossing example and its zero-size
run: test_op_table.py and test_zero_size.py.)"""

import dataclasses

import numpy as np
import pytest
import torch

import graphc as gc
from graphc import ops
from graphc.errors import DtypeError
from graphc.ir import Node
from graphc.testing import check_grads
from tests.strategies import assert_close

# op -> (the torch function, what the inputs are mapped to first: the op's domain)
UNARY = {
    "sin": (torch.sin, None), "cos": (torch.cos, None), "erf": (torch.erf, None),
    "floor": (torch.floor, None),
}
# ops whose derivative is 0 almost everywhere: their gradient test is that 0
PIECEWISE_CONSTANT = ("floor",)
SHAPES = [(7, 129), (1,), (0, 7)]


def values(shape, dtype, seed=0) -> np.ndarray:
    """Normal values times 3 with halves (ties of rounding), NaN, +-inf and large
    values (+-1e4: past float32's exact halves, where argument reduction matters)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    flat = x.reshape(-1)
    for k, v in enumerate([np.nan, np.inf, -np.inf, 1e4, -1e4, 0.5, -0.5, 2.5, -1.5, 0.0]):
        flat[k * 11::97] = v
    return x


def torch_of(array):
    return torch.from_numpy(np.ascontiguousarray(array))


def run(backend, outs, feeds) -> list:
    """The outputs on `backend`, fed only the inputs they read (floor's gradient reads
    none: it is zeros)."""
    names = {n.name for n in gc.Graph(outs).inputs}
    return backend.compile(outs)(**{k: v for k, v in feeds.items() if k in names})


def mapped(op, x, table=UNARY):
    domain = table[op][1]
    return x if domain is None else domain(x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_forward_against_torch(op, dtype, backend):
    xs = [gc.input(f"x{k}", s, dtype) for k, s in enumerate(SHAPES)]
    feeds = {f"x{k}": mapped(op, values(s, dtype, k)) for k, s in enumerate(SHAPES)}
    outs = [getattr(gc, op)(x) for x in xs]
    assert all(o.dtype == dtype and o.shape == x.shape for o, x in zip(outs, xs))
    got = run(backend, outs, feeds)
    for k, g in enumerate(got):
        want = UNARY[op][0](torch_of(feeds[f"x{k}"])).numpy()
        assert g.dtype == want.dtype
        assert_close(g, want, dtype, what=f"{op} {SHAPES[k]}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_gradient_against_torch(op, dtype, backend):
    """d/dx sum(op(x) * w), NaN and inf among x, against torch.autograd."""
    shape = (7, 129)
    x = gc.input("x", shape, dtype)
    w = gc.input("w", (129,), dtype)
    xv = mapped(op, values(shape, dtype))
    wv = np.random.default_rng(1).standard_normal(129).astype(dtype)
    (got,) = run(backend, gc.grad(gc.sum(getattr(gc, op)(x) * w), [x]), {"x": xv, "w": wv})
    tx = torch_of(xv).requires_grad_()
    (UNARY[op][0](tx) * torch_of(wv)).sum().backward()
    assert_close(got, tx.grad.numpy(), dtype, what=f"d {op}")
    if op in PIECEWISE_CONSTANT:
        assert not np.any(got)


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_check_grads(op):
    x = np.random.default_rng(2).uniform(-3, 3, (3, 7)) + 0.01   # off floor's steps
    check_grads(lambda v: gc.sum(getattr(gc, op)(v) * v), {"x": mapped(op, x)})


@pytest.mark.parametrize("op", sorted(UNARY))
def test_a_float_op_of_an_int_names_the_op_and_the_line(op):
    with pytest.raises(DtypeError, match=f"{op}: needs a float operand") as info:
        getattr(gc, op)(gc.input("i", (2, 3), "int64"))
    assert "i : i64[2,3]" in str(info.value) and "test_elementwise_more.py" in str(info.value)


@pytest.mark.parametrize("op", sorted(UNARY))
def test_numpy_without_c_runs_each_op_as_numpy_calls(op):
    """The ufunc path (no C compiler, or C off) has a row for each op too."""
    x = gc.input("x", (7, 129), "float64")
    xv = mapped(op, values((7, 129), "float64"))
    f = gc.compile(getattr(gc, op)(x) * 2, backend="numpy", options={"c_kernels": False})
    got = f(x=xv)
    assert "C:" not in f.source
    assert_close(got, UNARY[op][0](torch_of(xv)).numpy() * 2, "float64", what=op)


def test_an_op_numpy_lacks_is_named_at_build_time(monkeypatch):
    """An op of the table with no NumPy form (here a copy of sin's row under a new name)
    is refused when its kernel is written, naming the op (never a KeyError)."""
    monkeypatch.setitem(ops.OPS, "erfinv", dataclasses.replace(ops.OPS["sin"], name="erfinv"))
    x = gc.input("x", (3,))
    node = Node("erfinv", (x,), {}, x.type)
    with pytest.raises(gc.GraphcError, match="the numpy backend cannot generate erfinv on "
                                             r"f32\[3\].*erfinv has no NumPy form"):
        gc.compile(node, backend="numpy", options={"c_kernels": False})(x=np.zeros(3, "f4"))
