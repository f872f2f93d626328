"""Matmul epilogues done by BLAS: alpha * A @ B + beta * C in one gemm call.

backends/numpy/gemm.py finds the linear runs after a matmul (the structure, checked on
bodies here), backends/blas.py calls NumPy's own gemm (checked against np.matmul), and
the numpy backend writes them (numbers checked against the reference backend, with BLAS
called directly and without). Kernels are NumPy calls here (numpy_kernels_only); how
gemm and C kernels share a matmul kernel is in test_c_kernels.py.
"""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.backends import blas
from graphc.backends.numpy.gemm import gemm_chains
from graphc.backends.lower.kernel import one_element_const
from graphc.ir import SOURCE_OPS, Graph
from tests.backends.test_numpy import (  # noqa: F401 (fixtures)
    fused, numpy_kernels_only, run_both, use_blas)
from tests.strategies import assert_close, run_reference

RNG = np.random.default_rng(3)

needs_blas = pytest.mark.skipif(blas.find() is None,
                                reason="this NumPy's BLAS has no gemm graphc can call")


# --- blas.Gemm: NumPy's own gemm -------------------------------------------------------

def _layouts(rows, cols, dtype):
    """The same matrix as a C-ordered array, a transposed view, and a strided slice."""
    base = RNG.standard_normal((rows, cols)).astype(dtype)
    return {"C": base, "T": np.ascontiguousarray(base.T).T,
            "strided": np.repeat(base, 2, axis=1)[:, ::2]}


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(3, 4, 5), (1, 7, 1), (64, 33, 17), (2, 0, 3)])
def test_gemm_matches_numpy_for_every_operand_layout(dtype, m, k, n):
    gemm = blas.find()
    for a_name, a in _layouts(m, k, dtype).items():
        for b_name, b in _layouts(k, n, dtype).items():
            c = RNG.standard_normal((m, n)).astype(dtype)
            expected = c - 0.25 * (a @ b)
            gemm(a, b, c, -0.25, 1.0)
            np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5,
                                       err_msg=f"A {a_name}, B {b_name}")


@needs_blas
def test_gemm_writes_a_row_product_into_a_vector_and_refuses_a_misfit():
    gemm = blas.find()
    a, b = np.ones((1, 4)), np.arange(8.0).reshape(4, 2)
    c = np.zeros(2)  # (1, 2) elements in a (2,) vector: a bias
    gemm(a, b, c, 1.0, 0.0)
    np.testing.assert_array_equal(c, [12.0, 16.0])
    with pytest.raises(ValueError, match=r"gemm: operands \(1, 4\) float64 @ \(4, 2\)"):
        gemm(a, b, np.zeros(3), 1.0, 0.0)
    with pytest.raises(ValueError, match="do not fit the output"):
        gemm(a, b.astype(np.float32), c, 1.0, 0.0)


# --- gemm_chains: which runs after a matmul are linear ----------------------------------

def _chain(make_body, shapes=((4, 3), (3, 5), (4, 5))):
    ins = [gc.input(f"in{k}", shape) for k, shape in enumerate(shapes)]
    body = Graph([make_body(*ins)])
    steps = [b for b in body.nodes if b.op not in SOURCE_OPS]
    number_of = lambda node: None if one_element_const(node) is None else float(
        one_element_const(node))
    chains = gemm_chains(steps, body.outputs[0], number_of)
    assert len(chains) <= 1
    return ins, next(iter(chains.values()), None)


# (body, alpha, beta, which input is C or None, steps in the run)
LINEAR_RUNS = {
    "sgd update": (lambda a, b, c: c - 0.5 * (a @ b), -0.5, 1.0, 2, 3),
    "bias add": (lambda a, b, c: a @ b + c, 1.0, 1.0, 2, 2),
    "add on the left": (lambda a, b, c: c + a @ b, 1.0, 1.0, 2, 2),
    "scale then subtract C": (lambda a, b, c: (a @ b) / 4 - c, 0.25, -1.0, 2, 3),
    "negate a scaled sum": (lambda a, b, c: -((a @ b + c) * 2), -2.0, -2.0, 2, 4),
    "reshape keeps the order": (lambda a, b, c: gc.reshape(a @ b * 3, (20,)), 3.0, 0.0,
                                None, 3),
}


