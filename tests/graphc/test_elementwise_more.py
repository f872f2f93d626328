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
from graphc.backends import ccompile
from graphc.errors import DtypeError
from graphc.ir import Node
from graphc.testing import check_grads
from tests.graphc.test_op_table import assert_agree, example
from tests.strategies import assert_close
from tests.torch_like import run_reading as run, torch_of

# op -> (the torch function, what the inputs are mapped to first: the op's domain)
UNARY = {
    "sin": (torch.sin, None), "cos": (torch.cos, None), "erf": (torch.erf, None),
    "floor": (torch.floor, None), "tan": (torch.tan, None), "ceil": (torch.ceil, None),
    "round": (torch.round, None), "trunc": (torch.trunc, None),
    "reciprocal": (torch.reciprocal, None), "rsqrt": (torch.rsqrt, None),
    "square": (torch.square, None),
}
# ops whose derivative is 0 almost everywhere: their gradient test is that 0
PIECEWISE_CONSTANT = ("floor", "ceil", "round", "trunc")
# tests of each element: any dtype in, bools out
PREDICATES = {"isnan": torch.isnan, "isinf": torch.isinf, "isfinite": torch.isfinite,
              "logical_not": torch.logical_not}
BINARY = {"mod": torch.remainder, "fmod": torch.fmod}
LOGICAL = {"logical_and": torch.logical_and, "logical_or": torch.logical_or,
           "logical_xor": torch.logical_xor}
# b's shape beside a's (7, 129): broadcasting both ways, a number, and a zero-size pair
PAIRS = [((7, 129), (7, 129)), ((7, 129), (129,)), ((7, 1), (7, 129)), ((7, 129), ()),
         ((0, 7), (7,)), ((1,), (1,))]
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


@pytest.mark.parametrize("op", sorted(set(UNARY) - {"square"}))
def test_a_float_op_of_an_int_names_the_op_and_the_line(op):
    with pytest.raises(DtypeError, match=f"{op}: needs a float operand") as info:
        getattr(gc, op)(gc.input("i", (2, 3), "int64"))
    assert "i : i64[2,3]" in str(info.value) and "test_elementwise_more.py" in str(info.value)


ISSUE_14_OPS = sorted(set(UNARY) | set(PREDICATES) | set(BINARY) | set(LOGICAL))
# examples that stay NumPy calls with C on, and why
NOT_C = {"square": "its example squares an int64 too: C leaves integer arithmetic to NumPy"}


@pytest.mark.parametrize("c_kernels", [False, True])
@pytest.mark.parametrize("op", ISSUE_14_OPS)
def test_numpy_runs_each_op_as_c_loops_and_as_numpy_calls(op, c_kernels):
    """Each op's example of the op table's test, as NumPy calls (no C compiler, or C off)
    and as C loops, against the reference."""
    node, fed = example(op, 3, 129)
    want = gc.compile(node, backend="reference", opt="O0")(**fed)
    f = gc.compile(node, backend="numpy", options={"c_kernels": c_kernels})
    got = f(**fed)
    c = c_kernels and ccompile.available() and op not in NOT_C
    assert ("# C:" in f.source) == c, f.source
    assert_agree(got, want, op)


def test_an_op_numpy_lacks_is_named_at_build_time(monkeypatch):
    """An op of the table with no NumPy form (here a copy of sin's row under a new name)
    is refused when its kernel is written, naming the op (never a KeyError)."""
    monkeypatch.setitem(ops.OPS, "erfinv", dataclasses.replace(ops.OPS["sin"], name="erfinv"))
    x = gc.input("x", (3,))
    node = Node("erfinv", (x,), {}, x.type)
    with pytest.raises(gc.GraphcError, match="the numpy backend cannot generate erfinv on "
                                             r"f32\[3\].*erfinv has no NumPy form"):
        gc.compile(node, backend="numpy", options={"c_kernels": False})(x=np.zeros(3, "f4"))


