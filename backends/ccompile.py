"""The system C compiler, for the numpy backend's C kernels (backends/numpy/c.py).

`compile_kernels({name: source}, options)` builds C99 functions into shared libraries and
returns each as a ctypes function; sources that differ only by the function's name are
compiled once. The sources are grouped, in order, into compilation
units of at most `Options.unit_lines` lines (the compiler's time and memory grow faster
than a file's length, so one huge file is slow where several small ones are not), and the
units compile in parallel, up to the cores. Any failure raises one `CompileFailed`, whose
one-line `reason` the numpy backend shows as it falls back to NumPy kernels: a compiler
that fails (its source and output are kept under the cache's failed/ folder), one run
that passes `timeout_s` or all of them past `budget_s` (killed, with their children), a
cache that cannot be written.

$CC is a command line (`ccache gcc`, `gcc -m64`), default `cc`; the command, as found on
PATH, is part of each library's cache key. Libraries are cached on disk under that key
(in $XDG_CACHE_HOME/graphc, else ~/.cache/graphc), so a model compiles once per machine,
not once per process. Where that folder cannot be written (a read-only home, a shared
install), libraries already in it are still loaded, and new ones go to
$TMPDIR/graphc-<uid> (used only if this user alone owns it), said once a process. Each
library's SHA-256 is recorded beside it when it is built, and checked before it is
loaded: a cached file that is truncated, empty or another library (which the loader
would map as it is: a SIGBUS, or missing functions) is built again instead.

The cache is bounded: past `Options.cache_bytes` (libraries, digests and the failed/
folder together), the build that goes over it removes the least recently used entries
(a library's use time is its digest file's mtime, touched at each load) until it fits,
sparing those used in the last STALE_AFTER_S seconds (another process may be about to
load them). Several processes may build the same library at once: each builds in a
folder of its own and renames its library and digest into place as a pair, under an
exclusive lock of the cache folder (`cache.lock`), while a check and load of a library
and an eviction hold it shared or exclusive, so a library is never loaded half-replaced
or paired with another build's digest.

Each compiler run works in its own folder `build-XXXX` of the cache, locked (flock) while
its process lives; the next build removes the folders of builds that were killed.
`available(options)` says whether a compiler works here at all, tried once a process on
a small program; without one the numpy backend keeps to NumPy calls.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

from graphc.errors import GraphcError, GraphcWarning

FLAGS = ("-O2", "-fvect-cost-model=dynamic", "-std=c99", "-shared", "-fPIC", "-fno-math-errno")
PRELUDE = "#include <math.h>\n#include <stdint.h>\n\n"
PROBE = "int graphc_probe(void) { return 42; }\n"
BUILD_PREFIX = "build-"
# A build folder is removed only once its lock is free and it is this old: a live build
# takes its lock just after making its folder.
STALE_AFTER_S = 60
# Folders `tmpXXXX` of graphc before builds were locked: nothing else writes there, and
# no build ran this long.
LEGACY_STALE_AFTER_S = 3600
LOCK_NAME = "cache.lock"


@dataclass(frozen=True)
class Options:
    """How the C compiler is run: the numpy backend's option `cc`, e.g.
    gc.compile(..., options={"cc": ccompile.Options(timeout_s=10)})."""
    timeout_s: float = 60.0   # one compiler run; past it, it is killed and C is off
    budget_s: float = 300.0   # all compiler runs of one build together, likewise
    unit_lines: int = 4000    # a compilation unit gathers kernels up to this many lines
    #                           (the numpy backend runs a longer kernel as NumPy calls)
    jobs: int | None = None   # compiler runs at a time (None: the cores)
    cache_bytes: int = 256 * 2**20  # the on-disk cache's cap; least recently used go first


class CompileFailed(GraphcError):
    """C kernels that could not be built. `reason` says why in one line, naming where the
    failing source and the compiler's output were kept; the message adds that output."""

    def __init__(self, reason: str, output: str = ""):
        super().__init__(reason + (f"\n{output[-2000:]}" if output.strip() else ""))
        self.reason = reason


