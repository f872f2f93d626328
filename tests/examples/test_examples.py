"""Every example script runs (fast settings, numpy backend) and does what it says."""

import gzip
import os
import socket
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from graphc.cli.render import load_example

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def example(name):
    return load_example(os.path.join(EXAMPLES, f"{name}.py"))


def test_xor_trains_to_full_accuracy_and_draws_both_graphs(tmp_path, capsys):
    assert example("xor").main(["--backend", "numpy", "--out", str(tmp_path)]) == 0
    assert "accuracy 100%" in capsys.readouterr().out
    forward = ET.parse(tmp_path / "xor_forward.svg").getroot()
    backward = ET.parse(tmp_path / "xor_backward.svg").getroot()
    words = lambda root: {t.text for t in root.iter() if t.tag.endswith("text")}  # noqa: E731
    assert {"W1", "relu", "sigmoid"} <= words(forward)
    assert "dL/dW1" in words(backward) and "dL/dW1" not in words(forward)
    fused = ET.parse(tmp_path / "xor_fused.svg").getroot()
    assert any("kernel k0" in (t.text or "") for t in fused.iter())


def test_xor_runs_as_a_script_from_another_directory(tmp_path):
    script = os.path.abspath(os.path.join(EXAMPLES, "xor.py"))
    result = subprocess.run([sys.executable, script, "--steps", "1500"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "xor_forward.svg").exists() and (tmp_path / "xor_backward.svg").exists()


def test_xor_without_graphviz_still_finishes_with_dot_text(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` binary on it
    assert example("xor").main(["--out", str(tmp_path)]) == 0
    assert "apt-get install graphviz" in capsys.readouterr().out
    assert (tmp_path / "xor_backward.dot").read_text().startswith("digraph")


def test_seed_worked_examples_match_the_notes(capsys):
    module = example("seed_worked_examples")
    assert module.main(["--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out and "all values agree with the notes" in out
    rows = {name: value for name, value, _, _ in
            module.run_exercise(module.backprop_example, "reference")}
    np.testing.assert_allclose(rows["dH/dW1"], [[8, 0], [4, 0]])
    np.testing.assert_allclose(rows["H"], 24)


def test_seed_worked_examples_report_a_wrong_value():
    module = example("seed_worked_examples")
    rows, feeds = module.forward_example()
    wrong = lambda: ([(n, node, np.asarray(v) + 1) for n, node, v in rows], feeds)  # noqa: E731
    assert not any(ok for *_, ok in module.run_exercise(wrong, "numpy"))


def test_mlp_digits_learns_in_a_few_epochs(tmp_path, capsys):
    module = example("mlp_digits")
    graph = tmp_path / "digits.svg"
    assert module.main(["--epochs", "5", "--graph", str(graph)]) == 0
    captured = capsys.readouterr()
    accuracy = float(captured.out.split("test accuracy ")[1].split("%")[0]) / 100
    assert accuracy >= 0.9
    assert "epoch 5/5" in captured.err and "accuracy=" in captured.err  # the progress bar
    assert ET.parse(graph).getroot().tag.endswith("svg")


def test_cnn_digits_learns_in_a_few_epochs_and_draws_both_graphs(tmp_path, capsys):
    module = example("cnn_digits")
    graph = tmp_path / "cnn.svg"
    assert module.main(["--epochs", "3", "--channels", "8", "16", "--graph", str(graph)]) == 0
    captured = capsys.readouterr()
    accuracy = float(captured.out.split("test accuracy ")[1].split("%")[0]) / 100
    assert accuracy >= 0.85
    assert "epoch 3/3" in captured.err and "accuracy=" in captured.err  # the progress bar
    words = lambda root: " ".join(t.text or "" for t in root.iter())  # noqa: E731
    forward = words(ET.parse(graph).getroot())
    assert "conv" in forward and "max_pool" in forward and "conv_input_grad" not in forward
    fused = words(ET.parse(tmp_path / "cnn_fused.svg").getroot())
    assert "kernel k0" in fused and "conv_weight_grad" in fused


def test_mlp_digits_trains_with_sgd_too():
    module = example("mlp_digits")
    X_train, y_train, X_test, y_test = module.load_digits()
    model = module.build(hidden=(32,))
    history = module.train(model, X_train, y_train, epochs=5, batch_size=32,
                           optimizer="sgd", lr=0.1, backend="numpy")
    assert history[-1][0] < history[0][0] and history[-1][1] > 0.85


def test_mlp_digits_trains_data_parallel_on_two_workers_started_by_torchrun(tmp_path):
    """The README's command, `torchrun --nproc-per-node 2 examples/mlp_digits.py
    --data-parallel`, with fewer epochs and a port of its own (bounded in time)."""
    script = os.path.abspath(os.path.join(EXAMPLES, "mlp_digits.py"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(port), script, "--data-parallel", "--epochs", "5",
         "--graph", str(tmp_path / "dp.svg")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "data-parallel over 2 workers, 32 examples each a step" in result.stdout
    assert result.stdout.count("test accuracy") == 1  # worker 0 speaks for the run
    assert float(result.stdout.split("test accuracy ")[1].split("%")[0]) >= 90
    assert (tmp_path / "dp.svg").exists()


def write_idx(path, array, type_code=0x08):
    data = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    data += struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()
    (gzip.open if str(path).endswith(".gz") else open)(path, "wb").write(data)


def test_read_idx_plain_gzip_and_wide_types(tmp_path):
    module = example("mlp_digits")
    images = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte", images)
    write_idx(tmp_path / "a-idx3-ubyte.gz", images)
    floats = np.linspace(-1, 1, 6).reshape(2, 3)
    write_idx(tmp_path / "f.idx", floats.astype(">f8"), 0x0E)
    np.testing.assert_array_equal(module.read_idx(str(tmp_path / "a-idx3-ubyte")), images)
    np.testing.assert_array_equal(module.read_idx(str(tmp_path / "a-idx3-ubyte.gz")), images)
    np.testing.assert_array_equal(module.read_idx(str(tmp_path / "f.idx")), floats)


def test_read_idx_rejects_bad_files(tmp_path):
    module = example("mlp_digits")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="not an IDX file"):
        module.read_idx(str(tmp_path / "bad"))
    write_idx(tmp_path / "short", np.zeros(4, np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match="need 12 bytes"):
        module.read_idx(str(tmp_path / "short"))


def test_mlp_digits_reads_an_mnist_directory(tmp_path, capsys):
    module = example("mlp_digits")
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 20)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
        images[:, 0, :10] = 0
        images[np.arange(n), 0, labels] = 255  # a learnable pixel per class
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{split}-labels.idx1-ubyte", labels)  # the other spelling
    X_train, y_train, X_test, y_test = module.load_mnist(str(tmp_path))
    assert X_train.shape == (40, 784) and X_test.shape == (20, 784) and X_train.max() <= 1
    assert module.main(["--mnist", str(tmp_path), "--epochs", "1", "--graph", ""]) == 0
    assert "40 training and 20 test examples of 784 features" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        module.load_mnist(str(tmp_path / "missing"))


def test_representation_separates_the_rings_and_saves_the_figure(tmp_path, capsys):
    figure = tmp_path / "representation.png"
    assert example("representation").main(["--steps", "250", "--out", str(figure)]) == 0
    accuracy = float(capsys.readouterr().out.split("training accuracy ")[1].split("%")[0])
    assert accuracy >= 95
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_representation_data_is_not_linearly_separable():
    from sklearn.linear_model import LogisticRegression

    X, y = example("representation").rings(400)
    assert LogisticRegression().fit(X, y).score(X, y) < 0.7
