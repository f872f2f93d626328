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


def compile_program(program: Program, arch="sm_90", timeout=600,
                    every_config=False) -> list:
    """Compile each kernel of `program` for `arch` in its heuristic config (with
    `every_config`, in each config of its autotune space, the heuristic's first); return
    one stats dict per kernel and config: registers, spill_stores / spill_loads (bytes),
    stack_frame, shared_bytes, ptx/cubin sizes, what the PTX holds (`wide_loads`:
    16-byte global loads and cp.async copies; `scalar_loads`; `narrow_copies`, cp.async
    of 4 or 8 bytes; `mma`: tensor-core instructions), plus name, kind, blocks, num_warps and num_stages."""
    cap = capability(arch)
    configs = host.kernel_configs(program) if every_config else {
        k.name: [k.config] for k in program.kernels}
    wanted = [(launch, config) for launch in program.launches
              for config in configs[launch.kernel.name]]
    todo = [(launch, config) for launch, config in wanted
            if _key(launch.kernel, config, cap) not in _cache]
    if todo:
        _check_installed()
        _, path = host.write_module(host.module_source(program, "cuda", autotune=False))
        spec = {"path": path, "capability": cap,
                "kernels": [_spec(launch, config) for launch, config in todo]}
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")   # triton 3.9 warns when unset
        run = subprocess.run([sys.executable, "-c", CHILD],
                             input=json.dumps(spec), capture_output=True, text=True,
                             env=env, timeout=timeout)
        if run.returncode != 0:
            raise RuntimeError(f"ahead-of-time compile for sm_{cap} failed:\n{run.stderr[-4000:]}")
        for (launch, config), stats in zip(todo, json.loads(run.stdout.strip().splitlines()[-1])):
            _cache[_key(launch.kernel, config, cap)] = stats
    return [dict(_cache[_key(launch.kernel, config, cap)], name=launch.kernel.name)
            for launch, config in wanted]


def spill_free_configs(program: Program, arch: str) -> dict:
    """kernel name -> the configs of its autotune space that compile for `arch` without
    spilling (the heuristic's alone if every one spills): what the autotuner times."""
    stats = compile_program(program, arch, every_config=True)
    configs = host.kernel_configs(program)
    kept = {}
    for k in program.kernels:
        mine = [s for s in stats if s["name"] == k.name]
        kept[k.name] = [c for c, s in zip(configs[k.name], mine)
                        if s["spill_stores"] == 0 and s["spill_loads"] == 0] or [k.config]
    return kept


def _check_installed():
    """The child imports triton, and the generated module torch: name the one missing
    here, not as a ModuleNotFoundError inside the child."""
    missing = [name for name in ("triton", "torch") if importlib.util.find_spec(name) is None]
    if missing:
        raise BackendUnavailable(
            f"compiling kernels ahead of time needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: pip install -e "
            '".[triton]" (`graphc kernels --no-compile` prints the kernels without them)')


def _key(kernel, config, cap: int):
    return (kernel.source, repr(config), cap)


def _spec(launch: Launch, config) -> dict:
    """What the child needs: pointers typed by dtype, block sizes as constexprs."""
    kernel = launch.kernel
    pointers = ([f"in{k}_ptr" for k in range(len(launch.operands))] + ["out_ptr"]
                + [f"chk{j}_ptr" for j in range(len(kernel.checks))])
    dtypes = ([o.dtype for o in launch.operands] + [launch.node.dtype]
              + [c.dtype for c in kernel.checks])
    if kernel.workspace:
        pointers, dtypes = pointers + ["ws_ptr"], dtypes + ["float32"]
    return {"name": kernel.name, "kind": kernel.kind, "num_warps": config.num_warps,
            "num_stages": config.num_stages,
            "signature": {n: POINTER_TYPE[d] for n, d in zip(pointers, dtypes)},
            "blocks": dict(config.blocks)}


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
            target=GPUTarget("cuda", cap, 32),
            options={"num_warps": k["num_warps"], "num_stages": k["num_stages"]})
        ptx = compiled.asm["ptx"]
        results.append({"name": k["name"], "kind": k["kind"], "arch": f"sm_{cap}",
                        "num_warps": k["num_warps"], "num_stages": k["num_stages"],
                        "blocks": k["blocks"], "shared_bytes": compiled.metadata.shared,
                        "ptx_bytes": len(ptx), "cubin_bytes": len(compiled.asm["cubin"]),
                        **ptx_facts(ptx), **ptxas_stats(ptx, cap)})
    return results


# 16-byte global loads: ld.global(.nc...).v4 of 32-bit lanes, or .v2 of 64-bit ones, and
# cp.async copies of 16 bytes (the pipelined matmul's loads into shared memory)
_WIDE = re.compile(r"\bld\.global(?:\.\w+)*\.(?:v4\.(?:b|f|u|s)32|v2\.(?:b|f|u|s)64)\b"
                   r"|\bcp\.async\.c[ga]\.shared\.global\S*\s+\[[^\]]+\],\s*\[[^\]]+\],\s*(?:16|0x10)\b")
_SCALAR = re.compile(r"\bld\.global(?:\.(?!v[248]\b)\w+)*\.(?:b|f|u|s)(?:8|16|32|64)\b")
_NARROW_COPY = re.compile(r"\bcp\.async\.c[ga]\.shared\.global\S*\s+\[[^\]]+\],\s*\[[^\]]+\],"
                          r"\s*(?:4|8|0x4|0x8)\b")
_MMA = re.compile(r"\b(?:wgmma\.mma_async|mma\.sync)\b")


def ptx_facts(ptx: str) -> dict:
    """What a kernel's PTX does: its 16-byte global loads and copies, its scalar loads
    and 4- or 8-byte copies, its tensor-core instructions."""
    return {"wide_loads": len(_WIDE.findall(ptx)), "scalar_loads": len(_SCALAR.findall(ptx)),
            "narrow_copies": len(_NARROW_COPY.findall(ptx)), "mma": len(_MMA.findall(ptx))}


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
