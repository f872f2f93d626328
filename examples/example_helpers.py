"""Helpers shared by the example scripts: the common command-line flags, saving a graph
picture that degrades to DOT text without Graphviz, and classification accuracy."""

import argparse
import os

import numpy as np

import graphc as gc
from graphc.backends import BACKENDS
from graphc.viz import GraphvizMissing


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every example takes (`graphc run` passes
    --backend)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backend", choices=list(BACKENDS), default="numpy",
                   help="backend that runs the compiled graphs (default: numpy)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return p


def save_graph(outputs, path: str, **render_options) -> str:
    """gc.render to `path`; without Graphviz's `dot`, write the DOT text next to it and
    say how to get pictures, so an example still finishes. Returns the path written."""
    try:
        gc.render(outputs, path=path, **render_options)
        return path
    except GraphvizMissing as e:
        dot_path = os.path.splitext(path)[0] + ".dot"
        gc.render(outputs, path=dot_path, **render_options)
        print(f"note: {e}; wrote the DOT text to {dot_path} instead")
        return dot_path


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose highest score is at the label (one column: score > 0)."""
    predicted = scores.argmax(axis=-1) if scores.ndim > 1 and scores.shape[-1] > 1 else (
        scores.reshape(len(labels)) > 0)
    return float(np.mean(predicted == labels))
