"""A saved Function: the folder that f.save(dir) writes and gc.load_function(dir) reads.

    function.json   the format and its version, the backend, opt, options, the call's
                    signature (its inputs, in order, with their types; one output or a
                    tuple), and the SHA-256 of every other file
    graph.ir        the optimized graph as text IR (graphc/ir.py): fused kernels, the
                    schedule's order, the updates; parse reads it back, checking every
                    node's type, and nothing is optimized again
    params.npz      the params' values, optimizer state included (graphc/checkpoint.py)
    libraries/      the C libraries (numpy backend) of the shapes the function was called
                    with, as the compile cache holds them (kernels_<key>.so)

Loading checks the format and version first, then each file against its recorded
SHA-256: a damaged or truncated file, or a folder of another version, is a GraphcError
naming the file, never a half-loaded function. Each library is put in the compile
cache (backends/ccompile.py: `install`), where the numpy backend's build finds it by
its key (the compiler's command and flags and the C source), so a fresh process builds
the Python code of the function but compiles no C; with another compiler, or none, the
keys differ and the kernels are compiled again, or run as NumPy calls. function.json is
written last: a save interrupted before it leaves no loadable folder of mixed files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

from graphc import backends, checkpoint, dsl
from graphc.backends import ccompile
from graphc.errors import GraphcError
from graphc.ir import Graph, format_graph, parse

FORMAT = "graphc-function"
VERSION = 1
MANIFEST, GRAPH, PARAMS, LIBRARIES = "function.json", "graph.ir", "params.npz", "libraries"
# Values the text IR holds no data for, beside the params (const fills): parse's default.
FILL_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Saved:
    """What a saved folder holds, read and checked, its params holding their values."""
    graph: Graph
    single: bool
    inputs: list
    backend: str
    opt: str
    options: dict
    max_executables: int


def write(directory, *, graph: Graph, single: bool, inputs: list, backend: str, opt: str,
          options: dict, max_executables: int, libraries: list) -> None:
    os.makedirs(os.path.join(directory, LIBRARIES), exist_ok=True)
    _write_bytes(os.path.join(directory, GRAPH), format_graph(graph).encode())
    checkpoint.save(os.path.join(directory, PARAMS), graph.params)
    files = {name: _digest(os.path.join(directory, name)) for name in (GRAPH, PARAMS)}
    copies = {}
    for path in dict.fromkeys(libraries):
        with open(path, "rb") as f:
            data = f.read()
        name = os.path.join(LIBRARIES, os.path.basename(path))
        _write_bytes(os.path.join(directory, name), data)
        copies[name] = hashlib.sha256(data).hexdigest()
    manifest = {
        "format": FORMAT, "version": VERSION, "backend": backend, "opt": opt,
        "options": {k: _plain(v) for k, v in options.items()},
        "max_executables": max_executables, "single": single,
        "inputs": [{"name": n.name, "shape": list(n.shape), "dtype": n.dtype} for n in inputs],
        "files": files, "libraries": copies,
    }
    _write_bytes(os.path.join(directory, MANIFEST), json.dumps(manifest, indent=1).encode())


def read(directory) -> Saved:
    manifest = _manifest(directory)
    for name, digest in {**manifest["files"], **manifest["libraries"]}.items():
        _check_file(directory, name, digest)
    params = checkpoint.read(os.path.join(directory, PARAMS))
    budget = sum(a.nbytes for a in params.values()) + FILL_BYTES
    with open(os.path.join(directory, GRAPH)) as f:
        graph = parse(f.read(), max_value_bytes=budget)
    checkpoint.assign(graph.params, params, os.path.join(directory, PARAMS))
    for name, digest in manifest["libraries"].items():
        ccompile.install(os.path.basename(name), os.path.join(directory, name), digest)
    return Saved(graph, bool(manifest["single"]), _inputs(graph, manifest["inputs"]),
                 manifest["backend"], manifest["opt"],
                 _options(manifest["backend"], manifest["options"]),
                 int(manifest["max_executables"]))


def _manifest(directory) -> dict:
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise GraphcError(f"gc.load_function: {directory} holds no saved function (no "
                          f"{MANIFEST}; f.save(directory) writes one)") from None
    except (OSError, ValueError) as e:
        raise GraphcError(f"gc.load_function: {path} is damaged: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GraphcError(f"gc.load_function: {path} is not a saved graphc function")
    if manifest.get("version") != VERSION:
        raise GraphcError(f"gc.load_function: {directory} was saved in format version "
                          f"{manifest.get('version')!r}; this graphc reads version {VERSION} "
                          "only (save the function again with this graphc)")
    return manifest


def _check_file(directory, name: str, digest: str) -> None:
    path = os.path.join(directory, name)
    try:
        actual = _digest(path)
    except OSError as e:
        raise GraphcError(f"gc.load_function: cannot read {path}: {e.strerror or e}") from None
    if actual != digest:
        raise GraphcError(f"gc.load_function: {path} is damaged or truncated: its SHA-256 "
                          f"is not the one recorded in {MANIFEST} when it was saved")


def _inputs(graph: Graph, written: list) -> list:
    """The call's inputs, in order: the graph's own, or (one the outputs do not use) a
    new input node of the saved name and type."""
    by_name = {node.name: node for node in graph.inputs}
    return [by_name[i["name"]] if i["name"] in by_name else
            dsl.input(i["name"], tuple(i["shape"]), i["dtype"]) for i in written]


def _plain(value):
    """An option's value as JSON: a nested options dataclass as a dict of its fields."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _options(backend: str, written: dict) -> dict:
    """The options as make_options takes them: a knob whose default is a dataclass (the
    numpy backend's `cc`) made one again from its fields."""
    defaults = backends.load(backend).options()
    return {k: type(getattr(defaults, k))(**v) if dataclasses.is_dataclass(
        getattr(defaults, k, None)) else v for k, v in written.items()}


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _write_bytes(path, data: bytes) -> None:
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)
