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
    dims: dict               # the build's: sizes, or the names of symbolic ones
    axes: tuple = ()         # (name, input index, axis) of each symbolic size

    def translate(self, error: Exception, inputs: list = ()) -> GraphcError:
        tb, lineno = error.__traceback__, None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                lineno = tb.tb_lineno
            tb = tb.tb_next
        node = self.line_nodes.get(lineno)
        if node is None:
            return GraphcError(f"generated code failed: {error}")
        at = {name: inputs[k].shape[axis] for name, k, axis in self.axes}  # this call's
        dims = {d: at.get(v, v) for d, v in self.dims.items()}
        shapes = " and ".join(format_shape(i.type.concrete_shape(dims)) for i in node.inputs)
        return GraphcError(f"{node.op} failed on operands of shapes {shapes} (made at "
                           f"{node.loc}; {self.filename} line {lineno}): {error}")


class NumpyExecutable:
    def __init__(self, fn, inputs, source, kernels, stats, plan_text, errors: RunErrors,
                 collectives, frames):
        self.fn, self.inputs, self.collectives = fn, inputs, collectives
        self.frames = frames  # runtime.Frames: a generic function's arrays per binding
        self.source, self.kernels, self._stats = source, kernels, stats
        self.plan_text = plan_text
        self._errors = errors
        self.libraries = ()   # the paths of its C kernels' libraries (a saved Function's)

    @property
    def stats(self) -> dict:
        """The build's (its plan's peak at the schedule's estimate of symbolic dims),
        and `arena_bytes`: what the arenas of a generic function's frames hold now."""
        return {**self._stats, "arena_bytes": self.frames.nbytes}

    def __call__(self, feeds: dict, begin_commit=lambda: None) -> list:
        """The outputs and update values for {input node: array}; `begin_commit()` is
        called before the first write into a param (gc.compile's Commit.begin)."""
        arrays = [feeds[node] for node in self.inputs]
        try:
            with np.errstate(all="ignore"):  # inf/nan are values here, as in the reference
                return self.fn(begin_commit, *arrays)
        except (ValueError, IndexError, TypeError) as e:
            raise self._errors.translate(e, arrays) from None