@functools.cache
def warn_once(message: str) -> None:
    """A GraphcWarning, the first time a process gives this message only (cached)."""
    warnings.warn(GraphcWarning(message), stacklevel=3)


@functools.cache
def _command(cc: str) -> tuple | None:
    """$CC as a command line, its program found on PATH; None if it cannot be run."""
    try:
        words = shlex.split(cc)
    except ValueError:  # an unclosed quote
        return None
    program = shutil.which(words[0]) if words else None
    return None if program is None else (program, *words[1:])


def compiler() -> tuple | None:
    """The C compiler's command line ($CC, else cc), or None if there is none."""
    return _command(os.environ.get("CC") or "cc")


def available(options: Options | None = None) -> bool:
    """Whether C kernels can be built here (checked once a process). A compiler that
    was asked for ($CC) but cannot be run, or one that fails the probe, says so."""
    command = compiler()
    if command is None or not sys.platform.startswith(("linux", "darwin")):
        if os.environ.get("CC"):
            warn_once(f"graphc: CC={os.environ['CC']!r} is not a command that can run "
                      "here; the numpy backend runs NumPy kernels instead of C")
        return False
    return _probe(command, options or Options())


@functools.cache
def _probe(command: tuple, options: Options) -> bool:
    try:
        return compile_kernels({"graphc_probe": PROBE}, options)["graphc_probe"]() == 42
    except CompileFailed as failed:
        warn_once(f"graphc: C kernels are off: a probe built with `{shlex.join(command)}` "
                  f"failed ({failed.reason}); the numpy backend runs NumPy kernels instead")
        return False


@dataclass
class Stats:
    """What this process asked of the compiler, for tests and benchmarks to observe
    (`ccompile.stats`): counts only, never read to decide anything."""
    requests: int = 0        # compile_kernels calls (one a function's library)
    compiled_units: int = 0  # units the C compiler was run on
    cached_units: int = 0    # units found built in the cache


stats = Stats()


class Kernels(dict):
    """{name: ctypes function}, and `files`: the paths of the libraries they were loaded
    from (what a saved Function copies, graphc/artifacts.py)."""
    files: tuple = ()


def compile_kernels(named_sources: dict, options: Options | None = None) -> Kernels:
    """{name: ctypes function} for {name: C99 source of the function `name`} (PRELUDE
    is added); raises CompileFailed if any of them cannot be built and loaded."""
    options = options or Options()
    command = compiler()
    if command is None:
        raise CompileFailed("no C compiler found (set CC or install cc)")
    same_as = _same_functions(named_sources)
    distinct = {name: named_sources[name] for name in dict.fromkeys(same_as.values())}
    units = [_Unit(command, names, distinct) for names in _group(distinct, options.unit_lines)]
    missing = [unit for unit in units if unit.cached() is None]
    stats.requests += 1
    stats.cached_units += len(units) - len(missing)
    if missing:
        _build_all(command, missing, _writable_folder(), options)
    functions = {}
    for unit in units:
        functions.update(unit.load())
    kernels = Kernels((name, functions[same_as[name]]) for name in named_sources)
    kernels.files = tuple(unit.path for unit in units)
    return kernels


