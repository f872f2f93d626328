"""The compile cache of the numpy backend's C kernels: a damaged cached library is built
again, never loaded. Each program runs in a subprocess, so that a library the loader maps
as it is (before the fix: SIGBUS, OSError, AttributeError) cannot kill the test run; the
cache is a temporary folder, never the user's ~/.cache/graphc."""

import ast
import hashlib
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from graphc.backends import ccompile

pytestmark = pytest.mark.skipif(not ccompile.available(), reason="no C compiler here")

# A program with C kernels (a bias add and a tanh, fused): prints its result.
PROGRAM = """
import numpy as np, graphc as gc
x = gc.input("x", (2, 3))
b = gc.param("b", [1.0, 2.0, 3.0])
f = gc.compile(gc.tanh(x + b), backend="numpy")
print(f(x=np.zeros((2, 3))).tolist())
assert f.kernels[0].extra["c_source"], "the kernel is not a C kernel"
"""


def _run_program():
    run = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"exit status {run.returncode}:\n{run.stderr[-3000:]}"
    np.testing.assert_allclose(ast.literal_eval(run.stdout), np.tanh([[1.0, 2.0, 3.0]] * 2), rtol=1e-6)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder, filled by one run of the program: {its libraries}."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _run_program()
    libraries = sorted((tmp_path / "graphc").glob("kernels_*.so"))
    assert len(libraries) == 2  # the compiler probe's and the program's
    return libraries


def _truncate(libraries):
    for path in libraries:
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _empty(libraries):
    for path in libraries:
        path.write_bytes(b"")


def _swap(libraries):
    a, b = libraries
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)


def _unrecorded(libraries):  # as a cache written before digests were recorded
    for path in libraries:
        pathlib.Path(f"{path}.sha256").unlink()


@pytest.mark.parametrize("damage", [_truncate, _empty, _swap, _unrecorded],
                         ids=["truncated", "empty", "another-library", "no-digest"])
def test_a_damaged_cached_library_is_built_again(cache, damage):
    damage(cache)
    _run_program()
    for path in cache:  # each rebuilt, with its digest
        recorded = pathlib.Path(f"{path}.sha256").read_text().strip()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded


def test_an_intact_cached_library_is_loaded_not_built_again(cache):
    stamps = [path.stat().st_mtime_ns for path in cache]
    _run_program()
    assert [path.stat().st_mtime_ns for path in cache] == stamps
