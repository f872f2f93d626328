"""Every primitive in ops.OPS: forward values against NumPy (and torch where NumPy's
semantics are not the question), result shapes and dtypes, broadcasting, axes and
symbolic dims. Everything runs through gc.compile, once per backend in tests/conftest.py."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc
from graphc import ops
from graphc.errors import DtypeError, GraphcError, ShapeError

RNG = np.random.default_rng(0)


def data(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# --- elementwise unary --------------------------------------------------------------

UNARY = {
    "neg": np.negative, "exp": np.exp, "log": np.log, "log1p": np.log1p, "sqrt": np.sqrt,
    "abs": np.abs, "sign": np.sign, "tanh": np.tanh,
    "sigmoid": lambda v: 1 / (1 + np.exp(-v.astype(np.float64))),
    "relu": lambda v: np.maximum(v, 0), "step": lambda v: (v > 0).astype(v.dtype),
    "stop_gradient": lambda v: v,
    # issue 14's elementwise ops (more in tests/graphc/test_elementwise_more.py)
    "sin": np.sin, "cos": np.cos, "floor": np.floor,
    "erf": lambda v: torch.erf(torch.from_numpy(v)).numpy(),
    "tan": np.tan, "ceil": np.ceil, "round": np.round, "trunc": np.trunc,
    "reciprocal": np.reciprocal, "rsqrt": lambda v: 1 / np.sqrt(v), "square": np.square,
}
# unary tests of each element: bools out (tests/graphc/test_elementwise_more.py)
PREDICATES = {"isnan": np.isnan, "isinf": np.isinf, "isfinite": np.isfinite,
              "logical_not": np.logical_not}
POSITIVE_DOMAIN = ("log", "log1p", "sqrt", "rsqrt")


def test_the_unary_table_covers_every_unary_op():
    assert set(UNARY) | set(PREDICATES) | {"cast"} == {
        n for n, d in ops.OPS.items() if d.kind == "unary"}


@pytest.mark.parametrize("op", sorted(UNARY))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary_float(op, dtype, backend):
    x = gc.input("x", ("n", 3), dtype)
    value = data(4, 3, dtype=dtype)
    if op in POSITIVE_DOMAIN:
        value = np.abs(value) + 0.1
    y = getattr(gc, op)(x)
    assert y.shape == ("n", 3) and y.dtype == dtype
    out = backend.run(y, x=value)
    assert out.dtype == np.dtype(dtype) and out.shape == (4, 3)
    np.testing.assert_allclose(out, UNARY[op](value), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("op", ["neg", "abs", "sign", "relu", "step"])
def test_unary_int_keeps_int(op, backend):
    x = gc.input("x", (5,), "int64")
    value = np.array([-3, -1, 0, 2, 7])
    y = getattr(gc, op)(x)
    assert y.dtype == "int64"
    np.testing.assert_array_equal(backend.run(y, x=value), UNARY[op](value))


@pytest.mark.parametrize("op", ["exp", "log", "log1p", "sqrt", "tanh", "sigmoid", "sin", "cos",
                                "erf", "floor", "tan", "ceil", "round", "trunc", "reciprocal",
                                "rsqrt"])
def test_float_only_unary_rejects_ints(op):
    with pytest.raises(DtypeError, match=op):
        getattr(gc, op)(gc.input("x", (2,), "int32"))


@pytest.mark.parametrize("op", ["neg", "abs", "relu", "exp"])
def test_unary_rejects_bool(op):
    with pytest.raises(DtypeError, match=op):
        getattr(gc, op)(gc.input("x", (2,), "bool"))


def test_sigmoid_is_stable_at_large_magnitude_like_torch(backend):
    x = gc.input("x", (6,), "float64")
    value = np.array([-1000.0, -50.0, -1.0, 0.0, 30.0, 1000.0])
    out = backend.run(gc.sigmoid(x), x=value)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, torch.sigmoid(torch.tensor(value)).numpy(), rtol=1e-12,
                               atol=0)


def test_step_is_a_hard_threshold_at_zero(backend):
    x = gc.input("x", (3,))
    np.testing.assert_array_equal(backend.run(gc.step(x), x=np.array([-0.5, 0.0, 0.5])), [0, 0, 1])


@pytest.mark.parametrize("src,dst,value,expected", [
    ("float32", "int32", [1.7, -1.7, 0.0], [1, -1, 0]),     # truncation toward zero
    ("int64", "float64", [1, -2, 3], [1.0, -2.0, 3.0]),
    ("float32", "bool", [0.0, 2.0, -0.5], [False, True, True]),
    ("bool", "float32", [True, False, True], [1.0, 0.0, 1.0]),
])
def test_cast(src, dst, value, expected, backend):
    x = gc.input("x", (3,), src)
    y = gc.cast(x, dst)
    assert y.dtype == dst and x.astype(dst).dtype == dst
    out = backend.run(y, x=np.array(value))
    assert out.dtype == np.dtype(dst)
    np.testing.assert_array_equal(out, expected)


# --- elementwise binary -------------------------------------------------------------

BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
          "pow": np.power, "maximum": np.maximum, "minimum": np.minimum,
          "mod": np.mod, "fmod": np.fmod}
COMPARE = {"gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal,
           "eq": np.equal, "ne": np.not_equal, "logical_and": np.logical_and,
           "logical_or": np.logical_or, "logical_xor": np.logical_xor}
BROADCAST_CASES = [((2, 3), (2, 3)), ((2, 3), (3,)), ((4, 1, 3), (2, 1)), ((), (2, 2)),
                   ((1,), (5, 1, 4))]


def test_binary_tables_cover_every_binary_and_compare_op():
    assert set(BINARY) == {n for n, d in ops.OPS.items() if d.kind == "binary"}
    assert set(COMPARE) == {n for n, d in ops.OPS.items() if d.kind == "compare"}


@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize("sa,sb", BROADCAST_CASES)
def test_binary_broadcasts_like_numpy(op, sa, sb, backend):
    a, b = gc.input("a", sa), gc.input("b", sb)
    va, vb = data(*sa), data(*sb)
    if op == "pow":
        va = np.abs(va) + 0.5
    y = getattr(gc, op)(a, b)
    expected = BINARY[op](va, vb)
    assert y.shape == expected.shape and y.dtype == "float32"
    out = backend.run(y, a=va, b=vb)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5)


@pytest.mark.parametrize("op", sorted(COMPARE))
@pytest.mark.parametrize("sa,sb", BROADCAST_CASES[:3])
def test_compare_gives_bool(op, sa, sb, backend):
    a, b = gc.input("a", sa), gc.input("b", sb)
    va, vb = np.round(data(*sa)), np.round(data(*sb))  # rounded: ties happen
    y = getattr(gc, op)(a, b)
    assert y.dtype == "bool"
    out = backend.run(y, a=va, b=vb)
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out, COMPARE[op](va, vb))


def test_compare_across_dtypes_uses_the_promoted_dtype(backend):
    a = gc.input("a", (3,), "int64")
    b = gc.input("b", (3,), "float32")
    out = backend.run(gc.gt(b, a), a=np.array([1, 2, 3]), b=np.array([1.5, 2.0, 2.5], np.float32))
    np.testing.assert_array_equal(out, [True, False, False])


@pytest.mark.parametrize("op", ["add", "sub", "mul", "maximum", "minimum"])
def test_integer_arithmetic_stays_integer(op, backend):
    a = gc.input("a", (3,), "int32")
    b = gc.input("b", (3,), "int64")
    y = getattr(gc, op)(a, b)
    assert y.dtype == "int64"
    va, vb = np.array([1, -5, 7], np.int32), np.array([3, 2, -9])
    np.testing.assert_array_equal(backend.run(y, a=va, b=vb), BINARY[op](va, vb))


@pytest.mark.parametrize("op", ["div", "pow"])
def test_div_and_pow_need_a_float(op):
    with pytest.raises(DtypeError, match=op):
        getattr(gc, op)(gc.input("a", (2,), "int32"), gc.input("b", (2,), "int32"))


def test_binary_rejects_bool_operands():
    with pytest.raises(DtypeError, match="add"):
        gc.add(gc.input("a", (2,), "bool"), gc.input("b", (2,)))


def test_where_broadcasts_all_three_operands(backend):
    c, a, b = gc.input("c", (2, 1), "bool"), gc.input("a", (3,)), gc.input("b", (2, 3))
    y = gc.where(c, a, b)
    assert y.shape == (2, 3) and y.dtype == "float32"
    vc, va, vb = np.array([[True], [False]]), data(3), data(2, 3)
    np.testing.assert_array_equal(backend.run(y, c=vc, a=va, b=vb), np.where(vc, va, vb))


def test_where_with_python_scalars_and_mixed_dtypes(backend):
    x = gc.input("x", (4,), "float64")
    y = gc.where(x > 0, x, 0)
    assert y.dtype == "float64"
    value = np.array([-1.0, 2.0, -3.0, 4.0])
    np.testing.assert_array_equal(backend.run(y, x=value), [0, 2, 0, 4])


def test_where_needs_a_bool_condition():
    x = gc.input("x", (2,))
    with pytest.raises(DtypeError, match="where"):
        gc.where(x, x, x)


# --- NaN, inf and signed zeros, as NumPy (and torch) treat them ---------------------

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0])


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_ops_on_nan_inf_and_zeros(op, backend):
    x = gc.input("x", SPECIAL.shape, "float64")
    with np.errstate(all="ignore"):
        want = UNARY[op](SPECIAL)
    np.testing.assert_allclose(backend.run(getattr(gc, op)(x), x=SPECIAL), want, rtol=1e-12)


@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_ops_on_every_pair_of_nan_inf_and_zeros(op, backend):
    """relu, maximum and minimum pass NaN on (tl.maximum alone would drop it), and pow
    follows C's special cases (1 ** nan = 1, (-1) ** inf = 1, (-inf) ** 0.5 = inf)."""
    a, b = gc.input("a", (10, 1), "float64"), gc.input("b", (10,), "float64")
    va = SPECIAL.reshape(10, 1)
    with np.errstate(all="ignore"):
        want = BINARY[op](va, SPECIAL)
    np.testing.assert_allclose(backend.run(getattr(gc, op)(a, b), a=va, b=SPECIAL), want,
                               rtol=1e-12)


