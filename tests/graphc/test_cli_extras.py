"""A `graphc` command that needs an optional package which is not installed says which
extra installs it (pip install -e ".[NAME]"), instead of a ModuleNotFoundError traceback.
Each case blocks the package's import (sys.modules[name] = None) for the test's time."""

import textwrap

import pytest

from graphc import cli


def test_bench_without_threadpoolctl_says_to_install_the_bench_extra(monkeypatch, capsys):
    monkeypatch.setitem(cli.sys.modules, "threadpoolctl", None)
    # --keep-blas-env: no re-run in a child process, where the package is not blocked
    assert cli.main(["bench", "compile_time", "--repeats", "1", "--keep-blas-env"]) == 2
    err = capsys.readouterr().err
    assert "not installed: threadpoolctl" in err and 'pip install -e ".[bench]"' in err


@pytest.mark.parametrize("module, extra", [("sklearn.datasets", "examples"),
                                           ("tqdm", "examples"), ("torch", "triton")])
def test_a_script_that_imports_a_missing_extra_names_it(module, extra, tmp_path, monkeypatch,
                                                        capsys):
    monkeypatch.setitem(cli.sys.modules, module.split(".")[0], None)
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(f"""
        import graphc as gc
        import {module}

        def build():
            return {{"outputs": [gc.input("x", (2,)) * 2]}}
    """))
    assert cli.main(["render", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"graphc render: error: {module.split('.')[0]} is not installed" in err
    assert f'pip install -e ".[{extra}]"' in err


def test_a_missing_module_that_is_no_extra_is_a_bug_shown_as_one(tmp_path):
    path = tmp_path / "model.py"
    path.write_text("import no_such_module_anywhere\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_module_anywhere"):
        cli.main(["render", str(path)])
