"""Ahead-of-time compilation of generated kernels for a GPU that is not here.

`triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))` lowers a kernel to
PTX and a cubin without a driver. Register and spill counts are not in the compile
metadata without a GPU, so we run the `ptxas` shipped in the triton wheel with `-v` (and
triton's own flags, so the numbers match the cubin) and parse what it reports.

Compiles run in a child process (`CHILD`: `main` reads the spec as JSON on stdin) with
TRITON_INTERPRET unset: a kernel defined under the interpreter cannot
be compiled, and once the interpreter has run a kernel in a process, triton.compile in
that process fails inside the interpreter's patched builder. One child compiles all the
kernels of a program; results are cached per kernel source in the parent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile

from graphc.errors import BackendUnavailable

from . import host
from .elementwise import POINTER_TYPE
from .program import Launch, Program

CHILD = "from graphc.backends.triton.aot import main; main()"
_cache = {}   # (kernel source, num_warps, capability) -> stats: compiles take seconds


def capability(arch) -> int:
    """'sm_90' (or 'sm_90a', or 90) -> 90."""
    m = re.fullmatch(r"(?:sm_)?(\d+)a?", str(arch))
    if not m:
        raise ValueError(f"unknown GPU arch {arch!r}; expected e.g. 'sm_90'")
    return int(m.group(1))


def compile_program(program: Program, arch="sm_90", timeout=600) -> list:
    """Compile each kernel of `program` for `arch`; return one stats dict per kernel:
    registers, spill_stores / spill_loads (bytes), stack_frame, shared_bytes, ptx/cubin
    sizes, plus name, kind, blocks and num_warps."""
    cap = capability(arch)
    todo = [launch for launch in program.launches if _key(launch.kernel, cap) not in _cache]
    if todo:
        _check_installed()
        _, path = host.write_module(host.module_source(program, "cuda", autotune=False))
        spec = {"path": path, "capability": cap, "kernels": [_spec(k) for k in todo]}
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")   # triton 3.9 warns when unset
        run = subprocess.run([sys.executable, "-c", CHILD],
                             input=json.dumps(spec), capture_output=True, text=True,
                             env=env, timeout=timeout)
        if run.returncode != 0:
            raise RuntimeError(f"ahead-of-time compile for sm_{cap} failed:\n{run.stderr[-4000:]}")
        for launch, stats in zip(todo, json.loads(run.stdout.strip().splitlines()[-1])):
            _cache[_key(launch.kernel, cap)] = stats
    return [dict(_cache[_key(k, cap)], name=k.name) for k in program.kernels]


def _check_installed():
    """The child imports triton, and the generated module torch: name the one missing
    here, not as a ModuleNotFoundError inside the child."""
    missing = [name for name in ("triton", "torch") if importlib.util.find_spec(name) is None]
    if missing:
        raise BackendUnavailable(
            f"compiling kernels ahead of time needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: pip install -e "
            '".[triton]" (`graphc kernels --no-compile` prints the kernels without them)')


def _key(kernel, cap: int):
    return (kernel.source, kernel.num_warps, cap)


def _spec(launch: Launch) -> dict:
    """What the child needs: pointers typed by dtype, block sizes as constexprs."""
    kernel = launch.kernel
    pointers = ([f"in{k}_ptr" for k in range(len(launch.operands))] + ["out_ptr"]
                + [f"chk{j}_ptr" for j in range(len(kernel.checks))])
    dtypes = ([o.dtype for o in launch.operands] + [launch.node.dtype]
              + [c.dtype for c in kernel.checks])
    return {"name": kernel.name, "kind": kernel.kind, "num_warps": kernel.num_warps,
            "signature": {n: POINTER_TYPE[d] for n, d in zip(pointers, dtypes)},
            "blocks": dict(kernel.blocks)}


# --- the child process -------------------------------------------------------------------

def _compile_all(spec: dict) -> list:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.autotuner import Autotuner

    load = importlib.util.spec_from_file_location("graphc_aot_kernels", spec["path"])
    module = importlib.util.module_from_spec(load)
    load.loader.exec_module(module)
    cap, results = spec["capability"], []
    for k in spec["kernels"]:
        fn = getattr(module, k["name"])
        fn = fn.fn if isinstance(fn, Autotuner) else fn
        signature = dict(k["signature"], **{b: "constexpr" for b in k["blocks"]})
        # every pointer is 16-byte aligned, as torch allocations are (and a real launch
        # would specialize on it)
        attrs = {(i,): [["tt.divisibility", 16]] for i in range(len(k["signature"]))}
        compiled = triton.compile(
            ASTSource(fn=fn, signature=signature, constexprs=k["blocks"], attrs=attrs),
            target=GPUTarget("cuda", cap, 32), options={"num_warps": k["num_warps"]})
        ptx = compiled.asm["ptx"]
        results.append({"name": k["name"], "kind": k["kind"], "arch": f"sm_{cap}",
                        "num_warps": k["num_warps"], "blocks": k["blocks"],
                        "shared_bytes": compiled.metadata.shared, "ptx_bytes": len(ptx),
                        "cubin_bytes": len(compiled.asm["cubin"]), **ptxas_stats(ptx, cap)})
    return results


_REGS = re.compile(r"Used (\d+) registers")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_STACK = re.compile(r"(\d+) bytes stack frame")


def ptxas_stats(ptx: str, cap: int) -> dict:
    """Run the wheel's ptxas -v on `ptx`; parse registers, spills and stack frame."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    try:
        log = subprocess.run(
            [get_ptxas(cap).path, "-lineinfo", "-v", "--regAllocOptLevel=2",
             f"--gpu-name={sm_arch_from_capability(cap)}", f.name, "-o", os.devnull],
            capture_output=True, text=True, check=True).stderr   # -v reports on stderr
    finally:
        os.remove(f.name)
    regs, spills, stack = _REGS.search(log), _SPILLS.search(log), _STACK.search(log)
    if regs is None:
        raise RuntimeError(f"could not read the register count from ptxas:\n{log}")
    return {"registers": int(regs.group(1)),
            "spill_stores": int(spills.group(1)) if spills else 0,
            "spill_loads": int(spills.group(2)) if spills else 0,
            "stack_frame": int(stack.group(1)) if stack else 0}


def main():
    """The child process: the spec as JSON on stdin, the stats as JSON on stdout."""
    print(json.dumps(_compile_all(json.loads(sys.stdin.read()))))
