"""gc.grad against torch.autograd and finite differences, for every primitive and every
composite in gc.nn, plus the sweep's structure: fan-out, pruning, tags, errors, long
chains and grad of grad."""

import numpy as np
import pytest
import torch

import graphc as gc
from graphc import autodiff, ops
from graphc.testing import check_grads

def _any(rng, shape):
    return rng.standard_normal(shape)


def _pos(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def _away0(rng, shape):
    """Values at least 0.2 from 0, where relu/abs/step have their derivative."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


def _distinct(rng, shape):
    """No ties, so max's derivative is defined (ties are tested on their own)."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 + rng.uniform(0, .1)


def _probs(rng, shape):
    """Rows that sum to 1 (class probabilities)."""
    p = rng.uniform(0.1, 1.0, shape)
    return p / p.sum(-1, keepdims=True)


T = torch
# id -> (graphc function, torch function, [(shape, generator), ...])
CASES = {
    "neg": (gc.neg, T.neg, [((3, 4), _any)]),
    "exp": (gc.exp, T.exp, [((3, 4), _any)]),
    "log": (gc.log, T.log, [((3, 4), _pos)]),
    "log1p": (gc.log1p, T.log1p, [((3, 4), _pos)]),
    "sqrt": (gc.sqrt, T.sqrt, [((3, 4), _pos)]),
    "abs": (gc.abs, T.abs, [((3, 4), _away0)]),
    "tanh": (gc.tanh, T.tanh, [((3, 4), _any)]),
    "sigmoid": (gc.sigmoid, T.sigmoid, [((3, 4), _any)]),
    "relu": (gc.relu, T.relu, [((3, 4), _away0)]),
    "step": (lambda x: gc.step(x) * x, lambda x: (x > 0).double() * x, [((3, 4), _away0)]),
    "sign": (lambda x: gc.sign(x) * x, lambda x: T.sign(x) * x, [((3, 4), _away0)]),
    "stop_gradient": (lambda x: gc.stop_gradient(x) * x, lambda x: x.detach() * x,
                      [((3, 4), _any)]),
    "cast": (lambda x: gc.cast(gc.cast(x, "float32"), "float64") * x,
             lambda x: x.float().double() * x, [((3, 4), _any)]),
    "add": (gc.add, T.add, [((3, 1, 4), _any), ((2, 4), _any)]),
    "sub": (gc.sub, T.sub, [((4,), _any), ((3, 4), _any)]),
    "mul": (gc.mul, T.mul, [((3, 4), _any), ((3, 1), _any)]),
    "div": (gc.div, T.div, [((2, 3), _any), ((1, 3), _pos)]),
    "pow": (gc.pow, T.pow, [((2, 3), _pos), ((3,), _any)]),
    "pow_const": (lambda x: x ** 3, lambda x: x ** 3, [((2, 3), _any)]),
    "maximum": (gc.maximum, T.maximum, [((3, 4), _any), ((4,), _any)]),
    "minimum": (gc.minimum, T.minimum, [((3, 1), _any), ((3, 4), _any)]),
    "compare": (lambda a, b: gc.where(a > b, a * b, a - b) + gc.cast(a <= b, "float64"),
                lambda a, b: T.where(a > b, a * b, a - b) + (a <= b).double(),
                [((3, 4), _any), ((4,), _any)]),
    "where": (lambda a, b, c: gc.where(c > 0, a, b), lambda a, b, c: T.where(c > 0, a, b),
              [((1, 4), _any), ((3, 1), _any), ((3, 4), _away0)]),
    "sum_all": (gc.sum, T.sum, [((3, 4), _any)]),
    "sum_axis": (lambda x: gc.sum(x, axis=1), lambda x: x.sum(1), [((2, 3, 4), _any)]),
    "sum_keepdims": (lambda x: gc.sum(x, axis=(0, 2), keepdims=True),
                     lambda x: x.sum((0, 2), keepdim=True), [((2, 3, 4), _any)]),
    "mean": (lambda x: gc.mean(x, axis=0), lambda x: x.mean(0), [((3, 4), _any)]),
    "max_all": (gc.max, T.amax, [((3, 4), _distinct)]),
    "max_axes": (lambda x: gc.max(x, axis=(0, 2)), lambda x: T.amax(x, (0, 2)),
                 [((2, 3, 4), _distinct)]),
    "max_keepdims": (lambda x: gc.max(x, axis=-1, keepdims=True),
                     lambda x: T.amax(x, -1, keepdim=True), [((3, 4), _distinct)]),
    "reshape": (lambda x: gc.reshape(x, (4, 6)), lambda x: x.reshape(4, 6),
                [((2, 3, 4), _any)]),
    "transpose": (lambda x: gc.transpose(x, (2, 0, 1)), lambda x: x.permute(2, 0, 1),
                  [((2, 3, 4), _any)]),
    "T": (lambda x: x.T, lambda x: x.T, [((3, 4), _any)]),
    "broadcast_to": (lambda x: gc.broadcast_to(x, (2, 3, 4)),
                     lambda x: x.broadcast_to(2, 3, 4), [((3, 1), _any)]),
    "expand_dims": (lambda x: gc.expand_dims(x, 1), lambda x: x.unsqueeze(1),
                    [((3, 4), _any)]),
    "squeeze": (lambda x: gc.squeeze(x), lambda x: x.squeeze(), [((3, 1, 4, 1), _any)]),
    "slice": (lambda x: x[1:3, ::2], lambda x: x[1:3, ::2], [((4, 5), _any)]),
    "slice_step3": (lambda x: x[:, 1::3], lambda x: x[:, 1::3], [((2, 8), _any)]),
    "slice_index": (lambda x: x[-1, 2], lambda x: x[-1, 2], [((3, 4), _any)]),
    "slice_empty": (lambda x: x[:, 2:2], lambda x: x[:, 2:2], [((3, 4), _any)]),
    "slice_twice": (lambda x: gc.concat([x[:, :2], x[:, 1:]], axis=1),
                    lambda x: T.cat([x[:, :2], x[:, 1:]], 1), [((3, 4), _any)]),
    "concat": (lambda a, b, c: gc.concat([a, b, c], axis=1),
               lambda a, b, c: T.cat([a, b, c], 1),
               [((2, 1), _any), ((2, 3), _any), ((2, 2), _any)]),
    "matmul": (gc.matmul, T.matmul, [((3, 4), _any), ((4, 2), _any)]),
    "matmul_batched": (gc.matmul, T.matmul, [((2, 3, 4), _any), ((2, 4, 5), _any)]),
    "matmul_bcast": (gc.matmul, T.matmul, [((2, 1, 3, 4), _any), ((5, 4, 2), _any)]),
    "matmul_vector": (gc.matmul, T.matmul, [((4,), _any), ((3, 4, 2), _any)]),
    "matvec": (gc.matmul, T.matmul, [((3, 4), _any), ((4,), _any)]),
    # composites in gc.nn
    "softplus": (gc.nn.softplus, T.nn.functional.softplus, [((3, 4), _any)]),
    "leaky_relu": (lambda x: gc.nn.leaky_relu(x, 0.1),
                   lambda x: T.nn.functional.leaky_relu(x, 0.1), [((3, 4), _away0)]),
    "prelu": (gc.nn.prelu, lambda x, a: T.where(x > 0, x, x * a),
              [((3, 4), _away0), ((4,), _any)]),
    "maxout": (lambda x: gc.nn.maxout(x, 3), lambda x: T.amax(x.reshape(2, 2, 3), -1),
               [((2, 6), _distinct)]),
    "maxout_axis0": (lambda x: gc.nn.maxout(x, 2, axis=0),
                     lambda x: T.amax(x.reshape(2, 2, 3), 1), [((4, 3), _distinct)]),
    "logsumexp": (gc.nn.logsumexp, lambda x: T.logsumexp(x, -1), [((3, 4), _any)]),
    "log_softmax": (gc.nn.log_softmax, lambda x: T.log_softmax(x, -1), [((3, 4), _any)]),
    "softmax": (gc.nn.softmax, lambda x: T.softmax(x, -1), [((3, 4), _any)]),
    "mse": (gc.nn.mse, T.nn.functional.mse_loss, [((3, 4), _any), ((3, 4), _any)]),
    "bce": (gc.nn.binary_cross_entropy_with_logits,
            T.nn.functional.binary_cross_entropy_with_logits, [((5,), _any), ((5,), _pos)]),
    "sce_int": (lambda z: gc.nn.softmax_cross_entropy(z, gc.const([2, 0, 3], "int64")),
                lambda z: T.nn.functional.cross_entropy(z, T.tensor([2, 0, 3])),
                [((3, 4), _any)]),
    # gc.nn writes it logsumexp(z) - <z, p>, equal to torch's -<p, log_softmax z> when rows
    # of p sum to 1, but not in its derivative with respect to p; compare with that form.
    "sce_probs": (gc.nn.softmax_cross_entropy,
                  lambda z, p: (T.logsumexp(z, -1) - (z * p).sum(-1)).mean(),
                  [((3, 4), _any), ((3, 4), _probs)]),
    "dense": (lambda x, W, b: gc.nn.dense(x, W, b, gc.tanh),
              lambda x, W, b: T.tanh(x @ W + b), [((3, 4), _any), ((4, 2), _any), ((2,), _any)]),
}


def _arrays(specs, seed=0):
    rng = np.random.default_rng(seed)
    return [gen(rng, shape) for shape, gen in specs]


def _torch_vjp(torch_fn, arrays, seed):
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = torch_fn(*leaves)
    grads = torch.autograd.grad(out, leaves, grad_outputs=torch.tensor(seed),
                                allow_unused=True)
    return out.detach().numpy(), [np.zeros_like(a) if g is None else g.numpy()
                                  for a, g in zip(arrays, grads)]


@pytest.mark.parametrize("case", CASES)
def test_vjp_matches_torch(case, backend):
    gc_fn, torch_fn, specs = CASES[case]
    arrays = _arrays(specs)
    nodes = [gc.param(f"a{k}", a, "float64") for k, a in enumerate(arrays)]
    out = gc_fn(*nodes)
    seed = np.random.default_rng(1).standard_normal(out.type.concrete_shape())
    grads = gc.vjp(out, nodes, seed)
    values = backend.compile([out] + grads)()
    want_out, want_grads = _torch_vjp(torch_fn, arrays, seed)
    np.testing.assert_allclose(values[0], want_out, rtol=1e-6, atol=1e-7)
    for k, (got, want) in enumerate(zip(values[1:], want_grads)):
        assert got.shape == arrays[k].shape and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=f"input {k}")


