"""The GPU check's runner without a GPU, and the stub launcher of the host-time benchmark."""

import numpy as np
import pytest
import torch

import graphc as gc
from bench import __main__ as bench_main
from bench.triton_host import StubKernel, stub_launcher


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the check runs for real")
def test_the_gpu_check_says_there_is_no_gpu_and_exits_0(capsys):
    assert bench_main.main(["gpu", "--quick", "--keep-blas-env"]) == 0
    assert "no CUDA device here: nothing run" in capsys.readouterr().out


def test_the_stub_launcher_launches_nothing_and_counts_every_launch():
    x = gc.input("x", ("batch", 5))
    W = gc.param("W", np.ones((5, 3), np.float32))
    loss = gc.sum(gc.relu(x @ W))
    with stub_launcher():
        step = gc.compile(loss, updates=gc.optim.sgd(loss, [W], lr=0.1), backend="triton")
        before = StubKernel.launches
        step(x=np.ones((4, 5), np.float32))
    assert StubKernel.launches - before == len(step.kernels) >= 2
    W.value = np.ones((5, 3), np.float32)      # (the stubbed step wrote its empty buffers)
    real = gc.compile(loss, updates=gc.optim.sgd(loss, [W], lr=0.1), backend="triton")
    real(x=np.ones((4, 5), np.float32))          # the real module is left as it was
    np.testing.assert_allclose(W.value, np.ones((5, 3)) - 0.1 * 4)
