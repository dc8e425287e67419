"""Named random streams: every random draw of a run comes from a generator seeded by (seed, epoch, stream).

A run never carries a generator's state from one epoch to the next: epoch e of stream s is seeded by
:func:`epoch_seed` ``(run.seed, e, s)``, so a resumed run reproduces epoch e without replaying epochs 0..e−1 and two
streams never share draws. The streams of a run:

=========================  ======================================  =====================================
stream                     what draws from it                      value
=========================  ======================================  =====================================
:data:`ORDER`              the epoch's permutation of the data     0
:func:`augment_stream`     batched crop and flip (per DDP rank)    1 + 2000·rank
:data:`SAMPLER`            class-balanced re-sampling (RS, DRS)    7
:func:`mix_stream`         λx, the pairing, CutMix boxes, the      1000 + rank
                           manifold mixing point (per DDP rank)
:func:`file_stream`        augmentation of one image file          1,000,000 + index
:func:`partner_stream`     the class-weighted partner batch: its   500,000 + rank
                           indices, and the augmentation seed of
                           its batches (per DDP rank)
=========================  ======================================  =====================================

The values are those of every earlier release, so seeds give the same numbers as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ORDER", "SAMPLER", "TorchState", "augment_stream", "epoch_seed", "file_stream", "mix_stream", "partner_stream",
           "seed_torch", "torch_stream"]  # fmt: skip

ORDER = 0
SAMPLER = 7
_AUGMENT, _AUGMENT_PER_RANK = 1, 2_000
_MIX = 1_000
_FILE = 1_000_000
_PARTNER = 500_000
_TORCH = 300_000


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed mixed from (seed, epoch, stream), so every epoch (and every stream in it) is independent.

    Derived rather than carried: a resumed run reproduces epoch e's draw without replaying epochs 0..e-1.
    """
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(stream)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def augment_stream(rank: int = 0) -> int:
    """The augmentation stream of DDP rank ``rank`` (rank 0 keeps the single-process stream)."""
    return _AUGMENT + _AUGMENT_PER_RANK * rank


def mix_stream(rank: int = 0) -> int:
    """The mixing stream of DDP rank ``rank``: each rank pairs and draws λ on its own."""
    return _MIX + rank


def file_stream(index: int) -> int:
    """The augmentation stream of image file ``index``: the same crop whichever worker decodes the file."""
    return _FILE + index


def partner_stream(rank: int = 0) -> int:
    """The stream of the class-weighted partner batches of DDP rank ``rank``: each rank draws its own partners."""
    return _PARTNER + rank


def torch_stream(rank: int = 0) -> int:
    """The stream of torch's global generator on DDP rank ``rank`` (dropout draws differ between ranks)."""
    return _TORCH + rank


def seed_torch(seed: int, device: torch.device) -> None:
    """Seed torch's global CPU generator, and ``device``'s when it is a CUDA device, with ``seed``."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()].manual_seed(seed)


@dataclass
class TorchState:
    """A saved state of torch's global generators (the CPU's and ``device``'s when CUDA), to swap runs in and out."""

    device: torch.device
    cpu: torch.Tensor
    cuda: torch.Tensor | None

    @classmethod
    def capture(cls, device: torch.device) -> TorchState:
        """The generators' state now."""
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(device, torch.get_rng_state(), cuda)

    def restore(self) -> None:
        """Put this state back into the generators."""
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)