# stop_gradient's zero gradient is a declaration, not the derivative of its value.
@pytest.mark.parametrize("case", [c for c in CASES if c != "stop_gradient"])
def test_grad_matches_finite_differences(case):
    gc_fn, _, specs = CASES[case]
    feeds = {f"a{k}": a for k, a in enumerate(_arrays(specs, seed=2))}
    check_grads(gc_fn, feeds)


def test_mlp_composite_matches_torch(backend):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((5, 3))
    x = gc.input("x", ("batch", 3), dtype="float64")
    out, params = gc.nn.mlp(x, [3, 6, 4, 2], activation=gc.tanh, rng=rng)
    seed = rng.standard_normal((5, 2))
    f = backend.compile(gc.vjp(out, params + [x], gc.input("seed", ("batch", 2), "float64")))
    got = f(x=X, seed=seed)
    leaves = [torch.tensor(p.value.astype(np.float64), requires_grad=True) for p in params]
    tx = torch.tensor(X, requires_grad=True)
    h = tx
    for k in range(0, len(leaves), 2):
        h = h @ leaves[k] + leaves[k + 1]
        h = torch.tanh(h) if k + 2 < len(leaves) else h
    want = torch.autograd.grad(h, leaves + [tx], torch.tensor(seed))
    for g, w in zip(got, want):  # the params are float32: the graph computes in float32
        np.testing.assert_allclose(g, w.numpy(), rtol=2e-5, atol=2e-6)
    check_grads(out, {"x": X})