@pytest.mark.parametrize("op", sorted(COMPARE))
def test_compares_with_nan_are_false_but_not_equal(op, backend):
    a, b = gc.input("a", (10, 1), "float64"), gc.input("b", (10,), "float64")
    va = SPECIAL.reshape(10, 1)
    out = backend.run(getattr(gc, op)(a, b), a=va, b=SPECIAL)
    np.testing.assert_array_equal(out, COMPARE[op](va, SPECIAL))


def test_max_and_sum_pass_nan_and_inf_on(backend):
    x = gc.input("x", (4, 5))
    value = np.array([[1, np.nan, 3, 0, -1], [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf],
                      [np.inf, 2, -np.inf, 0, 1], [np.nan, 7, 8, np.inf, 9]], np.float32)
    nodes = [x.max(axis=1), x.max(axis=0), x.max(), x.sum(axis=1), gc.nn.logsumexp(x, axis=1)]
    with np.errstate(all="ignore"):
        want = [value.max(1), value.max(0), value.max(), value.sum(1),
                torch.logsumexp(torch.tensor(value), 1).numpy()]   # -inf for a row of -inf
    for got, expected in zip(backend.run(nodes, x=value), want):
        np.testing.assert_allclose(got, expected, rtol=1e-6)


# --- reductions ---------------------------------------------------------------------

