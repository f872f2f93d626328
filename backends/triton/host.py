"""The generated module: the kernels, and a host function `run(s, b, c, w, collectives)`
that launches them in order.

`s` holds the source tensors (inputs, params, consts: Program.sources, in order), `b`
the values' buffers (`Buffers.values`: a view of the plan's arena for each value that
needs storage), `c` the one_hot check buffers (zeroed by the caller), `w` the float32
workspace of the split-K matmuls (Program.workspace elements), `collectives` the
executable's Collectives (backends/collectives.py), whose methods run the graph's
collectives between the launches. Every launch's arguments are fixed when the program
is made, so `run` is a list of launches and calls, no allocation: the buffers come from
the plan and live as long as the executable.

With `autotune`, each kernel is wrapped in triton.autotune over its configs (`configs`:
kernel name -> [blocks.Config], by default blocks.autotune_configs; build.py passes them
pruned of those that spill on the device, aot.py) and launched with a grid lambda of
the chosen config (a GPU's choice, timed there).
Nothing here imports triton or torch: the module is text until `load_module` imports
it (torch and triton are imported by the module itself).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile

from graphc.backends.collectives import call_source

from .blocks import autotune_configs
from .elementwise import PRELUDE
from .program import HostCall, Program
from .render import BF16_DOT


def argument_names(program: Program) -> dict:
    """node -> how the host function names its tensor: s[i] for a source, b[j] for a
    value with storage of its own (views have none: kernels read their bases)."""
    names = {node: f"s[{i}]" for i, node in enumerate(program.sources)}
    stored = [n for n in program.plan.order if n in program.plan.buffer]
    names.update({node: f"b[{j}]" for j, node in enumerate(stored)})
    return names


def module_source(program: Program, device: str, autotune: bool, configs=None) -> str:
    header = ("import torch\nimport triton\nimport triton.language as tl\n\n"
              f"DEVICE = {device!r}\n\n\n" + PRELUDE + "\n\n" + BF16_DOT[device])
    configs = configs or kernel_configs(program)
    kernels = "\n\n".join(_decorated(launch, program, configs[launch.kernel.name] if autotune
                                      else None) for launch in program.launches)
    return header + "\n\n" + kernels + "\n\n" + _host_function(program, autotune)


def kernel_configs(program: Program) -> dict:
    """kernel name -> the configs the autotuner may time, the heuristic's first."""
    return {k.name: autotune_configs(k.kind, k.config) for k in program.kernels}


def _decorated(launch, program: Program, configs) -> str:
    kernel = launch.kernel
    if configs is None:
        return kernel.source
    listed = ", ".join(f"triton.Config({c.blocks!r}, num_warps={c.num_warps}, "
                       f"num_stages={c.num_stages})" for c in configs)
    # a kernel that overwrites its operand in place must see it again for each config
    restore = ", restore_value=['out_ptr']" if launch.node in program.plan.in_place else ""
    return f"@triton.autotune(configs=[{listed}], key=[]{restore})\n" + kernel.source


def _host_function(program: Program, autotune: bool) -> str:
    names = argument_names(program)
    lines = ["def run(s, b, c, w, collectives):",
             '    """Launch every kernel: s holds the sources, b the values\' buffers, c the',
             '    one_hot check buffers, in the program\'s order, w the split-K workspace;',
             '    collectives run the collectives."""']
    checks = 0
    for launch in program.steps:
        if isinstance(launch, HostCall):
            lines.append("    " + call_source("collectives", launch.node,
                                              names[launch.operand], names[launch.node]))
            continue
        k = launch.kernel
        args = [names[o] for o in launch.operands] + [names[launch.node]]
        args += [f"c[{checks + j}]" for j in range(len(k.checks))]
        args += ["w"] if k.workspace else []
        checks += len(k.checks)
        if autotune:
            lines.append(f"    {k.name}[{k.grid_source}]({', '.join(args)})")
        else:
            blocks = "".join(f", {name}={v}" for name, v in k.blocks.items())
            lines.append(f"    {k.name}[{k.grid}]({', '.join(args)}{blocks}, "
                         f"num_warps={k.num_warps}, num_stages={k.num_stages})")
    if not program.steps:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


def check_buffers(program: Program) -> list:
    """Each kernel's CheckBuffers, in the order of the host function's c[...]."""
    return [check for launch in program.launches for check in launch.kernel.checks]


def write_module(source: str) -> tuple:
    """Write the generated source to a file named by its hash (kept if present); return
    (module name, path). @triton.jit reads a kernel's source from its file."""
    name = "graphc_triton_" + hashlib.sha1(source.encode()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), "graphc_triton")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".py")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(source)
        os.replace(tmp, path)   # atomic: a concurrent reader never sees half a file
    return name, path


def load_module(source: str):
    """Import the generated source as a module (once per process and source)."""
    name, path = write_module(source)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]
