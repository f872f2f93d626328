"""The numpy backend's NumPy kernels: generated code forms, fused kernels, buffer reuse.

Every value is checked against the reference backend; the source-text checks pin the
forms the backend promises (out=, in-place chains, matmuls on transposed views). The
kernels it writes in C where a compiler works are tested in test_c_kernels.py; here they
are NumPy calls throughout, as on a machine without a C compiler.
"""

import re

import numpy as np
import pytest

import graphc as gc
from graphc import dsl
from graphc.backends import blas, ccompile
from graphc.backends import numpy as numpy_backend
from graphc.backends.base import KernelInfo
from graphc.ir import Graph, Node
from graphc.passes.fusion import make_fused
from tests.kernels import hand_kernel

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def numpy_kernels_only(monkeypatch):
    monkeypatch.setattr(ccompile, "available", lambda *_: False)


@pytest.fixture(params=["blas", "no-blas"])
def use_blas(request, monkeypatch):
    """Runs a test with NumPy's BLAS called directly (gemm with alpha and beta) and with
    NumPy calls alone, as on a NumPy whose BLAS graphc cannot find."""
    if request.param == "no-blas":
        monkeypatch.setattr(blas, "find", lambda: None)
    elif blas.find() is None:
        pytest.skip("this NumPy's BLAS has no gemm graphc can call")
    return request.param == "blas"