REDUCE_CASES = [(None, False), (0, False), (1, True), ((0, 2), False), ((0, 2), True),
                (-1, False), ((), False)]


@pytest.mark.parametrize("op", ["sum", "max"])
@pytest.mark.parametrize("axis,keepdims", REDUCE_CASES)
def test_reductions_follow_numpy_axes_and_keepdims(op, axis, keepdims, backend):
    x = gc.input("x", (2, 3, 4))
    value = data(2, 3, 4)
    y = getattr(gc, op)(x, axis=axis, keepdims=keepdims)
    method = getattr(x, op)(axis, keepdims)  # node methods give the same node shape
    expected = getattr(np, op)(value, axis=axis, keepdims=keepdims)
    assert y.shape == expected.shape == method.shape
    np.testing.assert_allclose(backend.run(y, x=value), expected, rtol=1e-5)


def test_sum_of_bool_counts_as_int64_and_max_of_int_stays_int(backend):
    b = gc.input("b", (4,), "bool")
    i = gc.input("i", (4,), "int32")
    s, m = gc.sum(b), gc.max(i)
    assert s.dtype == "int64" and m.dtype == "int32"
    out_s, out_m = backend.run([s, m], b=np.array([1, 0, 1, 1], bool), i=np.array([3, 9, -2, 0]))
    assert out_s == 3 and out_m == 9


