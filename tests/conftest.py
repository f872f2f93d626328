"""Test-suite settings shared by every test module."""

import os

import torch  # noqa: F401  (imported first: the triton interpreter needs torch's CPU tensors)

# Triton's interpreter must be chosen before triton is first imported; without a CUDA
# device it is the only way the triton backend can run here.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import settings  # noqa: E402

settings.register_profile("graphc", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("graphc")
