"""The system C compiler, for the numpy backend's C kernels (c_kernels.py).

`compile_library(source)` builds a shared library from C99 source and loads it with
ctypes. Libraries are cached on disk under the source's hash (in $XDG_CACHE_HOME/graphc,
else ~/.cache/graphc), so a model compiles once per machine, not once per process. Each
library's SHA-256 is recorded beside it when it is built, and checked before it is
loaded: a cached file that is truncated, empty or another library (which the loader
would map as it is: a SIGBUS, or missing functions) is built again instead.
`available()` says whether a compiler works here at all: $CC, else `cc`, tried once on
a small program; without one the numpy backend keeps to NumPy calls.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

from graphc.errors import GraphcError

FLAGS = ("-O2", "-fvect-cost-model=dynamic", "-std=c99", "-shared", "-fPIC", "-fno-math-errno")
PRELUDE = "#include <math.h>\n#include <stdint.h>\n\n"


@functools.cache
def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc"))


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "graphc")


@functools.cache
def available() -> bool:
    """Whether C kernels can be built here (checked once a process)."""
    if _compiler() is None or not sys.platform.startswith(("linux", "darwin")):
        return False
    try:
        library = compile_library("int graphc_probe(void) { return 42; }\n")
        return library.graphc_probe() == 42
    except (GraphcError, OSError):
        return False


def compile_library(source: str) -> ctypes.CDLL:
    """Compile C99 source (PRELUDE is added) into a shared library and load it."""
    compiler = _compiler()
    if compiler is None:
        raise GraphcError("no C compiler found (set CC or install cc)")
    text = PRELUDE + source
    key = hashlib.sha256("\0".join((compiler,) + FLAGS + (text,)).encode()).hexdigest()[:24]
    folder = _cache_dir()
    path = os.path.join(folder, f"kernels_{key}.so")
    if not _is_intact(path):
        _build(compiler, text, folder, path)
    try:
        return ctypes.CDLL(path)
    except OSError as e:  # built and checked just now: the loader itself refuses it
        raise GraphcError(f"cannot load graphc's compiled kernels {path}: {e}") from None


def _is_intact(path: str) -> bool:
    """Whether `path` holds exactly the bytes whose SHA-256 was recorded when it was built."""
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        with open(path + ".sha256") as f:
            return f.read().strip() == digest
    except OSError:  # missing (or unreadable): build it
        return False


def _build(compiler: str, text: str, folder: str, path: str) -> None:
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as work:
        c_file = os.path.join(work, "kernels.c")
        with open(c_file, "w") as f:
            f.write(text)
        built = os.path.join(work, "kernels.so")
        run = subprocess.run([compiler, *FLAGS, "-o", built, c_file, "-lm"],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise GraphcError(f"the C compiler failed on graphc's kernels ({c_file}):\n"
                              f"{run.stderr[-2000:]}")
        with open(built, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        with open(built + ".sha256", "w") as f:
            f.write(digest + "\n")
        # Each replace is atomic. A concurrent build may pair its library with our digest
        # (builds differ by their temporary paths): then the next load builds it again.
        os.replace(built, path)
        os.replace(built + ".sha256", path + ".sha256")
