"""gc.random and gc.nn.dropout (issue 15): Philox-4x32-10 against Random123's known
answers and Triton's own tl.randint; the same bits on every backend at odd and zero sizes;
the distributions' statistics; keys advanced by a step's updates (and not by a failed
one); draws never merged, folded or fused; dropout against torch with the same mask.

(numpy's own np.random.Philox is Philox-4x64-10, a different function of 64-bit words:
its outputs cannot be compared with 4x32's, so the known-answer vectors stand in.)"""

import numpy as np
import pytest
import torch

import graphc as gc
from graphc import ops, philox
from graphc.node import apply
from graphc.passes import optimize
from graphc.passes.simplify import RULES_BY_OP
from tests.backends.test_triton_aot import assert_compiled_without_spills, compile_graph
from tests.conftest import BACKENDS
from tests.torch_like import assert_like_torch

REFERENCE = BACKENDS[0]

SIZES = [1, 7, 129, 4097, 0]
KEY = np.array([2**40 + 12345, 6], np.int64)


# --- the generator itself ------------------------------------------------------------

# Random123's kat_vectors for philox4x32_10: counter words, key words, the output words
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, want", KNOWN_ANSWERS)
def test_philox_known_answers(counter, key, want):
    assert tuple(int(w) for w in philox.philox4x32(counter, key)) == want


def test_philox_vectorized_is_each_element_alone():
    """Element i of a draw is Philox of the counter (i lo, i hi, stream lo, stream hi)."""
    key = np.array([-5, 2**33 + 7], np.int64)   # seed and stream as 64-bit bit patterns
    w0, w1 = philox.words(key, 5)
    seed, stream = key.view(np.uint64)
    for i in range(5):
        one = philox.philox4x32((i, 0, int(stream) & 0xFFFFFFFF, int(stream) >> 32),
                                (int(seed) & 0xFFFFFFFF, int(seed) >> 32))
        assert (int(one[0]), int(one[1])) == (int(w0[i]), int(w1[i]))


