"""`graphc render FILE -o OUT [--backward] [--stage S] [--values] [--collapse ...]`: draw
an example's graph.

The example-module convention (shared with `graphc run`): a model script defines

    def build() -> dict:            # the model's graph, built with default settings
        return {"outputs": [loss, probabilities],   # required: the nodes to draw
                "loss": loss, "params": [W1, b1],   # anything else the script uses
                "feeds": {"x": X, "y": Y}}          # optional: inputs for --values
    def main(argv=None) -> int:     # the script: parses argv (at least --backend), runs
        ...
    if __name__ == "__main__":
        sys.exit(main())

`graphc render` calls build() and draws build()["outputs"]; `--backward` adds the
gradients of the scalar outputs (the loss) with respect to the params they depend on;
`--values` runs the graph on build()["feeds"] and writes every node's value (graphc.viz).
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
from graphc.viz import STAGES


EPILOG = """\
FILE follows the example-module convention: it defines build() returning a dict
{"outputs": [nodes...], ...}; the outputs are drawn (include the loss to draw its
gradients with --backward; give "feeds": {input name: array} for --values). Examples:
  graphc render examples/xor.py -o xor.svg
  graphc render examples/xor.py -o xor.svg --backward --values --stage simplified
  graphc render examples/mlp_digits.py -o digits.svg --backward --collapse 1
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
    add_picture_arguments(parser)


def add_picture_arguments(parser):
    """The options `graphc render` and `graphc explore` share: what to draw."""
    parser.add_argument("--backward", action="store_true",
                        help="also draw the gradient (backward) graph of the loss")
    parser.add_argument("--stage", choices=STAGES, default=None,
                        help="source: as built (default); simplified: after the cleanup "
                             "passes (O1); fused: after O2, each kernel a cluster")
    parser.add_argument("--fused", action="store_true", help="the same as --stage fused")
    parser.add_argument("--values", action="store_true",
                        help="run the graph on build()['feeds'] (reference backend) and "
                             "write each node's value; with --backward, each gradient too")
    parser.add_argument("--collapse", metavar="SCOPE", nargs="+",
                        help="draw these scopes (names, or one depth such as 1) as one box "
                             "each")


def run(args) -> int:
    from graphc.viz import render, write

    spec = module_graph(load_example(args.file), args.file)
    dot = render(spec["outputs"], **picture_options(args, spec))
    if args.output is None:
        return print_text(dot.source)
    return print_text(f"wrote {write(dot, args.output)}")


def picture_options(args, spec: dict) -> dict:
    """render()'s keywords from the shared options (add_picture_arguments)."""
    collapse = args.collapse
    if collapse and len(collapse) == 1 and collapse[0].isdigit():
        collapse = int(collapse[0])
    return {"backward": args.backward, "fused": args.fused, "stage": args.stage,
            "values": feeds(spec, args.file) if args.values else None, "collapse": collapse}


def feeds(spec: dict, path: str) -> dict:
    if "feeds" not in spec:
        raise GraphcError(f"--values needs inputs: {path}'s build() returns no 'feeds' "
                          "entry; add \"feeds\": {input name: array, ...} to its dict")
    return spec["feeds"]


def print_text(text: str) -> int:
    """Print to stdout; a reader that stops early (`| head`) ends the output quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would report the failed flush again at exit: point stdout at devnull.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
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
