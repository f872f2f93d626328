"""`graphc render FILE -o OUT [--backward] [--fused]`: draw an example's graph.

The example-module convention (shared with `graphc run`): a model script defines

    def build() -> dict:            # the model's graph, built with default settings
        return {"outputs": [loss, probabilities],   # required: the nodes to draw
                "loss": loss, "params": [W1, b1]}   # anything else the script uses
    def main(argv=None) -> int:     # the script: parses argv (at least --backend), runs
        ...
    if __name__ == "__main__":
        sys.exit(main())

`graphc render` calls build() and draws build()["outputs"]; `--backward` adds the
gradients of the scalar outputs (the loss) with respect to the params they depend on.
`graphc run` calls main(["--backend", NAME, *extra arguments]). So `python
examples/xor.py` and `graphc run examples/xor.py` run the same code. The script's
directory is put on sys.path first, as `python FILE` does, so it may import its
neighbours (the examples share examples/example_helpers.py).
"""

import argparse
import importlib.util
import os
import sys

from graphc.errors import GraphcError


EPILOG = """\
FILE follows the example-module convention: it defines build() returning a dict
{"outputs": [nodes...], ...}; the outputs are drawn (include the loss to draw its
gradients with --backward). Examples:
  graphc render examples/xor.py -o xor.svg
  graphc render examples/mlp_digits.py -o digits.svg --backward --fused
  graphc render examples/xor.py | less          # DOT text, no Graphviz binary needed
"""


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("file", metavar="FILE",
                        help="a model script defining build() -> {'outputs': [...], ...}")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="file to write; the suffix picks the format (.svg .png .pdf, "
                             ".dot for DOT text). Without -o the DOT text is printed")
    parser.add_argument("--backward", action="store_true",
                        help="also draw the gradient (backward) graph of the loss")
    parser.add_argument("--fused", action="store_true",
                        help="draw the O2-optimized graph with each fused kernel a cluster")


def run(args) -> int:
    from graphc.viz import render

    module = load_example(args.file)
    spec = module_graph(module, args.file)
    dot = render(spec["outputs"], backward=args.backward, fused=args.fused, path=args.output)
    if args.output is None:
        print(dot.source)
    else:
        print(f"wrote {args.output}")
    return 0


def load_example(path: str):
    """Import a script by file path, without running its `if __name__ == "__main__"` part.

    Its directory goes first on sys.path, as with `python FILE`, so sibling imports work."""
    if not os.path.isfile(path):
        raise GraphcError(f"no such file: {path}")
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = "graphc_example_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def module_graph(module, path: str) -> dict:
    """build() of an example module, checked against the convention."""
    build = getattr(module, "build", None)
    if build is None:
        raise GraphcError(f"{path} defines no build() function; `graphc render` needs "
                          "build() -> {'outputs': [nodes...]} (see `graphc render --help`)")
    spec = build()
    if not isinstance(spec, dict) or "outputs" not in spec:
        raise GraphcError(f"{path}: build() must return a dict with an 'outputs' list of "
                          f"nodes, got {type(spec).__name__}")
    return spec