def test_triton_randint_is_our_draw_on_stream_zero():
    """Triton's tl.randint(seed, offset) (a 64-bit offset) gives word 0 of our draw."""
    triton = pytest.importorskip("triton")
    tl = pytest.importorskip("triton.language")

    @triton.jit
    def randint_kernel(out_ptr, seed, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
        tl.store(out_ptr + offs, tl.randint(seed, offs).to(tl.int64) & 0xFFFFFFFF,
                 mask=offs < n)

    n, seed = 300, 2**35 + 77
    out = torch.zeros(n, dtype=torch.int64)
    randint_kernel[(triton.cdiv(n, 128),)](out, seed, n, BLOCK=128)
    w0, _ = philox.words(np.array([seed, 0], np.int64), n)
    np.testing.assert_array_equal(out.numpy(), w0.astype(np.int64))


# --- the same bits on every backend ----------------------------------------------------

# a seed and a stream of 2**63 or more (negative as int64 bit patterns): the key's words
# are read as unsigned halves on every backend
BIG_KEY = np.array([2**64 - 3, 2**63 + 5], np.uint64).view(np.int64)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("key_value", [KEY, BIG_KEY], ids=["key", "big_key"])
def test_draws_are_the_same_bits_on_every_backend(backend, size, key_value):
    """float32, float64 and raw draws of a symbolic shape, bit for bit as philox.draw."""
    x = gc.input("x", ("batch", 3))
    key = gc.param("key", key_value, "int64")
    draws = [gc.random.uniform(key, x.shape), gc.random.uniform(key, x.shape, "float64"),
             gc.random.bits(key, x.shape)]
    # (x among the outputs: a dim is bound by an input of the graph)
    got = backend.compile(draws + [x * 2])(x=np.zeros((size, 3), np.float32))
    for dtype, value in zip(("float32", "float64", "int64"), got):
        want = philox.draw(key_value, (size, 3), dtype)
        assert value.dtype == want.dtype and value.shape == (size, 3)
        np.testing.assert_array_equal(value, want, err_msg=dtype)


def test_a_draw_is_the_same_for_its_first_rows_whatever_the_batch():
    """Element i's bits depend on i only: a larger batch extends the smaller one's."""
    x = gc.input("x", ("batch", 5))
    f = gc.compile([gc.random.uniform(gc.param("key", KEY, "int64"), x.shape), x * 2])
    small, large = f(x=np.zeros((3, 5), np.float32))[0], f(x=np.zeros((8, 5), np.float32))[0]
    np.testing.assert_array_equal(large[:3], small)


@pytest.mark.parametrize("draw", ["normal", "bernoulli", "split"])
def test_composite_draws_agree_with_the_reference_exactly(backend, draw):
    key = gc.param("key", KEY, "int64")
    build = {"normal": lambda: gc.random.normal(key, (129,), "float64"),
             "bernoulli": lambda: gc.random.bernoulli(key, 0.25, (4097,)),
             "split": lambda: gc.random.uniform(gc.random.split(key, 3)[2], (7,))}[draw]
    want = gc.compile(build(), backend="reference", opt="O0")()
    got = backend.compile(build())()
    np.testing.assert_array_equal(got, want)


# --- the distributions -----------------------------------------------------------------

N = 200_000


def _values(node):
    return gc.compile(node, backend="numpy")()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_lies_in_0_1_with_uniform_moments(dtype):
    u = _values(gc.random.uniform(gc.param("key", KEY, "int64"), (N,), dtype))
    assert u.dtype == dtype and u.min() >= 0 and u.max() < 1
    # 5 standard errors: mean 1/2 (sd 1/sqrt(12 N)), variance 1/12 (sd 1/sqrt(180 N))
    assert abs(u.mean() - 0.5) < 5 / np.sqrt(12 * N)
    assert abs(u.var() - 1 / 12) < 5 / np.sqrt(180 * N)
    counts = np.histogram(u, bins=20, range=(0, 1))[0]      # chi-squared, 19 dof
    assert ((counts - N / 20) ** 2 / (N / 20)).sum() < 50   # p ~ 1e-4


def test_uniform_range():
    u = _values(gc.random.uniform(gc.param("key", KEY, "int64"), (N,), minval=-2.0, maxval=3.0))
    assert u.min() >= -2 and u.max() < 3 and abs(u.mean() - 0.5) < 5 * 5 / np.sqrt(12 * N)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normal_moments(dtype):
    z = _values(gc.random.normal(gc.param("key", KEY, "int64"), (N,), dtype)).astype(np.float64)
    assert np.isfinite(z).all()
    assert abs(z.mean()) < 5 / np.sqrt(N)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / N)
    assert abs((z ** 3).mean()) < 5 * np.sqrt(15 / N)            # skewness 0
    assert abs((z ** 4).mean() - 3) < 5 * np.sqrt(96 / N)        # kurtosis 3
    assert abs((np.abs(z) < 1).mean() - 0.682689) < 5 * np.sqrt(0.22 / N)


def test_normal_mean_and_std():
    z = _values(gc.random.normal(gc.param("key", KEY, "int64"), (N,), mean=3.0, std=0.5))
    assert abs(z.mean() - 3) < 5 * 0.5 / np.sqrt(N) and abs(z.std() - 0.5) < 0.01


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_bernoulli_rate(p):
    b = _values(gc.random.bernoulli(gc.param("key", KEY, "int64"), p, (N,)))
    assert b.dtype == bool
    assert abs(b.mean() - p) <= 5 * np.sqrt(p * (1 - p) / N)


def test_split_keys_and_successive_streams_are_uncorrelated():
    key = gc.param("key", KEY, "int64")
    a, b = gc.random.split(key)
    draws = _values([gc.random.uniform(k, (N,)) for k in (key, a, b, gc.random.next(key))])
    corr = np.corrcoef(np.stack(draws))
    assert np.abs(corr - np.eye(4)).max() < 5 / np.sqrt(N)


# --- keys in a training step -----------------------------------------------------------

def _step(backend, p=0.5, extra=()):
    x = gc.input("x", ("batch", 16))
    key = gc.random.key(7, name="dropout_key")
    y = gc.nn.dropout(x, p, key)
    return key, backend.compile([y, *extra], updates={key: gc.random.next(key)})


def test_a_step_draws_a_new_mask_each_call_and_a_run_repeats_from_its_seed(backend):
    key, step = _step(backend)
    X = np.ones((9, 16), np.float32)
    first, second = step(x=X)[0], step(x=X)[0]
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(key.value, [7, 2])
    key.value = np.array([7, 0])
    np.testing.assert_array_equal(step(x=X)[0], first)