def install(file_name: str, source: str, digest: str) -> None:
    """Puts a library built elsewhere (a saved Function's copy at `source`, whose
    SHA-256 is `digest`) into the cache as `file_name`, so that loading its kernels
    compiles nothing; one already cached intact is kept. The copy is checked against
    `digest` first (CompileFailed if it differs: a damaged file is never loaded), then
    written to a temporary file and renamed into place under the cache's lock."""
    if not re.fullmatch(r"kernels_[0-9a-f]{24}\.so", file_name):
        raise CompileFailed(f"{file_name!r} is not the name of a graphc kernel library")
    with open(source, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != digest:
        raise CompileFailed(f"the library {source} is damaged: its SHA-256 is not the one "
                            "recorded when it was saved")
    if any(_is_intact(os.path.join(folder, file_name)) for folder in _readable_folders()):
        return
    folder = _writable_folder()
    with tempfile.NamedTemporaryFile(dir=folder, prefix=BUILD_PREFIX, delete=False) as f:
        f.write(data)
    with open(f.name + ".sha256", "w") as d:
        d.write(digest + "\n")
    path = os.path.join(folder, file_name)
    with cache_lock(folder, fcntl.LOCK_EX):
        os.replace(f.name, path)
        os.replace(f.name + ".sha256", path + ".sha256")


def _same_functions(named_sources: dict) -> dict:
    """{name: the first name whose source is the same but for the function's name}:
    repeated layers give repeated kernels, compiled once (in one file, gcc's identical
    code folding would do that; across compilation units it cannot)."""
    first = {}
    return {name: first.setdefault(re.sub(rf"\b{re.escape(name)}\b", "", source), name)
            for name, source in named_sources.items()}


def _group(named_sources: dict, limit: int) -> list:
    """The names, in order, in groups whose sources are at most `limit` lines together
    (a longer source is a group alone)."""
    groups, lines = [[]], 0
    for name, source in named_sources.items():
        length = source.count("\n") + 1
        if groups[-1] and lines + length > limit:
            groups.append([])
            lines = 0
        groups[-1].append(name)
        lines += length
    return [tuple(group) for group in groups if group]


# --- where libraries live ------------------------------------------------------------------

def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "graphc")


def _fallback_dir() -> str:
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", f"graphc-{os.geteuid()}")


def _owned_alone(folder: str) -> bool:
    """Whether this user owns `folder` and no one else may write in it: a shared
    temporary folder where another user made it could hand us their libraries."""
    info = os.stat(folder)
    return info.st_uid == os.geteuid() and not info.st_mode & 0o022


def _readable_folders() -> list:
    folders = [_cache_dir()]
    fallback = _fallback_dir()
    if os.path.isdir(fallback) and _owned_alone(fallback):
        folders.append(fallback)
    return folders


def _writable_folder() -> str:
    """The cache folder new libraries go to: the cache, else the fallback folder (said
    once); CompileFailed if neither can be written."""
    problems = []
    for folder in (_cache_dir(), _fallback_dir()):
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            if folder != _cache_dir() and not _owned_alone(folder):
                raise PermissionError(f"{folder} is not this user's alone")
            with tempfile.TemporaryFile(dir=folder):  # can files be made in it?
                pass
        except OSError as e:
            problems.append(f"{folder}: {e.strerror or e}")
            continue
        if problems:
            warn_once(f"graphc: cannot write the C kernel cache ({problems[0]}); "
                      f"compiled kernels go to {folder}")
        return folder
    raise CompileFailed(f"no writable folder for compiled C kernels ({'; '.join(problems)})")


def _is_intact(path: str) -> bool:
    """Whether `path` holds exactly the bytes whose SHA-256 was recorded when it was built."""
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        with open(path + ".sha256") as f:
            return f.read().strip() == digest
    except OSError:  # missing (or unreadable): build it
        return False


class _Unit:
    """Some kernels compiled together into one library, named by the hash of the
    compiler's command, its flags and the source."""

    def __init__(self, command: tuple, names: tuple, named_sources: dict):
        self.names = names
        self.text = PRELUDE + "\n".join(named_sources[name] for name in names)
        key = "\0".join(command + FLAGS + (self.text,))
        self.key = hashlib.sha256(key.encode()).hexdigest()[:24]
        self.file_name = f"kernels_{self.key}.so"

    def cached(self) -> str | None:
        """The path of this unit's intact library in a cache folder, if one holds it."""
        paths = (os.path.join(folder, self.file_name) for folder in _readable_folders())
        return next((path for path in paths if _is_intact(path)), None)

    def load(self) -> dict:
        """The unit's functions, from its library checked and loaded under the cache's
        shared lock (no store or eviction in between); its use time touched."""
        for folder in _readable_folders():
            path = os.path.join(folder, self.file_name)
            with cache_lock(folder, fcntl.LOCK_SH):
                if _is_intact(path):
                    return self._open(path)
        # built just now, then gone (an eviction or cleanup of the cache by another process)
        raise CompileFailed(f"graphc's compiled kernels {self.file_name} vanished")

    def _open(self, path: str) -> dict:
        try:
            library = ctypes.CDLL(path)
            functions = {name: getattr(library, name) for name in self.names}
        except (OSError, AttributeError) as e:  # built and checked: the loader refuses it
            raise CompileFailed(f"cannot load graphc's compiled kernels {path}: {e}") from None
        _touch(path + ".sha256")
        self.path = path
        return functions


