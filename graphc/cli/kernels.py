"""`graphc kernels FILE [--dim NAME=SIZE ...] [-O LEVEL] [--arch sm_90] [--no-compile]`.

Reads a graph in the text IR, optimizes it, generates the triton backend's kernels for
the given sizes and prints each kernel's source, launch grid and block sizes; then
compiles every kernel ahead of time for the GPU arch (no GPU needed) and prints what
ptxas reports: registers, spill bytes, shared memory. Needs triton, not a GPU and not
the interpreter.
"""

import argparse
import sys

from graphc.cli.opt import parse_dims, read_graph, unbound_dims
from graphc.passes import PIPELINES, optimize

EPILOG = """\
examples:
  graphc kernels mlp_step.ir --dim batch=64
  graphc kernels model.ir --dim batch=128 --arch sm_80 -O1
  graphc kernels model.ir --dim batch=64 --no-compile     # sources only
"""


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("file", metavar="FILE", help="text IR file, or - for stdin")
    parser.add_argument("--dim", action="append", default=[], metavar="NAME=SIZE",
                        help="size of a symbolic dim (repeat for each dim)")
    parser.add_argument("-O", dest="level", choices=[k[1:] for k in PIPELINES], default="2",
                        help="optimization level before code generation (default 2)")
    parser.add_argument("--arch", default="sm_90", help="GPU arch to compile for (sm_90)")
    parser.add_argument("--no-compile", action="store_true",
                        help="print the kernels without compiling them")


def run(args) -> int:
    graph = read_graph(args.file)  # a bad file is reported whether or not triton is there
    from graphc.backends.triton import aot, program as programs

    graph = optimize(graph, "O" + args.level)
    dims = parse_dims(args.dim, "--dim")
    missing = unbound_dims(graph, dims)
    if missing:
        print(f"graphc kernels: give sizes for the symbolic dims {', '.join(missing)} "
              f"(e.g. --dim {missing[0]}=64)", file=sys.stderr)
        return 2
    program = programs.generate(graph, dims)
    stats = {} if args.no_compile else {
        s["name"]: s for s in aot.compile_program(program, args.arch)}
    for launch in program.launches:
        kernel = launch.kernel
        print(f"# {kernel.name}: {kernel.kind}, grid {kernel.grid}, blocks {kernel.blocks}, "
              f"{kernel.num_warps} warps, {kernel.index_dtype} indices")
        if launch.note:
            print(f"# note: {launch.note}")
        if kernel.name in stats:
            print("# " + _describe(stats[kernel.name]))
        print(kernel.source)
    if stats:
        print(_table(program.kernels, stats, args.arch))
    return 0


def _describe(s) -> str:
    return (f"{s['arch']}: {s['registers']} registers, spills {s['spill_stores']} B stored / "
            f"{s['spill_loads']} B loaded, {s['shared_bytes']} B shared, "
            f"cubin {s['cubin_bytes']} B")


def _table(kernels, stats, arch) -> str:
    width = max(len(k.name) for k in kernels)
    lines = [f"# {len(kernels)} kernels compiled for {arch}",
             f"# {'kernel':{width}}  {'kind':9}  regs  spill_st  spill_ld  shared"]
    for k in kernels:
        s = stats[k.name]
        lines.append(f"# {k.name:{width}}  {k.kind:9}  {s['registers']:4}  "
                     f"{s['spill_stores']:8}  {s['spill_loads']:8}  {s['shared_bytes']:6}")
    return "\n".join(lines)
