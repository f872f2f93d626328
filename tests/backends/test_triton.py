"""The triton backend through Triton's CPU interpreter, against the numpy backend.

Every kernel kind on odd sizes: pointwise (broadcasts and layout ops as index
arithmetic), reductions along any axis (softmax, log_softmax and logsumexp as one
kernel, with one block per row and with the looped multi-block path), and matmuls with
epilogues (transposed operands, batch broadcasting, sizes that are not multiples of the
block). Kernels are built with the fusion pass's `make_fused`, so each test pins the
kernel it means to generate.
"""

import dataclasses
import time

import numpy as np
import pytest
from hypothesis import given, settings

import graphc as gc
from graphc import ops
from graphc.backends import numpy as numpy_backend
from graphc.backends import reference as reference_backend
from graphc.backends import triton as triton_backend
from graphc.backends.triton import device, host
from graphc.backends.triton import program as programs
from graphc.compile import check_feeds
from graphc.ir import Graph, Node
from graphc.passes import optimize
from graphc.passes.fusion import make_fused
from tests.graphc import test_deep_graphs as deep
from tests.kernels import hand_kernel
from tests.strategies import assert_close, graphs

RNG = np.random.default_rng(0)


def options(max_row_block=None, **knobs):
    """The triton backend's Options (max_row_block=None: the default)."""
    if max_row_block is not None:
        knobs["max_row_block"] = max_row_block
    return triton_backend.Options(**knobs)


def run_both(outputs, feeds, oracle=numpy_backend, **build_options):
    """Run `outputs` (unoptimized, so every fused node is exactly as built) on the triton
    and the oracle backend; assert they agree; return the triton executable."""
    graph = Graph(outputs)
    arrays, dims = check_feeds(graph.inputs, feeds)
    tri = triton_backend.build(graph, dims, options(**build_options))
    expected = oracle.build(graph, dims)(arrays)
    for k, (got, want) in enumerate(zip(tri(arrays), expected)):
        assert got.dtype == want.dtype and got.shape == want.shape, f"output {k}"
        tol = 1e-5 if got.dtype.kind == "f" else 0
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=f"output {k}")
    return tri


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def kinds(executable):
    return [k.kind for k in executable.kernels]


# --- pointwise ---------------------------------------------------------------------------

def test_every_plain_op_is_a_kernel_of_its_own():
    x = gc.input("x", (3, 4))
    labels = gc.input("labels", (3,), dtype="int64")
    outs = [gc.neg(x), gc.exp(x), gc.log(gc.abs(x) + 1), gc.log1p(gc.abs(x)),
            gc.sqrt(gc.abs(x)), gc.abs(x), gc.sign(x), gc.tanh(x), gc.sigmoid(x * 50),
            gc.relu(x), gc.step(x), gc.cast(x * 3, "int32"), x + 1, x * 2, x / 3,
            gc.abs(x) ** 1.5, x ** 3, gc.maximum(x, 0.1), gc.minimum(x, 0.1), x > 0,
            x >= 0, x < 0, x <= 0, gc.eq(x, x), gc.where(x > 0, x, -x), x.sum(axis=1),
            x.max(axis=0, keepdims=True), x.mean(), x.reshape((4, 3)), x.T,
            gc.broadcast_to(x, (2, 3, 4)), gc.expand_dims(x, 1), x[1:, ::2],
            gc.concat([x, x * 2], axis=1), x @ x.T, gc.one_hot(labels, 5),
            x * gc.cast(labels, "float32").reshape((3, 1))]
    tri = run_both(outs, {"x": randn(3, 4), "labels": np.array([0, 4, 2])})
    assert tri.stats["kernels"] == len(tri.kernels) > 30


