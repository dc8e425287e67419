"""Where every random draw of a mixing comes from, and the two samplers every mixing shares.

**The one generator rule.** Each mixing draws a batch's randomness (the pairing, λ, the CutMix box, the per-batch
coin, the manifold point) from :func:`batch_generator` ``(owner, generator)``:

* in the main process, ``generator`` itself, consumed in call order (``None``: torch's default generator), so
  the same generator state gives the same batches; the engine re-seeds it every epoch from
  :func:`remixup.seeding.mix_stream` of the DDP rank, so every rank draws its own;
* in a DataLoader worker with ``generator=None``: torch's default generator, which PyTorch seeds in each worker;
* in a DataLoader worker with a ``generator``: every worker holds a copy of one generator state, so drawing from it
  would repeat the same draws in every worker. The worker's batches draw instead, in order, from a private
  generator seeded once per worker from (``generator.initial_seed()``, the worker's seed, its id, the DDP rank).
  The worker's seed is drawn by the DataLoader for each epoch (from its ``generator=`` argument, else torch's
  default generator), as the shuffled order is: a seeded loader repeats its draws, and another epoch, worker or
  rank draws afresh.

**Samplers.** :func:`sample_beta` (Beta(a, b) from a torch generator: ``torch.distributions.Beta`` takes none) and
:func:`cutmix_box` / :func:`box_mask` (CutMix's box: one sampler for the CutMix mixer, the family and the drop-in).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import get_worker_info

from remixup._validation import check_number

__all__ = ["batch_generator", "box_mask", "cutmix_box", "cutmix_boxes", "ddp_rank", "mix_seed", "sample_beta"]


def sample_beta(alpha: float, size: int, *, beta: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``size`` samples of Beta(α, β) (β = α unless given) as a float32 CPU tensor (size,), reproducibly.

    One 63-bit seed is drawn from the torch ``generator`` (torch's default generator when ``None``) and NumPy's exact
    Beta sampler does the rest, so a draw costs one step of the torch generator whatever ``size`` is.
    """
    check_number(alpha, "alpha", owner="sample_beta", low=0.0, low_open=True)
    if beta is not None:
        check_number(beta, "beta", owner="sample_beta", low=0.0, low_open=True)
    check_number(size, "size", owner="sample_beta", low=0, integer=True)
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    draws = np.random.default_rng(seed).beta(alpha, alpha if beta is None else beta, size=size)
    return torch.from_numpy(draws.astype(np.float32))


def ddp_rank() -> int:
    """This process's DDP rank: torch.distributed's when initialised, else ``$RANK`` (set by torchrun), else 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return int(os.environ.get("RANK", "0"))


def mix_seed(*parts: int) -> int:
    """A 63-bit seed mixed from any number of non-negative integers (each may be up to 64 bits)."""
    words = []
    for p in parts:
        p = int(p) & 0xFFFFFFFFFFFFFFFF
        words += [p & 0xFFFFFFFF, p >> 32]
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & (2**63 - 1)


class WorkerDraws:
    """The private generator of one DataLoader worker (see the module docstring), keyed by the worker it serves."""

    def __init__(self, key: tuple[int, int, int], seed: int) -> None:
        self.key = key
        self.generator = torch.Generator().manual_seed(seed)


def batch_generator(owner: object, generator: torch.Generator | None) -> torch.Generator | None:
    """The generator the next batch of ``owner`` draws from (the module docstring's rule).

    The worker's private generator is cached on ``owner`` (attribute ``worker_draws``) and rebuilt when the worker,
    its seed (a new epoch) or the rank changes.
    """
    info = get_worker_info()
    if info is None or generator is None:
        return generator
    rank = ddp_rank()
    key = (int(info.id), int(info.seed), rank)
    draws: WorkerDraws | None = getattr(owner, "worker_draws", None)
    if draws is None or draws.key != key:
        draws = WorkerDraws(key, mix_seed(generator.initial_seed(), info.seed, info.id, rank))
        owner.worker_draws = draws  # type: ignore[attr-defined]
    return draws.generator


def cutmix_box(
    lam: torch.Tensor, height: int, width: int, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """CutMix boxes for target shares ``lam`` (n,): side √(1 − λ) of (H, W), centred uniformly at random (two draws
    of ``generator``: the rows, then the columns), clipped at the border.

    Returns:
        ``(kept (n,) float64, (y0, y1, x0, x1) (n,) int64)``: the exact share of pixels kept after clipping (the
        area-corrected λx, as timm and torchvision compute it) and the box, rows y0 ≤ r < y1, columns x0 ≤ c < x1.
    """
    n = lam.shape[0]
    ratio = torch.sqrt(1.0 - lam.double())
    cut_h, cut_w = (ratio * height).long(), (ratio * width).long()
    cy = torch.randint(0, max(height, 1), (n,), generator=generator)
    cx = torch.randint(0, max(width, 1), (n,), generator=generator)
    y0, y1 = (cy - cut_h // 2).clamp(0, height), (cy + cut_h // 2).clamp(0, height)
    x0, x1 = (cx - cut_w // 2).clamp(0, width), (cx + cut_w // 2).clamp(0, width)
    kept = 1.0 - ((y1 - y0) * (x1 - x0)).double() / max(height * width, 1)
    return kept, (y0, y1, x0, x1)


def box_mask(box: tuple[torch.Tensor, ...], height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(n, H, W) bool mask, True inside each box ``(y0, y1, x0, x1)`` of :func:`cutmix_box`."""
    y0, y1, x0, x1 = (t.to(device) for t in box)
    rows, cols = torch.arange(height, device=y0.device), torch.arange(width, device=y0.device)
    in_rows = (rows >= y0[:, None]) & (rows < y1[:, None])  # (n, H)
    in_cols = (cols >= x0[:, None]) & (cols < x1[:, None])  # (n, W)
    return in_rows[:, :, None] & in_cols[:, None, :]


def cutmix_boxes(
    lam: torch.Tensor, height: int, width: int, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`cutmix_box` as ``(kept (n,) float64, mask (n, H, W) bool)``, the mask True inside the box."""
    kept, box = cutmix_box(lam, height, width, generator=generator)
    return kept, box_mask(box, height, width)