def test_mean_with_a_symbolic_dim_divides_by_the_bound_size(backend):
    x = gc.input("x", ("batch", 3))
    m0, m_all = gc.mean(x, axis=0), x.mean()
    for n in (1, 5):
        value = data(n, 3)
        out0, out_all = backend.run([m0, m_all], x=value)
        np.testing.assert_allclose(out0, value.mean(0), rtol=1e-5)
        np.testing.assert_allclose(out_all, value.mean(), rtol=1e-5)


def test_mean_of_bools_and_ints_is_a_float_fraction(backend):
    x = gc.input("x", ("n",))
    labels = gc.input("labels", ("n",), "int64")
    accuracy = gc.mean(x > 0)
    avg_label = gc.mean(labels)
    assert accuracy.dtype == "float32" and avg_label.dtype == "float32"
    out_acc, out_lab = backend.run([accuracy, avg_label], x=np.array([1.0, -1.0, 2.0, 3.0]),
                                   labels=np.array([0, 1, 2, 3]))
    assert out_acc == pytest.approx(0.75) and out_lab == pytest.approx(1.5)


def test_size_counts_elements_along_axes(backend):
    x = gc.input("x", ("batch", 3, 4))
    n_all, n_01 = gc.size(x), gc.size(x, (0, 1), "int64")
    assert n_all.shape == () and n_all.dtype == "float32" and n_01.dtype == "int64"
    out_all, out_01 = backend.run([n_all, n_01], x=data(5, 3, 4))
    assert out_all == 60 and out_01 == 15


@pytest.mark.parametrize("axis", [3, -4, (0, 0)])
def test_reduction_over_a_bad_axis_is_a_shape_error(axis):
    with pytest.raises(ShapeError, match="sum"):
        gc.sum(gc.input("x", (2, 3, 4)), axis=axis)


# --- layout -------------------------------------------------------------------------

def test_reshape_with_minus_one_and_symbols(backend):
    x = gc.input("x", ("b", 6))
    y = gc.reshape(x, ("b", 2, 3))
    z = y.reshape((-1, 6)).reshape(("b", -1))  # -1 stands for one symbol or a fixed size
    assert y.shape == ("b", 2, 3) and z.shape == ("b", 6)
    with pytest.raises(ShapeError, match="cannot infer -1"):
        x.reshape((-1,))  # b*6 is not a dim graphc can name
    value = data(4, 6)
    out_y, out_z = backend.run([y, z], x=value)
    np.testing.assert_array_equal(out_y, value.reshape(4, 2, 3))
    np.testing.assert_array_equal(out_z, value)


def test_reshape_fixed_minus_one(backend):
    x = gc.input("x", (2, 3, 4))
    y = x.reshape((4, -1))
    assert y.shape == (4, 6)
    value = data(2, 3, 4)
    np.testing.assert_array_equal(backend.run(y, x=value), value.reshape(4, -1))


def test_reshape_of_a_different_element_count_is_a_shape_error():
    with pytest.raises(ShapeError, match="reshape"):
        gc.reshape(gc.input("x", (2, 3)), (4, 2))
    with pytest.raises(ShapeError, match="reshape"):
        gc.reshape(gc.input("x", ("b", 3)), ("c", 3))


@pytest.mark.parametrize("perm", [None, (0, 1, 2), (2, 0, 1), (1, 0, 2)])
def test_transpose(perm, backend):
    x = gc.input("x", (2, 3, 4))
    value = data(2, 3, 4)
    y = gc.transpose(x, perm)
    expected = np.transpose(value, perm)
    assert y.shape == expected.shape
    np.testing.assert_array_equal(backend.run(y, x=value), expected)


