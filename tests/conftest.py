"""Test-suite settings shared by every test module."""

import dataclasses
import os

import pytest
import torch  # noqa: F401  (imported first: the triton interpreter needs torch's CPU tensors)

# Triton's interpreter must be chosen before triton is first imported; without a CUDA
# device it is the only way the triton backend can run here.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import settings  # noqa: E402

import graphc as gc  # noqa: E402

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than 10 s (run by default; "
                                       "-m 'not slow' leaves it out)")


settings.register_profile("graphc", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("graphc")


@dataclasses.dataclass(frozen=True)
class Backend:
    """A backend together with the optimization level its tests compile at."""

    name: str
    opt: str

    def __str__(self):
        return f"{self.name}-{self.opt}"

    def compile(self, outputs, **kwargs):
        return gc.compile(outputs, backend=self.name, opt=self.opt, **kwargs)

    def run(self, outputs, **feeds):
        """Compile `outputs` and call the function once on `feeds`."""
        return self.compile(outputs)(**feeds)


# The reference interpreter on the graph as written (the oracle), what users get by
# default: the numpy backend after the whole pipeline, which fuses and reorders float math,
# and the triton backend after it (here in Triton's CPU interpreter: tests that take the
# fixture keep their shapes small, and the few that run thousands of kernels skip it).
BACKENDS = [Backend("reference", "O0"), Backend("numpy", "O2"), Backend("triton", "O2")]


# Module scope, not function scope: hypothesis refuses function-scoped fixtures, and a
# module-scoped parameter only regroups tests within their own module.
@pytest.fixture(scope="module", params=BACKENDS, ids=str)
def backend(request):
    """Each test that takes `backend` runs once per entry of BACKENDS."""
    return request.param