@contextlib.contextmanager
def cache_lock(folder: str, mode: int):
    """The cache folder's lock, shared (LOCK_SH: checking and loading) or exclusive
    (LOCK_EX: storing, evicting); a folder where the lock file cannot be made (a
    read-only cache, which no one writes) is used without it."""
    try:
        lock = open(os.path.join(folder, LOCK_NAME), "a")
    except OSError:
        yield
        return
    with lock:
        fcntl.flock(lock, mode)
        yield


def _touch(path: str) -> None:
    """Marks a cache entry used now (its use time, for eviction); not in a read-only cache."""
    with contextlib.suppress(OSError):
        os.utime(path)


# --- building ---------------------------------------------------------------------------

def _build_all(command: tuple, units: list, folder: str, options: Options) -> None:
    """Builds the units' libraries into `folder`, `jobs` compiler runs at a time."""
    _remove_stale_builds(folder)
    builds = []
    try:
        for unit in units:
            builds.append(_Build(unit, folder))
        _run(command, builds, options)
        with cache_lock(folder, fcntl.LOCK_EX):
            for build in builds:
                build.store(folder)
            evict(folder, options.cache_bytes)
    except OSError as e:
        raise CompileFailed(f"cannot build C kernels in {folder}: {e}") from None
    finally:
        for build in builds:
            build.close()


def _run(command: tuple, builds: list, options: Options) -> None:
    """Runs the builds' compilers; raises CompileFailed at the first that fails or runs
    past timeout_s, or when they run past budget_s together."""
    deadline = time.monotonic() + options.budget_s
    waiting, running = list(builds), []
    jobs = options.jobs or _cores()
    while waiting or running:
        while waiting and len(running) < jobs:
            running.append(waiting.pop(0))
            running[-1].start(command)
            stats.compiled_units += 1
        for build in list(running):
            status = build.process.poll()
            if status is not None:
                running.remove(build)
                if status != 0 or not os.path.exists(build.library):
                    raise build.failed(f"the C compiler failed on graphc's kernels "
                                       f"(exit status {status})")
            elif time.monotonic() - build.started > options.timeout_s:
                raise build.failed(f"the C compiler ran past its timeout of "
                                   f"{options.timeout_s:g} s")
        if running and time.monotonic() > deadline:
            built = len(builds) - len(waiting) - len(running)
            raise running[0].failed(
                f"compiling the C kernels ran past the budget of {options.budget_s:g} s "
                f"({built} of {len(builds)} compilation units built)")
        time.sleep(0.005)