def test_T_and_transpose_method(backend):
    x = gc.input("x", ("n", 3))
    assert x.T.shape == (3, "n") and x.transpose((1, 0)).shape == (3, "n")
    value = data(2, 3)
    np.testing.assert_array_equal(backend.run(x.T, x=value), value.T)


def test_transpose_needs_a_permutation():
    with pytest.raises(ShapeError, match="transpose"):
        gc.transpose(gc.input("x", (2, 3)), (0, 0))


@pytest.mark.parametrize("src,dst", [((3,), (2, 3)), ((2, 1), (2, 4)), ((), (3, 2)),
                                     ((1, 3), ("n", 3))])
def test_broadcast_to(src, dst, backend):
    x = gc.input("x", src)
    y = gc.broadcast_to(x, dst)
    assert y.shape == dst
    value = data(*src)
    feed_dst = tuple(5 if d == "n" else d for d in dst)
    if "n" in dst:  # the symbol must be bound by some input: add a zero-sized witness
        witness = gc.input("w", ("n",))
        out = backend.run([y, witness], x=value, w=np.zeros(5, np.float32))[0]
    else:
        out = backend.run(y, x=value)
    np.testing.assert_array_equal(out, np.broadcast_to(value, feed_dst))


def test_broadcast_to_a_smaller_shape_is_a_shape_error():
    with pytest.raises(ShapeError, match="broadcast_to"):
        gc.broadcast_to(gc.input("x", (2, 3)), (3,))


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_expand_dims(axis, backend):
    x = gc.input("x", (2, 3))
    value = data(2, 3)
    y = gc.expand_dims(x, axis)
    assert y.shape == np.expand_dims(value, axis).shape
    np.testing.assert_array_equal(backend.run(y, x=value), np.expand_dims(value, axis))


@pytest.mark.parametrize("axis", [None, 0, 2, (0, 2), -1])
def test_squeeze(axis, backend):
    x = gc.input("x", (1, 3, 1))
    value = data(1, 3, 1)
    y = gc.squeeze(x, axis)
    expected = np.squeeze(value, axis)
    assert y.shape == expected.shape
    np.testing.assert_array_equal(backend.run(y, x=value), expected)


def test_squeeze_of_a_non_unit_axis_is_a_shape_error():
    with pytest.raises(ShapeError, match="squeeze"):
        gc.squeeze(gc.input("x", (1, 3)), 1)


@pytest.mark.parametrize("index", [
    1, -1, slice(1, 3), slice(None, None, 2), (slice(None), 2), (0, slice(1, None)),
    (slice(-2, None), slice(None, None, 3)), slice(5, 9),
])
def test_getitem_like_numpy(index, backend):
    x = gc.input("x", (4, 5))
    value = data(4, 5)
    y = x[index]
    expected = value[index]
    assert y.shape == expected.shape
    np.testing.assert_array_equal(backend.run(y, x=value), expected)


def test_slice_keeps_a_symbolic_dim_when_taken_whole(backend):
    x = gc.input("x", ("batch", 5))
    y = x[:, 1:4]
    assert y.shape == ("batch", 3)
    value = data(2, 5)
    np.testing.assert_array_equal(backend.run(y, x=value), value[:, 1:4])


def test_slicing_a_symbolic_dim_or_indexing_out_of_range_is_an_error():
    x = gc.input("x", ("batch", 5))
    with pytest.raises(ShapeError, match="slice"):
        x[1:]
    with pytest.raises(ShapeError, match="index 5"):
        x[:, 5]
    with pytest.raises(ShapeError, match="symbolic dim 'batch'"):
        x[::-1]   # a reversed symbolic dim; x[:, ::-1] is NumPy's (test_indexing.py)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis, backend):
    a, b = gc.input("a", (2, 3)), gc.input("b", (2, 3))
    va, vb = data(2, 3), data(2, 3)
    y = gc.concat([a, b, a], axis)
    expected = np.concatenate([va, vb, va], axis)
    assert y.shape == expected.shape
    np.testing.assert_array_equal(backend.run(y, a=va, b=vb), expected)


