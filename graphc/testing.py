"""Gradient checking: gc.grad against central finite differences, in float64.

    gc.testing.check_grads(loss, {"x": X, "y": Y})              # a graph's output(s)
    gc.testing.check_grads(lambda x, W: gc.tanh(x @ W).sum(),   # or a function of inputs
                           {"x": X, "W": W0})

Finite differences in float32 are too coarse to judge a gradient, so the check always
runs in float64: a graph is first copied with every float value promoted to float64
(params and consts too; the user's nodes and param values are left alone). Several or
non-scalar outputs are folded into one scalar with fixed random weights, s = sum_k <r_k,
out_k>, whose gradient exercises every output entry. The reference backend evaluates.
"""

from __future__ import annotations

import numpy as np

from graphc import dsl
from graphc.autodiff import grad
from graphc.compile import compile
from graphc.ir import Node, topological_order
from graphc.types import TensorType, is_float


def check_grads(outputs_or_fn, feeds: dict, eps=1e-6, rtol=1e-5, atol=1e-6, wrt=None,
                seed=0) -> dict:
    """Compare gc.grad with central differences; raise AssertionError on a mismatch.

    outputs_or_fn: a node or list of nodes (feeds are {input name: array}), or a
        function called with one float64 input node per feed, in the feeds' order,
        returning the output(s).
    wrt: the nodes to check (default: every float param of the graph and every float
        input that is fed). Returns {name: largest absolute error} for the report.
    """
    outputs, feeds = _outputs(outputs_or_fn, feeds)
    copies = _promote_float64(outputs)
    outputs64 = [copies[o] for o in outputs]
    targets = _targets(outputs64, feeds) if wrt is None else _chosen(wrt, copies, feeds)
    scalar, feeds = _fold(outputs64, feeds, np.random.default_rng(seed))
    analytic = compile([scalar] + grad(scalar, targets), backend="reference", opt="O0")
    values = analytic(**feeds)[1:]
    evaluate = compile(scalar, backend="reference", opt="O0")
    report = {}
    for node, value in zip(targets, values):
        numeric = _numeric_grad(evaluate, node, feeds, eps)
        report[_label(node)] = _compare(node, np.asarray(value), numeric, rtol, atol)
    return report


# --- what to check ---------------------------------------------------------------------

def _outputs(outputs_or_fn, feeds):
    feeds = {name: np.asarray(v) for name, v in feeds.items()}
    if isinstance(outputs_or_fn, (Node, list, tuple)):
        outs = outputs_or_fn
    else:
        nodes = {name: dsl.input(name, v.shape, _feed_dtype(v)) for name, v in feeds.items()}
        outs = outputs_or_fn(*nodes.values())
    outs = [outs] if isinstance(outs, Node) else list(outs)
    feeds = {name: v.astype(np.float64) if v.dtype.kind == "f" else v
             for name, v in feeds.items()}
    return outs, feeds


def _feed_dtype(array):
    return "float64" if array.dtype.kind == "f" else array.dtype.name


def _targets(outputs, feeds):
    nodes = topological_order(outputs)
    return [n for n in nodes if is_float(n.dtype) and (
        n.op == "param" or (n.op == "input" and n.name in feeds))]


def _chosen(wrt, copies, feeds):
    """The float64 copies of the nodes asked for: params, or inputs that are fed."""
    for node in wrt:
        perturbable = node.op == "param" or (node.op == "input" and node.name in feeds)
        if node not in copies or not perturbable:
            raise ValueError(f"check_grads: wrt {node!r} must be a param or a fed input "
                             "that the outputs depend on")
    return [copies[node] for node in wrt]


def _label(node):
    return node.name or f"{node.op}@{node.loc}"


def _fold(outputs, feeds, rng):
    """One scalar that depends on every entry of every output: sum_k <w_k, out_k>, the
    random weights w_k fed as extra inputs (so symbolic output shapes work too)."""
    values = compile(outputs, backend="reference", opt="O0")(**feeds)
    total, feeds = None, dict(feeds)
    for k, (out, value) in enumerate(zip(outputs, values)):
        weights = dsl.input(f"check_grads_weights{k}", out.shape, "float64")
        feeds[weights.name] = rng.standard_normal(np.shape(value))
        term = dsl.sum(dsl.cast(out, "float64") * weights)
        total = term if total is None else total + term
    return total, feeds


# --- the float64 copy ------------------------------------------------------------------

def _promote_float64(outputs) -> dict:
    """Copy the graph with every float value in float64; return {old node: copy}."""
    copies = {}
    for node in topological_order(outputs):
        copies[node] = _promote_node(node, [copies[i] for i in node.inputs])
    return copies


def _as64(dtype: str) -> str:
    return "float64" if is_float(dtype) else dtype


def _promote_node(node: Node, inputs: list) -> Node:
    dtype = _as64(node.dtype)
    if node.op == "input":
        return dsl.input(node.name, node.shape, dtype)
    if node.op == "param":
        return dsl.param(node.name, node.value, dtype)
    if node.op == "const":
        return Node("const", (), {}, TensorType(node.shape, dtype), tags=node.tags,
                    value=_frozen(node.value.astype(dtype)))
    attrs = {k: _as64(v) if k == "dtype" else v for k, v in node.attrs.items()}
    return dsl.apply(node.op, *inputs, tags=node.tags, **attrs)


def _frozen(array):
    array.flags.writeable = False
    return array


# --- finite differences ----------------------------------------------------------------

def _numeric_grad(evaluate, node, feeds, eps):
    """Central differences of the scalar, one entry of `node` at a time."""
    if node.op == "input":
        cell = feeds[node.name].astype(np.float64)  # a copy: safe to perturb
        feeds = dict(feeds, **{node.name: cell})
    else:
        cell = node.value  # the float64 copy's own param value: safe to perturb
    result = np.zeros(cell.shape, np.float64)
    for index in np.ndindex(cell.shape):
        original = cell[index]
        cell[index] = original + eps
        up = float(evaluate(**feeds))
        cell[index] = original - eps
        down = float(evaluate(**feeds))
        cell[index] = original
        result[index] = (up - down) / (2 * eps)
    return result


def _compare(node, analytic, numeric, rtol, atol) -> float:
    error = np.abs(analytic - numeric)
    bad = error > atol + rtol * np.abs(numeric)
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(bad, error, -1)), error.shape)
        raise AssertionError(
            f"gradient of {_label(node)} {node.type} differs from finite differences at "
            f"{bad.sum()} of {bad.size} entries; worst at index {tuple(map(int, worst))}: "
            f"gc.grad {analytic[worst]:.10g}, numeric {numeric[worst]:.10g}, abs error "
            f"{error[worst]:.3g} (allowed {atol + rtol * abs(numeric[worst]):.3g})")
    return float(error.max()) if error.size else 0.0
