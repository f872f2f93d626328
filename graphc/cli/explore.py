"""`graphc explore FILE -o out.html [--backward] [--stage S] [--values] [--collapse ...]`:
write an example's graph as one self-contained HTML page (graphc.explore).

FILE follows the example-module convention of `graphc render` (graphc.cli.render); the
options are render's, and --collapse names the clusters that start collapsed.
"""

import argparse

from graphc.cli.render import add_picture_arguments, load_example, module_graph, \
    picture_options, print_text

EPILOG = """\
Open the page in a browser: drag to pan, wheel to zoom, click a cluster's name to
collapse it, click a node for its IR line, type, source line, value and (at
--stage fused) its kernel's generated source. Examples:
  graphc explore examples/mlp_digits.py -o mlp.html --backward --collapse 1
  graphc explore examples/xor.py -o xor.html --backward --values --stage fused
"""


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("file", metavar="FILE",
                        help="a model script defining build() -> {'outputs': [...], ...}")
    parser.add_argument("-o", "--output", metavar="OUT", required=True,
                        help="the HTML file to write")
    add_picture_arguments(parser)


def run(args) -> int:
    from graphc.explore import explore

    spec = module_graph(load_example(args.file), args.file)
    path = explore(spec["outputs"], args.output, title=f"graphc explore {args.file}",
                   **picture_options(args, spec))
    return print_text(f"wrote {path}")