def run_both(outputs, feeds, opt="O0", options=None):
    ref = gc.compile(outputs, backend="reference", opt="O0")(**feeds)
    fn = gc.compile(outputs, backend="numpy", opt=opt, options=options)
    got = fn(**feeds)
    for a, b in zip(got, ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return fn, got


fused = hand_kernel  # a fused node per the kernel contract, built by hand


# --- plain ops -------------------------------------------------------------------------

def test_every_plain_op_matches_the_reference():
    x = gc.input("x", (3, 4))
    labels = gc.input("labels", (3,), dtype="int64")
    outs = [gc.neg(x), gc.exp(x), gc.log(gc.abs(x) + 1), gc.log1p(gc.abs(x)),
            gc.sqrt(gc.abs(x)), gc.abs(x), gc.sign(x), gc.tanh(x), gc.sigmoid(x * 50),
            gc.relu(x), gc.step(x), gc.cast(x * 3, "int32"), x + 1, x - x.T.T, x * 2,
            x / 3, gc.abs(x) ** 1.5, gc.maximum(x, 0.1), gc.minimum(x, 0.1), x > 0,
            x >= 0, x < 0, x <= 0, gc.eq(x, x), gc.where(x > 0, x, -x), x.sum(axis=1),
            x.max(axis=0, keepdims=True), x.mean(), x.reshape((4, 3)), x.T,
            gc.broadcast_to(x, (2, 3, 4)), gc.expand_dims(x, 1),
            gc.squeeze(gc.expand_dims(x, 0), 0), x[1:, ::2], gc.concat([x, x], axis=0),
            x @ x.T, gc.one_hot(labels, 5), x * gc.cast(labels, "float32").reshape((3, 1))]
    feeds = {"x": RNG.standard_normal((3, 4)).astype(np.float32), "labels": [0, 4, 2]}
    run_both(outs, feeds)


def test_scalars_and_int_dtypes():
    a = gc.input("a", ())
    i = gc.input("i", (4,), dtype="int64")
    outs = [a * 2 + 1, (i * 3).sum(), gc.cast(i, "float64") / 2, (i > 1).sum(), gc.relu(a)]
    run_both(outs, {"a": np.float32(1.5), "i": np.arange(4)})


def test_one_hot_out_of_range_names_the_op():
    y = gc.input("y", (2,), dtype="int64")
    fn = gc.compile(gc.one_hot(y, 3), backend="numpy")
    with pytest.raises(gc.GraphcError, match="one_hot: label 7"):
        fn(y=[1, 7])
    with pytest.raises(gc.GraphcError, match="one_hot: label -1"):
        fn(y=[-1, 0])  # not counted from the end, as NumPy's indexing would


@pytest.mark.parametrize("shape", [(2, 3), (0,), (5,)])
def test_one_hot_of_any_rank_resets_its_buffer_between_calls(shape):
    y = gc.input("y", shape, dtype="int32")
    fn = gc.compile(gc.one_hot(y, 4) * 1, backend="numpy")
    for labels in (RNG.integers(0, 4, shape), RNG.integers(0, 4, shape)):
        np.testing.assert_array_equal(fn(y=labels), np.eye(4, dtype=np.float32)[labels])


# --- fused kernels ---------------------------------------------------------------------

def _mlp_layer():
    x = gc.input("x", ("batch", 6))
    W = gc.param("W", RNG.standard_normal((6, 5)))
    b = gc.param("b", RNG.standard_normal(5))
    return x, W, b


def test_matmul_kernel_runs_its_epilogue_in_place_on_the_output(use_blas):
    x, W, b = _mlp_layer()
    layer = fused("matmul", [x, W, b], lambda i0, i1, i2: gc.relu(i0 @ i1 + i2))
    fn, _ = run_both([layer], {"x": RNG.standard_normal((4, 6))})
    if use_blas:  # the bias goes in first, gemm adds the product to it (beta = 1)
        (out,) = re.findall(r"_gemm\(x, W, (\w+), 1\.0, 1\.0\)", fn.source)
        assert f"np.copyto({out}, b)" in fn.source
    else:
        (out,) = re.findall(r"np\.matmul\(x, W, out=(\w+)\)", fn.source)
        assert f"np.add({out}, b, out={out})" in fn.source
    # relu against an array of zeros: NumPy's maximum is slow against a broadcast number
    assert re.search(rf"np\.maximum\({out}, _z\d+, out={out}\)", fn.source)
    assert fn.stats["kernels"] == 1 and fn.stats["scratch_bytes"] == 0


def test_matmul_kernel_reads_transposed_operands_as_views():
    g = gc.input("g", ("batch", 5))
    x, W, _ = _mlp_layer()
    dx = fused("matmul", [g, W], lambda i0, i1: i0 @ gc.transpose(i1))
    dW = fused("matmul", [x, g], lambda i0, i1: gc.transpose(i0) @ i1)
    fn, _ = run_both([dx, dW], {"g": RNG.standard_normal((4, 5)),
                                "x": RNG.standard_normal((4, 6))})
    assert "np.matmul(g, W.T, out=" in fn.source
    assert "np.matmul(x.T, g, out=" in fn.source
    assert "ascontiguousarray" not in fn.source and ".copy(" not in fn.source


def test_softmax_is_one_reduction_kernel():
    x = gc.input("x", ("batch", 7))
    sm = fused("reduction", [x], lambda i0: gc.nn.softmax(i0))
    fn, _ = run_both([sm], {"x": RNG.standard_normal((3, 7)) * 10})
    assert fn.stats["kernels"] == 1
    assert "np.maximum.reduce(x, axis=(1,), keepdims=True, out=" in fn.source
    assert "np.exp(" in fn.source and "np.add.reduce(" in fn.source


def test_pointwise_dag_body_reuses_scratch():
    x = gc.input("x", (1000,))
    a, b = gc.const(0.5), gc.const(-0.25)
    expr = fused("pointwise", [x], lambda i0: gc.sigmoid(gc.tanh(i0 * a + b) * gc.exp(-i0 * i0))
                 + gc.relu(i0))
    fn, _ = run_both([expr], {"x": RNG.standard_normal(1000) * 3})
    # Two values of the kernel's shape are alive at once at most: one scratch array.
    assert fn.stats["scratch_bytes"] == 1000 * 4
    assert "np.multiply(x, 0.5, out=" in fn.source


def test_fused_body_with_array_consts():
    x = gc.input("x", (2, 3))
    k = fused("pointwise", [x], lambda i0: i0 * gc.const([1.0, 2.0, 3.0]) + gc.const([0.5]))
    run_both([k], {"x": RNG.standard_normal((2, 3))})


def test_kernel_built_with_make_fused_adds_an_array_const():
    # A non-scalar const inside a body has no name in the outer graph; build(graph, dims)
    # is called as gc.compile calls it.
    x = gc.input("x", (4, 3))
    c = gc.const(np.array([1.0, 2.0, 3.0], np.float32))
    k = make_fused("pointwise", [x], lambda i0: i0 + c)
    X = RNG.standard_normal((4, 3)).astype(np.float32)
    (got,) = numpy_backend.build(Graph([k]), {})({x: X})
    np.testing.assert_array_equal(got, X + c.value)


# The chunk loop of a 37-row kernel in chunks of 2 rows, inline or shared out to threads.
CHUNK_LOOPS = {1: ["for _i in range(0, 37, 2):"],
               2: ["for _i in range(_lo, _hi, 2):", "_run_chunks(_kernel, 37, 2, "]}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(37, 3), (37, 1)])