def test_scalars_int_and_bool_dtypes():
    a = gc.input("a", ())
    i = gc.input("i", (4,), dtype="int64")
    outs = [a * 2 + 1, (i * 3).sum(), gc.cast(i, "float64") / 2, (i > 1).sum(), gc.relu(a),
            i.max(), gc.where(i > 1, i, 0)]
    run_both(outs, {"a": np.float32(1.5), "i": np.arange(4)})


@pytest.mark.parametrize("n", [1, 7, 129, 1000])
def test_fused_pointwise_broadcasts_and_layout_ops_are_index_arithmetic(n):
    x = gc.input("x", (7, n))
    bias = gc.input("bias", (n,))
    col = gc.input("col", (7, 1))
    xt = gc.input("xt", (n, 7))

    def body(x, bias, col, xt):
        y = gc.tanh(x * bias) + gc.transpose(xt) - gc.sigmoid(col)
        flat = gc.reshape(y, (7 * n,))                    # contiguous: keeps the flat index
        back = gc.reshape(gc.transpose(gc.reshape(flat, (7, n))), (n, 7))
        return gc.transpose(back) * gc.log1p(gc.abs(x)) + gc.broadcast_to(bias, (7, n))

    k = make_fused("pointwise", [x, bias, col, xt], body)
    tri = run_both([k], {"x": randn(7, n), "bias": randn(n), "col": randn(7, 1),
                         "xt": randn(n, 7)})
    assert kinds(tri) == ["pointwise"]
    assert "tl.load" in tri.source and ".view(" not in tri.source   # no copies, no views


def test_pointwise_kernel_with_consts_slices_and_concat():
    x = gc.input("x", (5, 9))
    table = gc.const(np.arange(9, dtype=np.float32))          # not a scalar: an operand
    k = make_fused("pointwise", [x], lambda x: gc.where(x > 0, x * table, 0.5) + x ** 2)
    parts = gc.concat([x[:, 1:4], x[:, ::3], x[::2, :3].sum(axis=0, keepdims=True).T.T], axis=0)
    # a piece that is a broadcast number: its mask reads a lane its address does not
    padded = gc.concat([gc.broadcast_to(gc.const(np.float32(0.5)), (5, 2)), x], axis=1)
    # the numpy backend does not take array consts inside bodies yet: the reference does
    tri = run_both([k, parts, padded], {"x": randn(5, 9)}, oracle=reference_backend)
    assert len(tri.kernels) >= 3


# --- reductions -------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axes", [((7, 129), (1,)), ((7, 129), (0,)),
                                        ((3, 7, 5), (0, 2)), ((1,), (0,)), ((1000,), (0,))])
@pytest.mark.parametrize("op", ["sum", "max"])
def test_reductions_along_any_axes(shape, axes, op):
    x = gc.input("x", shape)
    reduce = getattr(gc, op)
    run_both([reduce(x, axis=axes), reduce(x, axis=axes, keepdims=True)], {"x": randn(*shape)})


COMPOSITES = {
    "softmax": gc.nn.softmax,
    "log_softmax": gc.nn.log_softmax,
    "logsumexp": gc.nn.logsumexp,
}


@pytest.mark.parametrize("name", list(COMPOSITES))
@pytest.mark.parametrize("shape,axis,max_row_block", [
    ((7, 129), -1, None),      # a row fits one block
    ((129, 7), 0, None),       # reduce along the leading axis (strided rows)
    ((7, 129), -1, 32),        # rows of 129 in blocks of 32: the looped path
    ((3, 1000), 1, 256),
    ((5, 1), -1, None),
])
def test_softmax_family_is_one_kernel(name, shape, axis, max_row_block):
    x = gc.input("x", shape)
    k = make_fused("reduction", [x], lambda x: COMPOSITES[name](x, axis=axis))
    tri = run_both([k], {"x": randn(*shape) * 10}, max_row_block=max_row_block)
    assert kinds(tri) == ["reduction"]
    looped = "for r0 in range" in tri.source
    assert looped == (max_row_block is not None and shape[axis] > max_row_block)


