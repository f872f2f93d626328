"""The triton backend's build: the program of a graph (program.py), its module loaded
(host.py), the buffers of its plan allocated once, and an executable that runs it.

A call converts the feeds to tensors on the device (on a CPU, torch shares the NumPy
memory), zeroes the check buffers, runs the host function (its collectives through the
executable's Collectives, on the device's tensors: NCCL on CUDA), raises the other
backends' error for the first bad one_hot label before any result is returned (so a
failed step commits no update), and returns NumPy copies of the results: a result that
is a view is that view of its base's values, taken with the op table's own NumPy
semantics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc import ops
from graphc.backends.base import KernelInfo, label_error
from graphc.backends.collectives import Collectives
from graphc.errors import GraphcError
from graphc.ir import Graph
from graphc.passes.schedule import format_plan

from . import aot, blocks, device, host, program as programs



@dataclass(frozen=True)
class Options:
    """The triton backend's knobs (gc.compile(..., options={...}))."""
    # the largest reduction row held in one block; longer rows take the looped path
    max_row_block: int = blocks.MAX_ROW_BLOCK
    autotune: bool | None = None    # time several block sizes (None: on a CUDA device)
    # float32 matmuls: "ieee" (exact), "tf32" or "bf16" operands, float32 sums in each;
    # None follows torch.backends.cuda.matmul.allow_tf32 when the build is made
    precision: str | None = None
    sms: int | None = None          # SMs a matmul grid should fill (None: the device's)

    def __post_init__(self):
        if self.precision not in (None,) + blocks.PRECISIONS:
            raise GraphcError(f"triton option precision must be one of "
                              f"{', '.join(blocks.PRECISIONS)} or None, got {self.precision!r}")


def build(graph: Graph, dims: dict, options: Options | None = None) -> "TritonExecutable":
    """Generate, load and wrap the program for `graph` at `dims`."""
    options = options or Options()
    torch, where = device.check()  # TRITON_INTERPRET may have been unset since gc.compile
    autotune = where == "cuda" if options.autotune is None else options.autotune
    program = programs.generate(graph, dims, settings(options, torch, where))
    return TritonExecutable(program, dims, torch, where, autotune)


def settings(options: Options, torch, where: str) -> blocks.Settings:
    """What the kernels are generated for: the options, with torch's tf32 switch and the
    device's SM count where they are left to None."""
    precision = options.precision or (
        "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee")
    sms = options.sms or (torch.cuda.get_device_properties(0).multi_processor_count
                          if where == "cuda" else blocks.H100_SMS)
    return blocks.Settings(options.max_row_block, precision, sms)


class TritonExecutable:
    def __init__(self, program: programs.Program, dims: dict, torch, where: str,
                 autotune: bool):
        self.program, self.dims, self.torch, self.device = program, dict(dims), torch, where
        # on a GPU, the autotuner times only the configs that compile there without spills
        configs = aot.spill_free_configs(program, device.arch(torch)) if (
            autotune and where == "cuda") else None
        self.source = host.module_source(program, where, autotune, configs)
        self.module = host.load_module(self.source)
        self.kernels = [kernel_info(launch) for launch in program.launches]
        plan = program.plan
        self.stats = {"kernels": len(program.launches), "device": where,
                      "views": sum(programs.view_of(n) is not None for n in plan.order),
                      "splits": list(program.notes), "peak_bytes": plan.peak_bytes,
                      "naive_bytes": plan.naive_bytes, "buffers": len(plan.sizes)}
        self.plan_text = format_plan(plan)
        self.libraries = ()   # Triton caches its own compiled kernels
        self.values = self._value_buffers()
        self.checks = [torch.zeros(c.size, dtype=self._dtype(c.dtype), device=where)
                       for c in host.check_buffers(program)]
        self.workspace = torch.empty(program.workspace, dtype=torch.float32, device=where)
        # consts never change: convert them once
        self._consts = {n: self._tensor(n.value) for n in program.sources if n.op == "const"}
        self.collectives = Collectives(program.graph, dims, device=where)

    def _dtype(self, name: str):
        return getattr(self.torch, name)

    def _value_buffers(self) -> list:
        """A tensor for each value with storage (host.argument_names' b[j]): a view of
        the start of its plan arena, which other values use when it is dead."""
        plan, torch = self.program.plan, self.torch
        arenas = [torch.empty(size, dtype=torch.uint8, device=self.device)
                  for size in plan.sizes]
        return [arenas[plan.buffer[n]][:n.type.nbytes(self.dims)].view(self._dtype(n.dtype))
                .view(n.type.concrete_shape(self.dims))
                for n in plan.order if n in plan.buffer]

    def _tensor(self, array):
        array = np.asarray(array)
        # torch wants writable memory (consts are read-only); kernels index it row-major
        if not (array.flags.writeable and array.flags.c_contiguous):
            array = array.copy()
        return self.torch.from_numpy(array).to(self.device)

    def __call__(self, feeds: dict, begin_commit=None) -> list:
        sources = [self._consts[n] if n.op == "const" else
                   self._tensor(feeds[n] if n.op == "input" else n.value)
                   for n in self.program.sources]
        for check in self.checks:
            check.zero_()
        # The interpreter runs kernels with NumPy, which warns where a tl.where's unused
        # branch divides by zero; inf and nan are values here, as in the reference.
        with np.errstate(all="ignore"):
            self.module.run(sources, self.values, self.checks, self.workspace,
                            self.collectives)
        for check, found in zip(host.check_buffers(self.program), self.checks):
            found = found.cpu().numpy()
            if found.any():
                _index_error(found, check)
        arrays = dict(zip(self.program.sources, sources))
        plan = self.program.plan
        arrays.update(zip([n for n in plan.order if n in plan.buffer], self.values))
        return [np.array(self._result(node, arrays)) for node in self.program.results]

    def _result(self, node, tensors: dict) -> np.ndarray:
        """A result's values: its tensor's, or, for a view, its base's seen through it."""
        chain = []
        while node not in tensors:
            chain.append(node)
            node = programs.view_of(node)
        array = tensors[node].cpu().numpy()
        for view in reversed(chain):
            array = ops.evaluate(view.op, [array], view.attrs, view.type, self.dims)
        return array

    def compile_for(self, arch="sm_90") -> list:
        """Compile every kernel in every autotune config ahead of time for `arch` (no
        GPU needed); one dict of stats per kernel and config (the heuristic's config
        first): registers, spill bytes, shared memory, PTX/cubin sizes, config."""
        return aot.compile_program(self.program, arch, every_config=True)


def kernel_info(launch: programs.Launch) -> KernelInfo:
    k = launch.kernel
    return KernelInfo(
        name=k.name, kind=k.kind, nodes=tuple(f"{n.op}@{n.loc}" for n in launch.nodes),
        strategy="triton", reason=launch.note, source=k.source,
        extra={"grid": k.grid, "blocks": dict(k.blocks), "num_warps": k.num_warps,
               "num_stages": k.num_stages, "workspace": k.workspace,
               "index_dtype": k.index_dtype, "node": launch.node})


def _index_error(found, check):
    """The error every backend raises for the first bad label (one_hot) or index."""
    if check.op == "one_hot":
        label_error(found, check.depth, check.loc)
    ops.checked_indices(check.op, found, check.depth, check.loc)