def _cores() -> int:
    """The cores this process may run on (macOS has no affinity call)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _Build:
    """One unit's compiler run, in its own folder of the cache, which it keeps locked
    while it lives: a folder whose lock is free is a killed build's, to remove."""

    def __init__(self, unit: _Unit, folder: str):
        self.unit, self.folder, self.process = unit, folder, None
        self.work = tempfile.mkdtemp(prefix=BUILD_PREFIX, dir=folder)
        try:
            self.lock = open(os.path.join(self.work, "lock"), "w")
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            shutil.rmtree(self.work, ignore_errors=True)
            raise
        self.source = os.path.join(self.work, "kernels.c")
        self.log = os.path.join(self.work, "kernels.log")
        self.library = os.path.join(self.work, "kernels.so")
        with open(self.source, "w") as f:
            f.write(unit.text)

    def start(self, command: tuple) -> None:
        argv = [*command, *FLAGS, "-o", self.library, self.source, "-lm"]
        with open(self.log, "w") as log:
            log.write(f"$ {shlex.join(argv)}\n")
            log.flush()
            # its own process group: a timeout kills the compiler's children too (cc1),
            # which would otherwise run on, holding the log open
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()

    def failed(self, reason: str) -> CompileFailed:
        """The error for this build, its source and log kept under the cache's failed/."""
        self.kill()
        with open(self.log, errors="replace") as f:
            output = f.read()
        kept = os.path.join(self.folder, "failed", self.unit.key)
        try:
            os.makedirs(os.path.dirname(kept), exist_ok=True)
            shutil.copyfile(self.source, kept + ".c")
            shutil.copyfile(self.log, kept + ".log")
            where = f"source and compiler output kept in {kept}.c and {kept}.log"
        except OSError as e:
            where = f"its source and output could not be kept: {e}"
        return CompileFailed(f"{reason}; {where}", output)

    def store(self, folder: str) -> None:
        with open(self.library, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        with open(self.library + ".sha256", "w") as f:
            f.write(digest + "\n")
        # Each replace is atomic, and the pair is made under the cache's exclusive lock: a
        # concurrent build of the same unit replaces both files, or neither, never
        # pairing its library with our digest.
        path = os.path.join(folder, self.unit.file_name)
        os.replace(self.library, path)
        os.replace(self.library + ".sha256", path + ".sha256")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def close(self) -> None:
        self.kill()
        self.lock.close()
        shutil.rmtree(self.work, ignore_errors=True)


# --- the cache's cap ----------------------------------------------------------------------

def cache_entries(folder: str) -> list:
    """[(use time, bytes, [paths])] of the cache's libraries (each with its digest) and of
    the files kept under failed/."""
    entries = []
    for entry in os.scandir(folder):
        if entry.name.startswith("kernels_") and entry.name.endswith(".so"):
            paths = [entry.path, entry.path + ".sha256"]
            entries.append(_entry(paths, use=entry.path + ".sha256"))
    failed = os.path.join(folder, "failed")
    if os.path.isdir(failed):
        entries += [_entry([entry.path], use=entry.path) for entry in os.scandir(failed)]
    return [entry for entry in entries if entry is not None]


def _entry(paths: list, use: str):
    sizes = [os.stat(path).st_size for path in paths if os.path.exists(path)]
    try:
        used = os.stat(use).st_mtime
    except OSError:  # a library without its digest: never loaded, the first to go
        used = 0.0
    return (used, sum(sizes), paths) if sizes else None


def evict(folder: str, cap: int) -> None:
    """Removes the least recently used entries of the cache until it holds at most `cap`
    bytes, sparing those used in the last STALE_AFTER_S seconds (the caller holds the
    cache's exclusive lock)."""
    entries = sorted(cache_entries(folder))
    total = sum(size for _, size, _ in entries)
    recent = time.time() - STALE_AFTER_S
    for used, size, paths in entries:
        if total <= cap or used > recent:
            break
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        total -= size


def _remove_stale_builds(folder: str) -> None:
    """Removes the build folders of killed compiles: unlocked ones, and graphc's old
    unlocked `tmpXXXX` folders once they are an hour old; and the temporary files of
    killed installs (`build-XXXX` files), once they are STALE_AFTER_S old."""
    now = time.time()
    for entry in os.scandir(folder):
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:  # another process's build or install, just finished
            continue
        if not entry.is_dir(follow_symlinks=False):  # a killed install's temporary file
            if entry.name.startswith(BUILD_PREFIX) and age > STALE_AFTER_S:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(entry.path)
            continue
        if (entry.name.startswith(BUILD_PREFIX) and age > STALE_AFTER_S
                and not _is_locked(entry.path)) or (
                entry.name.startswith("tmp") and age > LEGACY_STALE_AFTER_S):
            shutil.rmtree(entry.path, ignore_errors=True)


def _is_locked(work: str) -> bool:
    try:
        with open(os.path.join(work, "lock")) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
    except BlockingIOError:
        return True
    except OSError:  # no lock file: killed between making the folder and locking it
        return False