def test_the_masks_are_the_same_on_every_backend(backend):
    X = np.ones((5, 16), np.float32)
    _, reference = _step(REFERENCE)
    _, step = _step(backend)
    for _ in range(2):   # two steps: the second on the advanced key
        np.testing.assert_array_equal(step(x=X)[0], reference(x=X)[0])


def test_a_failed_step_does_not_advance_the_key(backend):
    """A bad feed (checked before the run) and an index out of range (raised by the
    run, after the mask is drawn) leave the key as it was: the next call draws the mask
    a first call would have."""
    labels = gc.input("labels", (3,), "int64")
    table = gc.param("table", np.arange(4.0))
    key, step = _step(backend, extra=[gc.take(table, labels)])
    X, ok = np.ones((2, 16), np.float32), np.zeros(3, np.int64)
    with pytest.raises(gc.FeedError):
        step(x=np.ones((2, 15), np.float32), labels=ok)
    with pytest.raises(gc.GraphcError, match="out of range"):
        step(x=X, labels=np.array([0, 9, 1]))
    np.testing.assert_array_equal(key.value, [7, 0])
    first = step(x=X, labels=ok)[0]
    np.testing.assert_array_equal(key.value, [7, 1])
    _, fresh = _step(REFERENCE, extra=[gc.take(gc.param("table", np.arange(4.0)), labels)])
    np.testing.assert_array_equal(first, fresh(x=X, labels=ok)[0])


# --- the passes never merge, fold or fuse a draw ----------------------------------------

def _philox_nodes(graph) -> list:
    """The philox nodes of a graph, fused bodies included (with the body they sit in)."""
    found = []
    for node in graph.nodes:
        if node.op == "philox":
            found.append((node, None))
        if node.body is not None:
            found += [(n, node) for n, _ in _philox_nodes(node.body)]
    return found


@pytest.mark.parametrize("level", ["O1", "O2"])
def test_two_draws_from_one_key_stay_two_draws_and_are_not_folded(level):
    key = gc.const(KEY)   # a const key: every input of the draw is known at build time
    a, b = gc.random.uniform(key, (3,)), gc.random.uniform(key, (3,))
    graph = optimize(gc.Graph([a + b, a * b]), level)
    draws = _philox_nodes(graph)
    assert len(draws) == 2 and all(body is None for _, body in draws)


def test_no_simplify_rule_matches_a_random_op():
    assert not set(RULES_BY_OP) & ops.with_trait("random")
    assert ops.with_trait("random") == {"philox"}


def test_dropout_forward_and_backward_read_one_stored_mask():
    """The mask is drawn once, outside every kernel, and both the forward kernel and the
    gradient's read it (fusion never recomputes a draw)."""
    x = gc.input("x", ("batch", 8))
    y = gc.nn.dropout(gc.tanh(x), 0.3, gc.random.key(1))
    graph = optimize(gc.Graph([y, *gc.grad(gc.sum(y * y), [x])]), "O2")
    (draw, body), = _philox_nodes(graph)
    assert body is None
    readers = graph.users[draw]
    assert len(readers) >= 2 and all(r.op == "fused" for r in readers)


# --- dropout ---------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_the_mean_and_zeroes_a_fraction_p(p):
    x = gc.input("x", (N,))
    y = gc.compile(gc.nn.dropout(x, p, gc.random.key(3)), backend="numpy")(
        x=np.ones(N, np.float32))
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-6)
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / N)
    assert abs(y.mean() - 1) < 5 * np.sqrt(p / (1 - p) / N)


def test_dropout_with_p_0_or_in_evaluation_is_the_identity(backend):
    x = gc.input("x", ("batch", 6))
    key = gc.random.key(0)
    assert gc.nn.dropout(x, 0.0, key) is x
    assert gc.nn.dropout(x, 0.5, key, training=False) is x
    X = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    X[0, 0], X[1, 1] = np.nan, np.inf
    training = gc.input("training", (), "bool")
    f = backend.compile(gc.nn.dropout(x, 0.5, key, training=training))
    np.testing.assert_array_equal(f(x=X, training=False), X)
    trained = f(x=X, training=True)
    assert (trained == 0).any() and not np.array_equal(trained, X)


