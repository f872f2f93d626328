"""The compile cache of the numpy backend's C kernels: a damaged cached library is built
again, never loaded. Each program runs in a subprocess, so that a library the loader maps
as it is (before the fix: SIGBUS, OSError, AttributeError) cannot kill the test run; the
cache is a temporary folder, never the user's ~/.cache/graphc.

Then a hostile toolchain (issue 12): fake compilers (shell scripts given as CC) that fail,
hang or are slow, a read-only cache, killed compiles, many kernels. Each failure leaves
the function running on NumPy kernels, with one GraphcWarning that says why."""

import ast
import fcntl
import json
import multiprocessing
import os
import hashlib
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import graphc as gc
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


# --- a hostile toolchain (issue 12): each failure falls back to NumPy kernels and says so --

# A fake compiler's first lines: the program it compiles, and the real compiler for the
# probe, so that the fake fails on a model's kernels only.
PASSES_THE_PROBE = """#!/bin/sh
for a; do case "$a" in *.c) src="$a";; esac; done
if grep -q graphc_probe "$src"; then exec cc "$@"; fi
"""


def fake_cc(folder, body, name="fake-cc"):
    """An executable shell script `name` in `folder` (a compiler given by CC)."""
    path = folder / name
    path.write_text(PASSES_THE_PROBE + body)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A fresh cache and a fresh fallback folder ($TMPDIR): {name: folder}."""
    folders = {"cache": tmp_path / "cache", "tmp": tmp_path / "tmp"}
    for folder in folders.values():
        folder.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(folders["cache"]))
    monkeypatch.setenv("TMPDIR", str(folders["tmp"]))
    return folders


def compile_model(k=2.0, **cc):
    """A new model (tanh(x * k + 1), one C kernel where C works), compiled with the
    compiler options `cc`, called once and checked; returns the Function."""
    x = gc.input("x", (2, 3))
    f = gc.compile(gc.tanh(x * k + 1.0), backend="numpy", options={"cc": ccompile.Options(**cc)})
    expected = np.tanh(np.full((2, 3), k + 1))
    np.testing.assert_allclose(f(x=np.ones((2, 3), np.float32)), expected, rtol=1e-6)
    return f


def runs_c(f) -> bool:
    return all(k.extra.get("c_source") for k in f.kernels)


def graphc_warnings(record) -> list:
    return [str(w.message) for w in record if issubclass(w.category, gc.GraphcWarning)]


def test_a_compiler_that_fails_on_the_kernels_leaves_numpy_kernels_and_its_message(fresh):
    cc = fake_cc(fresh["cache"].parent, 'echo "fake-cc: internal compiler error" >&2; exit 1\n')
    with pytest.MonkeyPatch.context() as patch, pytest.warns(gc.GraphcWarning) as record:
        patch.setenv("CC", cc)
        f = compile_model()
    assert not runs_c(f)
    (message,) = graphc_warnings(record)
    assert "\n" not in message and "C kernels off for this function" in message
    assert "the C compiler failed on graphc's kernels (exit status 1)" in message
    (source,) = (fresh["cache"] / "graphc" / "failed").glob("*.c")
    log = source.with_suffix(".log")
    assert f"{source} and {log}" in message  # named in the warning, and still there
    assert "tanhf(" in source.read_text() and "internal compiler error" in log.read_text()


def _process_is_gone(pid_file) -> bool:
    pid = pid_file.read_text().strip()
    for _ in range(100):  # the killed process is reaped (or a zombie) within moments
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_a_hanging_compiler_is_killed_at_its_timeout_with_its_children(fresh):
    pid_file = fresh["tmp"] / "sleeper.pid"
    cc = fake_cc(fresh["cache"].parent, f'sleep 1000 & echo $! > {pid_file}; wait\n')
    start = time.monotonic()
    with pytest.MonkeyPatch.context() as patch, pytest.warns(gc.GraphcWarning) as record:
        patch.setenv("CC", cc)
        f = compile_model(timeout_s=1)
    assert time.monotonic() - start < 30 and not runs_c(f)
    (message,) = graphc_warnings(record)
    assert "the C compiler ran past its timeout of 1 s" in message
    assert _process_is_gone(pid_file)  # the compiler's own child too, not only the script


def test_a_compiler_that_hangs_on_the_probe_turns_c_off_once(fresh, monkeypatch):
    cc = fresh["tmp"] / "cc-sleeps"
    cc.write_text("#!/bin/sh\nexec sleep 1000\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    with pytest.warns(gc.GraphcWarning) as record:
        f, g = compile_model(timeout_s=1), compile_model(k=3.0, timeout_s=1)
    assert not runs_c(f) and not runs_c(g)
    (message,) = graphc_warnings(record)  # once, for both functions
    assert "C kernels are off: a probe built with" in message and "timeout of 1 s" in message


# Two new models (kernels to build) in one process: prints whether each ran C kernels,
# then the GraphcWarnings the process gave.
TWO_MODELS = """
import json, warnings, numpy as np, graphc as gc
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")  # once a process must be graphc's doing
    c = []
    for k in (2.0, 3.0):
        x = gc.input("x", (2, 3))
        f = gc.compile(gc.tanh(x * k + 1.0), backend="numpy")
        value = f(x=np.ones((2, 3), np.float32))
        np.testing.assert_allclose(value, np.tanh(np.full((2, 3), k + 1)), rtol=1e-6)
        c.append(bool(f.kernels[0].extra.get("c_source")))
