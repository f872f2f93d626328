"""The `fused` op: its op-table row, its text form, and make_fused for hand-built kernels."""

import numpy as np
import pytest

import graphc as gc
from graphc import ir
from graphc.backends.reference import run_graph
from graphc.errors import ParseError, ShapeError
from graphc.passes.fusion import check_kernel, make_fused
from tests.identity import same

KERNEL_TEXT = """\
%x = input() : f32[batch,8]
%W2 = param() : f32[8,2]
%b2 = param() : f32[2]
%k = fused(%x, %W2, %b2, kind='matmul') : f32[batch,2] {  # mlp.py:3
    %in0 = input() : f32[batch,8]
    %in1 = input() : f32[8,2]
    %0 = matmul(%in0, %in1) : f32[batch,2]
    %in2 = input() : f32[2]
    %1 = add(%0, %in2) : f32[batch,2]
    %2 = relu(%1) : f32[batch,2]
    return %2
}
%s = fused(%k, kind='reduction') : f32[batch] {  # [grad] mlp.py:4
    %in0 = input() : f32[batch,2]
    %0 = max(%in0, axes=(1,), keepdims=True) : f32[batch,1]
    %1 = sub(%in0, %0) : f32[batch,2]
    %2 = exp(%1) : f32[batch,2]
    %3 = sum(%2, axes=(1,), keepdims=True) : f32[batch,1]
    %4 = log(%3) : f32[batch,1]
    %5 = add(%4, %0) : f32[batch,1]
    %6 = squeeze(%5, axes=(1,)) : f32[batch]
    return %6
}
return %s"""


def strip_locations(text):
    """Parsed nodes without a location get the parser's caller's; compare without them."""
    return "\n".join(line.split("  #")[0] for line in text.splitlines())


def test_fused_nodes_print_and_parse_back():
    graph = ir.parse(KERNEL_TEXT)
    graph.lint()
    kernel = graph.outputs[0]
    assert kernel.op == "fused" and kernel.attrs["kind"] == "reduction"
    assert kernel.tags == frozenset({"grad"}) and kernel.loc == "mlp.py:4"
    assert strip_locations(str(graph)) == strip_locations(KERNEL_TEXT)
    assert strip_locations(str(ir.parse(str(graph)))) == strip_locations(KERNEL_TEXT)


def test_fused_row_runs_the_body_with_the_reference_interpreter():
    graph = ir.parse(KERNEL_TEXT)
    x, W, b = graph.inputs[0], *graph.params
    W.value[...] = np.arange(16).reshape(8, 2) / 10 - 0.7
    b.value[...] = [0.1, -0.2]
    X = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    got = run_graph(graph, {x: X}, {"batch": 5})[graph.outputs[0]]
    z = np.maximum(X @ W.value + b.value, 0)
    want = np.log(np.exp(z).sum(1))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got.dtype == np.float32 and got.shape == (5,)


def test_make_fused_from_a_builder_matches_the_unfused_ops():
    x = gc.input("x", ("batch", 3))
    b = gc.param("b", np.array([1.0, -2.0, 0.5]))
    kernel = make_fused("pointwise", [x, b], lambda x, b: gc.tanh(x * 2.0 + b))
    plain = gc.tanh(x * 2.0 + b)
    assert kernel.type == plain.type and same(kernel.inputs, [x, b])
    X = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    values = run_graph(gc.Graph([kernel, plain]), {x: X}, {"batch": 2})
    np.testing.assert_allclose(values[kernel], values[plain], rtol=1e-6)


def test_make_fused_refuses_a_body_its_kind_cannot_hold():
    x = gc.input("x", (4, 4))
    with pytest.raises(ValueError, match="sum: a pointwise kernel holds no reduction"):
        make_fused("pointwise", [x], lambda x: gc.sum(x, axis=1))
    with pytest.raises(ValueError, match="matmul operands are kernel inputs"):
        make_fused("matmul", [x, x], lambda a, b: gc.exp(a) @ b)
    with pytest.raises(ValueError, match="wrong axes"):
        make_fused("reduction", [x], lambda a: a + gc.sum(a, axis=1))


def test_check_kernel_accepts_the_relu_backward_mask_epilogue():
    g, W, z = gc.input("g", ("batch", 4)), gc.input("W", (3, 4)), gc.input("z", ("batch", 3))
    kernel = make_fused("matmul", [g, W, z],
                        lambda g, w, z: gc.where(z > 0, g @ gc.transpose(w), 0.0))
    assert check_kernel("matmul", kernel.body) is None


def test_fused_operand_types_must_match_the_body_inputs():
    text = KERNEL_TEXT.replace("%in0 = input() : f32[batch,8]", "%in0 = input() : f32[batch,9]")
    with pytest.raises(ShapeError, match="body input in0 is f32\\[batch,9\\]"):
        ir.parse(text).lint()


def test_an_unclosed_block_is_a_parse_error():
    with pytest.raises(ParseError, match="not closed"):
        ir.parse(KERNEL_TEXT.rsplit("}", 1)[0])


def test_make_fused_takes_a_body_graph():
    x, y = gc.input("x", (2, 3)), gc.input("y", (2, 3))
    first = make_fused("pointwise", [x, y], lambda a, b: gc.maximum(a, b) * 2.0)
    again = make_fused("pointwise", [y, x], first.body)
    assert again.body is first.body and again.type == first.type


def test_a_body_binds_its_operands_by_position_not_by_name():
    # The body's inputs, in the order they are written, stand for the operands: here the
    # first operand is subtracted from the second, whatever the inputs are called.
    text = """
%x = input() : f32[3]
%y = input() : f32[3]
%0 = fused(%x, %y, kind='pointwise') : f32[3] {
    %b = input() : f32[3]
    %a = input() : f32[3]
    %0 = sub(%a, %b) : f32[3]
    %1 = exp(%0) : f32[3]
    return %1
}
return %0
"""
    graph = ir.parse(text)
    assert str(ir.parse(str(graph))) == str(graph)
    x, y = np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.5, 0.5])
    for backend in ("reference", "numpy", "triton"):
        fn = gc.compile(list(graph.outputs), backend=backend, opt="O0")
        (out,) = fn(x=x, y=y)
        np.testing.assert_allclose(out, np.exp(y - x), rtol=1e-6)