def test_one_model_serves_a_training_step_and_an_evaluation_function(backend):
    """A bool input picks the mode; the two functions share the params and the key."""
    x = gc.input("x", ("batch", 4))
    training = gc.input("training", (), "bool")
    W = gc.param("W", np.eye(4))
    key = gc.random.key(5, name="key")
    loss = gc.sum(gc.nn.dropout(x @ W, 0.5, key, training=training) ** 2)
    step = backend.compile(loss, updates={**gc.optim.sgd(loss, [W], lr=0.01),
                                          key: gc.random.next(key)})
    evaluate = backend.compile(loss)
    X = np.ones((3, 4), np.float32)
    step(x=X, training=True)
    np.testing.assert_array_equal(key.value, [5, 1])
    want = ((X @ W.value) ** 2).sum()
    np.testing.assert_allclose(evaluate(x=X, training=False), want, rtol=1e-6)
    np.testing.assert_array_equal(key.value, [5, 1])   # evaluation advances nothing


@pytest.mark.parametrize("p", [0.25, 0.6])
def test_dropout_value_and_gradient_against_torch_with_the_same_mask(backend, p):
    key = gc.const(KEY)
    shape = (7, 129)
    keep = philox.draw(KEY, shape, "float32") < np.float32(1 - p)
    mask = torch.tensor(keep.astype(np.float64))
    X = np.random.default_rng(1).standard_normal(shape)
    assert_like_torch(backend, lambda x: gc.nn.dropout(x, p, key),
                      lambda x: x * mask / (1 - p), {"x": X})


def test_split_keys_give_each_dropout_its_own_mask():
    x = gc.input("x", (64,))
    k1, k2 = gc.random.split(gc.random.key(9))
    a, b = gc.compile([gc.nn.dropout(x, 0.5, k1), gc.nn.dropout(x, 0.5, k2)])(
        x=np.ones(64, np.float32))
    assert not np.array_equal(a, b)


# --- mistakes ----------------------------------------------------------------------------

@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, True, "0.5", None])
def test_dropout_refuses_a_bad_p_naming_the_op(p):
    x = gc.input("x", (3,))
    with pytest.raises(gc.UsageError, match=r"dropout: p must be a number in \[0, 1\)") as e:
        gc.nn.dropout(x, p, gc.random.key(0))
    assert "test_random.py" in str(e.value)


def test_mistakes_name_the_function_and_the_argument():
    x = gc.input("x", (3,))
    with pytest.raises(gc.UsageError, match="gc.random.uniform: key must be a key"):
        gc.random.uniform(x, (3,))
    with pytest.raises(gc.UsageError, match="dropout: training must be a Python bool"):
        gc.nn.dropout(x, 0.5, gc.random.key(0), training=gc.input("t", (3,), "bool"))
    with pytest.raises(gc.DtypeError, match="dropout: x must be float"):
        gc.nn.dropout(gc.input("i", (3,), "int64"), 0.5, gc.random.key(0))
    with pytest.raises(gc.UsageError, match="gc.random.key: seed must be an int"):
        gc.random.key(-1)
    with pytest.raises(gc.UsageError, match="gc.random.normal: dtype must be float32"):
        gc.random.normal(gc.random.key(0), (3,), "int32")
    with pytest.raises(gc.UsageError, match="has a None dim"):
        gc.random.uniform(gc.random.key(0), (None, 3))
    with pytest.raises(gc.UsageError, match="gc.random.bernoulli: p must be a probability"):
        gc.random.bernoulli(gc.random.key(0), 2.0, (3,))
    with pytest.raises(gc.ShapeError, match=r"philox: the key must be int64\[2\]"):
        apply("philox", gc.const(np.zeros(3, np.int64)), shape=(2,), dtype="float32")


def test_the_triton_draw_kernels_compile_for_sm90():
    """Each dtype's kernel, and dropout's training step, through the real compiler
    (PTX and a cubin for an H100; the interpreter checks the bits, this the lowering)."""
    x = gc.input("x", ("batch", 64))
    key = gc.random.key(0)
    W = gc.param("W", np.eye(64))
    loss = gc.sum(gc.nn.dropout(x @ W, 0.1, key) ** 2)
    graph = optimize(gc.Graph([gc.random.uniform(key, x.shape, "float64"),
                               gc.random.bits(key, x.shape), loss],
                              {**gc.optim.sgd(loss, [W], lr=0.1), key: gc.random.next(key)}),
                     "O2")
    program, stats = compile_graph(graph, {"batch": 32})
    assert sum("tl.philox" in k.source for k in program.kernels) == 3
    assert_compiled_without_spills(program, stats)
