"""What every backend provides, and what its builds give back.

A backend is a `Backend`: a name, the dataclass of its knobs (`options`),
`build(graph, dims, options) -> Executable`, and `check()`, which raises
BackendUnavailable where it cannot run (a backend with optional packages). `gc.compile(..., options={...})` checks the
knobs against that dataclass, so a misspelt knob is an error that lists the real ones,
and tests set knobs through it rather than patching module globals.

A build may serve more bindings of the graph's symbolic dims than the one it was made
for: `fixed_dims(graph)(dims)` says which of them it is fixed to (their sizes), and its
executable serves every binding that agrees with `dims` there, taking the others at
run time from the feeds' shapes. The driver keeps one executable per such key. By
default a backend is fixed to every dim: one build per input shape.

An `Executable` runs one build: called with {input node: array}, it returns the graph's
outputs, then its update values, as NumPy arrays. It shows what it runs: `source` (the
generated code), `kernels` (one `KernelInfo` each), `stats`, and runs its graph's
collectives through `collectives` (a backends/collectives.Collectives).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Protocol

from graphc.errors import GraphcError


@dataclass(frozen=True)
class KernelInfo:
    """One kernel of a build, as the user sees it."""
    name: str                 # its name in the generated code
    kind: str                 # pointwise | reduction | matmul, or the op of a lone op
    nodes: tuple              # the ops it runs, each "op@file:line"
    strategy: str             # how it runs (e.g. "C loops", "ufuncs", "triton")
    reason: str               # why: the one-line refusals of the strategies before it
    source: str               # its generated code
    extra: dict = field(default_factory=dict)   # backend facts: C source, grid, blocks...


class Executable(Protocol):
    source: str
    kernels: list
    stats: dict
    plan_text: str            # its buffer plan as text ("" for a backend without one)
    libraries: tuple          # paths of compiled libraries a saved Function copies
    collectives: object       # backends/collectives.Collectives of the graph it runs

    def __call__(self, feeds: dict) -> list: ...


@dataclass(frozen=True)
class Backend:
    name: str
    options: type             # a frozen dataclass: the backend's knobs and defaults
    build: Callable           # (graph, dims, options) -> Executable
    # () -> None: raises BackendUnavailable, saying what to do, where the backend cannot
    # run here (backends.load calls it, so gc.compile fails at once)
    check: Callable = lambda: None
    # whether its executables have compile_for(arch): kernels compiled ahead of time for
    # a GPU that is not here (gc.Function.compile_for)
    ahead_of_time: bool = False
    # graph -> (dims -> {dim: size}): for that graph, the dims a build for `dims` is
    # fixed to; it serves every binding of the others (see the module). The driver
    # asks once per graph, then once per call.
    fixed_dims: Callable = lambda graph: lambda dims: dict(dims)

    def make_options(self, given: dict | None):
        """The backend's options from a dict of knobs; unknown ones are an error."""
        given = dict(given or {})
        known = {f.name for f in dataclasses.fields(self.options)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise GraphcError(f"backend {self.name!r} has no option {unknown[0]!r}; its "
                              f"options are {', '.join(sorted(known)) or 'none'}")
        return self.options(**given)


@dataclass(frozen=True)
class NoOptions:
    """A backend without knobs."""


def label_error(labels, depth: int, loc) -> None:
    """Raises the error of a one_hot label outside [0, depth), naming the first such
    label (a generated kernel found one: each backend's code calls this)."""
    bad = labels[(labels < 0) | (labels >= depth)].flat[0]
    raise GraphcError(f"one_hot: label {bad} is outside [0, {depth}) (made at {loc})")