@pytest.mark.parametrize("name", LINEAR_RUNS)
def test_a_linear_run_after_a_matmul_is_one_gemm(name):
    make, alpha, beta, addend, length = LINEAR_RUNS[name]
    ins, chain = _chain(make)
    assert chain is not None and chain.head.op == "matmul"
    assert (chain.form.alpha, chain.form.beta, chain.length) == (alpha, beta, length)
    assert chain.form.addend is (None if addend is None else ins[addend])


# Near misses: the run stops (or never starts) at the step named.
NOT_LINEAR = {
    "a plain matmul": lambda a, b, c: a @ b,
    "relu is not linear": lambda a, b, c: gc.relu(a @ b),
    "the value read twice": lambda a, b, c: (a @ b) * (a @ b),
    "scaled by an array": lambda a, b, c: (a @ b) * c,
    "divided into a number": lambda a, b, c: 2 / (a @ b),
    "a broadcast grows it": lambda a, b, c: gc.broadcast_to(a @ b, (2, 4, 5)) * 2,
}


@pytest.mark.parametrize("name", NOT_LINEAR)
def test_no_gemm_run_where_the_matmul_is_not_followed_linearly(name):
    _, chain = _chain(NOT_LINEAR[name])
    assert chain is None


def test_a_run_stops_at_a_second_addend():
    _, chain = _chain(lambda a, b, c: (a @ b + c) - c)  # gemm has one C
    assert chain.length == 2 and chain.end.op == "add"


def test_a_run_stops_at_a_value_that_something_else_reads():
    def scaled_read_twice(a, b, c):
        scaled = (a @ b) * 2
        return gc.tanh(scaled) + scaled

    def product_read_twice(a, b, c):
        product = a @ b
        return product * 2 + gc.tanh(product)

    _, chain = _chain(scaled_read_twice)
    assert chain.length == 2 and chain.end.op == "mul"  # the run ends at the shared value
    _, chain = _chain(product_read_twice)
    assert chain is None


def test_a_run_keeps_to_one_dtype_and_to_float_matmuls():
    _, chain = _chain(lambda a, b, c: gc.cast(a @ b, "float64") * 2)
    assert chain is None
    ints = ((4, 3), (3, 5), (4, 5))
    ins = [gc.input(f"in{k}", s, dtype="int64") for k, s in enumerate(ints)]
    body = Graph([(ins[0] @ ins[1]) * 2])
    steps = [b for b in body.nodes if b.op not in SOURCE_OPS]
    assert gemm_chains(steps, body.outputs[0], lambda node: 2.0) == {}


# --- the numpy backend writes them -----------------------------------------------------

def _operands():
    x = gc.input("x", (4, 6))
    W = gc.param("W", RNG.standard_normal((6, 5)))
    C = gc.input("C", (4, 5))
    feeds = {"x": RNG.standard_normal((4, 6)), "C": RNG.standard_normal((4, 5))}
    return x, W, C, feeds


@pytest.mark.parametrize("name", LINEAR_RUNS)
def test_every_linear_run_gives_the_reference_numbers(name, use_blas):
    x, W, C, feeds = _operands()
    make, _, beta = LINEAR_RUNS[name][:3]
    if beta:
        kernel = fused("matmul", [x, W, C], make)
    else:  # no addend: the kernel reads x and W only (operands bind by position)
        kernel = fused("matmul", [x, W], lambda a, b: make(a, b, None))
        del feeds["C"]
    fn, _ = run_both([kernel], feeds)
    assert ("_gemm(" in fn.source) == use_blas


def test_gemm_never_accumulates_into_an_operand_it_reads(use_blas):
    # W's update is written straight into W, and W is also the matmul's left operand:
    # gemm must not accumulate into storage it is reading, so it goes through scratch.
    x = gc.input("x", (5, 5))
    W = gc.param("W", RNG.standard_normal((5, 5)))
    step = gc.compile([gc.sum(x)], updates={W: W - 0.1 * (W @ x)}, backend="numpy")
    start = W.value.copy()
    feed = RNG.standard_normal((5, 5))
    step(x=feed)
    np.testing.assert_allclose(W.value, start - 0.1 * (start @ feed), rtol=1e-5, atol=1e-6)
    gemm = re.search(r"_gemm\(W, x, (\w+), -0\.1, 1\.0\)", step.source)
    assert (gemm is not None) == use_blas
    if gemm:
        assert gemm.group(1) != "W" and f"np.copyto(W, {gemm.group(1)})" in step.source


