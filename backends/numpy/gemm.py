"""Which matmul epilogues BLAS does for free: alpha * A @ B + beta * C in one gemm call.

A fused matmul kernel's body often goes on from the matmul with steps that are linear in
its value: a scale by a number (the learning rate, 1/batch), a negation, the addition or
subtraction of one more array (a bias, or the weight an SGD step updates), and reshapes
that keep the element order. The whole run is `alpha * A @ B + beta * C`, which is what
BLAS's gemm computes while it stores its tiles: the update `W - lr * (x.T @ g)` becomes
one call writing into W, not a matmul and two passes over W.

`gemm_chains` finds these runs in a body's steps; BodyWriter (ufuncs.py) writes
each as `_gemm(A, B, out, alpha, beta)`, after `np.copyto(out, C)` unless C already lives
in `out`. The rules are a table: op -> how the linear form changes when the running value
is one operand of that op.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.ir import Node

GEMM_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class LinearForm:
    """value = alpha * (A @ B) + beta * addend; the addend is added by the step `added_at`
    (later steps may reshape the sum: the addend goes in at that step's shape)."""
    alpha: float = 1.0
    beta: float = 0.0
    addend: Node | None = None
    added_at: Node | None = None


@dataclass(frozen=True)
class GemmChain:
    head: Node          # the matmul
    end: Node           # the last step of the run; its value is form's
    length: int         # steps from head to end, both included
    form: LinearForm


def _scaled(form, factor):
    return LinearForm(form.alpha * factor, form.beta * factor, form.addend, form.added_at)


def _with_addend(form, node, addend, sign_of_value, sign_of_addend):
    if form.addend is not None:  # one addend only: gemm has one C
        return None
    return LinearForm(form.alpha * sign_of_value, float(sign_of_addend), addend, node)


# op -> (node, the running value, its other operand, the other's number if known) -> the
# new form, or None when the step is not linear in the running value.
LINEAR_STEPS = {
    "mul": lambda form, node, other, number: None if number is None else _scaled(form, number),
    "div": lambda form, node, other, number: (
        _scaled(form, 1 / number) if number and node.inputs[1] is other else None),
    "neg": lambda form, node, other, number: _scaled(form, -1.0),
    "add": lambda form, node, other, number: _with_addend(form, node, other, 1, 1),
    "sub": lambda form, node, other, number: _with_addend(
        form, node, other, *((1, -1) if node.inputs[1] is other else (-1, 1))),
    "reshape": lambda form, node, other, number: form,
    "squeeze": lambda form, node, other, number: form,
    "expand_dims": lambda form, node, other, number: form,
}


def gemm_chains(steps: list, result: Node, number_of) -> dict:
    """{matmul step: GemmChain} for each 2-D float matmul of `steps` that a linear run of
    the following steps continues (number_of(value): the number a value is known at build
    time to hold throughout, else None). A run stops before a step that reads the running
    value twice, one whose value something else also reads, one that broadcasts or
    changes the dtype."""
    users = {}
    for node in steps:
        for inp in node.inputs:
            users[inp] = users.get(inp, 0) + 1
    chains = {}
    for i, head in enumerate(steps):
        if not _gemm_head(head):
            continue
        form, length, end = LinearForm(), 1, head
        while i + length < len(steps) and end is not result and users.get(end) == 1:
            step = steps[i + length]
            new = _extend(form, step, end, number_of)
            if new is None:
                break
            form, length, end = new, length + 1, step
        if (form.alpha, form.beta) != (1.0, 0.0):
            chains[head] = GemmChain(head, end, length, form)
    return chains


def _gemm_head(node: Node) -> bool:
    return node.op == "matmul" and all(
        i.ndim == 2 and i.dtype == node.dtype for i in node.inputs) and (
        node.dtype in GEMM_DTYPES)


def _extend(form: LinearForm, step: Node, value: Node, number_of):
    rule = LINEAR_STEPS.get(step.op)
    others = [i for i in step.inputs if i is not value]
    if rule is None or len(others) + 1 != len(step.inputs) or step.dtype != value.dtype or (
            _elements(step) != _elements(value)):
        return None
    other = others[0] if others else None
    number = None if other is None else number_of(other)
    return rule(form, step, other, None if number is None else float(number))


def _elements(node: Node) -> tuple:
    """The element count as a product of dims, symbolic ones kept by name."""
    ints = [d for d in node.shape if isinstance(d, int)]
    return (int(np.prod(ints, dtype=np.int64)), tuple(sorted(
        d for d in node.shape if not isinstance(d, int))))


def product_end(steps: list, result: Node, number_of, addend_in_output,
                use_gemm: bool) -> Node | None:
    """In a matmul kernel whose epilogue is C (one pass over the output after the
    product), the last step BLAS computes: the matmul, or the end of its gemm run when
    the run's addend is already in the output (an SGD update: gemm accumulates into W).
    Another addend (a bias) the C pass adds instead, saving gemm's copy of it into the
    output. addend_in_output(value): whether a body value is stored in the output;
    without gemm (use_gemm false) the product is np.matmul's, the matmul alone. None if
    the kernel has not exactly one matmul."""
    matmuls = [s for s in steps if s.op == "matmul"]
    if len(matmuls) != 1:
        return None
    chain = gemm_chains(steps, result, number_of).get(matmuls[0]) if use_gemm else None
    if chain is not None and (chain.form.addend is None or addend_in_output(chain.form.addend)):
        return chain.end
    return matmuls[0]
