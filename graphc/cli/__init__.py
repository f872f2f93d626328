"""The `graphc` command: one subcommand a module in this package.

Each subcommand module has `add_arguments(parser)` and `run(args) -> int`.
"""

import argparse
import importlib
import sys

# name -> (module, one-line help). A table, read when the command starts.
SUBCOMMANDS = {
}


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
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())