def test_every_primitive_has_exactly_one_rule():
    # kernels and a collective's start and wait are made by passes, after differentiation
    made_by_passes = {"fused", "all_reduce_start", "all_reduce_wait"}
    primitives = {name for name in ops.OPS if name not in made_by_passes}
    assert primitives <= set(autodiff.RULES)
    assert set(autodiff.RULES) <= set(ops.OPS)


# --- symbolic dims, integer inputs, zero-gradient ops ---------------------------------

def test_broadcast_reduction_over_symbolic_batch(backend):
    rng = np.random.default_rng(3)
    x = gc.input("x", ("batch", 3), dtype="float64")
    b = gc.param("b", rng.standard_normal(3), "float64")
    s = gc.param("s", rng.standard_normal((1, 3)), "float64")
    c = gc.param("c", rng.standard_normal(()), "float64")
    loss = gc.sum(gc.tanh(x * s + b) * c)
    f = backend.compile(gc.grad(loss, [x, b, s, c]))
    X = rng.standard_normal((5, 3))
    tx, tb, ts, tc = (torch.tensor(v, requires_grad=True) for v in (X, b.value, s.value, c.value))
    (torch.tanh(tx * ts + tb) * tc).sum().backward()
    for got, t in zip(f(x=X), (tx, tb, ts, tc)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10)
    assert [g.shape for g in gc.grad(loss, [x, b, s, c])] == [("batch", 3), (3,), (1, 3), ()]
    check_grads(loss, {"x": X})


