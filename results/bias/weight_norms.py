"""Where a trained linear classifier keeps the label prior: per-class weight norms ‖w_c‖ and biases b_c.

usage: python results/bias/weight_norms.py RUN_DIR ...   (one JSON line per run's checkpoint.pt)

For a classifier z_c = w_c·f + b_c, a head-biased decision rule can sit in b_c or in ‖w_c‖ (the features f after
ReLU and pooling are non-negative, so a longer w_c tends to give larger logits). Printed: ‖w_c‖ per class, their
ratio head (class 0) / tail (class 9), the Spearman correlation of ‖w_c‖ with the class counts, and b_c if any.
"""
import json, sys
from pathlib import Path

import torch

from remixup import checkpoint

for arg in sys.argv[1:]:
    state = checkpoint.load(Path(arg) / "checkpoint.pt")
    weight, bias = state["model"]["fc.weight"], state["model"].get("fc.bias")
    norms = weight.norm(dim=1)
    counts = torch.as_tensor(state["class_counts"], dtype=torch.float64)
    rank = lambda v: v.argsort().argsort().double()
    rho = torch.corrcoef(torch.stack([rank(norms.double()), rank(counts)]))[0, 1].item()
    print(json.dumps({"run": Path(arg).name, "epoch": state["epoch"], "weight_norm": [round(v, 3) for v in norms.tolist()],
                      "norm_head_over_tail": round((norms[0] / norms[-1]).item(), 3), "spearman_norm_counts": round(rho, 3),
                      "bias": None if bias is None else [round(v, 3) for v in bias.tolist()]}), flush=True)