def test_reduction_kernel_with_a_reduced_shape_operand():
    """softmax backward: y * (g - sum(g * y, keepdims)) reads a row-shaped operand too."""
    y, g, s = gc.input("y", (7, 33)), gc.input("g", (7, 33)), gc.input("s", (7, 1))
    k = make_fused("reduction", [y, g, s],
                   lambda y, g, s: y * (g - (g * y).sum(axis=1, keepdims=True)) + s)
    for block in (None, 16):
        run_both([k], {"y": randn(7, 33), "g": randn(7, 33), "s": randn(7, 1)},
                 max_row_block=block)


# --- matmul -----------------------------------------------------------------------------

@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 33, 129), (129, 7, 1), (65, 100, 17)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_matmul_with_epilogue(m, k, n, trans_a, trans_b):
    a = gc.input("a", (k, m) if trans_a else (m, k))
    b = gc.input("b", (n, k) if trans_b else (k, n))
    bias, g = gc.input("bias", (n,)), gc.input("g", (m, n))

    def body(a, b, bias, g):
        h = (a.T if trans_a else a) @ (b.T if trans_b else b) + bias
        return gc.where(h > 0, g, 0.0) + gc.relu(h)         # bias, relu, the ReLU mask

    kernel = make_fused("matmul", [a, b, bias, g], body)
    tri = run_both([kernel], {"a": randn(*a.shape), "b": randn(*b.shape), "bias": randn(n),
                              "g": randn(m, n)})
    assert kinds(tri) == ["matmul"] and "tl.dot" in tri.source


def test_batched_matmul_broadcasts_batch_dims():
    a, b = gc.input("a", (3, 7, 5)), gc.input("b", (5, 9))
    c = gc.input("c", (2, 1, 9, 4))
    swap = (0, 1, 3, 2)
    outs = [a @ b, make_fused("matmul", [a, b], lambda a, b: gc.exp(a @ b)),
            make_fused("matmul", [c, b], lambda c, b: gc.transpose(c, swap) @ gc.transpose(b))]
    run_both(outs, {"a": randn(3, 7, 5), "b": randn(5, 9), "c": randn(2, 1, 9, 4)})


def test_unsupported_body_is_split_and_says_why():
    x, w = gc.input("x", (4, 6)), gc.input("w", (6, 3))
    # not a valid matmul kernel (its epilogue transposes): built by hand, not make_fused
    node = hand_kernel("matmul", [x, w], lambda x, w: gc.transpose(x @ w) * 2)
    tri = run_both([node], {"x": randn(4, 6), "w": randn(6, 3)})
    assert len(tri.kernels) > 1 and "split" in tri.kernels[0].reason
    # the lowering's own reason, as every generating backend gives it
    assert "the matmul's result is read at a permuted index" in tri.kernels[0].reason
    assert tri.stats["splits"]


# --- properties and the compile driver --------------------------------------------------

@pytest.mark.parametrize("dtype,level", [("float32", "O0"), ("float64", "O0"),
                                         ("float32", "O2")])
def test_random_graphs_agree_with_numpy(dtype, level):
    """Plain ops (O0), and the kernels the fusion pass makes of random graphs (O2)."""
    @settings(max_examples=15)
    @given(graphs(dtype=dtype, max_ops=8))
    def check(case):
        outputs, feeds = case
        graph = optimize(Graph(outputs), level)
        arrays, dims = check_feeds(graph.inputs, feeds)
        tri = triton_backend.build(graph, dims, options())
        for got, want in zip(tri(arrays), numpy_backend.build(graph, dims)(arrays)):
            assert got.dtype == want.dtype
            assert_close(got, want, dtype, what=tri.source)

    check()