def small_mlp(rng):
    """(loss, params, feeds) of a 6-8-3 ReLU MLP with softmax cross-entropy, batch 16."""
    x = gc.input("x", ("batch", 6))
    y = gc.input("y", ("batch",), dtype="int64")
    W1, b1 = gc.param("W1", rng.standard_normal((6, 8))), gc.param("b1", np.zeros(8))
    W2, b2 = gc.param("W2", rng.standard_normal((8, 3))), gc.param("b2", np.zeros(3))
    loss = gc.nn.softmax_cross_entropy(gc.relu(x @ W1 + b1) @ W2 + b2, y)
    feeds = {"x": rng.standard_normal((16, 6)), "y": rng.integers(0, 3, 16)}
    return loss, [W1, b1, W2, b2], feeds


def test_an_mlp_sgd_step_updates_weights_and_biases_in_place(use_blas):
    loss, params, feeds = small_mlp(RNG)
    start = [p.value.copy() for p in params]
    losses = {}
    for backend in ("reference", "numpy"):
        for p, value in zip(params, start):
            p.value[...] = value
        step = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.1), backend=backend,
                          opt="O2" if backend == "numpy" else "O0")
        losses[backend] = [float(step(**feeds)) for _ in range(5)]
        finals = [p.value.copy() for p in params]
        if backend == "reference":
            expected = finals
    np.testing.assert_allclose(losses["numpy"], losses["reference"], rtol=1e-6)
    for got, want in zip(finals, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    for W in ("W1", "W2"):
        assert bool(re.search(rf"_gemm\(\w+\.T, \w+, {W}, -0\.1, 1\.0\)", step.source)) == (
            use_blas)


# --- property: random epilogues after a matmul ------------------------------------------

# Steps that may follow the running value v; c is an array of v's shape, k a number.
EPILOGUE_STEPS = {
    "scale": lambda v, c, k: v * k,
    "scale on the left": lambda v, c, k: k * v,
    "divide": lambda v, c, k: v / k,
    "negate": lambda v, c, k: -v,
    "add C": lambda v, c, k: v + c,
    "C plus": lambda v, c, k: c + v,
    "subtract C": lambda v, c, k: v - c,
    "C minus": lambda v, c, k: c - v,
    "add a row": lambda v, c, k: v + c[0],
    "relu": lambda v, c, k: gc.relu(v),
    "add a number": lambda v, c, k: v + k,
}


GEMM_CALLS = []  # how many generated functions called gemm, to check the test reaches it


@pytest.mark.parametrize("direct_blas", [True, False], ids=["blas", "no-blas"])
def test_random_epilogues_after_a_matmul(direct_blas):
    GEMM_CALLS.clear()
    with pytest.MonkeyPatch.context() as patch:
        if not direct_blas:
            patch.setattr(blas, "find", lambda: None)
        check_random_epilogues_after_a_matmul()
    assert (sum(GEMM_CALLS) > 10) == (direct_blas and blas.find() is not None), GEMM_CALLS


@settings(max_examples=60, deadline=None, derandomize=True)
@given(m=st.integers(1, 5), k=st.integers(1, 5), n=st.integers(1, 5),
       transpose=st.tuples(st.booleans(), st.booleans()),
       dtype=st.sampled_from(["float32", "float64"]),
       steps=st.lists(st.tuples(st.sampled_from(sorted(EPILOGUE_STEPS)),
                                st.sampled_from([0.5, -2.0, 3.0])), max_size=5))
def check_random_epilogues_after_a_matmul(m, k, n, transpose, dtype, steps):
    """The numpy backend at O2 gives the reference numbers for a matmul followed by a
    random run of linear and other steps."""
    a = gc.input("a", (k, m) if transpose[0] else (m, k), dtype=dtype)
    b = gc.input("b", (n, k) if transpose[1] else (k, n), dtype=dtype)
    c = gc.input("c", (m, n), dtype=dtype)
    value = (a.T if transpose[0] else a) @ (b.T if transpose[1] else b)
    for name, number in steps:
        value = EPILOGUE_STEPS[name](value, c, number)
    fed = Graph([value]).inputs  # c only if a step reads it
    feeds = {node.name: RNG.standard_normal(node.shape).astype(dtype) for node in fed}
    expected = run_reference([value], feeds)
    fn = gc.compile([value], backend="numpy", opt="O2")
    for _ in range(2):
        assert_close(fn(**feeds)[0], expected[0], dtype, what=fn.source)
    GEMM_CALLS.append("_gemm(" in fn.source)
