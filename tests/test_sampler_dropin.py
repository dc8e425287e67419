"""ClassBalancedSampler as a torch.utils.data.Sampler: DataLoader(sampler=...), set_epoch, DDP shards."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from remixup.balancing import ClassBalancedSampler

COUNTS = [50, 10, 4]
LABELS = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])


def test_is_a_sampler_that_a_dataloader_takes() -> None:
    sampler = ClassBalancedSampler(LABELS, COUNTS, seed=3)
    assert isinstance(sampler, Sampler)
    data = TensorDataset(torch.arange(len(LABELS)), LABELS)
    loader = DataLoader(data, batch_size=8, sampler=sampler)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        seen = torch.cat([idx for idx, _ in loader])
        assert torch.equal(seen, sampler.indices(epoch))
    assert not torch.equal(sampler.indices(0), sampler.indices(1))
    assert len(loader) == -(-len(LABELS) // 8)


def test_a_resumed_run_gets_the_same_epoch() -> None:
    first = ClassBalancedSampler(LABELS, COUNTS, seed=5)
    first.set_epoch(4)
    resumed = ClassBalancedSampler(LABELS, COUNTS, seed=5)
    resumed.set_epoch(4)  # a fresh process that only knows the epoch
    assert list(first) == list(resumed)


def test_ddp_shards_from_torch_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    world = 3
    shards = []
    for rank in range(world):
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda: world)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        s = ClassBalancedSampler(LABELS, COUNTS, seed=1)
        assert (s.rank, s.world_size) == (rank, world)
        s.set_epoch(2)
        shards.append(torch.tensor(list(s)))
    monkeypatch.undo()
    whole = ClassBalancedSampler(LABELS, COUNTS, seed=1, num_samples=len(shards[0]) * world)
    whole.set_epoch(2)
    interleaved = torch.stack(shards, 1).reshape(-1)
    assert torch.equal(interleaved, whole.indices())
    assert ClassBalancedSampler(LABELS, COUNTS).world_size == 1  # no process group: one process
