"""`graphc opt --passes fuse --explain` and GRAPHC_LOGS=fusion show why ops were not fused."""

import numpy as np

import graphc as gc
from graphc import ir
from graphc.cli import main

TEXT = """\
%x = input() : f32[4,4]
%0 = exp(%x) : f32[4,4]
%1 = slice(%0, index=((0, 4, 1), (0, 4, 1))) : f32[4,4]
%2 = add(%0, %1) : f32[4,4]
%3 = neg(%2) : f32[4,4]
return %3
"""


def test_opt_explain_prints_one_reason_per_pair_then_the_fused_ir(tmp_path, capsys):
    path = tmp_path / "model.ir"
    path.write_text(TEXT)
    assert main(["opt", str(path), "--passes", "fuse", "--explain"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == [
        "# %0 exp -> %1 slice: slice is not fusible",
        "# %0 exp -> %2 add: would create a cycle through %1",
        "# %1 slice -> %2 add: slice is not fusible"]
    fused = ir.parse(out)  # the reasons are comments: the output still reads back
    assert [n.op for n in fused.nodes if n.op not in ir.SOURCE_OPS] == ["exp", "slice", "fused"]


def test_opt_explain_within_the_o2_pipeline(tmp_path, capsys):
    path = tmp_path / "model.ir"
    path.write_text(TEXT)
    assert main(["opt", str(path), "-O", "2", "--explain"]) == 0
    assert "# %0 exp -> %2 add: would create a cycle through %1" in capsys.readouterr().out


def test_graphc_logs_fusion_shows_the_why_not_fused_lines(monkeypatch, capsys):
    monkeypatch.setenv("GRAPHC_LOGS", "fusion")
    x = gc.input("x", ("batch", 4))
    h = gc.relu(x @ gc.param("W", np.ones((4, 3))))
    fn = gc.compile([gc.nn.softmax(h), h], backend="reference")
    fn(x=np.ones((2, 4), np.float32))
    err = capsys.readouterr().err
    assert "why not fused" in err
    assert "relu -> " in err and "is a graph output, so it is stored anyway" in err
