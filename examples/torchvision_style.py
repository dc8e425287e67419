"""A torchvision-v2-style loader (MixUp/CutMix in the ``collate_fn``) made into Remix by one changed line.

Before, with torchvision::

    from torchvision.transforms import v2
    cutmix_or_mixup = v2.RandomChoice([v2.CutMix(num_classes=NUM_CLASSES), v2.MixUp(num_classes=NUM_CLASSES)])

After, with remixup: one transform that picks CutMix or MixUp with even odds, and the training counts::

    from remixup import RemixMixup
    cutmix_or_mixup = RemixMixup(mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.0,
                                 num_classes=NUM_CLASSES, class_counts=class_counts)

The ``collate_fn``, the loader's workers and ``nn.CrossEntropyLoss`` stay. Run: ``python examples/torchvision_style.py``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate

from remixup import RemixMixup

try:  # the tiny data set of the timm example, whether run as a script or loaded by path
    from timm_style import NUM_CLASSES, long_tailed_images
except ImportError:
    import importlib.util
    from pathlib import Path

    _spec = importlib.util.spec_from_file_location("timm_style", Path(__file__).with_name("timm_style.py"))
    _mod = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
    _spec.loader.exec_module(_mod)  # type: ignore[union-attr]
    NUM_CLASSES, long_tailed_images = _mod.NUM_CLASSES, _mod.long_tailed_images


def main(epochs: int = 3, seed: int = 0, num_workers: int = 2) -> dict[str, float]:
    torch.manual_seed(seed)
    class_counts = [200, 60, 20, 6]
    dataset = long_tailed_images(class_counts, seed)
    # cutmix_or_mixup = v2.RandomChoice([v2.CutMix(num_classes=NUM_CLASSES), v2.MixUp(num_classes=NUM_CLASSES)])  # torchvision
    cutmix_or_mixup = RemixMixup(mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=NUM_CLASSES,
                                 class_counts=class_counts, generator=torch.Generator().manual_seed(seed))  # fmt: skip

    def collate_fn(batch: list) -> tuple[torch.Tensor, torch.Tensor]:
        return cutmix_or_mixup(*default_collate(batch))

    loader = DataLoader(dataset, batch_size=32, shuffle=True, num_workers=num_workers, collate_fn=collate_fn)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, NUM_CLASSES))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    targets = []
    for _ in range(epochs):
        for images, labels in loader:
            loss = criterion(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            targets.append(labels)
    with torch.no_grad():
        x, y = dataset.tensors
        accuracy = float((model(x).argmax(1) == y).double().mean())
    distinct = len({tuple(t.flatten().tolist()) for t in targets})
    return {"loss": loss.item(), "train_accuracy": accuracy, "batches": len(targets), "distinct_targets": distinct}


if __name__ == "__main__":
    print(main())
