"""gc.grad on random graphs (tests/strategies.py) against torch.autograd, first and
second order. Each graph is translated to torch op by op (TORCH, one row an op), and
the outputs are folded into one scalar s = sum_k <w_k, out_k> with random weights."""

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc
from tests.strategies import assert_close, graphs

BACKEND = "reference"  # the autodiff oracle here is torch; backends are compared elsewhere

TORCH = {
    "neg": lambda x, **a: -x,
    "exp": lambda x, **a: torch.exp(x),
    "log": lambda x, **a: torch.log(x),
    "log1p": lambda x, **a: torch.log1p(x),
    "sqrt": lambda x, **a: torch.sqrt(x),
    "abs": lambda x, **a: torch.abs(x),
    "sign": lambda x, **a: torch.sign(x),
    "tanh": lambda x, **a: torch.tanh(x),
    "sigmoid": lambda x, **a: torch.sigmoid(x),
    "relu": lambda x, **a: torch.relu(x),
    "step": lambda x, **a: (x > 0).to(x.dtype),
    "stop_gradient": lambda x, **a: x.detach(),     # the max shift of the log-softmax idiom
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
    "maximum": lambda a, b: torch.maximum(a, b),
    "minimum": lambda a, b: torch.minimum(a, b),
    "sum": lambda x, axes, keepdims: x.sum(dim=axes, keepdim=keepdims) if axes else x,
    "max": lambda x, axes, keepdims: torch.amax(x, dim=axes, keepdim=keepdims) if axes else x,
    "size": lambda x, axes, dtype: torch.tensor(float(np.prod([x.shape[i] for i in axes])),
                                                dtype=torch.float64),
    "reshape": lambda x, shape: x.reshape(shape),
    "transpose": lambda x, perm: x.permute(perm),
    "broadcast_to": lambda x, shape: x.broadcast_to(shape),
    "expand_dims": lambda x, axis: x.unsqueeze(axis),
    "squeeze": lambda x, axes: x.reshape([d for i, d in enumerate(x.shape) if i not in axes]),
    "slice": lambda x, index: x[tuple(slice(*r) for r in index)],
    "concat": lambda *xs, axis: torch.cat(xs, axis),
    "matmul": lambda a, b: a @ b,
}


def _to_torch(outputs, leaves):
    """Evaluate the graph in torch; `leaves` maps input nodes to torch leaf tensors."""
    values = dict(leaves)
    for node in gc.Graph(outputs).nodes:
        if node in values:
            continue
        if node.op == "const":
            values[node] = torch.tensor(np.array(node.value))
        else:
            values[node] = TORCH[node.op](*(values[i] for i in node.inputs), **node.attrs)
    return [values[o] for o in outputs]


def _folded(outputs, rng):
    """s = sum_k <w_k, out_k>, with the weights as consts of the outputs' (static) shapes."""
    weights = [rng.standard_normal(o.type.concrete_shape()) for o in outputs]
    total = sum(gc.sum(o * gc.const(w, "float64")) for o, w in zip(outputs, weights))
    return total, weights


def _run(nodes, feeds):
    """Compile and run; a gradient graph may need fewer inputs than the forward one."""
    needed = {n.name for n in gc.Graph(nodes).inputs}
    return gc.compile(nodes, backend=BACKEND)(**{k: v for k, v in feeds.items() if k in needed})


def _setup(case, seed):
    outputs, feeds = case
    inputs = gc.Graph(outputs).inputs
    s, weights = _folded(outputs, np.random.default_rng(seed))
    leaves = {n: torch.tensor(feeds[n.name], requires_grad=True) for n in inputs}
    t_outs = _to_torch(outputs, leaves)
    t_s = sum((o * torch.tensor(w)).sum() for o, w in zip(t_outs, weights))
    return inputs, feeds, s, leaves, t_s


