"""Indexing, padding and indexing by data (issue 14, items 3 and 4), on every backend of
the conftest: basic indexing (None, ..., negative indices and steps) against NumPy; pad
against np.pad and torch.nn.functional.pad; gather, take, take_along_axis, scatter_add,
x[idx] and nn.embedding against NumPy and torch; each gradient against torch.autograd
(float32 and float64) and finite differences; zero-size and odd sizes, NaN and inf;
the refusals (bool masks, symbolic slices) and out-of-range indices, which raise on
every backend and leave every param as it was."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphc as gc
from graphc import ir
from graphc.testing import check_grads
from tests.strategies import assert_close


def _data(shape, dtype="float32", seed=0, special=True):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    if special and x.size > 3:
        flat = x.reshape(-1)
        flat[1], flat[-1], flat[x.size // 2] = np.nan, np.inf, -np.inf
    return x


def _torch_grad(fn, X, seed_g):
    t = torch.tensor(X, requires_grad=True)
    fn(t).backward(torch.tensor(seed_g))
    return t.grad.numpy()


def _grad_of(backend, out, x, X, G):
    """d(sum(out * G))/dx on the backend."""
    (g,) = gc.grad(gc.sum(out * gc.const(G, out.dtype)), [x])
    return backend.compile([out, g])(**{x.name: X})[1]  # out: x is an input of the function


# --- basic indexing --------------------------------------------------------------------

BASIC = [
    (slice(None, None, -1),), (slice(None), slice(None, None, -2)), (None,),
    (Ellipsis, 1), (None, Ellipsis, None), (-1, slice(3, 0, -1)), (slice(-2, None), -3),
    (slice(5, -8, -3), None, Ellipsis), (1, None, slice(-1, None, -1)), (Ellipsis,),
    (slice(6, 2, 1), slice(None)),  # empty
]


@pytest.mark.parametrize("index", BASIC, ids=repr)
def test_basic_indexing_is_numpys(index, backend):
    x = gc.input("x", (7, 5))
    X = _data((7, 5))
    out = x[index]
    got = backend.compile(out * 2)(x=X)
    assert_close(got, X[index] * 2, what=repr(index))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("index", BASIC[:8], ids=repr)
def test_basic_indexing_gradient_is_torchs(index, dtype, backend):
    x = gc.input("x", (7, 5), dtype)
    X = _data((7, 5), dtype, special=False)
    out = x[index]
    G = _data(out.type.concrete_shape(), dtype, seed=1, special=False)
    want = _torch_grad(lambda t: t[tuple(_torch_index(i, t, index) for i in index)], X, G)
    assert_close(_grad_of(backend, out, x, X, G), want, dtype)


def _torch_index(item, t, index):
    """torch has no negative steps: a reversed slice is flip + slice, done here as the
    equivalent index array along the item's axis."""
    if isinstance(item, slice) and item.step is not None and item.step < 0:
        axis = _axis_of(index, item, t.ndim)
        return torch.tensor(range(*item.indices(t.shape[axis])), dtype=torch.long)
    return item


def _axis_of(index, item, ndim):
    named = [i for i in index if i is not None]
    at = next(k for k, i in enumerate(named) if i is item)
    if Ellipsis in named and named.index(Ellipsis) < at:
        return at + ndim - len(named)
    return at


def test_a_reversed_slice_has_the_gradient_of_finite_differences():
    check_grads(lambda x: gc.sum(x[::-2, 3:0:-1] * x[:4, 1:4] ** 2), {"x": _data((7, 5), "float64", special=False)})


def test_a_reversed_slice_reads_back_from_the_text_form():
    x = gc.input("x", (4, 7))
    g = gc.Graph(x[::-1, 5::-2] * 2)
    assert "(3, None, -1), (5, None, -2)" in str(g)
    X = _data((4, 7))
    got = gc.compile(ir.parse(str(g)).outputs, backend="reference")(x=X)
    np.testing.assert_array_equal(got[0], X[::-1, 5::-2] * 2)


def test_negative_and_reversed_indexing_on_a_symbolic_batch(backend):
    x = gc.input("x", ("batch", 4))
    X = _data((3, 4))
    got = backend.compile(x[:, ::-1][..., -1, None])(x=X)
    np.testing.assert_array_equal(got, X[:, ::-1][..., -1, None])