def test_concat_promotes_dtypes_and_keeps_a_symbolic_batch(backend):
    a, b = gc.input("a", ("n", 2), "int32"), gc.input("b", ("n", 1), "float64")
    y = gc.concat([a, b], axis=1)
    assert y.shape == ("n", 3) and y.dtype == "float64"
    va, vb = np.array([[1, 2], [3, 4]], np.int32), np.array([[0.5], [1.5]])
    np.testing.assert_array_equal(backend.run(y, a=va, b=vb), np.concatenate([va, vb], 1))


def test_concat_of_mismatched_shapes_is_a_shape_error():
    with pytest.raises(ShapeError, match="concat"):
        gc.concat([gc.input("a", (2, 3)), gc.input("b", (3, 3))], axis=1)


# --- matmul -------------------------------------------------------------------------

MATMUL_CASES = [((2, 3), (3, 4)), ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)),
                ((5, 1, 2, 3), (4, 3, 2)), ((3,), (3, 4)), ((2, 3), (3,)), ((3,), (3,)),
                ((6, 2, 3), (3,))]


@pytest.mark.parametrize("sa,sb", MATMUL_CASES)
def test_matmul_batched_and_vector_cases_like_numpy(sa, sb, backend):
    a, b = gc.input("a", sa), gc.input("b", sb)
    va, vb = data(*sa), data(*sb)
    y = a @ b
    expected = np.matmul(va, vb)
    assert y.shape == expected.shape
    np.testing.assert_allclose(backend.run(y, a=va, b=vb), expected, rtol=1e-5, atol=1e-6)


def test_matmul_with_a_numpy_array_on_the_left(backend):
    x = gc.input("x", (3, "n"))
    W = np.arange(6.0).reshape(2, 3)
    y = W @ x
    assert y.shape == (2, "n") and y.dtype == "float32"
    value = data(3, 4)
    np.testing.assert_allclose(backend.run(y, x=value), W @ value, rtol=1e-5)


def test_matmul_int(backend):
    a, b = gc.input("a", (2, 2), "int64"), gc.input("b", (2, 2), "int64")
    y = a @ b
    assert y.dtype == "int64"
    va = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(backend.run(y, a=va, b=va), va @ va)


@pytest.mark.parametrize("sa,sb", [((2, 3), (4, 5)), ((3,), (4,)), ((3,), (1,)),
                                   ((2, 2, 3), (3, 3, 4))])
def test_matmul_mismatch_is_a_shape_error(sa, sb):
    with pytest.raises(ShapeError, match="matmul"):
        gc.input("a", sa) @ gc.input("b", sb)


# --- one_hot ------------------------------------------------------------------------

def test_one_hot_matches_torch(backend):
    labels = gc.input("labels", ("n",), "int64")
    y = gc.one_hot(labels, 4)
    assert y.shape == ("n", 4) and y.dtype == "float32"
    value = np.array([0, 3, 1, 1])
    expected = torch.nn.functional.one_hot(torch.tensor(value), 4).numpy()
    np.testing.assert_array_equal(backend.run(y, labels=value), expected)


def test_one_hot_dtype_and_int32_labels(backend):
    labels = gc.input("labels", (2, 2), "int32")
    y = gc.one_hot(labels, 3, "float64")
    assert y.shape == (2, 2, 3) and y.dtype == "float64"
    out = backend.run(y, labels=np.array([[0, 1], [2, 0]], np.int32))
    assert out.dtype == np.float64 and out.sum() == 4 and out[1, 0, 2] == 1


def test_one_hot_needs_int_labels():
    with pytest.raises(DtypeError, match="one_hot"):
        gc.one_hot(gc.input("x", (3,)), 4)


def test_one_hot_label_out_of_range_at_run_time_names_the_label(backend):
    labels = gc.input("labels", (3,), "int64")
    f = backend.compile(gc.one_hot(labels, 3))
    with pytest.raises(GraphcError, match="label 3 is outside") as info:
        f(labels=np.array([0, 3, 1]))
    assert "test_ops.py" in str(info.value)
    with pytest.raises(GraphcError, match="label -1"):
        f(labels=np.array([0, -1, 1]))


# --- type rules directly --------------------------------------------------------------

