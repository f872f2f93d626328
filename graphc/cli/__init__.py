"""The `graphc` command: one subcommand a module in this package.

Each subcommand module has `add_arguments(parser)` and `run(args) -> int`.
"""

import argparse
import importlib
import sys

from graphc.errors import GraphcError

# name -> (module, one-line help). A table, read when the command starts.
SUBCOMMANDS = {
    "render": ("graphc.cli.render", "draw a model script's graph (SVG, PNG, PDF or DOT)"),
    "explore": ("graphc.cli.explore",
                "write a model script's graph as an HTML page to pan, zoom and click through"),
    "run": ("graphc.cli.run", "run a model script's main() on a chosen backend"),
    "opt": ("graphc.cli.opt", "run optimization passes on a text IR file and print the result"),
    "kernels": ("graphc.cli.kernels",
                "print the triton kernels of a text IR file and their sm_90 compile stats"),
    "bench": ("graphc.cli.bench", "run the benchmarks in bench/ (python -m bench)"),
}

# Optional packages (pyproject.toml's extras) that a subcommand or an example script may
# import: import name -> the extra that installs it. A missing one is named with the
# command that installs it, not shown as a traceback.
EXTRAS = {"torch": "triton", "triton": "triton", "threadpoolctl": "bench",
          "sklearn": "examples", "matplotlib": "examples", "tqdm": "examples",
          "selenium": "browser"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphc", description="graphc: a computational-graph compiler for neural networks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        return module.run(args)
    except GraphcError as e:  # a user mistake: the message, not a traceback
        print(f"graphc {args.command}: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        package = (e.name or "").split(".")[0]
        extra = EXTRAS.get(package)
        if extra is None:  # not an optional package: a bug, shown as one
            raise
        print(f"graphc {args.command}: error: {package} is not installed; graphc's "
              f'{extra} extra installs it: pip install -e ".[{extra}]"', file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