@pytest.mark.parametrize("index", [slice(1, None), slice(None, -1), slice(None, None, -1), 0, -1])
def test_slicing_a_symbolic_dim_is_refused_with_the_rule(index):
    x = gc.input("x", ("batch", 3))
    with pytest.raises(gc.ShapeError, match="symbolic dim 'batch'") as info:
        x[index]
    assert "test_indexing.py" in str(info.value)


def test_a_bool_mask_is_refused_with_a_pointer_to_where():
    x = gc.input("x", (4, 3))
    for mask in (x > 0, np.ones((4, 3), bool)):
        with pytest.raises(gc.ShapeError, match=r"gc\.where") as info:
            x[mask]
        assert "data-dependent" in str(info.value) and "test_indexing.py" in str(info.value)


def test_bad_basic_indices_are_clear_errors():
    x = gc.input("x", (4, 3))
    for index, match in [((..., ...), "at most one"), ((0, 0, 0), "more entries"),
                         (slice(None, None, 0), "cannot be zero"), (4, "out of range"),
                         ("a", "graphc takes")]:
        with pytest.raises(gc.ShapeError, match=match):
            x[index]


# --- pad -----------------------------------------------------------------------------------

PADS = [((1, 2), (3, 0)), ((0, 0), (2, 2)), ((3, 1), (0, 0)), ((0, 0), (0, 0)), 1]
TORCH_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "replicate"}


def _torch_pad(t, pairs, mode, value=0.0):
    flat = [w for pair in reversed(pairs) for w in pair]   # torch: last axis first
    if mode == "constant":
        return F.pad(t, flat, mode, value)
    return F.pad(t[None], flat[:4], mode)[0]  # torch pads the last 2 axes of a 3-D input


def _pairs(width, ndim):
    return [(width, width)] * ndim if isinstance(width, int) else list(width)


@pytest.mark.parametrize("mode", sorted(TORCH_MODES))
@pytest.mark.parametrize("width", PADS, ids=repr)
def test_pad_is_np_pad_and_torch_pad(mode, width, backend):
    x = gc.input("x", (5, 7))
    X = _data((5, 7))
    kw = {"value": 2.5} if mode == "constant" else {}
    got = backend.compile(gc.pad(x, width, mode, **kw))(x=X)
    np_mode = {"replicate": "edge"}.get(mode, mode)
    np_kw = {"constant_values": 2.5} if mode == "constant" else {}
    np.testing.assert_array_equal(got, np.pad(X, width, np_mode, **np_kw))
    want = _torch_pad(torch.tensor(X), _pairs(width, 2), mode, 2.5).numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", sorted(TORCH_MODES))
def test_pad_gradient_is_torchs(mode, dtype, backend):
    x = gc.input("x", (5, 7), dtype)
    X = _data((5, 7), dtype, special=False)
    width = ((2, 4), (3, 1))
    out = gc.pad(x, width, mode)
    G = _data(out.type.concrete_shape(), dtype, seed=2, special=False)
    want = _torch_grad(lambda t: _torch_pad(t, width, mode), X, G)
    assert_close(_grad_of(backend, out, x, X, G), want, dtype)


def test_pad_gradients_match_finite_differences():
    for mode in TORCH_MODES:
        check_grads(lambda x: gc.sum(gc.pad(x, ((1, 2), (2, 1)), mode) ** 2),
                    {"x": _data((3, 4), "float64", special=False)})


@pytest.mark.parametrize("shape", [(1, 1), (129, 3), (2, 0)])
def test_pad_odd_and_empty_shapes(shape, backend):
    x = gc.input("x", shape)
    X = _data(shape)
    got = backend.compile(gc.pad(x, ((0, 0), (2, 1))) + gc.pad(x, ((0, 0), (0, 3)), "constant", 1.0))(x=X)
    np.testing.assert_array_equal(got, np.pad(X, ((0, 0), (2, 1))) + np.pad(X, ((0, 0), (0, 3)), constant_values=1.0))
    if shape[1] > 1:
        got = backend.compile(gc.pad(x, ((1, 0), (0, 0)), "replicate") * 1)(x=X)
        np.testing.assert_array_equal(got, np.pad(X, ((1, 0), (0, 0)), "edge"))


def test_pad_on_a_batch_pads_the_fixed_axes(backend):
    x = gc.input("x", ("batch", 4))
    X = _data((3, 4))
    got = backend.compile(gc.pad(x, ((0, 0), (1, 2)), "reflect"))(x=X)
    np.testing.assert_array_equal(got, np.pad(X, ((0, 0), (1, 2)), "reflect"))