def test_every_op_is_in_one_kind_and_has_a_type_rule_and_impl():
    kinds = {"unary", "binary", "compare", "where", "reduce", "layout", "matmul", "other"}
    expected = set("neg exp log log1p sqrt abs sign tanh sigmoid relu step cast add sub mul "
                   "div pow maximum minimum gt ge lt le eq ne where sum max size reshape "
                   "transpose broadcast_to expand_dims squeeze slice concat matmul "
                   "one_hot".split())
    assert expected <= set(ops.OPS)
    for name in expected:
        opdef = ops.OPS[name]
        assert opdef.name == name and opdef.kind in kinds
        assert callable(opdef.infer) and callable(opdef.impl)


def test_infer_type_checks_arity_and_attributes():
    t = gc.TensorType((2, 3))
    with pytest.raises(ShapeError, match="add: takes 2 inputs"):
        ops.infer_type("add", [t], {})
    with pytest.raises(ShapeError, match="sum: takes attributes"):
        ops.infer_type("sum", [t], {"axes": (0,)})
    with pytest.raises(ShapeError, match="concat: needs at least one input"):
        ops.infer_type("concat", [], {"axis": 0})


def test_evaluate_returns_exactly_the_declared_dtype():
    t = gc.TensorType((2,), "float32")
    out = ops.evaluate("add", [np.array([1, 2]), np.array([0.5, 0.25])], {}, t, {})
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [1.5, 2.25])


@settings(max_examples=25)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=4, max_side=3),
       op=st.sampled_from(sorted(BINARY)), data_seed=st.integers(0, 2**16))
def test_binary_and_where_broadcast_any_compatible_shapes(shapes, op, data_seed, backend):
    (sa, sb, sc), result = shapes
    rng = np.random.default_rng(data_seed)
    va, vb = rng.uniform(0.5, 2, sa), rng.standard_normal(sb)
    vc = rng.standard_normal(sc) > 0
    a, b, c = gc.input("a", sa, "float64"), gc.input("b", sb, "float64"), gc.input("c", sc, "bool")
    y, w = getattr(gc, op)(a, b), gc.where(c, a, b)
    assert y.shape == np.broadcast_shapes(sa, sb) and w.shape == result
    out_y, out_w = backend.run([y, w], a=va, b=vb, c=vc)
    np.testing.assert_allclose(out_y, BINARY[op](va, vb), rtol=1e-12)
    np.testing.assert_array_equal(out_w, np.where(vc, va, vb))


@settings(max_examples=25)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=3), data=st.data())
def test_reductions_and_transposes_of_any_shape_match_numpy(shape, data, backend):
    value = np.random.default_rng(len(shape)).standard_normal(shape)
    axes = tuple(data.draw(st.sets(st.integers(0, len(shape) - 1))))
    keepdims = data.draw(st.booleans())
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    x = gc.input("x", shape, "float64")
    nodes = [x.sum(axes, keepdims), x.max(axes, keepdims), x.mean(axes, keepdims),
             x.transpose(perm)]
    expected = [value.sum(axes, keepdims=keepdims), value.max(axes, keepdims=keepdims),
                value.mean(axes, keepdims=keepdims), value.transpose(perm)]
    for node, out, want in zip(nodes, backend.run(nodes, x=value), expected):
        assert node.shape == want.shape
        np.testing.assert_allclose(out, want, rtol=1e-12)


LAYOUT = {
    "reshape": lambda x: x.reshape(3, 2), "transpose": lambda x: x.T,
    "broadcast_to": lambda x: gc.broadcast_to(x, (4, 2, 3)),
    "expand_dims": lambda x: gc.expand_dims(x, 0), "squeeze": lambda x: gc.squeeze(x[:1], 0),
    "slice": lambda x: x[:, 1:], "concat": lambda x: gc.concat([x, x], 1),
    "max": lambda x: x.max(0),
}


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "bool"])
@pytest.mark.parametrize("op", sorted(LAYOUT))
def test_layout_ops_and_max_keep_the_dtype(op, dtype, backend):
    x = gc.input("x", (2, 3), dtype)
    y = LAYOUT[op](x)
    assert y.dtype == dtype
    value = (np.arange(6).reshape(2, 3) % 3).astype(dtype)
    out = backend.run(y, x=value)
    assert out.dtype == np.dtype(dtype) and out.shape == y.shape
