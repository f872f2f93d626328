"""Draws the README's gallery: pictures with numbers on them, scopes, stages, an explorer.

    python examples/gallery.py [--out docs/gallery] [--screenshot]

writes, into --out (default docs/gallery):
  xor_values.svg               XOR after training, each node's value on the four points
  xor_backward_simplified.svg  XOR's gradients after the cleanup passes, with values
  seed_forward.svg             seed 002's forward example, x = (3, -1): z1, a1, z2
  seed_backprop.svg            seed 002's backprop example: each value and gradient
  mlp_layers.svg               mlp_digits' training graph read as layers and a loss
  mlp_fused.svg                the same after fusion: each kernel a cluster
  mlp_explorer.html            the training graph as an explorer page, with values
  xor_fused_explorer.html      XOR's fused training graph: click a node for its kernel
and, with --screenshot (headless Chromium: graphc/browser.py), explorer.png.
The tests (tests/examples/test_gallery.py) check the seed pictures' numbers against
the notes' and that the files here are what this script writes.
"""

import argparse
import os
import sys

import numpy as np

import graphc as gc
import mlp_digits
import seed_worked_examples as seeds
import xor

LAYERS = ["layer1", "layer2", "layer3", "softmax_cross_entropy"]


def xor_values():
    model = xor.build()
    xor.train(model, steps=2000, lr=0.5, backend="numpy")
    return model["outputs"], {"values": model["feeds"]}


def xor_backward_simplified():
    model = xor.build()  # untrained: the gradients are far from zero
    return model["outputs"], {"backward": True, "stage": "simplified",
                              "values": model["feeds"], "collapse": ["softplus"]}


def seed_forward():
    rows, feeds = seeds.forward_example()
    return [rows[-1][1]], {"values": _arrays(feeds)}


def seed_backprop():
    spec = seeds.build()
    # The backward graph folded to one box: each node shows its value and its gradient.
    return spec["outputs"], {"backward": True, "values": spec["feeds"], "collapse": ["grad"]}


def digits_feeds(n=8) -> dict:
    X, y, _, _ = mlp_digits.load_digits()
    return {"x": X[:n], "y": y[:n]}


def mlp_layers():
    return [mlp_digits.build()["loss"]], {"backward": True, "collapse": LAYERS}


def mlp_fused():
    return [mlp_digits.build()["loss"]], {"backward": True, "stage": "fused"}


# file name -> function returning (outputs, gc.render options)
PICTURES = {
    "xor_values.svg": xor_values,
    "xor_backward_simplified.svg": xor_backward_simplified,
    "seed_forward.svg": seed_forward,
    "seed_backprop.svg": seed_backprop,
    "mlp_layers.svg": mlp_layers,
    "mlp_fused.svg": mlp_fused,
}


def mlp_explorer():
    return [mlp_digits.build()["loss"]], {"backward": True, "values": digits_feeds(),
                                          "collapse": LAYERS[:2]}


def xor_fused_explorer():
    model = xor.build()
    return [model["loss"]], {"backward": True, "stage": "fused", "values": model["feeds"]}


# file name -> function returning (outputs, gc.explore options)
PAGES = {
    "mlp_explorer.html": mlp_explorer,
    "xor_fused_explorer.html": xor_fused_explorer,
}


def _arrays(feeds: dict) -> dict:
    return {k: np.array(v, dtype=np.float32) for k, v in feeds.items()}


def screenshot(page: str, png: str):
    """The explorer page in headless Chromium, a node clicked, saved as a PNG."""
    from graphc.browser import console_errors, headless_chromium

    with headless_chromium(1400, 900) as driver:
        driver.get("file://" + os.path.abspath(page))
        driver.execute_script("show('layer3_W'); focus('layer3_W', 900)")
        driver.save_screenshot(png)
        errors = console_errors(driver)
    if errors:
        raise RuntimeError(f"{page}: console errors {errors}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join("docs", "gallery"))
    p.add_argument("--screenshot", action="store_true",
                   help="also photograph the explorer (needs Chromium and selenium)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for name, make in PICTURES.items():
        outputs, options = make()
        gc.render(outputs, path=os.path.join(args.out, name), **options)
        print(f"wrote {os.path.join(args.out, name)}")
    for name, make in PAGES.items():
        outputs, options = make()
        path = gc.explore(outputs, os.path.join(args.out, name),
                          title=f"graphc explorer: {name[:-5]}", **options)
        print(f"wrote {path}")
    if args.screenshot:
        png = os.path.join(args.out, "explorer.png")
        screenshot(os.path.join(args.out, "mlp_explorer.html"), png)
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