def test_pad_mistakes_are_clear_errors():
    x, b = gc.input("x", (3, 4)), gc.input("b", ("batch", 4))
    for call, match in [(lambda: gc.pad(x, ((0, 0), (4, 0)), "reflect"), "smaller than"),
                        (lambda: gc.pad(x, 1, "wrap"), "mode 'wrap'"),
                        (lambda: gc.pad(x, ((1, 2),) * 3), "one pair per axis"),
                        (lambda: gc.pad(x, -1), "int >= 0"),
                        (lambda: gc.pad(b, 1), "symbolic dim 'batch'")]:
        with pytest.raises(gc.ShapeError, match=match) as info:
            call()
        assert "test_indexing.py" in str(info.value)


# --- indexing by data ------------------------------------------------------------------


def _ids(high, shape, seed=3, low=None):
    return np.random.default_rng(seed).integers(-high if low is None else low, high, shape)


@pytest.mark.parametrize("idx_dtype", ["int32", "int64"])
def test_take_family_forward(idx_dtype, backend):
    x = gc.input("x", (4, 7))
    X = _data((4, 7))
    i2 = _ids(7, (4, 3)).astype(idx_dtype)
    i1 = _ids(4, (5,)).astype(idx_dtype)
    ig = _ids(7, (3, 2), low=0).astype(idx_dtype)
    idx2 = gc.input("i2", (4, 3), idx_dtype)
    idx1 = gc.input("i1", (5,), idx_dtype)
    cases = [(x[idx1], X[i1]), (gc.take(x, idx2, 1), np.take(X, i2, 1)),
             (gc.take(x, idx1, 0), np.take(X, i1, 0)), (gc.take(x, i1), np.take(X, i1)),
             (gc.take_along_axis(x, idx2, 1), np.take_along_axis(X, i2, 1)),
             (gc.take_along_axis(x, i2[:1], 1), np.take_along_axis(X, i2[:1], 1)),
             (gc.gather(x, 1, ig), torch.gather(torch.tensor(X), 1, torch.tensor(ig).long()).numpy())]
    f = backend.compile([c for c, _ in cases])
    for got, (_, want) in zip(f(x=X, i2=i2, i1=i1), cases):
        np.testing.assert_array_equal(got, want)