def test_layout_and_batched_matmul_over_symbolic_dims(backend):
    rng = np.random.default_rng(9)
    x = gc.input("x", ("n", "t", 4), dtype="float64")
    W = gc.param("W", rng.standard_normal((4, 3)), "float64")
    h = x @ W                                            # batch dims ("n", "t") vs none
    parts = gc.concat([h[:, :, :1] * 2.0, h[:, :, 1:]], axis=2)
    y = gc.sum(gc.reshape(gc.transpose(parts, (1, 0, 2)), ("t", "n", 3)) ** 2)
    X = rng.standard_normal((2, 5, 4))
    gx, gW = backend.compile(gc.grad(y, [x, W]))(x=X)
    tx, tW = torch.tensor(X, requires_grad=True), torch.tensor(W.value, requires_grad=True)
    th = tx @ tW
    (T.cat([th[:, :, :1] * 2.0, th[:, :, 1:]], 2) ** 2).sum().backward()
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(gW, tW.grad.numpy(), rtol=1e-10)


def test_integer_inputs_get_no_gradient_and_cannot_be_wrt(backend):
    labels = gc.input("labels", (2,), dtype="int64")
    z = gc.param("z", np.array([[1.0, 2.0, 0.5], [0.1, 0.2, 3.0]]), "float64")
    scale = gc.sum(gc.cast(labels, "float64"))  # int feeding float: no gradient through it
    loss = gc.nn.softmax_cross_entropy(z, labels) * scale
    with pytest.raises(gc.GradError, match="labels"):
        gc.grad(loss, labels)
    (gz,) = backend.compile([gc.grad(loss, z)])(labels=np.array([2, 1]))
    p = np.exp(z.value) / np.exp(z.value).sum(1, keepdims=True)
    expected = (p - np.eye(3)[[2, 1]]) / 2 * (2 + 1)
    np.testing.assert_allclose(gz, expected, rtol=1e-12)


