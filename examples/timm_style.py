"""A timm-style training loop (Mixup/CutMix on the batch, soft-target loss) made into Remix by one changed call.

Before, with timm::

    from timm.data import Mixup
    mixup_fn = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch",
                     label_smoothing=0.1, num_classes=NUM_CLASSES)

After, with remixup: the same options, plus the training counts per class::

    from remixup import RemixMixup
    mixup_fn = RemixMixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch",
                          label_smoothing=0.1, num_classes=NUM_CLASSES, class_counts=class_counts)

Everything else (the loop, ``SoftTargetCrossEntropy``) stays. Run: ``python examples/timm_style.py``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from remixup import RemixMixup

try:
    from timm.loss import SoftTargetCrossEntropy
except ImportError:  # without timm: remixup's soft_cross_entropy is the same loss on these targets

    class SoftTargetCrossEntropy(nn.Module):  # type: ignore[no-redef]
        def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            from remixup import soft_cross_entropy

            return soft_cross_entropy(x, target)


NUM_CLASSES = 4


def long_tailed_images(class_counts: list[int], seed: int = 0) -> TensorDataset:
    """Tiny 3×8×8 images whose class sets which quadrant is bright, with noise; ``class_counts`` per class."""
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(class_counts)])
    x = 0.5 * torch.randn(len(y), 3, 8, 8, generator=g)
    for c in range(len(class_counts)):
        r, k = divmod(c, 2)
        x[y == c, :, 4 * r : 4 * r + 4, 4 * k : 4 * k + 4] += 1.0
    return TensorDataset(x, y)


def main(epochs: int = 3, seed: int = 0) -> dict[str, float]:
    torch.manual_seed(seed)
    class_counts = [200, 60, 20, 6]
    dataset = long_tailed_images(class_counts, seed)
    loader = DataLoader(dataset, batch_size=32, shuffle=True, drop_last=True)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, NUM_CLASSES))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    # mixup_fn = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch",   # timm
    #                  label_smoothing=0.1, num_classes=NUM_CLASSES)
    mixup_fn = RemixMixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch",
                          label_smoothing=0.1, num_classes=NUM_CLASSES, class_counts=class_counts)  # fmt: skip
    criterion = SoftTargetCrossEntropy()
    forced = pairs = 0
    for _ in range(epochs):
        for input, target in loader:
            input, target = mixup_fn(input, target)
            loss = criterion(model(input), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            forced += int((mixup_fn.last.lam_y != mixup_fn.last.lam_x).sum())
            pairs += target.shape[0]
    with torch.no_grad():
        x, y = dataset.tensors
        accuracy = float((model(x).argmax(1) == y).double().mean())
    return {"loss": loss.item(), "train_accuracy": accuracy, "forced_share": forced / pairs}


if __name__ == "__main__":
    print(main())
