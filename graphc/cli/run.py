"""`graphc run FILE [--backend NAME] [ARGS...]`: run an example script's main().

The script follows the convention in graphc.cli.render: `main(argv)` parses its own
arguments, including `--backend`; the arguments after FILE are passed through.
"""

import argparse

from graphc.backends import BACKENDS
from graphc.cli.render import load_example
from graphc.errors import GraphcError


EPILOG = """\
FILE defines main(argv) (see `graphc render --help` for the convention); it is
called as main(["--backend", NAME, *ARGS]); --backend may also come after FILE.
Examples:
  graphc run examples/xor.py
  graphc run examples/mlp_digits.py --backend reference --epochs 5
"""


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("file", metavar="FILE", help="a model script defining main(argv)")
    parser.add_argument("--backend", choices=list(BACKENDS), default="numpy",
                        help="backend that runs the compiled graphs (default: numpy)")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="further arguments for the script, e.g. --epochs 5")


def run(args) -> int:
    module = load_example(args.file)
    main = getattr(module, "main", None)
    if main is None:
        raise GraphcError(f"{args.file} defines no main(argv) function for `graphc run`")
    # `graphc run FILE --backend X` leaves --backend among the script's own arguments.
    given = any(a == "--backend" or a.startswith("--backend=") for a in args.args)
    status = main(args.args if given else ["--backend", args.backend, *args.args])
    return status or 0