print(json.dumps({"c": c, "warnings": [str(w.message) for w in caught
                                       if issubclass(w.category, gc.GraphcWarning)]}))
"""


def _run_read_only(program, folders, env):
    """Runs `program` with `folders` read-only: a read-only bind mount (a real read-only
    file system) where this is root, whom permissions do not stop; else chmod."""
    argv = [sys.executable, "-c", program]
    if os.geteuid() == 0:
        mounts = " && ".join(f"mount --bind -o ro {shlex.quote(str(f))} {shlex.quote(str(f))}"
                             for f in folders)
        argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                f'{mounts} && exec "$@"', "sh", *argv]
        if subprocess.run(argv[:4] + ["true"], capture_output=True).returncode != 0:
            pytest.skip("root, and no user namespaces here to mount a folder read-only")
    else:
        for folder in folders:
            folder.chmod(0o555)
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert run.returncode == 0, f"exit status {run.returncode}:\n{run.stderr[-3000:]}"
    return json.loads(run.stdout)


@pytest.mark.parametrize("writable_tmp", [True, False], ids=["tmp-writable", "nothing-writable"])
def test_a_read_only_cache_is_read_and_new_kernels_go_elsewhere_or_to_numpy(
        tmp_path, monkeypatch, writable_tmp):
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("TMPDIR", str(tmp))
    _run_program()  # the probe's library is cached: the cache is read from, not written
    read_only = [cache / "graphc"] + ([] if writable_tmp else [tmp])
    report = _run_read_only(TWO_MODELS, read_only, dict(os.environ))
    assert report["c"] == [writable_tmp] * 2
    (message,) = report["warnings"]  # once, for both models
    assert f"{cache / 'graphc'}: Read-only file system" in message or "Permission" in message
    if writable_tmp:
        assert f"compiled kernels go to {tmp}/graphc-{os.geteuid()}" in message
        assert len(list((tmp / f"graphc-{os.geteuid()}").glob("kernels_*.so"))) == 2
    else:
        assert "C kernels off for this function" in message
        assert "no writable folder for compiled C kernels" in message


def test_a_fallback_folder_another_user_could_write_is_not_used(fresh, monkeypatch):
    fallback = fresh["tmp"] / f"graphc-{os.geteuid()}"
    fallback.mkdir(mode=0o777)
    fallback.chmod(0o777)  # (past the umask) anyone may put libraries there
    (fresh["cache"] / "graphc").write_text("a file where the cache folder should be")
    with pytest.warns(gc.GraphcWarning, match="not this user's alone"):
        assert not runs_c(compile_model())


@pytest.mark.parametrize("cc", ["{wrapper} cc", "cc -Wall"], ids=["wrapper", "flags"])
def test_cc_is_a_command_line(fresh, monkeypatch, cc):
    calls = fresh["tmp"] / "calls"
    wrapper = fresh["tmp"] / "wrapper"  # as ccache: runs the compiler it is given
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", cc.format(wrapper=wrapper))
    assert runs_c(compile_model())
    assert ("wrapper" not in cc) or calls.read_text().startswith("cc -O2")


def test_the_compiler_command_is_part_of_the_cache_key(fresh, monkeypatch):
    count = lambda: len(list((fresh["cache"] / "graphc").glob("kernels_*.so")))
    built = []
    for cc in ("cc", "cc -Wall", "cc"):  # the same model each time
        monkeypatch.setenv("CC", cc)
        assert ccompile.available()  # (its probe, if this process has not run it yet)
        before = count()
        assert runs_c(compile_model())
        built.append(count() - before)
    assert built == [1, 1, 0]


def test_the_folders_of_killed_compiles_are_removed_at_the_next_build(fresh):
    started = fresh["tmp"] / "started"
    cc = fake_cc(fresh["tmp"], f"echo $$ > {started}; exec sleep 1000\n")
    child = subprocess.Popen([sys.executable, "-c", TWO_MODELS], env=dict(os.environ, CC=cc),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(1200):
        if started.exists() and started.read_text().strip():
            break
        time.sleep(0.05)
    child.kill()  # mid-way through its compile
    child.wait()
    os.kill(int(started.read_text()), signal.SIGKILL)  # (the compiler, in its own session)
    cache = fresh["cache"] / "graphc"
    (killed,) = cache.glob("build-*")
    legacy = cache / "tmpk1ll3d0"  # as graphc's temporary folders were before they had locks
    legacy.mkdir()
    live = cache / "build-live"  # a build running in another process
    live.mkdir()
    young = cache / "build-young"  # just made: its build has yet to take its lock
    young.mkdir()
    hours_ago = time.time() - 2 * 3600
    for folder in (killed, legacy, live):
        os.utime(folder, (hours_ago, hours_ago))
    with open(live / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert runs_c(compile_model())
    assert not killed.exists() and not legacy.exists()
    assert live.exists() and young.exists()


def compile_chain(ops, **cc):
    """A chain of `ops` pointwise ops, each its own C kernel (at O0), called and checked."""
    x = gc.input("x", (2, 3))
    y, expected = x, np.ones((2, 3), np.float32)
    for i in range(1, ops + 1):  # a constant of its own each: kernels that differ
        y, expected = (y * i, expected * np.float32(i)) if i % 2 else (y + i, expected + i)
    f = gc.compile(y, backend="numpy", opt="O0", options={"cc": ccompile.Options(**cc)})
    np.testing.assert_allclose(f(x=np.ones((2, 3), np.float32)), expected, rtol=1e-6)
    return f


@pytest.mark.parametrize("jobs", [1, 2])
def test_kernels_compile_in_units_of_bounded_size_jobs_at_a_time(fresh, monkeypatch, jobs):
    seen = fresh["tmp"] / "seen"
    seen.mkdir()
    # each run notes how many runs are under way and its file's lines
    monkeypatch.setenv("CC", fake_cc(fresh["tmp"], (
        f'touch {seen}/run.$$; sleep 0.3\n'
        f'echo "$(ls {seen} | grep -c "^run") $(wc -l < "$src")" >> {fresh["tmp"]}/runs\n'
        f'rm {seen}/run.$$; exec cc "$@"\n')))
    f = compile_chain(12, unit_lines=40, jobs=jobs)
    assert len(f.kernels) == 12 and runs_c(f)
    runs = [tuple(map(int, line.split()))
            for line in (fresh["tmp"] / "runs").read_text().splitlines()]
    sources = [k.extra["c_source"] for k in f.kernels]
    per_unit = 40 // (sources[0].count("\n") + 1)  # the kernels are all one size
    assert per_unit >= 2 and len(set(s.count("\n") for s in sources)) == 1
    assert len(runs) == -(-12 // per_unit)  # as many kernels a unit as fit in 40 lines
    assert max(lines for _, lines in runs) <= 40 + ccompile.PRELUDE.count("\n")
    assert max(under_way for under_way, _ in runs) == jobs


def test_compiles_past_their_budget_leave_numpy_kernels(fresh, monkeypatch):
    monkeypatch.setenv("CC", fake_cc(fresh["tmp"], 'sleep 2; exec cc "$@"\n'))
    start = time.monotonic()
    with pytest.warns(gc.GraphcWarning) as record:
        f = compile_chain(12, unit_lines=40, budget_s=1)
    assert time.monotonic() - start < 30 and not any(k.extra.get("c_source") for k in f.kernels)
    (message,) = graphc_warnings(record)
    assert re.search(r"ran past the budget of 1 s \(0 of \d+ compilation units built\)", message)


def test_functions_that_differ_by_their_name_only_are_compiled_once(fresh):
    functions = ccompile.compile_kernels({
        "graphc_a": "int graphc_a(void) { return 1; }\n",
        "graphc_b": "int graphc_b(void) { return 1; }\n",
        "graphc_c": "int graphc_c(void) { return 2; }\n"})
    assert functions["graphc_b"] is functions["graphc_a"] and functions["graphc_a"]() == 1
    assert functions["graphc_c"]() == 2
    (library,) = (fresh["cache"] / "graphc").glob("kernels_*.so")
    assert b"graphc_b" not in library.read_bytes()


def test_a_kernel_longer_than_a_compilation_unit_runs_numpy_calls(fresh):
    x = gc.input("x", (2, 3))
    f = gc.compile(gc.tanh(gc.tanh(x) * 2.0 + 1.0), backend="numpy",
                   options={"cc": ccompile.Options(unit_lines=10)})
    np.testing.assert_allclose(f(x=np.ones((2, 3), np.float32)),
                               np.tanh(np.tanh(np.ones((2, 3))) * 2 + 1), rtol=1e-6)
    assert len(f.kernels) == 1 and not runs_c(f)
    assert "more than a compilation unit's 10 (option cc)" in f.source


# --- a bounded cache, and builds that race (issue 16) ---------------------------------------

def _entry_bytes(library) -> int:
    return library.stat().st_size + pathlib.Path(f"{library}.sha256").stat().st_size


def _used(library, hours_ago: float) -> None:
    """Marks a cached library as last loaded `hours_ago` (its digest's mtime)."""
    stamp = time.time() - hours_ago * 3600
    os.utime(f"{library}.sha256", (stamp, stamp))


def test_the_cache_keeps_under_its_cap_by_evicting_the_least_recently_used(fresh):
    cache = fresh["cache"] / "graphc"
    library = {k: pathlib.Path(compile_model(k)._last.libraries[0]) for k in (1, 2, 3)}
    (cache / "failed").mkdir()
    kept_source = cache / "failed" / "old.c"  # a failed compile's source, kept long ago
    kept_source.write_text("int broken(\n")
    os.utime(kept_source, (time.time() - 9 * 3600,) * 2)
    for k, hours in ((1, 3), (2, 2), (3, 1)):
        _used(library[k], hours)
    compile_model(1)  # loaded from the cache: used now
    assert _used_hours(library[1]) < 0.1
    library[4] = pathlib.Path(compile_model(4, cache_bytes=10**9)._last.libraries[0])
    assert kept_source.exists() and all(p.exists() for p in library.values())  # under the cap
    _used(library[4], 0.5)
    # (the compiler's probe, run again for these new options, is in this cache too)
    recent = [p for p in cache.glob("kernels_*.so") if p not in library.values()]
    # room for the libraries 1, 3, 4, the probe's and the next one (the same kernel, another
    # constant: the same size, give or take), not for library 2 or the kept source as well
    cap = sum(_entry_bytes(p) for p in [library[1], library[3], library[4], *recent])
    cap += _entry_bytes(library[1]) + 100
    library[5] = pathlib.Path(compile_model(5, cache_bytes=cap)._last.libraries[0])
    # the oldest went first: the kept source (9 h), then library 2 (2 h)
    assert not kept_source.exists() and not library[2].exists()
    assert not pathlib.Path(f"{library[2]}.sha256").exists()
    assert all(library[k].exists() for k in (1, 3, 4, 5))
    # entries used in the last minute are spared even over the cap (about to be loaded)
    compile_model(6, cache_bytes=1)
    assert library[1].exists() and library[5].exists()
    assert not library[3].exists() and not library[4].exists()
    assert runs_c(compile_model(2))  # an evicted library is simply built again


def test_a_killed_installs_temporary_file_is_removed_at_the_next_build(fresh):
    cache = fresh["cache"] / "graphc"
    compile_model(1)
    stale, young = cache / "build-k1ll3d", cache / "build-young"  # files, not folders
    stale.write_bytes(b"half a library")
    young.write_bytes(b"an install under way")
    os.utime(stale, (time.time() - 2 * 3600,) * 2)
    compile_model(2)
    assert not stale.exists() and young.exists()


def _used_hours(library) -> float:
    return (time.time() - os.stat(f"{library}.sha256").st_mtime) / 3600


RACE_SOURCE = "int graphc_race(void) { return 7; }\n"


def _race(barrier, queue):
    replace = os.replace

    def slow_replace(source, target):  # (in this forked process only) a wide window
        replace(source, target)        # between a library's rename and its digest's
        if target.endswith(".so"):
            time.sleep(0.2)
    os.replace = slow_replace
    barrier.wait()
    try:
        queue.put(ccompile.compile_kernels({"graphc_race": RACE_SOURCE})["graphc_race"]())
    except ccompile.CompileFailed as failed:  # (before the cache's lock: "vanished")
        queue.put(failed.reason)


def test_processes_that_build_the_same_library_at_once_all_load_it_intact(fresh):
    runs = fresh["tmp"] / "runs"
    # each build differs (a random build id), and all overlap (they sleep first)
    cc = fake_cc(fresh["tmp"], f'echo run >> {runs}; sleep 0.5; exec cc -Wl,--build-id=uuid "$@"\n')
    os.environ["CC"] = cc  # for the forked processes (restored below)
    try:
        context = multiprocessing.get_context("fork")
        barrier, queue = context.Barrier(4), context.Queue()
        processes = [context.Process(target=_race, args=(barrier, queue)) for _ in range(4)]
        for process in processes:
            process.start()
        results = [queue.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=60)
    finally:
        del os.environ["CC"]
    assert results == [7] * 4 and [p.exitcode for p in processes] == [0] * 4
    assert runs.read_text().count("run") == 4  # four builds of one library, at once
    cache = fresh["cache"] / "graphc"
    (library,) = cache.glob("kernels_*.so")
    recorded = pathlib.Path(f"{library}.sha256").read_text().strip()
    assert hashlib.sha256(library.read_bytes()).hexdigest() == recorded
    assert not list(cache.glob("build-*"))