def test_round_is_half_to_even_and_keeps_a_zero_s_sign(backend):
    x = gc.input("x", (12,), "float64")
    xv = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -0.3, 0.49999999999999994,
                   2.0**52 + 1, -(2.0**53), 1e300, -np.inf])
    got = backend.run(gc.round(x), x=xv)
    np.testing.assert_array_equal(got, np.round(xv))
    np.testing.assert_array_equal(np.signbit(got), np.signbit(np.round(xv)))


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "bool"])
@pytest.mark.parametrize("op", sorted(PREDICATES))
def test_predicates_against_torch(op, dtype, backend):
    x = gc.input("x", (7, 129), dtype)
    xv = values((7, 129), "float64") * 3
    xv = (xv > 0) if dtype == "bool" else np.nan_to_num(xv).astype(dtype) \
        if dtype == "int64" else xv.astype(dtype)
    y = getattr(gc, op)(x)
    assert y.dtype == "bool"
    got = backend.run(gc.logical_and(y, y), x=xv)           # fused with one more op
    np.testing.assert_array_equal(got, PREDICATES[op](torch_of(xv)).numpy())


def binary_feeds(sa, sb, dtype, op):
    a, b = values(sa, dtype, 3), values(sb, dtype, 4)
    if op in LOGICAL:
        a.reshape(-1)[::3] = 0
        b.reshape(-1)[1::4] = 0
    return a, b


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(BINARY) + sorted(LOGICAL))
def test_binary_forward_against_torch(op, dtype, backend):
    """Every pair of PAIRS in one function: a's and b's NaN, inf, zeros and halves meet."""
    table = {**BINARY, **LOGICAL}
    feeds, outs = {}, []
    for k, (sa, sb) in enumerate(PAIRS):
        a, b = gc.input(f"a{k}", sa, dtype), gc.input(f"b{k}", sb, dtype)
        feeds[f"a{k}"], feeds[f"b{k}"] = binary_feeds(sa, sb, dtype, op)
        outs.append(getattr(gc, op)(a, b))
    for k, got in enumerate(run(backend, outs, feeds)):
        want = table[op](torch_of(feeds[f"a{k}"]), torch_of(feeds[f"b{k}"])).numpy()
        assert got.dtype == want.dtype and got.shape == want.shape
        if op in LOGICAL:
            np.testing.assert_array_equal(got, want)
        else:
            assert_close(got, want, dtype, what=f"{op} {PAIRS[k]}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_gradient_against_torch(op, dtype, backend):
    a, b = gc.input("a", (7, 129), dtype), gc.input("b", (129,), dtype)
    av = values((7, 129), dtype, 3)
    bv = np.random.default_rng(5).uniform(0.5, 2, 129).astype(dtype) * np.where(
        np.arange(129) % 2, 1, -1).astype(dtype)
    ga, gb = backend.run(gc.grad(gc.sum(getattr(gc, op)(a, b) * a), [a, b]), a=av, b=bv)
    ta, tb = torch_of(av).requires_grad_(), torch_of(bv).requires_grad_()
    (BINARY[op](ta, tb) * ta).sum().backward()
    assert_close(ga, ta.grad.numpy(), dtype, what=f"d {op} / da")
    assert_close(gb, tb.grad.numpy(), dtype, what=f"d {op} / db")


@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_check_grads(op):
    rng = np.random.default_rng(6)
    a = rng.uniform(-5, 5, (3, 7))
    b = rng.uniform(0.7, 2, 7) * np.where(np.arange(7) % 2, 1, -1)
    a = np.where(np.abs(np.mod(a, b)) < 0.05, a + 0.1, a)    # off the quotient's steps
    check_grads(lambda x, y: gc.sum(getattr(gc, op)(x, y) * x), {"a": a, "b": b})


def test_mod_and_fmod_sign_rules_on_zeros_and_infs(backend):
    a, b = gc.input("a", (8,), "float64"), gc.input("b", (8,), "float64")
    av = np.array([-2.5, 2.5, -3.0, 3.0, np.inf, np.nan, 1.0, -0.0])
    bv = np.array([np.inf, -np.inf, 1.5, -1.5, 2.0, 1.0, 0.0, 1.5])
    got_mod, got_fmod = backend.run([gc.mod(a, b), gc.fmod(a, b)], a=av, b=bv)
    for got, want in ((got_mod, np.mod(av, bv)), (got_fmod, np.fmod(av, bv))):
        np.testing.assert_array_equal(got, want)
        number = ~np.isnan(want)                      # (a nan's sign bit means nothing)
        np.testing.assert_array_equal(np.signbit(got[number]), np.signbit(want[number]))


@pytest.mark.parametrize("op", sorted(BINARY) + sorted(LOGICAL) + ["clip"])
def test_float_binary_type_rules_name_the_op_and_the_line(op):
    x = gc.input("x", (2, 3))
    if op in BINARY:
        with pytest.raises(DtypeError, match=f"{op}: needs a float operand"):
            getattr(gc, op)(gc.input("i", (2, 3), "int64"), 2)
    with pytest.raises(gc.ShapeError, match=f"{op if op != 'clip' else 'lt'}: shapes "
                       r"\(2, 3\) and \(4,\) do not broadcast") as info:
        if op == "clip":
            gc.clip(x, gc.input("lo", (4,)))
        else:
            getattr(gc, op)(x, gc.input("y", (4,)))
    assert "test_elementwise_more.py" in str(info.value)


# --- clip: torch.clamp's values and gradients -----------------------------------------

def test_clip_with_bound_nodes_against_torch_clamp(backend):
    """Ties go to x, min > max gives max, nan in x gives nan and no gradient."""
    xv = np.array([-2.0, 0.0, 0.5, 1.0, 3.0, np.nan, 7.0, -np.inf])
    lov = np.array([0.0, 0.0, 1.0, 2.0, 0.0, 0.0, np.nan, -1.0])
    hiv = np.array([1.0, 1.0, 0.5, 1.5, 3.0, 1.0, 9.0, 1.0])
    x, lo, hi = (gc.input(n, (8,), "float64") for n in ("x", "lo", "hi"))
    y = gc.clip(x, lo, hi)
    got = backend.run([y] + gc.grad(gc.sum(y * np.arange(1.0, 9.0)), [x, lo, hi]),
                      x=xv, lo=lov, hi=hiv)
    tx, tlo, thi = (torch_of(v).requires_grad_() for v in (xv, lov, hiv))
    ty = torch.clamp(tx, tlo, thi)
    (ty * torch.arange(1.0, 9.0, dtype=torch.float64)).sum().backward()
    np.testing.assert_array_equal(got[0], ty.detach().numpy())
    # (nan in a bound: torch's gradient is its own choice there; ours goes to the bound)
    for g, t in zip(got[1:], (tx.grad, tlo.grad, thi.grad)):
        np.testing.assert_array_equal(g[lov == lov], t.numpy()[lov == lov])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (None, 0.5), (-0.5, None), (2.0, -2.0)])