def test_scatter_add_is_torchs(backend):
    base, src = gc.input("base", (3, 5)), gc.input("src", (3, 4))
    B, S = _data((3, 5), special=False), _data((3, 4), seed=1)
    I = _ids(5, (3, 4), low=0)  # repeats accumulate
    got = backend.compile(gc.scatter_add(base, 1, I, src))(base=B, src=S)
    want = torch.tensor(B).scatter_add(1, torch.tensor(I), torch.tensor(S)).numpy()
    assert_close(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gather_and_scatter_add_gradients_are_torchs(dtype, backend):
    x = gc.input("x", (4, 6), dtype)
    X = _data((4, 6), dtype, special=False)
    I = _ids(6, (4, 9), low=0)
    G = _data((4, 9), dtype, seed=5, special=False)
    want = _torch_grad(lambda t: torch.gather(t, 1, torch.tensor(I)), X, G)
    assert_close(_grad_of(backend, gc.gather(x, 1, I), x, X, G), want, dtype)
    src = gc.input("src", (4, 9), dtype)
    S = _data((4, 9), dtype, seed=6, special=False)
    Gs = _data((4, 6), dtype, seed=7, special=False)
    base = gc.const(np.zeros((4, 6)), dtype)
    want = _torch_grad(lambda t: torch.zeros(4, 6, dtype=t.dtype).scatter_add(1, torch.tensor(I), t), S, Gs)
    assert_close(_grad_of(backend, gc.scatter_add(base, 1, I, src), src, S, Gs), want, dtype)


def test_take_gradients_match_finite_differences():
    I = _ids(5, (2, 3))
    check_grads(lambda x: gc.sum(gc.take(x, I, 1) ** 2) + gc.sum(x[np.array([0, 0, -1])] * 3),
                {"x": _data((3, 5), "float64", special=False)})
    check_grads(lambda x, s: gc.sum(gc.scatter_add(x, 0, np.abs(I[:, :2]) % 3, s) ** 2),
                {"x": _data((3, 2), "float64", special=False),
                 "s": _data((2, 2), "float64", seed=1, special=False)})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_is_torchs_forward_and_gradient(dtype, backend):
    V, D = 7, 3
    table = gc.param("table", _data((V, D), dtype, special=False), dtype)
    ids = gc.input("ids", ("batch", 5), "int64")
    out = gc.nn.embedding(ids, table)
    assert out.shape == ("batch", 5, D)
    Ids = _ids(V, (2, 5), low=0)
    G = _data((2, 5, D), dtype, seed=4, special=False)
    loss = gc.sum(out * gc.input("g", ("batch", 5, D), dtype))
    f = backend.compile([out] + gc.grad(loss, [table]))
    got, g_table = f(ids=Ids, g=G)
    t = torch.tensor(table.value, requires_grad=True)
    want = F.embedding(torch.tensor(Ids), t)
    want.backward(torch.tensor(G))
    assert_close(got, want.detach().numpy(), dtype)
    assert_close(g_table, t.grad.numpy(), dtype)


def test_embedding_is_a_gather_not_a_one_hot_product():
    table = gc.param("table", np.zeros((1000, 4)))
    out = gc.nn.embedding(gc.input("ids", (8,), "int64"), table)
    ops_used = {n.op for n in gc.Graph(out).nodes}
    assert "gather" in ops_used and not {"one_hot", "matmul"} & ops_used


@pytest.mark.parametrize("shape", [(1, 1), (7, 129), (0, 5), (3, 0)])
def test_indexing_by_data_on_odd_and_empty_shapes(shape, backend):
    x = gc.input("x", shape)
    X = _data(shape)
    n = shape[1]
    I = _ids(n, (shape[0], 2 * n + 1), low=-n) if n else np.zeros((shape[0], 0), np.int64)
    i = gc.input("i", I.shape, "int64")
    f = backend.compile([gc.take_along_axis(x, i, 1) * 1, gc.grad(gc.sum(gc.take_along_axis(x, i, 1)), [x])[0]])
    got, g = f(x=X, i=I)
    np.testing.assert_array_equal(got, np.take_along_axis(X, I, 1))
    want = np.zeros(shape, np.float32)
    np.add.at(want, (np.arange(shape[0])[:, None], I), 1)
    np.testing.assert_array_equal(g, want)


def test_index_type_mistakes_are_clear_errors():
    x = gc.input("x", (4, 3))
    with pytest.raises(gc.DtypeError, match="gather: indices must be int32 or int64"):
        gc.gather(x, 0, gc.input("f", (4, 3)))
    with pytest.raises(gc.ShapeError, match=r"indices of shape \(4, 2\) must match the base of shape \(4, 3\)"):
        gc.scatter_add(x, 0, np.zeros((4, 2), np.int64), gc.input("s", (4, 2)))
    with pytest.raises(gc.ShapeError, match="exceed"):
        gc.gather(x, 0, np.zeros((2, 4), np.int64))
    with pytest.raises(gc.DtypeError, match="indices must be ints"):
        x[np.array([0.5])]


# --- out of range: an error on every backend, and no param changes ---------------------

@pytest.mark.parametrize("bad", [5, -6, 100])
def test_an_out_of_range_index_raises_on_every_backend(bad, backend):
    x = gc.input("x", (3, 5))
    i = gc.input("i", (3, 2), "int64")
    f = backend.compile(gc.take_along_axis(x, i, 1) + 1)
    I = np.array([[0, 1], [2, bad], [-5, 4]])
    with pytest.raises(gc.GraphcError, match=rf"gather: index {bad} is out of range for an "
                                             r"axis of size 5 \(valid: -5 to 4\)"):
        f(x=_data((3, 5)), i=I)
    ok = f(x=np.ones((3, 5), np.float32), i=np.array([[0, -1], [-5, 4], [2, 2]]))
    np.testing.assert_array_equal(ok, np.full((3, 2), 2.0))


def test_a_failed_step_changes_no_param(backend):
    table = gc.param("table", np.arange(12.0).reshape(6, 2))
    count = gc.param("count", 0, dtype="int64")
    ids = gc.input("ids", (4,), "int64")
    loss = gc.sum(gc.nn.embedding(ids, table) ** 2)
    (g,) = gc.grad(loss, [table])
    step = backend.compile(loss, updates={table: table - 0.1 * g, count: count + 1})
    step(ids=np.array([0, 1, 1, 5]))
    before = [table.value.copy(), count.value.copy()]
    with pytest.raises(gc.GraphcError, match="index 6 is out of range"):
        step(ids=np.array([0, 6, 1, 1]))
    np.testing.assert_array_equal(table.value, before[0])
    np.testing.assert_array_equal(count.value, before[1])
