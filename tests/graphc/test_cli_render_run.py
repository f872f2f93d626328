"""`graphc render` and `graphc run`: the example-module convention, output, errors, help."""

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from graphc import cli, viz

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")

MODEL = textwrap.dedent('''
    import sys
    import numpy as np
    import graphc as gc

    def build():
        x = gc.input("x", ("batch", 3))
        W = gc.param("W", np.ones((3, 2)))
        with gc.scope("block"):
            out = gc.relu(x @ W)
        return {"outputs": [gc.mean(out), out], "feeds": {"x": np.ones((1, 3))}}

    def main(argv=None):
        with open(argv[-1], "w") as f:
            f.write(" ".join(argv))
        return 3

    if __name__ == "__main__":
        sys.exit(main())
''')


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return str(path)


def test_render_writes_the_picture_named_by_the_suffix(model, tmp_path, capsys):
    assert cli.main(["render", model, "-o", str(tmp_path / "g.svg")]) == 0
    assert "wrote" in capsys.readouterr().out
    root = ET.parse(tmp_path / "g.svg").getroot()
    assert {"W", "relu"} <= {t.text for t in root.iter() if t.tag.endswith("text")}
    assert cli.main(["render", model, "-o", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_render_without_output_prints_dot_text(model, capsys):
    assert cli.main(["render", model]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digraph") and viz.LOOKS["grad-op"]["fillcolor"] not in out
    assert cli.main(["render", model, "--backward"]) == 0
    out = capsys.readouterr().out
    assert viz.LOOKS["grad-op"]["fillcolor"] in out and "dL/dW" in out


def test_render_fused_draws_the_optimized_graph(model, capsys):
    assert cli.main(["render", model, "--backward"]) == 0
    assert "subgraph cluster_k" not in capsys.readouterr().out  # scopes only: no kernels
    assert cli.main(["render", model, "--backward", "--fused"]) == 0
    out = capsys.readouterr().out
    assert "subgraph cluster_k0" in out and viz.LOOKS["fused"]["fillcolor"] in out


def test_render_reports_a_module_without_build(tmp_path, capsys):
    path = tmp_path / "nobuild.py"
    path.write_text("x = 1\n")
    assert cli.main(["render", str(path)]) == 1
    assert "defines no build() function" in capsys.readouterr().err
    assert cli.main(["render", str(tmp_path / "missing.py")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_render_without_graphviz_says_how_to_install_it(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on it
    assert cli.main(["render", model, "-o", str(tmp_path / "g.svg")]) == 1
    assert "apt-get install graphviz" in capsys.readouterr().err
    assert cli.main(["render", model, "-o", str(tmp_path / "g.dot")]) == 0
    assert (tmp_path / "g.dot").read_text().startswith("digraph")


def test_run_calls_main_with_the_backend_and_extra_arguments(model, tmp_path):
    record = str(tmp_path / "argv.txt")
    assert cli.main(["run", model, "--backend", "reference", "--epochs", "2", record]) == 3
    assert open(record).read() == f"--backend reference --epochs 2 {record}"
    assert cli.main(["run", model, record]) == 3
    assert open(record).read() == f"--backend numpy {record}"


def test_run_and_render_work_on_the_shipped_examples(tmp_path, capsys):
    xor = os.path.join(EXAMPLES, "xor.py")
    assert cli.main(["run", xor, "--out", str(tmp_path), "--steps", "1500"]) == 0
    assert "accuracy 100%" in capsys.readouterr().out
    for name in ("xor", "mlp_digits", "representation", "seed_worked_examples"):
        out = tmp_path / f"{name}.svg"
        assert cli.main(["render", os.path.join(EXAMPLES, f"{name}.py"), "--backward",
                         "--fused", "-o", str(out)]) == 0
        assert ET.parse(out).getroot().tag.endswith("svg")


@pytest.mark.parametrize("command", [[], ["render"], ["run"], ["explore"]])
def test_help_explains_each_command(command, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(command + ["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    picture = ["build()", "--backward", "--fused", "--stage", "--values", "--collapse", "-o"]
    expected = {(): ["render", "run", "explore"], ("render",): picture,
                ("explore",): picture + ["pan", "zoom"],
                ("run",): ["main(", "--backend", "reference"]}[tuple(command)]
    assert all(word in out for word in expected), out


def test_the_command_runs_as_a_program(model):
    result = subprocess.run([sys.executable, "-m", "graphc.cli", "render", model],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("digraph")


def test_render_values_stage_and_collapse(model, tmp_path, capsys):
    assert cli.main(["render", model, "--values"]) == 0
    out = capsys.readouterr().out
    assert "value [[3, 3]]" in out and "grad " not in out  # relu(x @ W) at x = (1, 1, 1)
    assert cli.main(["render", model, "--values", "--backward", "--stage", "simplified"]) == 0
    assert "grad [[0.5, 0.5]]" in capsys.readouterr().out  # d mean / d out
    assert cli.main(["render", model, "--collapse", "block"]) == 0
    out = capsys.readouterr().out
    assert "box3d" in out and "subgraph cluster_s" not in out
    assert cli.main(["render", model, "--collapse", "1"]) == 0
    assert "box3d" in capsys.readouterr().out
    assert cli.main(["render", model, "--collapse", "nope"]) == 1
    assert "no scope named 'nope'" in capsys.readouterr().err


def test_render_values_need_the_scripts_feeds(tmp_path, capsys):
    path = tmp_path / "nofeeds.py"
    path.write_text(MODEL.replace(', "feeds": {"x": np.ones((1, 3))}', ""))
    assert cli.main(["render", str(path), "--values"]) == 1
    assert "returns no 'feeds' entry" in capsys.readouterr().err


def test_render_says_which_file_it_wrote(model, tmp_path, capsys):
    # A suffix that names no format gets one added, and the message says so (it used to
    # say "wrote g.ir" and write g.ir.svg).
    assert cli.main(["render", model, "-o", str(tmp_path / "g.ir")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'g.ir.svg'}"
    assert (tmp_path / "g.ir.svg").exists() and not (tmp_path / "g.ir").exists()


def test_render_into_a_pipe_closed_early_ends_quietly(tmp_path):
    path = tmp_path / "chain.py"
    path.write_text(textwrap.dedent('''
        import graphc as gc

        def build():
            out = gc.input("x", (2,))
            for _ in range(3000):  # DOT text far larger than a pipe's buffer
                out = gc.tanh(out)
            return {"outputs": [out]}
    '''))
    process = subprocess.Popen([sys.executable, "-m", "graphc.cli", "render", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith(b"digraph")
    process.stdout.close()  # as `| head -1` does
    assert process.wait(timeout=120) == 0
    assert b"Traceback" not in process.stderr.read()


def test_explore_writes_a_page(model, tmp_path, capsys):
    page = tmp_path / "g.html"
    assert cli.main(["explore", model, "-o", str(page), "--backward", "--values"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {page}"
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text
    assert '"scope":"block"' in text and '"value":"[[3, 3]]"' in text