def test_zero_gradient_ops_give_zeros(backend):
    x = gc.param("x", np.array([-1.0, 0.5, 2.0]), "float64")
    y = gc.sum(gc.step(x) + gc.sign(x) + gc.cast(x > 0, "float64")
               + gc.cast(x == 0.5, "float64") + gc.cast(x != 2.0, "float64")
               + gc.size(x, dtype="float64"))
    g = gc.grad(y, x)
    np.testing.assert_array_equal(backend.compile(g)(), np.zeros(3))


# --- tie-breaking, documented in graphc.autodiff ---------------------------------------

KINKS = {  # derivative at exactly 0, where the choice is a convention: as torch does
    "relu": (gc.relu, T.relu),
    "abs": (gc.abs, T.abs),
    "softplus": (gc.nn.softplus, T.nn.functional.softplus),
    "leaky_relu": (lambda x: gc.nn.leaky_relu(x, 0.1),
                   lambda x: T.nn.functional.leaky_relu(x, 0.1)),
    "bce": (lambda x: gc.nn.binary_cross_entropy_with_logits(x, gc.const([1.0, 0.0], "float64")),
            lambda x: T.nn.functional.binary_cross_entropy_with_logits(x, T.tensor([1.0, 0.0],
                                                                       dtype=T.float64))),
}


@pytest.mark.parametrize("case", KINKS)
def test_derivative_at_zero_matches_torch(case, backend):
    gc_fn, torch_fn = KINKS[case]
    x = gc.param("x", np.zeros(2), "float64")
    got = backend.compile(gc.grad(gc.sum(gc_fn(x)), x))()
    want = _torch_vjp(lambda t: torch_fn(t).sum(), [np.zeros(2)], np.array(1.0))[1][0]
    np.testing.assert_array_equal(got, want)


def test_pow_at_zero_base_matches_torch(backend):
    # Every base (0, -0, and a positive and a negative one) with exponents of each sign,
    # 0, 1 (d/da of a^1 at 0), fractions, odd and even integers, +-inf and nan.
    bases = np.array([0.0, -0.0, 2.0, -2.0])
    exponents = np.array([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0, 3.0, np.inf, -np.inf, np.nan])
    A, B = (m.ravel() for m in np.meshgrid(bases, exponents))
    a, b = gc.param("a", A, "float64"), gc.param("b", B, "float64")
    got = backend.compile(gc.grad(gc.sum(a ** b), [a, b]))()
    want = _torch_vjp(lambda s, t: (s ** t).sum(), [A, B], np.array(1.0))[1]
    for g, w in zip(got, want):   # zeros, infs and nans exactly; 2 ** 0.5 to an ulp (triton)
        np.testing.assert_allclose(g, w, rtol=4e-16, atol=0)


def test_max_ties_split_equally_like_torch_amax(backend):
    X = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    for axis, torch_fn in [(1, lambda t: T.amax(t, 1)), (None, T.amax)]:
        x = gc.param("x", X, "float64")
        out = gc.max(x, axis=axis)
        seed = np.array([1.0, 2.0]) if axis == 1 else np.array(1.0)
        got = backend.compile(gc.vjp(out, x, seed))()
        np.testing.assert_allclose(got, _torch_vjp(torch_fn, [X], seed)[1][0])
        if axis == 1:
            np.testing.assert_allclose(got, [[0, 0.5, 0.5], [2 / 3, 2 / 3, 2 / 3]])
    np.testing.assert_allclose(got, np.array([[0, 0.5, 0.5], [0, 0, 0]]))


def test_maximum_minimum_ties_split_in_half_like_torch(backend):
    A, B = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 0.0])
    for gc_fn, torch_fn in [(gc.maximum, T.maximum), (gc.minimum, T.minimum)]:
        a, b = gc.param("a", A, "float64"), gc.param("b", B, "float64")
        got = backend.compile(gc.grad(gc.sum(gc_fn(a, b)), [a, b]))()
        want = _torch_vjp(lambda s, t: torch_fn(s, t).sum(), [A, B], np.array(1.0))[1]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w)


# --- the sweep's structure -------------------------------------------------------------

