"""Where generated kernels can run: a CUDA device, or Triton's CPU interpreter.

`check()` says which (returning torch and the device's name), or raises
BackendUnavailable saying what to do: install triton and torch, upgrade triton, set
TRITON_INTERPRET=1 before triton is imported. gc.compile calls it first, so asking for
the triton backend where it cannot run fails at once, never deep inside triton. triton
and torch are optional: they are imported here, when asked for (and by the generated
module and the ahead-of-time compiler's child process), so importing graphc never
imports them.
"""

from __future__ import annotations

import re

from graphc.errors import BackendUnavailable

# The oldest triton with everything used here: the ahead-of-time path's
# `get_ptxas(arch)` is new in 3.6 (3.4 and 3.5 take no arch); `triton.knobs`, in 3.4.
# pyproject.toml's extras say the same.
MIN_TRITON = (3, 6)


def check() -> tuple:
    """(torch, "cuda" or "cpu") when kernels can run here; else BackendUnavailable."""
    try:
        import torch
        import triton
    except ImportError as e:
        raise BackendUnavailable(
            f"the triton backend needs triton and torch ({e}); install them with "
            "`pip install graphc[triton]`, or use backend='numpy'") from None
    found = tuple(int(part) for part in re.match(r"(\d+)\.(\d+)", triton.__version__).groups())
    if found < MIN_TRITON:
        raise BackendUnavailable(
            f"the triton backend needs triton >= {'.'.join(map(str, MIN_TRITON))}, and "
            f"triton {triton.__version__} is installed; upgrade it with "
            "`pip install -U 'graphc[triton]'`, or use backend='numpy'")
    if torch.cuda.is_available():
        return torch, "cuda"
    if triton.knobs.runtime.interpret:   # reads TRITON_INTERPRET (or the knob, if set)
        return torch, "cpu"
    raise BackendUnavailable(
        "the triton backend needs a CUDA device or Triton's CPU interpreter: there is no "
        "CUDA device here, and TRITON_INTERPRET=1 was not set (set it in the environment "
        "before starting Python, or before triton is first imported). Use backend='numpy' "
        "on a CPU; `graphc kernels FILE` still generates and compiles kernels for sm_90.")


def arch(torch) -> str:
    """The CUDA device's arch, as ahead-of-time compiles name it ('sm_90')."""
    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}"
