"""`graphc opt FILE|- [--passes a,b,c | -O0/-O1/-O2] [--print-after-all] [--verify]
[--plan DIM=SIZE,...] [--explain]`.

Reads a graph in the text IR (what `print(graph)` shows), runs passes on it, and prints
the result in the same form, so passes can be tried and tested one at a time.
"""

import argparse
import sys

from graphc.errors import GraphcError
from graphc.ir import parse
from graphc.passes import PASSES, PIPELINES, PassManager
from graphc.passes.schedule import format_plan, plan_buffers
from graphc.passes.fusion import check_kernel, explain_fusion

EPILOG = f"""\
passes: {', '.join(PASSES)}
levels: {', '.join(f'{k} = [{", ".join(v)}]' for k, v in PIPELINES.items())}
examples:
  graphc opt model.ir -O2
  graphc opt model.ir --passes simplify,cse --print-after-all
  graphc opt model.ir -O2 --plan batch=256
  python -c "..." | graphc opt - --passes fold
  graphc opt model.ir --passes fuse --explain
"""


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("file", metavar="FILE", help="text IR file, or - for stdin")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--passes", metavar="A,B,C",
                       help="comma-separated pass names to run in order")
    which.add_argument("-O", dest="level", choices=[k[1:] for k in PIPELINES],
                       help="run a named pipeline: -O0, -O1 or -O2 (the default)")
    parser.add_argument("--print-after-all", action="store_true",
                        help="print the input, then the IR after each pass")
    parser.add_argument("--verify", action="store_true",
                        help="check the IR after each pass (types, order, sources)")
    parser.add_argument("--plan", metavar="DIM=SIZE,...", nargs="?", const="",
                        help="after the result, print the buffer plan of its order for "
                             "these sizes of the symbolic dims (as '# ' comment lines)")
    parser.add_argument("--explain", action="store_true",
                        help="before the result, print why each touching pair of ops was "
                             "not fused (as '# ' comment lines), at the fuse pass")


def read_source(path: str) -> str:
    """The text of FILE, or of stdin for "-"."""
    if path == "-":
        return sys.stdin.read()
    with open(path) as f:
        return f.read()


def read_graph(path: str):
    """The graph of the text IR in FILE (or stdin): every node type-checked, and each
    kernel's body checked against its kind, so a bad file is a ParseError naming its line."""
    return parse(read_source(path), check_kernel=check_kernel)


def _explaining(graph, dump):
    """A dump hook that prints the why-not-fused lines for the graph the fuse pass got."""
    previous = [graph]

    def hook(name, result):
        if name == "fuse":
            lines = explain_fusion(previous[0]) or ["every producer fused with its consumers"]
            print("\n".join(f"# {line}" for line in lines) + "\n")
        previous[0] = result
        if dump is not None:
            dump(name, result)
    return hook


def run(args) -> int:
    graph = read_graph(args.file)
    if args.passes is not None:
        names = [name.strip() for name in args.passes.split(",") if name.strip()]
    else:
        names = PIPELINES["O" + (args.level or "2")]

    def show(title, g):
        print(f"# {title}\n{g}\n")

    dims = _dims(args.plan, graph) if args.plan is not None else None
    if args.print_after_all:
        show("input", graph)
    dump = (lambda name, g: show(f"after {name}", g)) if args.print_after_all else None
    if args.explain:
        dump = _explaining(graph, dump)
    result = PassManager(names, verify=args.verify, dump=dump).run(graph)
    if not args.print_after_all:
        print(result)
    if dims is not None:  # as comments, so the output stays readable IR
        plan = format_plan(plan_buffers(result, dims))
        print("\n".join(f"# {line}" for line in plan.splitlines()))
    return 0


def parse_dims(pairs, flag: str) -> dict:
    """['batch=256', 'n=3'] -> {'batch': 256, 'n': 3}; an error naming `flag` otherwise."""
    dims = {}
    for pair in pairs:
        name, _, size = pair.partition("=")
        if not name.isidentifier() or not size.isdigit():
            raise GraphcError(f"{flag} takes NAME=SIZE pairs like batch=256, got {pair!r}")
        dims[name] = int(size)
    return dims


def _dims(text: str, graph) -> dict:
    """'batch=256,n=3' -> {'batch': 256, 'n': 3}, covering every symbolic dim of graph."""
    dims = parse_dims(filter(None, (part.strip() for part in text.split(","))), "--plan")
    missing = unbound_dims(graph, dims)
    if missing:
        raise GraphcError(f"--plan: give a size for the symbolic dim {missing[0]!r}, e.g. "
                          f"--plan {missing[0]}=256")
    return dims


def unbound_dims(graph, dims: dict) -> list:
    """The graph's symbolic dims that `dims` gives no size, sorted."""
    symbolic = {d for node in graph.nodes for d in node.shape if isinstance(d, str)}
    return sorted(symbolic - set(dims))