def test_chunked_kernel_reads_a_const_that_spans_its_rows(shape, threads):
    # A body const as tall as the output is read a chunk of rows at a time, as an operand
    # is (it was read whole, and the ufunc could not broadcast it into the chunk).
    chunks = {"chunk_elements": 8, "threads": threads}
    x = gc.input("x", (37, 3))
    c = gc.const(RNG.standard_normal(shape).astype(np.float32))
    k = make_fused("pointwise", [x], lambda i0: gc.tanh(i0 + c) * c)
    fn, _ = run_both([k], {"x": RNG.standard_normal((37, 3)).astype(np.float32)},
                     options=chunks)
    assert all(line in fn.source for line in CHUNK_LOOPS[threads])


def test_sizes_and_numbers_known_at_build_time_are_folded():
    # d mean(x*x)/dx = 2x/n: with static dims the element count is known at the build, so
    # 1/n and the ops on it are numbers in the source, not ufunc calls on a buffer of n.
    x = gc.input("x", (5, 3))
    (g,) = gc.grad(gc.mean(x * x), [x])
    fn, _ = run_both([g], {"x": RNG.standard_normal((5, 3)).astype(np.float32)}, opt="O2")
    assert "np.multiply(0.06666667, x, out=" in fn.source


def test_numbers_of_symbolic_sizes_are_fixed_at_each_binding():
    # With a symbolic batch, 2/n is a number of the frame (one per binding), still no
    # ufunc call on a buffer holding n; every batch size gives the reference's result.
    x = gc.input("x", ("batch", 3))
    (g,) = gc.grad(gc.mean(x * x), [x])
    fn = gc.compile([g], options={"c_kernels": False})
    for n in (5, 1, 9):
        X = RNG.standard_normal((n, 3)).astype(np.float32)
        np.testing.assert_allclose(fn(x=X)[0], 2 * X / X.size, rtol=1e-6)
    assert re.search(r"np\.multiply\((_n\d+), x, out=", fn.source)
    assert "= _number(_r" in fn.source and len(fn._executables) == 1


def test_a_known_number_read_by_a_reduction_is_an_array():
    x = gc.input("x", (5, 3))
    k = fused("reduction", [x, gc.size(x)], lambda i0, i1: gc.sum(
        gc.broadcast_to(1.0 / i1, (5, 3)), axis=1) + gc.sum(i0 * 2.0, axis=1))
    fn, _ = run_both([k], {"x": RNG.standard_normal((5, 3)).astype(np.float32)})
    assert re.search(r"np\.add\.reduce\(_c\d+, axis=\(1,\)", fn.source)


@pytest.mark.parametrize("threads", [1, 2])
def test_large_pointwise_kernels_run_in_chunks(threads):
    chunks = {"chunk_elements": 8, "threads": threads}  # 37 rows: chunks and a tail
    x = gc.input("x", (37, 3))
    col = gc.input("col", (37, 1))
    bias = gc.input("bias", (3,))
    k = fused("pointwise", [x, col, bias], lambda i0, i1, i2: gc.where(
        i0 > 0, gc.tanh(i0 * i1 + i2), gc.broadcast_to(gc.const(0.5), (37, 3))) * gc.exp(i1))
    feeds = {"x": RNG.standard_normal((37, 3)), "col": RNG.standard_normal((37, 1)),
             "bias": RNG.standard_normal(3)}
    fn, _ = run_both([k], feeds, options=chunks)
    assert all(line in fn.source for line in CHUNK_LOOPS[threads]) and "x[_i:_j]" in fn.source
    assert "bias[_i:_j]" not in fn.source and "col[_i:_j]" in fn.source
    if threads == 2:  # each thread has scratch arrays of its own
        (sets,) = re.findall(r"_run_chunks\(_kernel, 37, 2, (.*)\)$", fn.source, re.M)
        first, second = (re.findall(r"_s\d+", part) for part in sets.split("), ("))
        assert first and not set(first) & set(second)


