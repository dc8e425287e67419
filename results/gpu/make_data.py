"""Make the CIFAR-10 file that travels to the GPU machine (at most 64 MiB may travel; the full npz is 170 MB).

It holds the same arrays as the full file, except that the training images the long-tailed ρ = 100 profile does
not keep (subset seed 0) are zeroed: `make_imbalanced` chooses by position within each class, so it picks the
same 12,406 images, in the same order, from this file as from the full one (checked below). The zeros cost
nothing compressed; xz with a byte-delta filter (RGB: distance 3) packs the kept images and the 10,000 test
images into about 45 MB.

    python results/gpu/make_data.py /path/to/cifar10.npz .gpu/cifar10.npz
    xz -k -T2 --delta=dist=3 --lzma2=preset=6 .gpu/cifar10.npz
"""

import sys
from pathlib import Path

import numpy as np

from remixup.data import make_imbalanced
from remixup.data.datasets import ArrayDataset

source, target = Path(sys.argv[1]), Path(sys.argv[2])
d = np.load(source)
full = ArrayDataset(d["x_train"], d["y_train"].astype(np.int64))
kept_images = make_imbalanced(full, "longtail", ratio=100, subset_seed=0).x.numpy()
# which positions were kept: mark every image with its index, run the same selection
marks = ArrayDataset(np.arange(len(full)), d["y_train"].astype(np.int64))
keep = make_imbalanced(marks, "longtail", ratio=100, subset_seed=0).x.numpy()
assert np.array_equal(d["x_train"][keep], kept_images)
x_train = np.zeros_like(d["x_train"])
x_train[keep] = d["x_train"][keep]
again = make_imbalanced(ArrayDataset(x_train, d["y_train"].astype(np.int64)), "longtail", ratio=100, subset_seed=0).x.numpy()
assert np.array_equal(again, kept_images), "the zeroed file must yield the same subset"
target.parent.mkdir(parents=True, exist_ok=True)
np.savez(target, x_train=x_train, y_train=d["y_train"], x_test=d["x_test"], y_test=d["y_test"], classes=d["classes"])
print(f"{target}: {len(keep)} training images kept of {len(full)}, {len(d['x_test'])} test images")