def test_float64_matmul_and_softmax_kernels():
    a, b = gc.input("a", (9, 17), "float64"), gc.input("b", (17, 5), "float64")
    k = make_fused("matmul", [a, b], lambda a, b: gc.tanh(a @ b))
    s = make_fused("reduction", [a], lambda a: gc.nn.log_softmax(a, axis=0))
    tri = run_both([k, s], {"a": RNG.standard_normal((9, 17)), "b": RNG.standard_normal((17, 5))})
    assert "tl.float64" in tri.source


def test_compile_exposes_kernels_source_and_stats():
    x = gc.input("x", ("batch", 5))
    W = gc.param("W", randn(5, 3))
    fn = gc.compile([gc.nn.softmax(gc.relu(x @ W))], backend="triton")
    (got,) = fn(x=randn(4, 5))
    assert got.shape == (4, 3) and np.allclose(got.sum(axis=1), 1, atol=1e-6)
    assert "def run(s, b, c, w, collectives)" in fn.source and "@triton.jit" in fn.source
    for k in fn.kernels:
        assert k.strategy == "triton" and k.nodes and {"grid", "blocks"} <= set(k.extra)
        assert k.source in fn.source
    assert fn.stats["kernels"] == len(fn.kernels)


def test_index_arithmetic_is_int64_only_when_sizes_need_it():
    x = gc.input("x", ("n",))
    graph = Graph([gc.exp(x) + 1, x.sum()])
    small = programs.generate(graph, {"n": 1000})
    big = programs.generate(graph, {"n": 2**31 + 5})
    assert "tl.int64" not in host.module_source(small, "cpu", autotune=False)
    assert all(".to(tl.int64)" in k.source for k in big.kernels)