def test_fan_out_sums_every_path(backend):
    x = gc.param("x", np.array([0.3, -1.2]), "float64")
    h = gc.tanh(x)                       # h is used three times
    y = gc.sum(h * h + gc.exp(h) + x * h)
    got = backend.compile(gc.grad(y, x))()
    X, H = x.value, np.tanh(x.value)
    np.testing.assert_allclose(got, (2 * H + np.exp(H) + X) * (1 - H ** 2) + H)


def test_shared_subgraph_and_intermediate_wrt(backend):
    """wrt may be intermediate nodes; a node's cotangent is the total over all paths."""
    rng = np.random.default_rng(4)
    x = gc.param("x", rng.standard_normal((2, 3)), "float64")
    W = gc.param("W", rng.standard_normal((3, 3)), "float64")
    shared = gc.tanh(x @ W)
    a = gc.sigmoid(shared)
    b = shared @ W                        # W and shared both fan out
    y = gc.sum(a * b)
    got = backend.compile(gc.grad(y, [shared, W, x]))()
    tx, tW = torch.tensor(x.value, requires_grad=True), torch.tensor(W.value, requires_grad=True)
    ts = torch.tanh(tx @ tW)
    ts.retain_grad()
    (torch.sigmoid(ts) * (ts @ tW)).sum().backward()
    for g, t in zip(got, (ts, tW, tx)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-10)


def test_same_node_twice_as_operand(backend):
    x = gc.param("x", np.array([[1.0, 2.0], [3.0, 4.0]]), "float64")
    y = gc.sum(gc.concat([x, x], axis=0) @ x)
    tx = torch.tensor(x.value, requires_grad=True)
    (T.cat([tx, tx]) @ tx).sum().backward()
    np.testing.assert_allclose(backend.compile(gc.grad(y, x))(), tx.grad.numpy())


def test_branches_that_do_not_reach_wrt_are_pruned():
    W = gc.param("W", np.ones(3))
    other = gc.input("other", (3,))
    y = gc.sum(W * 2.0) + gc.sum(gc.exp(gc.tanh(other)))
    gW = gc.grad(y, W)
    new = set(gc.Graph(gW).nodes)
    assert other not in new  # no cotangent was built for the exp/tanh branch
    assert not any(n.op in ("exp", "tanh") for n in new)


def test_gradient_nodes_are_tagged_and_forward_nodes_untouched():
    x = gc.input("x", (4, 2))
    loss, params = _mlp_loss(x)
    forward = set(gc.Graph(loss).nodes)
    grads = gc.grad(loss, params)
    new = set(gc.Graph(grads).nodes) - forward
    assert new and all(n.tags == {"grad"} for n in new)
    assert not any(n.tags for n in forward)
    gc.Graph([loss] + grads).lint()


def test_long_chain_differentiates_without_recursion(backend):
    """10,000 nodes: the walk and the summation are iterative and linear."""
    x = gc.param("x", np.array(0.5), "float64")
    h = x
    for _ in range(5000):
        h = h * 0.9999 + 0.001           # two nodes a link
    g = gc.grad(h, x)
    assert len(gc.Graph(g).nodes) < 8 * 10_000
    np.testing.assert_allclose(backend.compile(g)(), 0.9999 ** 5000, rtol=1e-9)


# --- errors ----------------------------------------------------------------------------

def test_non_scalar_output_needs_a_seed():
    x = gc.param("x", np.ones((2, 3)))
    with pytest.raises(gc.GradError, match=r"scalar.*seed="):
        gc.grad(x * 2, x)
    with pytest.raises(gc.GradError, match="does not match"):
        gc.vjp(x * 2, x, np.ones(4))


def test_disconnected_wrt_names_the_node_and_its_line(backend):
    x = gc.param("x", np.ones(3))
    lonely = gc.param("lonely", np.ones(2))
    y = gc.sum(x)
    with pytest.raises(gc.GradError, match=r"lonely.*test_autodiff.py:\d+.*allow_disconnected"):
        gc.grad(y, [x, lonely])
    gx, gl = gc.grad(y, [x, lonely], allow_disconnected=True)
    got = backend.run([gx, gl])
    np.testing.assert_array_equal(got[1], np.zeros(2))
    np.testing.assert_array_equal(got[0], np.ones(3))


