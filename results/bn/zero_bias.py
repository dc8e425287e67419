"""Post-hoc probe: evaluate a trained model with its classifier bias set to zero (how much head bias sits there).
usage: python results/bn/zero_bias.py RUN_DIR ...  (data from /work/data; prints one JSON line per run)"""
import json, sys
from pathlib import Path
import torch
from remixup import checkpoint
from remixup.config import TrainConfig
from remixup.data import get_spec, load_dataset
from remixup.engine import evaluate
from remixup.methods import get_method
from remixup.models import build_model

test = load_dataset("cifar10", "/work/data", train=False)
spec = get_spec("cifar10")
for arg in sys.argv[1:]:
    path = Path(arg) / "checkpoint.pt"
    state = checkpoint.load(path)
    config = TrainConfig.from_dict(state["config"], source=str(path))
    model = build_model(state["model_name"], 10, classifier=get_method(config.method.name).classifier, in_channels=3)
    model.load_state_dict(state["model"])
    fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    bias = fc.bias.detach().clone()
    with torch.no_grad():
        fc.bias.zero_()
    m = evaluate(model, test.x, test.y, class_counts=torch.as_tensor(state["class_counts"]), transform=spec.eval_transform(), batch_size=250)
    print(json.dumps({"run": path.parent.name, "bias": [round(b, 3) for b in bias.tolist()], "top1_zero_bias": m["top1"],
                      "many": round(m["many"], 2), "medium": round(m["medium"], 2),
                      "per_class": [round(v, 1) for v in m["per_class"]]}), flush=True)
