"""A LeNet-style convolutional network for handwritten digits, trained with Adam.

The data is scikit-learn's 8x8 digits (1,797 images, no download), split 75/25 into
train and test sets as in mlp_digits.py. The model: two stages of 3x3 convolution
(padding 1) + ReLU + 2x2 max pooling (1x8x8 -> 16x4x4 -> 32x2x2), then two dense
layers (128 -> 64 -> 10), a softmax cross-entropy loss. Each epoch shows a progress bar
with the loss and the training accuracy; the script ends with the test accuracy.

    python examples/cnn_digits.py [--backend numpy|reference] [--epochs 40]
also draws the forward graph and the fused training graph to cnn_digits.svg and
cnn_digits_fused.svg (--graph; '' to skip). The triton backend has no conv kernel yet.
"""

import os
import sys

import numpy as np

import graphc as gc
from example_helpers import accuracy, parser, save_graph
from mlp_digits import load_digits, train

SIDE, CLASSES = 8, 10


def build(channels=(16, 32), hidden=64, seed=0) -> dict:
    """The classifier's graph (see the graphc.cli.render module for the convention)."""
    rng = np.random.default_rng(seed)
    x = gc.input("x", ("batch", SIDE * SIDE))
    y = gc.input("y", ("batch",), dtype="int64")
    out, params, c_in, side = gc.reshape(x, ("batch", 1, SIDE, SIDE)), [], 1, SIDE
    for i, c_out in enumerate(channels, 1):
        with gc.scope(f"stage{i}"):
            W, b = gc.nn.init_conv(f"conv{i}", c_in, c_out, (3, 3), rng)
            out = gc.nn.conv2d(out, W, b, padding=1, activation=gc.relu)
            out = gc.max_pool(out, 2)
        params += [W, b]
        c_in, side = c_out, side // 2
    flat = gc.reshape(out, ("batch", c_in * side * side))
    logits, dense = gc.nn.mlp(flat, [c_in * side * side, hidden, CLASSES], rng=rng,
                              name="dense")
    loss = gc.nn.softmax_cross_entropy(logits, y)
    return {"outputs": [loss, logits], "loss": loss, "logits": logits,
            "params": params + dense, "x": x, "y": y}


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40, help="passes over the data (default: 40)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default: 32)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate (default: 0.002)")
    p.add_argument("--channels", type=int, nargs=2, default=[16, 32],
                   help="channels of the two conv stages (default: 16 32)")
    p.add_argument("--graph", default="cnn_digits.svg",
                   help="where to draw the forward graph (the fused training graph goes "
                        "beside it, *_fused.svg); '' to skip (default: %(default)s)")
    args = p.parse_args(argv)

    X_train, y_train, X_test, y_test = load_digits(seed=args.seed)
    print(f"{len(X_train)} training and {len(X_test)} test images of {SIDE}x{SIDE}; "
          f"backend {args.backend}")
    model = build(tuple(args.channels), seed=args.seed)
    train(model, X_train, y_train, args.epochs, args.batch_size, "adam", args.lr,
          args.backend, seed=args.seed)
    test_accuracy = accuracy(gc.compile(model["logits"], backend=args.backend)(x=X_test), y_test)
    print(f"test accuracy {test_accuracy:.2%}")
    if args.graph:
        fused = os.path.splitext(args.graph)[0] + "_fused.svg"
        print(f"wrote {save_graph(model['loss'], args.graph)}")
        print(f"wrote {save_graph(model['loss'], fused, backward=True, fused=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
