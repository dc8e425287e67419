"""Post-hoc test: recompute BatchNorm running statistics on clean (unmixed) training batches, then evaluate.
usage: python results/bn/bn_recalibrate.py CHECKPOINT_OR_RUN_DIR [passes]  (data from /work/data) -> prints raw and recalibrated metrics as JSON lines"""
import json, sys, time
from pathlib import Path
import torch
from torch import nn
from remixup import checkpoint
from remixup.config import TrainConfig
from remixup.data import get_spec, load_dataset, make_imbalanced
from remixup.engine import evaluate
from remixup.methods import get_method
from remixup.models import build_model

path = Path(sys.argv[1]); path = path / "checkpoint.pt" if path.is_dir() else path
passes = int(sys.argv[2]) if len(sys.argv) > 2 else 1
state = checkpoint.load(path)
config = TrainConfig.from_dict(state["config"], source=str(path))
method = get_method(config.method.name)
spec = get_spec("cifar10")
counts = torch.as_tensor(state["class_counts"])
test = load_dataset("cifar10", "/work/data", train=False)
train = make_imbalanced(load_dataset("cifar10", "/work/data", train=True), "longtail", ratio=100, subset_seed=0)
model = build_model(state["model_name"], 10, classifier=method.classifier, in_channels=3)
model.load_state_dict(state["model"])

def ev(tag):
    t = time.time()
    m = evaluate(model, test.x, test.y, class_counts=counts, transform=spec.eval_transform(), batch_size=250)
    print(json.dumps({"run": path.parent.name, "bn": tag, "top1": m["top1"], "many": m["many"], "medium": m["medium"],
                      "per_class": [round(v, 1) for v in m["per_class"]], "s": round(time.time() - t)}), flush=True)

ev("as trained")
aug = spec.train_augment()
g = torch.Generator().manual_seed(0)
for mod in model.modules():
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        mod.reset_running_stats(); mod.momentum = None  # cumulative average over all batches seen
model.train()
with torch.no_grad():
    for _ in range(passes):
        order = torch.randperm(len(train.y), generator=g)
        for k in range(0, len(order) - 127, 128):
            model(aug(train.x[order[k:k + 128]], generator=g))
model.eval()
ev(f"clean train batches ({passes} pass, augmented)")