DEEP_GRAPHS = {"chain": lambda: deep.chain(deep.N)[1], "wide": lambda: deep.wide(deep.N // 2)[1],
               "shared": lambda: deep.shared(3000)}


@pytest.mark.parametrize("name", sorted(DEEP_GRAPHS))
def test_a_graph_of_thousands_of_nodes_generates_one_kernel_without_recursion(name):
    """test_deep_graphs.py's graphs, generated (not run: the interpreter takes seconds to
    rewrite a kernel of thousands of ops) under its shallow stack and CPU time limit."""
    with deep.shallow_stack():
        graph = optimize(Graph(DEEP_GRAPHS[name]()), "O2")
        start = time.process_time()
        program = programs.generate(graph, {"batch": 2})
        assert time.process_time() - start < deep.SECONDS
    assert len(program.kernels) == 1 and program.kernels[0].source.count("tl.store") == 1


def test_autotuned_program_runs_with_every_kernel_tuned():
    """The GPU host path (configs chosen by triton.autotune, block sizes from the chosen
    config through the grid lambdas), run in the interpreter with a CPU stopwatch as the
    benchmark, since triton's own needs a GPU."""
    x, w = gc.input("x", (7, 129)), gc.input("w", (129, 33))
    graph = Graph([gc.nn.softmax(gc.relu(x @ w) * 2), (x * x).sum(axis=0)])
    arrays, dims = check_feeds(graph.inputs, {"x": randn(7, 129), "w": randn(129, 33)})
    executable = triton_backend.build(graph, dims, options(autotune=True))
    program = executable.program

    def cpu_bench(kernel_call, quantiles):
        start = time.perf_counter()
        kernel_call()
        return [(time.perf_counter() - start) * 1e3] * len(quantiles)

    tuners = [getattr(executable.module, k.name) for k in program.kernels]
    for tuner in tuners:
        tuner.do_bench = cpu_bench      # do_bench is a cached property: this overrides it
    expected = numpy_backend.build(graph, dims)(arrays)
    for got, want in zip(executable(arrays), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert all(tuner.best_config is not None for tuner in tuners)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_matmul_multiplies_the_tiles_out(dtype):
    """tl.dot takes no int32/int64 tiles: their products are summed over K instead, in
    the result dtype (int32 wraps as NumPy's matmul does). K = 70 takes three K blocks."""
    a, b = gc.input("a", (3, 5, 70), dtype), gc.input("b", (70, 9), "int32")
    k = make_fused("matmul", [a, b], lambda a, b: (a @ b) * 3 + 1)
    big = np.iinfo(np.int32).max // 50
    run_both([a @ b, k], {"a": RNG.integers(-big, big, (3, 5, 70)).astype(dtype),
                          "b": RNG.integers(-9, 9, (70, 9)).astype(np.int32)})


# --- reductions that read other reductions, across blocks (variance) --------------------

VARIANCE_CASES = [((4097,), None, None), ((15, 25, 35), None, None), ((7, 129), 1, 32),
                  ((129, 7), 0, 16), ((3, 1000), 1, 256), ((5, 33), None, 16)]


@pytest.mark.parametrize("shape,axis,max_row_block", VARIANCE_CASES)
def test_a_reduction_of_a_reduction_is_right_on_the_looped_path(shape, axis, max_row_block):
    """sum((x - mean(x))**2): two sums in one kernel, the second reading the first. On
    the looped path each needs its own accumulator (they once shared one: the variance
    of 4097 elements came out as -60, and on (15, 25, 35) as sum(x)); so do three
    reductions of two kinds, each reading the ones before."""
    x = gc.input("x", shape)
    count = int(np.prod(shape)) if axis is None else shape[axis]

    def variance(x):     # (gc.mean's size op is no kernel member: divide by the count)
        return gc.sum((x - gc.sum(x, axis=axis, keepdims=True) / count) ** 2, axis=axis)

    def spread(x):
        return gc.max(x - gc.max(x, axis, keepdims=True) - gc.sum(x, axis, keepdims=True), axis)

    kernels = [make_fused("reduction", [x], variance), make_fused("reduction", [x], spread)]
    value = randn(*shape) * 3 + 1
    arrays, dims = check_feeds([x], {"x": value})
    tri = triton_backend.build(Graph(kernels), dims, options(max_row_block))
    assert kinds(tri) == ["reduction"] * 2 and "for r0 in range" in tri.source   # looped
    v = value.astype(np.float64)
    want = [((v - v.mean(axis=axis, keepdims=True)) ** 2).sum(axis=axis),
            (v - v.max(axis=axis, keepdims=True) - v.sum(axis=axis, keepdims=True)).max(axis)]
    for got, expected in zip(tri(arrays), want):
        np.testing.assert_allclose(got, expected, rtol=1e-4)
    # and as users write it, through the whole pipeline
    got = gc.compile(variance(x), backend="triton")(x=value)
    np.testing.assert_allclose(got, want[0], rtol=1e-4)


@pytest.mark.parametrize("max_row_block", [None, 16])
def test_max_and_sum_of_bools(max_row_block):
    """A max of bools is an any (accumulated as int8: it once failed to generate with
    "Invalid integer data type 'b'"); a sum of bools counts them in int64."""
    b = gc.input("b", (7, 129), "bool")
    outs = [gc.max(b, axis=1), gc.max(b, axis=0, keepdims=True), gc.max(b), gc.sum(b, axis=1),
            gc.sum(b)]
    value = RNG.standard_normal((7, 129)) > 1.5
    value[3] = False
    run_both(outs, {"b": value}, max_row_block=max_row_block)


@pytest.mark.parametrize("max_row_block", [None, 16])
def test_max_lets_nan_win_on_both_reduction_paths(max_row_block):
    x = gc.input("x", (4, 100))
    value = randn(4, 100)
    value[1, 57], value[2, 0], value[2, 99] = np.nan, np.nan, np.inf
    value[3, :] = -np.inf
    run_both([gc.max(x, axis=1), gc.max(x, axis=0), gc.nn.logsumexp(x, axis=1)],
             {"x": value}, oracle=reference_backend, max_row_block=max_row_block)


# --- one_hot labels out of range ------------------------------------------------------

def _label_error(backend, outputs, feeds, *build_options):
    graph = Graph(outputs)
    arrays, dims = check_feeds(graph.inputs, {n.name: feeds[n.name] for n in graph.inputs})
    with pytest.raises(gc.errors.GraphcError) as info:
        backend.build(graph, dims, *build_options)(arrays)
    return str(info.value)


@pytest.mark.parametrize("max_row_block", [None, 16])
def test_a_label_out_of_range_raises_from_any_kernel_holding_the_one_hot(max_row_block):
    """The kernel stores each bad label in a check buffer; the host raises the numpy
    backend's error for the first one, in any kernel kind and on the looped path."""
    labels, z = gc.input("labels", (6,), "int64"), gc.input("z", (6, 40))
    hot = gc.one_hot(labels, 40)
    fused = [hand_kernel("pointwise", [labels], lambda l: gc.one_hot(l, 40) * 2.0),
             hand_kernel("reduction", [labels, z],
                         lambda l, z: (gc.one_hot(l, 40) * z).sum(axis=1))]
    feeds = {"labels": np.array([0, 39, 41, 3, -2, 45]), "z": randn(6, 40)}
    for outs in ([hot], [fused[0]], [fused[1]]):
        got = _label_error(triton_backend, outs, feeds, options(max_row_block))
        want = _label_error(numpy_backend, [hot], feeds)
        assert got.split(" (made at")[0] == want.split(" (made at")[0]
        assert got.startswith("one_hot: label 41 is outside [0, 40) (made at test_triton.py:")
    good = dict(feeds, labels=np.array([0, 39, 1, 3, 2, 5]))
    run_both([hot, fused[1]], good, max_row_block=max_row_block)


# --- index arithmetic and the triton version -----------------------------------------

@pytest.mark.parametrize("n,index_dtype", [(2**31 - 1024, "int32"), (2**31 - 1023, "int64"),
                                           (2**31 - 5, "int64")])
def test_index_arithmetic_widens_when_a_tail_lane_would_pass_int32(n, index_dtype):
    """n elements fit int32, but the last block's tail lanes compute offsets up to the
    next multiple of the block (1024): past 2**31 - 1 they would wrap to negative
    offsets and pass the `offs < total` mask. (Only generated here, never run.)"""
    x = gc.input("x", ("n",))
    program = programs.generate(Graph([gc.exp(x) + 1, x.sum()]), {"n": n})
    assert {k.index_dtype for k in program.kernels} == {index_dtype}
    assert all((".to(tl.int64)" in k.source) == (index_dtype == "int64")
               for k in program.kernels)


def test_matmul_index_arithmetic_counts_the_padded_tiles():
    a, b = gc.input("a", (2**16 + 1, 8)), gc.input("b", (8, 2**15 - 1))   # m * n < 2**31
    (kernel,) = programs.generate(Graph([a @ b]), {}).kernels
    assert kernel.index_dtype == "int64"        # (m + 63) * (n + 1) passes 2**31


@pytest.mark.parametrize("version,ok", [("3.4.0", False), ("3.5.1", False), ("3.6.0", True),
                                        ("3.10.0+git1234", True)])
def test_an_old_triton_is_refused_with_what_to_install(monkeypatch, version, ok):
    import triton
    monkeypatch.setattr(triton, "__version__", version)
    if ok:
        device.check()
        return
    with pytest.raises(gc.errors.BackendUnavailable) as info:
        device.check()
    assert f"triton >= 3.6, and triton {version} is installed" in str(info.value)
    assert "pip install -U 'graphc[triton]'" in str(info.value)


# --- what the shared loop nests make possible -------------------------------------------

@pytest.mark.parametrize("max_row_block", [None, 4])
def test_a_middle_axis_reduction_is_one_kernel(max_row_block):
    """softmax over the middle axis of (3, 7, 5): rows are the kept axes (0, 2) flattened,
    read 5 apart along the row; with blocks of 4, the looped path."""
    x = gc.input("x", (3, 7, 5))
    k = make_fused("reduction", [x], lambda x: gc.nn.softmax(x, axis=1))
    tri = run_both([k], {"x": randn(3, 7, 5) * 5}, oracle=reference_backend,
                   max_row_block=max_row_block)
    assert kinds(tri) == ["reduction"] and not tri.stats["splits"]
    assert ("for r0 in range" in tri.source) == (max_row_block is not None)


@pytest.mark.parametrize("max_row_block", [None, 16])
def test_a_reduction_over_two_axes_with_a_full_shaped_result_is_one_kernel(max_row_block):
    """Batch-norm's centring over axes (0, 2) of (3, 7, 11), a row of 33 elements that are
    not adjacent in memory, scaled by a second operand: one kernel (block crossing with
    blocks of 16)."""
    x, g = gc.input("x", (3, 7, 11)), gc.input("g", (1, 7, 1))

    def centred(x, g):
        mean = gc.sum(x, axis=(0, 2), keepdims=True) / 33.0
        return (x - mean) * g / gc.sqrt(gc.sum((x - mean) ** 2, axis=(0, 2), keepdims=True))

    k = hand_kernel("reduction", [x, g], centred)
    tri = run_both([k], {"x": randn(3, 7, 11) * 3 + 1, "g": randn(1, 7, 1)},
                   oracle=reference_backend, max_row_block=max_row_block)
    assert kinds(tri) == ["reduction"] and not tri.stats["splits"]


def test_transposed_and_sliced_operands_are_read_in_place():
    """Plain transposes and slices are views: the kernels that read them index the
    buffers they view, so they launch no copy of their own."""
    x, g = gc.input("x", (9, 5)), gc.input("g", (9, 7))
    y = gc.input("y", (5, 9))
    outs = [x.T @ g, gc.exp(x[1::3, ::2]), x.T * y, gc.relu(gc.transpose(y[:, 1::2]))]
    tri = run_both(outs, {"x": randn(9, 5), "g": randn(9, 7), "y": randn(5, 9)},
                   oracle=reference_backend)
    assert kinds(tri) == ["matmul", "pointwise", "pointwise", "pointwise"]
    assert tri.stats["views"] == 5


def test_a_result_that_is_a_view_is_its_base_seen_through_it():
    x = gc.input("x", (4, 6))
    doubled = x * 2
    run_both([doubled.T, doubled[::2, 1:], gc.broadcast_to(doubled.sum(axis=0), (3, 6)), x.T],
             {"x": randn(4, 6)}, oracle=reference_backend)


def test_a_kernel_that_moves_elements_after_elementwise_ops_is_not_run_in_place():
    """transpose(exp(p)): element (i, j) reads p at (j, i). Written over p in place, the
    programs would read elements other programs had already overwritten."""
    x = gc.input("x", (40, 40))
    k = make_fused("pointwise", [x * 2], lambda p: gc.transpose(gc.exp(p)))
    run_both([k], {"x": randn(40, 40)}, oracle=reference_backend)


def test_an_op_the_backend_lacks_is_named_at_build_time(monkeypatch):
    """An op of the table with no Triton form (a new row, here a copy of exp's) is
    refused when its kernel is generated, alone or fused, naming the op (never a
    KeyError)."""
    monkeypatch.setitem(ops.OPS, "erfinv", dataclasses.replace(ops.OPS["exp"], name="erfinv"))
    x = gc.input("x", (3,))
    alone = Node("erfinv", (x,), {}, x.type)
    fused = hand_kernel("pointwise", [x], lambda x: Node("erfinv", (x * 2,), {}, x.type) + 1)
    for node in (alone, fused):
        with pytest.raises(gc.errors.GraphcError) as info:
            programs.generate(Graph([node]), {})
        assert str(info.value).startswith("the triton backend cannot generate erfinv on f32[")
        assert "erfinv has no Triton form" in str(info.value)
