"""The compiled module is a plain nn.Module: DistributedDataParallel over 2 CPU processes (gloo)
takes the same SGD step as one process on the whole batch.

Batch norm runs on its running statistics (eval mode; gradients still flow): in training mode each
process would normalise its half batch with its own statistics, which is a different computation
from one process on the whole batch (SyncBatchNorm, which would fix that, works only on GPUs)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import resgraph

from .conftest import SPECS

SPEC = SPECS / "cifar_resnet20.yaml"
BATCH = 8


def _batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 32, 32, generator=generator), torch.randint(0, 10, (BATCH,), generator=generator)


def _model():
    return resgraph.compile(SPEC, seed=0).eval()


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model = torch.nn.parallel.DistributedDataParallel(_model())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = _batch()
        shard = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        F.cross_entropy(model(x[shard]), y[shard]).backward()
        optimizer.step()
        if rank == 0:
            torch.save(model.module.state_dict(), out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_ddp_step_equals_a_single_process_step(tmp_path):
    out = str(tmp_path / "ddp.pt")
    # fork: the workers inherit the imported torch instead of importing it again
    mp.start_processes(_worker, args=(2, _free_port(), out), nprocs=2, join=True, start_method="fork")
    distributed = torch.load(out, weights_only=True)

    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _batch()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    single = model.state_dict()
    assert set(single) == set(distributed)
    before = _model().state_dict()
    moved = max((single[k] - before[k]).abs().max().item() for k in single if single[k].is_floating_point())
    worst = max((single[k] - distributed[k]).abs().max().item() for k in single if single[k].is_floating_point())
    assert moved > 1e-3  # the step really changed the weights
    assert worst <= 1e-6