def test_grad_returns_a_node_for_a_node_and_a_list_for_a_list():
    x = gc.param("x", np.ones(3))
    y = gc.sum(x * x)
    assert isinstance(gc.grad(y, x), gc.Node)
    assert isinstance(gc.grad(y, [x]), list) and len(gc.grad(y, [x])) == 1


def test_check_grads_reports_the_worst_entry(monkeypatch):
    monkeypatch.setitem(autodiff.RULES, "tanh", autodiff._identity)  # a wrong derivative
    feeds = {"x": np.array([[0.1, 1.5], [-2.0, 0.3]])}
    with pytest.raises(AssertionError, match=r"x f64\[2,2\].*4 of 4.*worst at index \(1, 0\)"):
        check_grads(lambda x: gc.sum(gc.tanh(x)), feeds)


def test_check_grads_promotes_a_float32_graph_to_float64():
    rng = np.random.default_rng(5)
    x = gc.input("x", ("batch", 3))
    W = gc.param("W", rng.standard_normal((3, 2)))
    report = check_grads([gc.sigmoid(x @ W), gc.sum(W)], {"x": rng.standard_normal((4, 3))})
    assert set(report) == {"x", "W"} and max(report.values()) < 1e-8
    assert W.dtype == "float32" and W.value.dtype == np.float32  # the user's param is untouched


def test_check_grads_wrt_selects_and_validates_nodes():
    x = gc.input("x", (3,), dtype="float64")
    W = gc.param("W", np.array([0.5, -1.0, 2.0]), "float64")
    h = gc.tanh(x * W)
    assert set(check_grads(gc.sum(h), {"x": np.arange(3.0)}, wrt=[W])) == {"W"}
    with pytest.raises(ValueError, match="param or a fed input"):
        check_grads(gc.sum(h), {"x": np.arange(3.0)}, wrt=[h])


# --- higher order ----------------------------------------------------------------------

def _mlp_loss(x, dtype="float32", activation=gc.tanh):
    rng = np.random.default_rng(6)
    W1 = gc.param("W1", rng.standard_normal((2, 5)) * 0.7, dtype)
    b1 = gc.param("b1", rng.standard_normal(5) * 0.1, dtype)
    W2 = gc.param("W2", rng.standard_normal((5, 3)) * 0.7, dtype)
    b2 = gc.param("b2", rng.standard_normal(3) * 0.1, dtype)
    logits = gc.nn.dense(gc.nn.dense(x, W1, b1, activation), W2, b2)
    labels = gc.const(np.array([0, 2, 1, 2]), "int64")
    return gc.nn.softmax_cross_entropy(logits, labels), [W1, b1, W2, b2]


def test_hessian_vector_product_of_mlp_loss_matches_torch(backend):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((4, 2))
    x = gc.input("x", (4, 2), dtype="float64")
    loss, params = _mlp_loss(x, "float64")
    vs = [rng.standard_normal(p.shape) for p in params]
    grads = gc.grad(loss, params)
    directional = sum(gc.sum(g * v) for g, v in zip(grads, vs))
    hvp = gc.grad(directional, params)
    got = backend.compile(hvp)(x=X)

    leaves = [torch.tensor(p.value, requires_grad=True) for p in params]

    def torch_loss(W1, b1, W2, b2):
        logits = torch.tanh(torch.tensor(X) @ W1 + b1) @ W2 + b2
        return T.nn.functional.cross_entropy(logits, torch.tensor([0, 2, 1, 2]))

    _, want = torch.autograd.functional.hvp(torch_loss, tuple(leaves),
                                            tuple(torch.tensor(v) for v in vs))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-9, atol=1e-12)
    check_grads(directional, {"x": X})  # the gradient graph itself differentiates right