def test_clip_with_number_bounds_against_torch_clamp(bounds, dtype, backend):
    lo, hi = bounds
    x = gc.input("x", (7, 129), dtype)
    xv = values((7, 129), dtype)
    y = gc.clip(x, lo, hi)
    got, gx = backend.run([y, gc.grad(gc.sum(y * y), x)], x=xv)
    tx = torch_of(xv).requires_grad_()
    ty = torch.clamp(tx, lo, hi)
    (ty * ty).sum().backward()
    assert_close(got, ty.detach().numpy(), dtype, what="clip")
    assert_close(gx, tx.grad.numpy(), dtype, what="d clip")


def test_clip_needs_a_bound_and_check_grads():
    with pytest.raises(gc.UsageError, match="clip: give min=, max= or both"):
        gc.clip(gc.input("x", (2,)))
    x = np.random.default_rng(7).uniform(-2, 2, (3, 7))
    x = np.where(np.abs(np.abs(x) - 1) < 0.05, 0.0, x)        # off the corners
    check_grads(lambda v, lo: gc.clip(v, lo, 1.0) * v, {"x": x, "lo": np.full(7, -1.0)})


def test_ne_and_nan_propagation_of_maximum_and_minimum(backend):
    """Already in the table before issue 14: verified here against torch."""
    a, b = gc.input("a", (7, 129)), gc.input("b", (129,))
    av, bv = values((7, 129), "float32", 8), values((129,), "float32", 9)
    got = backend.run([gc.ne(a, b), gc.maximum(a, b), gc.minimum(a, b)], a=av, b=bv)
    ta, tb = torch_of(av), torch_of(bv)
    for g, w in zip(got, (torch.ne(ta, tb), torch.maximum(ta, tb), torch.minimum(ta, tb))):
        np.testing.assert_array_equal(g, w.numpy())