@pytest.mark.parametrize("threads", [1, 2])
def test_maximum_and_minimum_against_a_number_read_a_filled_array(threads):
    chunks = {"chunk_elements": 8, "threads": threads}  # a tail chunk of 1 row
    x = gc.input("x", (37, 3))
    k = fused("pointwise", [x], lambda i0: gc.minimum(gc.relu(i0), 0.5) + gc.maximum(i0, -0.25))
    xs = RNG.standard_normal((37, 3)).astype(np.float32)
    xs[0, :] = [np.nan, -np.inf, np.inf]
    fn, (got,) = run_both([k], {"x": xs}, options=chunks)
    assert re.search(r"np\.minimum\(_b0\[_i:_j\], _z\d+\[:_n\], out=", fn.source)
    assert re.search(r"np\.maximum\(x\[_i:_j\], _z\d+\[:_n\], out=", fn.source)


@pytest.mark.parametrize("threads", [1, 2])
def test_inputs_named_like_the_chunk_loop_locals(threads):
    chunks = {"chunk_elements": 8, "threads": threads}
    i, n = gc.input("i", (37, 3)), gc.input("n", (37, 3))
    k = fused("pointwise", [i, n], lambda i0, i1: gc.tanh(i0) * i1 + i0)
    run_both([k], {"i": RNG.standard_normal((37, 3)), "n": RNG.standard_normal((37, 3))},
             options=chunks)


def test_chunked_kernel_writing_over_its_operand():
    chunks = {"chunk_elements": 8}
    x = gc.input("x", (40, 2))
    t = gc.exp(x)  # its buffer is free for the kernel's output once the kernel read it
    k = fused("pointwise", [t, x], lambda i0, i1: gc.tanh(i0 * 2) * i0 + i1 * i0)
    fn, _ = run_both([k], {"x": RNG.standard_normal((40, 2))}, opt="O0", options=chunks)
    assert "for _i in range(" in fn.source


def test_kernel_whose_operand_shares_its_buffer():
    # The plan may write a kernel's result over an operand that dies there; the body must
    # not clobber that operand before its last read.
    x = gc.input("x", (5,))
    t = gc.exp(x)
    k = fused("pointwise", [t], lambda i0: gc.tanh(i0 * 2) * i0 + i0)
    run_both([k], {"x": RNG.standard_normal(5)})


# --- buffers across calls --------------------------------------------------------------

def test_outputs_are_not_aliased_between_calls():
    x = gc.input("x", ("n",))
    fn = gc.compile([gc.exp(x) * 2, x + 1], backend="numpy")
    first = fn(x=np.zeros(3))
    second = fn(x=np.ones(3))
    np.testing.assert_allclose(first[0], [2, 2, 2])
    np.testing.assert_allclose(second[0], 2 * np.e * np.ones(3), rtol=1e-6)
    third = fn(x=np.ones(5))  # another shape signature: another plan
    assert third[1].shape == (5,)
    np.testing.assert_allclose(first[1], [1, 1, 1])


def test_no_stale_data_between_calls():
    x = gc.input("x", (4,))
    fn = gc.compile([x.max(keepdims=True) + x.sum()], backend="numpy")
    for value in (np.arange(4.0), -np.arange(4.0), np.zeros(4)):
        np.testing.assert_allclose(fn(x=value)[0], [value.max() + value.sum()])


