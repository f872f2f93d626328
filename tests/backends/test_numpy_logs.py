"""GRAPHC_LOGS and debug_dir show the IR after each pass, the buffer plan and the code."""

import numpy as np
import pytest

import graphc as gc
from graphc.logs import topics_from_env


def _compile(**kwargs):
    x = gc.input("x", ("n",))
    fn = gc.compile(gc.tanh(x) * 2 + x, **kwargs)
    fn(x=np.ones(4))
    return fn


def test_graphc_logs_topics_go_to_stderr(monkeypatch, capsys):
    monkeypatch.setenv("GRAPHC_LOGS", "schedule,output_code")
    fn = _compile()
    err = capsys.readouterr().err
    assert "[graphc:schedule]" in err and "after schedule" in err
    assert "peak" in err and "naive" in err  # the buffer plan
    assert "[graphc:output_code]" in err and fn.source.strip() in err
    assert "[graphc:passes]" not in err


def test_passes_topic_shows_the_ir_before_and_after_each_pass(monkeypatch, capsys):
    monkeypatch.setenv("GRAPHC_LOGS", "passes")
    _compile()
    err = capsys.readouterr().err
    assert "input to O2" in err and "after simplify" in err and "after schedule" in err
    assert "tanh(%x)" in err


def test_no_logs_by_default(monkeypatch, capsys):
    monkeypatch.delenv("GRAPHC_LOGS", raising=False)
    _compile()
    assert "[graphc:" not in capsys.readouterr().err


def test_debug_dir_gets_every_topic_as_files(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHC_LOGS", raising=False)
    fn = _compile(debug_dir=str(tmp_path))
    (fn_dir,) = tmp_path.iterdir()
    names = sorted(p.name for p in fn_dir.iterdir())
    assert names[0] == "00_input.ir" and any(n.endswith("_schedule.ir") for n in names)
    assert (fn_dir / "source_n4.txt").read_text().strip() == fn.source.strip()
    assert "peak" in (fn_dir / "plan_n4.txt").read_text()
    gc.ir.parse((fn_dir / "00_input.ir").read_text())  # the dumps read back as IR


def test_unknown_topic_is_an_error_that_lists_the_topics():
    with pytest.raises(ValueError, match="output_code"):
        topics_from_env("fusoin")
    assert topics_from_env("all") == topics_from_env("passes,fusion,schedule,output_code")


def test_fusion_topic_shows_the_kernels_and_why_not_fused(monkeypatch, capsys):
    monkeypatch.setenv("GRAPHC_LOGS", "fusion")
    x = gc.input("x", (3, 4))
    h = gc.relu(x * 2)
    gc.compile([h.sum(), h])(x=np.ones((3, 4)))
    err = capsys.readouterr().err
    assert "before fuse" in err and "after fuse" in err and "fused(" in err
    assert "why not fused" in err and "graph output" in err
