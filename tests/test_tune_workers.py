"""remixup tune workers as separate processes, on the journal file and on a real PostgreSQL server (opened with the
URL form the docs show, ``postgresql://USER@HOST:PORT/DB``): the budget is N finished trials, the warm start runs
first, parameters never repeat, a killed worker's trial is failed and retried, a trial's user error fails it and
stops the worker, trials never see the test split; and SLURM jobs through submitit's local executor."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("optuna")

from remixup import tune  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _postgres import Server, find_bin  # noqa: E402

pytestmark = pytest.mark.slow
SPACE = "space:\n  mixing.kappa: {type: float, low: 1.5, high: 5}\n  mixing.tau: {type: float, low: 0.0, high: 1.0}\n"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def postgres():
    pytest.importorskip("psycopg")  # the driver of the `tune` extra, which SQLAlchemy opens for postgresql://
    bindir = find_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    server = Server(bindir)
    try:
        server.start()
    except (OSError, subprocess.SubprocessError) as exc:
        server.stop()
        pytest.skip(f"PostgreSQL did not start: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["journal", "postgres"])
def storage(request, tmp_path):
    if request.param == "journal":
        return "journal"
    server = request.getfixturevalue("postgres")
    return server.createdb(f"t{abs(hash(str(tmp_path))) % 10**8}")


def create(folder: Path, storage: str, epochs: int = 1, space: str = SPACE) -> tune.Study:
    from remixup.config import build_config

    (folder.parent / "space.yaml").write_text(space)
    config = build_config("paper", values={"data.dataset": "digits", "data.ratio": 10.0, "method.name": "remix"}, epochs=epochs,
                          overrides=["run.eval_every=1", "optim.batch_size=128", "run.threads=1"])  # fmt: skip
    study, _ = tune.create_study(folder, space_file=folder.parent / "space.yaml", config=config, storage=storage,
                                 n_startup_trials=2, heartbeat=1, grace=2)  # fmt: skip
    return study


def worker(folder: Path, n: int, index: int) -> subprocess.Popen:
    argv = [sys.executable, "-m", "remixup", "tune", "run", str(folder), "--n-trials", str(n), "--worker", str(index)]
    return subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(procs: list[subprocess.Popen]) -> list[str]:
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
        outs.append(out)
    return outs


def finished(study: tune.Study) -> list:
    return tune.load(study.path).trials("COMPLETE", "PRUNED")


def assert_unique(trials: list) -> None:
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params)


def assert_settled(study: tune.Study, n: int) -> list:
    """Exactly ``n`` finished trials, with distinct parameters, and none running or waiting; returns all trials."""
    trials = tune.load(study.path).trials()
    assert len([t for t in trials if t.state.name in tune.FINISHED]) == n
    assert_unique([t for t in trials if t.state.name in tune.FINISHED])
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    return trials


def test_one_trial_on_a_fresh_study_runs_the_warm_start(tmp_path, storage):
    """`--n-trials 1` runs the enqueued paper values (WAITING trials run first and are not done before they ran);
    trials evaluate the validation split only, print the objective, and `confirm` is where test accuracy appears;
    a resumed study proposes new parameters."""
    study = create(tmp_path / "s", storage)
    assert [t.state.name for t in study.trials()] == ["WAITING"]
    (out,) = finish([worker(study.path, 1, 0)])
    trials = assert_settled(study, 1)
    assert [(t.number, t.state.name, t.params) for t in trials] == [(0, "COMPLETE", {"mixing.kappa": 3.0, "mixing.tau": 0.5})]
    assert "this worker ran 1 trial(s)" in out and f"trial 0 complete: val_balanced_acc {trials[0].value:.2f}" in out
    assert "val bal" in out and " top1      - " in out  # the epoch line: validation metrics, no test metric
    folder = study.path / trials[0].user_attrs["run_folders"][0]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["val_balanced_acc"] == trials[0].value and not {"top1", "balanced_acc", "per_class"} & set(summary)
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(row.get("top1") is None and row["val_top1"] is not None for row in rows)
    assert "this worker ran 0 trial(s)" in finish([worker(study.path, 1, 1)])[0]  # the budget holds: nothing asked
    assert len(tune.load(study.path).trials()) == 1
    # resumed with a larger budget by the same worker index: its sampler's seed moved on, nothing repeats
    assert "this worker ran 2 trial(s)" in finish([worker(study.path, 3, 0)])[0]
    trials = assert_settled(study, 3)
    assert not [t for t in trials if t.user_attrs.get("duplicate_of") is not None]
    if storage == "journal":  # confirm: test accuracy, on a fresh seed
        from remixup.cli import main

        assert main(["tune", "confirm", str(study.path), "--top", "1", "--seeds", "7"]) == 0
        (row,) = json.loads((study.path / "confirm" / "confirm.json").read_text())
        assert row["trial"] == 0 and row["runs"][0]["test_top1"] > 0 and row["runs"][0]["seed"] == 7


def test_a_trial_with_a_user_error_is_failed_and_stops_the_worker(tmp_path, storage):
    """A range that reaches past the data (a batch larger than the training set) passes `create`; the trial that
    draws it fails with the message as its user attribute, and the worker stops with that one line."""
    space = "space:\n  optim.batch_size: {type: int, low: 64, high: 4096}\nenqueue:\n  - {optim.batch_size: 4096}\n"
    study = create(tmp_path / "s", storage, space=space)
    p = worker(study.path, 3, 0)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 2 and "Traceback" not in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("remixup: error: trial 0 failed: optim.batch_size=4096 is larger than the training set")
    trials = tune.load(study.path).trials()
    assert [(t.number, t.state.name) for t in trials] == [(0, "FAIL")]
    assert "is larger than the training set" in trials[0].user_attrs["error"]


def test_three_workers_one_killed_end_with_n_trials(tmp_path, storage):
    """Three workers, one SIGKILLed mid-trial: its trial is failed and retried once (resuming its run folder), and
    the study ends with exactly N finished trials, none repeated, none running or waiting."""
    n = 4
    study = create(tmp_path / "s", storage, epochs=10)
    procs = [worker(study.path, n, i) for i in range(3)]
    deadline, victim = time.monotonic() + 180, None
    while victim is None:  # a trial that has logged an epoch: SIGKILL its worker
        assert time.monotonic() < deadline
        for t in tune.load(study.path).trials("RUNNING"):
            if "worker" in t.user_attrs and (study.path / f"trials/{t.number:04d}_seed0" / "metrics.jsonl").is_file():
                victim, killed = t.number, procs[t.user_attrs["worker"]["index"]]
                break
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    finish([p for p in procs if p is not killed])
    if storage != "journal":
        time.sleep(3)  # past the heartbeat's grace period
    finish([worker(study.path, n, 3)])  # a later worker finds the dead trial if the others did not
    trials = assert_settled(study, n)
    states = {t.number: t.state.name for t in trials}
    assert states[victim] == "FAIL"
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == victim]
    assert retry.state.name in tune.FINISHED and retry.params == trials[victim].params
    assert retry.user_attrs["run_folders"] == [f"trials/{victim:04d}_seed0"]  # resumed, not started again
    done = [t for t in trials if t.state.name in tune.FINISHED]
    assert len({t.user_attrs["worker"]["index"] for t in done}) >= 2  # the budget was shared
    assert not [t for t in trials if t.user_attrs.get("duplicate_of") is not None]  # the samplers never repeated
    for t in done:  # each trial is an ordinary run folder linked to its number (a retry: the one it repeats)
        assert (study.path / t.user_attrs["run_folders"][0] / "summary.json").is_file()


def test_submitit_local_runs_a_grid_of_two(tmp_path):
    pytest.importorskip("submitit")
    from functools import partial

    from remixup import reproduce as rp
    from remixup.experiments import Column, Experiment, Row, enumerate_runs
    from remixup.slurm import submit_grid

    tiny = Experiment("tiny", "tiny", (Row("remix", "Remix"),), (Column("blobs", "longtail", 10, "blobs LT-10"),),
                      {("Remix", "blobs LT-10"): 90.0})  # fmt: skip
    runs = enumerate_runs(tiny, seeds=[0, 1], epochs=1, overrides=["run.eval_every=1", "run.threads=1"])
    args = argparse.Namespace(cluster="local", time=10, cpus=1, gpus=0, parallel=2, partition=None, slurm_folder=None, wait=True)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = ENV["PYTHONPATH"]
    try:
        failed = submit_grid(runs, tmp_path, partial(rp.build_command, device="cpu"), args)
    finally:
        os.environ.pop("PYTHONPATH") if old is None else os.environ.__setitem__("PYTHONPATH", old)
    assert failed == 0
    assert all((tmp_path / spec.run_id / "summary.json").is_file() for spec in runs)


def test_ddp_worker_under_torchrun(tmp_path):
    """Two gloo ranks run each trial together: rank 0 asks, broadcasts the parameters and the prune decisions."""
    study = create(tmp_path / "s", "journal", epochs=2)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "remixup", "tune", "run",
            str(study.path), "--n-trials", "2", "--worker", "0"]  # fmt: skip
    out = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    done = finished(study)
    assert len(done) == 2 and all(t.state.name == "COMPLETE" for t in done)
    assert out.stdout.count("this worker ran 2 trial(s)") == 1  # rank 0 reports


def test_requeued_worker_retries_its_running_trial(tmp_path):
    """A SLURM time-out requeues the worker (submitit calls `checkpoint`): the new job fails the trial it was running
    and runs its retry first, which resumes the trial's run folder."""
    pytest.importorskip("submitit")
    from remixup.slurm import TuneJob

    study = create(tmp_path / "s", "journal")
    trial = study.study.ask()  # the trial the first job was running when time ran out
    job = TuneJob(study.path, 1, None, 0)
    job._running(trial.number)
    again = job.checkpoint()
    assert again.kwargs == {"resume_trial": trial.number}
    assert again.function(**again.kwargs) == 1
    trials = tune.load(study.path).trials()
    assert [(t.number, t.state.name) for t in trials] == [(0, "FAIL"), (1, "COMPLETE")]
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].user_attrs["run_folders"] == ["trials/0000_seed0"]
