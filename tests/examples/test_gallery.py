"""The gallery (examples/gallery.py, docs/gallery): seed 002's worked exercises drawn with
the notes' numbers, and the checked-in files are the ones the script writes."""

import os
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import graphc as gc
from graphc import viz
from graphc.cli.render import load_example

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
GALLERY = os.path.join(ROOT, "docs", "gallery")


def example(name):
    return load_example(os.path.join(ROOT, "examples", f"{name}.py"))


def labels(dot) -> dict:
    """{first label line: the label's lines} for every node of a Digraph."""
    found = {}
    for line in dot.source.splitlines():
        m = re.match(r'\s*\S+ \[label="((?:[^"\\]|\\.)*)"', line)
        if m:
            lines = m.group(1).split(viz.NEWLINE)
            found[lines[0]] = lines
    return found


def numbers(lines, which) -> np.ndarray:
    """The numbers written after "value" (or "grad") in a label's lines."""
    text = " ".join(lines)
    part = text.split(which + " ", 1)[1]
    if which == "value" and " grad " in part:
        part = part.split(" grad ")[0]
    return np.array([float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", part)])


def node_lines(found, name):
    """A named node's label lines (its first line is "name: op", or "name" for sources)."""
    (lines,) = [v for k, v in found.items() if k == name or k.startswith(f"{name}: ")]
    return lines


def the_notes(rows) -> dict:
    return {quantity: np.ravel(np.asarray(value, dtype=float)) for quantity, _, value in rows}


def test_forward_exercise_picture_has_the_notes_numbers():
    gallery = example("gallery")
    notes = the_notes(example("seed_worked_examples").forward_example()[0])
    outputs, options = gallery.seed_forward()
    found = labels(gc.render(outputs, **options))
    assert set(notes) == {"z1", "a1", "z2"}
    for name, expected in notes.items():  # z1 = (5, -10, -4), a1 = (5, 0, 0), z2 = 11
        np.testing.assert_array_equal(numbers(node_lines(found, name), "value"), expected)
    np.testing.assert_array_equal(numbers(node_lines(found, "x"), "value"), [3, -1])


def test_backprop_exercise_picture_has_the_notes_numbers():
    gallery = example("gallery")
    notes = the_notes(example("seed_worked_examples").backprop_example()[0])
    outputs, options = gallery.seed_backprop()
    found = labels(gc.render(outputs, **options))
    for name in ("z1", "a1", "z2", "H"):  # forward values
        np.testing.assert_array_equal(numbers(node_lines(found, name), "value"), notes[name])
    for name in ("z1", "z2"):  # dH/dz beside z
        np.testing.assert_array_equal(numbers(node_lines(found, name), "grad"),
                                      notes[f"dH/d{name}"])
    for name in ("W1", "W2", "W3"):  # dH/dW beside W, as the notes' four formulas give
        np.testing.assert_array_equal(numbers(node_lines(found, name), "grad"),
                                      notes[f"dH/d{name}"])
    np.testing.assert_array_equal(numbers(node_lines(found, "W1"), "value"), [2, -3, 2, 1])


def svg_texts(name) -> list:
    root = ET.parse(os.path.join(GALLERY, name)).getroot()
    return [t.text for t in root.iter() if t.tag.endswith("text")]


def test_checked_in_seed_pictures_show_the_same_numbers():
    gallery = example("gallery")
    for name, make in (("seed_forward.svg", gallery.seed_forward),
                       ("seed_backprop.svg", gallery.seed_backprop)):
        outputs, options = make()
        drawn = {line for lines in labels(gc.render(outputs, **options)).values()
                 for line in lines}
        assert drawn <= set(svg_texts(name)), name


def test_the_gallery_holds_every_file_the_script_writes():
    gallery = example("gallery")
    for name in list(gallery.PICTURES) + list(gallery.PAGES) + ["explorer.png"]:
        assert os.path.isfile(os.path.join(GALLERY, name)), name
    with open(os.path.join(GALLERY, "explorer.png"), "rb") as f:
        assert f.read(4) == b"\x89PNG"


def test_the_gallery_script_writes_pictures_and_pages(tmp_path, capsys):
    gallery = example("gallery")
    # The slow pictures (training XOR, the digits MLP) are left to the checked-in files.
    quick = {k: gallery.PICTURES[k] for k in ("seed_forward.svg", "xor_backward_simplified.svg")}
    pages = {"xor_fused_explorer.html": gallery.PAGES["xor_fused_explorer.html"]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gallery, "PICTURES", quick)
        patch.setattr(gallery, "PAGES", pages)
        assert gallery.main(["--out", str(tmp_path)]) == 0
    assert sorted(os.listdir(tmp_path)) == sorted(list(quick) + list(pages))
    texts = {t.text for t in ET.parse(tmp_path / "xor_backward_simplified.svg").getroot().iter()
             if t.tag.endswith("text")}
    assert "binary_cross_entropy_with_logits/softplus" in texts and "grad" in texts


def test_xor_simplified_backward_shows_p_minus_y_beside_z():
    """What the README says of the picture: the gradient beside z is (p - y)/N."""
    gallery, xor = example("gallery"), example("xor")
    outputs, options = gallery.xor_backward_simplified()
    pic = viz.picture(outputs, options["backward"], options["stage"], options["values"])
    z = next(n for n in pic.graph.nodes if n.op == "sigmoid").inputs[0]
    p = pic.values[next(n for n in pic.graph.nodes if n.op == "sigmoid")]
    np.testing.assert_allclose(pic.grads[z], (p - xor.Y) / len(xor.Y), rtol=1e-5, atol=1e-7)
    assert f"grad {viz.value_text(pic.grads[z])}" in " ".join(svg_texts(
        "xor_backward_simplified.svg"))
