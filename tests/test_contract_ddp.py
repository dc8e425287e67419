"""The contract under DDP: two gloo processes (torchrun) train a sample of methods, each rank drawing its own mixing.

One torchrun launch trains every sampled method in turn through ``remixup.engine.train`` with a user's model that
records what it is fed. The data hold two points only (-1 for class 0, +1 for class 1), so a mixed pair of the two classes
shows its λ (|1 − 2λ|): ranks that drew alike would see the same values at every step.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _contract import make_points, method, refusal, sample

NAMES = sample("ddp", ("mixer", "partner"))

# Runs in each torchrun process: argv = out folder, npz file, names.
CHILD = """
import json, os, sys
sys.path.insert(0, {tests!r})
import torch
from torch import nn
from _contract import config, trains_or_refuses
from remixup import engine

out, points, names = sys.argv[1], sys.argv[2], sys.argv[3:]
torch.distributed.init_process_group("gloo")  # one group for all the runs (each run would otherwise make its own)
seen = {{}}
for name in names:
    draws = seen.setdefault(name, [])

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(1, 2)

        def forward(self, x):
            if self.training:  # the mixed values of this step, as this rank drew them
                draws.append(sorted({{round(abs(v), 6) for v in x.flatten().tolist()}} - {{1.0}}))
            return self.fc(x.flatten(1))

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Recorder()
    from pathlib import Path
    folder = Path(out) / name
    refused = trains_or_refuses(lambda: engine.train(config(folder, name, "points", folder=points), model=model), folder)
    seen[name] = {{"refused": refused, "draws": draws}}
with open(os.path.join(out, "rank" + os.environ["RANK"] + ".json"), "w") as fh:
    json.dump(seen, fh)
torch.distributed.barrier()
torch.distributed.destroy_process_group()
"""


@pytest.mark.slow  # spawns two processes
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_two_gloo_ranks_train_or_refuse_and_draw_differently(tmp_path: Path) -> None:
    points = make_points(tmp_path / "points.npz")
    child = tmp_path / "child.py"
    child.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(child),
                          str(tmp_path / "runs"), str(points), *NAMES], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]  # stdout: how far each rank got
    ranks = [json.loads((tmp_path / "runs" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for name in NAMES:
        a, b = ranks[0][name], ranks[1][name]
        assert a["refused"] == b["refused"]  # both ranks stop with rank 0's one line, or both train
        if (want := refusal(name, "ddp", "points")) is not None:
            assert a["refused"] and want in a["refused"], f"{name} under DDP must be refused ({want!r}); got {a['refused']!r}"
            assert not (tmp_path / "runs" / name).exists() or not any((tmp_path / "runs" / name).iterdir())
            continue
        assert a["refused"] is None, f"{name} under DDP must train; it refused: {a['refused']}"
        summary = json.loads((tmp_path / "runs" / name / "summary.json").read_text())
        assert summary["method"] == name and sum(map(sum, summary["confusion"])) == 16  # every test image once
        assert len(a["draws"]) == len(b["draws"]) == 2 * 64 // 16  # each rank: half of every global batch, 2 epochs
        if method(name).mixer in ("mixup", "manifold"):
            both = [(da, db) for da, db in zip(a["draws"], b["draws"], strict=True) if da and db]  # steps where both show λ
            assert both, f"{name}: no step showed a mixed pair on both ranks"
            assert any(da != db for da, db in both), f"{name}: both ranks drew the same λ at every step"
