"""Kernels built by hand for backend tests: a fused node whose body need not be one the
fuse pass would make (make_fused checks that; a backend must still run what it is given)."""

import graphc as gc
from graphc.ir import Node
from graphc.passes.fusion import body_graph


def hand_kernel(kind: str, operands: list, make_body) -> Node:
    """A fused node of `kind` whose body is make_body(*one input per operand); the body's
    inputs stand for the operands by position."""
    ins = [gc.input(f"in{k}", op.shape, op.dtype) for k, op in enumerate(operands)]
    body = body_graph(make_body(*ins), ins)
    return Node("fused", operands, {"kind": kind}, body.outputs[0].type, body=body)