def test_generated_source_is_readable_and_named():
    x = gc.input("x", (2, 3))
    fn = gc.compile(gc.tanh(x) + 1, backend="numpy")
    fn(x=np.zeros((2, 3)))
    assert re.search(r"def _fn_\d+\(_begin_commit, x\):", fn.source)
    assert "# %" in fn.source and "test_numpy.py:" in fn.source
    (kernel,) = fn.kernels  # tanh and add, one fused kernel at O2
    assert isinstance(kernel, KernelInfo) and kernel.kind == "pointwise"
    assert kernel.strategy == "ufuncs" and "not C loops: C is off" in kernel.reason
    assert [n.split("@")[0] for n in kernel.nodes] == ["tanh", "add"]
    assert "test_numpy.py:" in kernel.nodes[0]
    assert all("    " + line in fn.source for line in kernel.source.splitlines())


def test_the_source_uses_the_users_names_and_its_own_cannot_collide_with_them():
    # Generated names begin with `_`; a user's name that does too, or that the code
    # itself reads (np, range), is written as a generated one instead.
    names = ["b1", "b0", "_b0", "_s0", "np", "range", "fn_0", "i", "lambda"]
    xs = [gc.input(name, (37, 3)) for name in names]
    b1 = gc.param("s0", RNG.standard_normal(3))
    out = gc.tanh(sum(xs[1:], xs[0]) * 2 + b1)
    feeds = {name: RNG.standard_normal((37, 3)) for name in names}
    fn, _ = run_both([out, out * 3], feeds, opt="O2",
                     options={"chunk_elements": 8, "threads": 2})
    (header,) = re.findall(r"def _fn_\d+\((.*)\):", fn.source)
    assert header.split(", ") == ["_begin_commit", "b1", "b0", "_in0", "_in1", "_in2",
                                  "_in3", "fn_0", "i", "_in4"]
    assert "s0 = _param0.value" in fn.source and "for _i in range(_lo, _hi, 2)" in fn.source


def test_traceback_shows_the_generated_line():
    y = gc.input("y", (2,), dtype="int64")
    fn = gc.compile(gc.one_hot(y, 3) * 2, backend="numpy")
    with pytest.raises(gc.GraphcError) as info:
        fn(y=[0, 9])
    frames = [f for f in info.traceback if "<graphc:fn_" in str(f.path)]
    assert frames and "_one_hot(" in str(frames[0].statement)


def test_build_can_be_called_on_an_already_scheduled_graph():
    from graphc.passes.schedule import schedule

    x = gc.input("x", (3,))
    graph = schedule(Graph([gc.exp(x) + x]))
    executable = numpy_backend.build(graph, {})
    (out,) = executable({graph.inputs[0]: np.ones(3, np.float32)})
    np.testing.assert_allclose(out, np.e + 1, rtol=1e-6)
    assert isinstance(graph.outputs[0], Node)


@pytest.mark.parametrize("opt", ["O0", "O2"])
def test_kernels_run_in_the_graphs_order_the_backend_schedules_nothing(opt):
    # The O2 pipeline ends with the schedule pass; the backend runs the order it is
    # given. At O0 that is the order written: exp first, where a schedule would run
    # the sum's chain first (its (1000,) temporaries die before exp's result is made).
    x, y = gc.input("x", (1000,)), gc.input("y", (1000,))
    fn = gc.compile(gc.exp(x) + gc.sum(gc.tanh(y) * 2), backend="numpy", opt=opt)
    fn(x=np.zeros(1000), y=np.zeros(1000))
    computed = [n for n in fn.graph.nodes if n.op not in ("input", "param", "const")]
    assert len(fn.kernels) == len(computed)
    assert all(k.extra["node"] is n for k, n in zip(fn.kernels, computed))
    if opt == "O0":
        assert [k.kind for k in fn.kernels] == ["exp", "tanh", "mul", "sum", "add"]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_where_with_a_zero_branch_is_exact(dtype):
    x = gc.input("x", (3, 4), dtype=dtype)
    col = gc.input("col", (3, 1), dtype=dtype)
    keep = gc.where(x > 0, gc.log(gc.cast(x, "float64")) if dtype == "int32" else gc.log(x),
                    0.0)  # log of negatives is nan, but not chosen
    outs = [keep, gc.where(x > 0, 0, x), gc.where(col > 0, x, 0), gc.where(x > 0, 2, 0),
            gc.where(x > 0, x, col)]
    feeds = {"x": np.arange(-5, 7).reshape(3, 4).astype(dtype),
             "col": np.array([[1], [-1], [2]], dtype)}
    fn, got = run_both(outs, feeds)
    assert np.isfinite(got[0]).all() and not np.signbit(got[0]).any()
    assert "np.bitwise_and(" in fn.source and "np.multiply(" in fn.source
    # where(c, a, 0): a's bits times the mask in one integer multiply
    assert re.search(r"np\.multiply\(\w+\.view\(np\.int(32|64)\), \w+, out=", fn.source)


