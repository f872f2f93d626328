"""`graphc bench [NAME ...]`: run the benchmarks in bench/ (the same as `python -m bench`).

The benchmarks live beside the package in a source checkout, not in the installed wheel:
this command finds bench/ next to the graphc package and runs its runner.
"""

import os
import sys

from graphc.errors import GraphcError

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _runner():
    if not os.path.isfile(os.path.join(_ROOT, "bench", "__main__.py")):
        raise GraphcError("graphc bench needs a source checkout of graphc: the benchmarks "
                          f"are in bench/ beside the package, and {_ROOT} has none")
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)
    import bench.__main__ as runner

    return runner


def add_arguments(parser):
    try:
        _runner().add_arguments(parser)
    except GraphcError as e:
        parser.epilog = str(e)


def run(args) -> int:
    return _runner().run(args)
