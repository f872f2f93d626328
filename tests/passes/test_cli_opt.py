"""`graphc opt`: passes on a text IR file or stdin, levels, --print-after-all, errors."""

import io

from graphc.cli import main
from graphc.passes import PIPELINES
from tests.passes.irtools import strip

SOURCE = """\
%x = input() : f32[3]
%0 = neg(%x) : f32[3]
%1 = neg(%0) : f32[3]
%c = const(fill=2.0) : f32[]
%d = const(fill=3.0) : f32[]
%2 = add(%c, %d) : f32[]
%3 = mul(%1, %2) : f32[3]
return %3
"""


def _write(tmp_path):
    path = tmp_path / "g.ir"
    path.write_text(SOURCE)
    return str(path)


def test_named_passes_on_a_file(tmp_path, capsys):
    assert main(["opt", _write(tmp_path), "--passes", "simplify"]) == 0
    assert strip(capsys.readouterr().out) == strip("""
        %x = input() : f32[3]
        %0 = const(fill=2.0) : f32[]
        %1 = const(fill=3.0) : f32[]
        %2 = add(%0, %1) : f32[]
        %3 = mul(%x, %2) : f32[3]
        return %3""")


def test_level_from_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(SOURCE))
    assert main(["opt", "-", "-O2", "--verify"]) == 0
    assert strip(capsys.readouterr().out) == strip("""
        %x = input() : f32[3]
        %0 = const(fill=5.0) : f32[]
        %1 = mul(%x, %0) : f32[3]
        return %1""")


def test_print_after_all_shows_each_step(tmp_path, capsys):
    assert main(["opt", _write(tmp_path), "-O1", "--print-after-all"]) == 0
    out = capsys.readouterr().out
    headers = [line[2:] for line in out.splitlines() if line.startswith("# ")]
    assert headers == ["input"] + [f"after {name}" for name in PIPELINES["O1"]]


def test_unknown_pass_is_a_clear_error(tmp_path, capsys):
    assert main(["opt", _write(tmp_path), "--passes", "simplify,nope"]) == 1
    assert "unknown pass 'nope'" in capsys.readouterr().err


def test_bad_ir_names_the_line(tmp_path, capsys):
    path = tmp_path / "bad.ir"
    path.write_text("%x = input() : f32[3]\n%0 = frobnicate(%x) : f32[3]\nreturn %0\n")
    assert main(["opt", str(path)]) == 1
    assert "line 2" in capsys.readouterr().err


def test_plan_prints_the_buffer_plan_as_comments(tmp_path, capsys):
    path = tmp_path / "chain.ir"
    path.write_text("%x = input() : f32[batch,4]\n%0 = exp(%x) : f32[batch,4]\n"
                    "%1 = tanh(%0) : f32[batch,4]\nreturn %1\n")
    assert main(["opt", str(path), "--passes", "schedule", "--plan", "batch=8"]) == 0
    out = capsys.readouterr().out
    assert "# " in out and "(in place of %0)" in out
    assert "peak 128 bytes vs naive 256 bytes" in out
    assert strip(out) == strip(path.read_text())  # the plan is comments: the IR is intact
    assert main(["opt", str(path), "--plan"]) == 1
    assert "give a size for the symbolic dim 'batch'" in capsys.readouterr().err