def test_a_numpy_failure_at_run_time_names_the_op_shapes_and_line():
    x = gc.input("x", ("n", 3))
    fn = gc.compile(x.max(0), backend="numpy")
    with pytest.raises(gc.GraphcError, match=r"max failed on operands of shapes \(0, 3\) "
                                             r"\(made at test_numpy.py:\d+") as info:
        fn(x=np.ones((0, 3)))
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --- parameter updates -----------------------------------------------------------------

def _steps(backend, make, calls=3):
    params, outputs, updates, feeds = make()
    fn = gc.compile(outputs, updates=updates, backend=backend)
    results = [[np.array(r) for r in fn(**feeds)] for _ in range(calls)]
    return fn, results, [p.value.copy() for p in params]


def _agree(make):
    _, ref, ref_params = _steps("reference", make)
    fn, got, got_params = _steps("numpy", make)
    for a, b in zip(got + [got_params], ref + [ref_params]):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-6)
    return fn


def test_sgd_writes_new_values_straight_into_the_params(use_blas):
    def make():
        x = gc.input("x", (4, 3))
        W = gc.param("W", np.arange(6.0).reshape(3, 2) / 10)
        loss = gc.sum(gc.tanh(x @ W))
        return [W], [loss], gc.optim.sgd(loss, [W], lr=0.5), {"x": np.ones((4, 3))}

    fn = _agree(make)
    if use_blas:  # W - 0.5 * (x.T @ g): gemm accumulates into W itself
        assert re.search(r"_gemm\(x\.T, \w+, W, -0\.5, 1\.0\)", fn.source)
    else:
        assert re.search(r"np\.subtract\(W, \w+, out=W\)", fn.source)
    assert fn.source.rstrip().endswith(", W]")  # the caller's copy is then a no-op


def test_updates_that_read_other_params_see_their_old_values():
    def make():
        a, b = gc.param("a", [1.0, 2.0]), gc.param("b", [3.0, 4.0])
        return [a, b], [a * 1], {a: a + b, b: b * a}, {}

    _agree(make)


def test_swapping_updates_and_a_param_as_output():
    def make():
        a, b = gc.param("a", [1.0, 2.0]), gc.param("b", [3.0, 4.0])
        return [a, b], [a, b * 2], {a: b, b: a * 3}, {}

    _agree(make)


def test_a_failing_step_leaves_the_params_as_they_were(use_blas):
    x = gc.input("x", (2, 3))
    y = gc.input("y", (2,), dtype="int64")
    W = gc.param("W", np.ones((3, 4)))
    loss = gc.nn.softmax_cross_entropy(x @ W, y)
    step = gc.compile(loss, updates=gc.optim.sgd(loss, [W], lr=0.1), backend="numpy")
    step(x=np.ones((2, 3)), y=[0, 1])
    before = W.value.copy()
    with pytest.raises(gc.GraphcError, match="one_hot"):
        step(x=np.ones((2, 3)), y=[0, 9])
    np.testing.assert_array_equal(W.value, before)
    # written in place, but only after the label check
    assert re.search(r"_gemm\(x\.T, \w+, W, " if use_blas else r"out=W\)", step.source)
    assert step.source.index("_one_hot") < step.source.index("W, -0.1" if use_blas else "out=W)")
