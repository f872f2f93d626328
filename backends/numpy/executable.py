"""What a numpy build gives back: the generated function, called with feeds, and what it
shows (source, kernels, stats, the buffer plan)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.errors import GraphcError
from graphc.types import format_shape


@dataclass(frozen=True)
class RunErrors:
    """Turns a NumPy failure inside the generated code into a GraphcError that names the
    op, its operand shapes and the user's line, found from the failing generated line."""
    filename: str
    line_nodes: dict
    dims: dict

    def translate(self, error: Exception) -> GraphcError:
        tb, lineno = error.__traceback__, None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                lineno = tb.tb_lineno
            tb = tb.tb_next
        node = self.line_nodes.get(lineno)
        if node is None:
            return GraphcError(f"generated code failed: {error}")
        shapes = " and ".join(format_shape(i.type.concrete_shape(self.dims)) for i in node.inputs)
        return GraphcError(f"{node.op} failed on operands of shapes {shapes} (made at "
                           f"{node.loc}; {self.filename} line {lineno}): {error}")


class NumpyExecutable:
    def __init__(self, fn, inputs, source, kernels, stats, plan_text, errors: RunErrors):
        self.fn, self.inputs = fn, inputs
        self.source, self.kernels, self.stats = source, kernels, stats
        self.plan_text = plan_text
        self._errors = errors
        self.libraries = ()   # the paths of its C kernels' libraries (a saved Function's)

    def __call__(self, feeds: dict, begin_commit=lambda: None) -> list:
        """The outputs and update values for {input node: array}; `begin_commit()` is
        called before the first write into a param (gc.compile's Commit.begin)."""
        try:
            with np.errstate(all="ignore"):  # inf/nan are values here, as in the reference
                return self.fn(begin_commit, *[feeds[node] for node in self.inputs])
        except (ValueError, IndexError, TypeError) as e:
            raise self._errors.translate(e) from None