@settings(max_examples=40)
@given(graphs(dtype="float64", max_ops=8), st.integers(0, 2 ** 16))
def test_random_graph_gradients_match_torch(case, seed):
    inputs, feeds, s, leaves, t_s = _setup(case, seed)
    want = torch.autograd.grad(t_s, [leaves[n] for n in inputs], allow_unused=True)
    want = [np.zeros(n.type.concrete_shape()) if w is None else w.numpy()
            for n, w in zip(inputs, want)]
    assume(all(np.isfinite(w).all() for w in want))  # sqrt'(0) = inf: no fair comparison
    got = _run(gc.grad(s, inputs), feeds)
    for n, g, w in zip(inputs, got, want):
        assert_close(g, w, "float64", what=f"d s / d {n.name}")


@settings(max_examples=20)
@given(graphs(dtype="float64", max_ops=6), st.integers(0, 2 ** 16))
def test_random_graph_hessian_vector_products_match_torch(case, seed):
    inputs, feeds, s, leaves, t_s = _setup(case, seed)
    rng = np.random.default_rng(seed + 1)
    vs = [rng.standard_normal(n.type.concrete_shape()) for n in inputs]
    t_leaves = [leaves[n] for n in inputs]
    t_grads = torch.autograd.grad(t_s, t_leaves, create_graph=True, allow_unused=True)
    t_dir = sum((g * torch.tensor(v)).sum() for g, v in zip(t_grads, vs) if g is not None)
    assume(isinstance(t_dir, torch.Tensor) and t_dir.requires_grad)
    want = torch.autograd.grad(t_dir, t_leaves, allow_unused=True)
    want = [np.zeros(v.shape) if w is None else w.numpy(force=True) for v, w in zip(vs, want)]
    assume(all(np.isfinite(w).all() for w in want))
    directional = sum(gc.sum(g * gc.const(v, "float64"))
                      for g, v in zip(gc.grad(s, inputs), vs))
    got = _run(gc.grad(directional, inputs, allow_disconnected=True), feeds)
    for n, g, w in zip(inputs, got, want):
        assert_close(g, w, "float64", what=f"Hv for {n.name}")


BINARY_OPS = ["add", "sub", "mul", "div", "maximum", "minimum", "pow"]


def _vjp_pair(op_nodes, op_torch, arrays, seed):
    """gc.vjp and torch.autograd.grad of one op on float64 params, same cotangent."""
    nodes = [gc.param(f"a{k}", a, "float64") for k, a in enumerate(arrays)]
    out = op_nodes(*nodes)
    cotangent = np.random.default_rng(seed).standard_normal(out.type.concrete_shape())
    got = gc.compile(gc.vjp(out, nodes, cotangent), backend=BACKEND)()
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    want = torch.autograd.grad(op_torch(*leaves), leaves, torch.tensor(cotangent))
    return got, [w.numpy() for w in want]


@settings(max_examples=60)
@given(st.sampled_from(BINARY_OPS),
       hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       st.integers(0, 2 ** 16))
def test_binary_op_gradients_reduce_over_broadcast_axes(op, shapes, seed):
    rng = np.random.default_rng(seed)
    # Small integers make ties (maximum/minimum split them); pow gets a positive base.
    arrays = [rng.integers(-2, 3, s).astype(np.float64) for s in shapes.input_shapes]
    if op in ("pow", "div"):
        arrays[1 if op == "div" else 0] = rng.uniform(0.5, 2.0, shapes.input_shapes[
            1 if op == "div" else 0])
    got, want = _vjp_pair(getattr(gc, op), TORCH[op], arrays, seed)
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.shape == shapes.input_shapes[k]
        assert_close(g, w, "float64", what=f"{op} operand {k}")


@settings(max_examples=40)
@given(st.sampled_from(["sum", "max"]), hnp.array_shapes(min_dims=1, max_dims=3, max_side=3),
       st.data())
def test_reduction_gradients_with_random_axes_and_ties(op, shape, data):
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    keepdims = data.draw(st.booleans())
    seed = data.draw(st.integers(0, 2 ** 16))
    array = np.random.default_rng(seed).integers(0, 3, shape).astype(np.float64)  # ties
    got, want = _vjp_pair(lambda x: getattr(gc, op)(x, axis=axes, keepdims=keepdims),
                          lambda x: TORCH[op](x, axes=axes, keepdims=keepdims), [array], seed)
    assert_close(got[0], want[0], "float64", what=f"{op} over {axes}")
