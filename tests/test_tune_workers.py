"""remixup tune workers as separate processes, on the journal file and on a real PostgreSQL server: the budget is
the study's, parameters never repeat, a killed worker's trial is failed and retried, a resumed study goes on with
new proposals; and SLURM jobs through submitit's local executor."""

from __future__ import annotations

import argparse
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
    pytest.importorskip("psycopg2")
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


def create(folder: Path, storage: str, epochs: int = 1) -> tune.Study:
    from remixup.config import build_config

    (folder.parent / "space.yaml").write_text(SPACE)
    config = build_config("paper", values={"data.dataset": "digits", "data.ratio": 10.0, "method.name": "remix"}, epochs=epochs,
                          overrides=["run.eval_every=1", "optim.batch_size=128", "run.threads=1"])  # fmt: skip
    study, _ = tune.create_study(folder, space_file=folder.parent / "space.yaml", config=config, storage=storage,
                                 n_startup_trials=2, heartbeat=1, grace=2)  # fmt: skip
    return study


def worker(folder: Path, n: int, index: int) -> subprocess.Popen:
    argv = [sys.executable, "-m", "remixup", "tune", "run", str(folder), "--n-trials", str(n), "--worker", str(index)]
    return subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out


def finished(study: tune.Study) -> list:
    return tune.load(study.path).trials("COMPLETE", "PRUNED")


def assert_unique(trials: list) -> None:
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params)


def test_three_workers_share_the_budget(tmp_path, storage):
    study = create(tmp_path / "s", storage)
    finish([worker(study.path, 6, i) for i in range(3)])
    trials = tune.load(study.path).trials()
    done = [t for t in trials if t.state.name in tune.FINISHED]
    assert len(done) == 6
    assert_unique(done)
    assert not [t for t in trials if t.user_attrs.get("duplicate_of") is not None]  # the samplers never repeated
    workers = {t.user_attrs["worker"]["index"] for t in done}
    assert len(workers) >= 2  # the budget was shared
    for t in done:  # each trial is an ordinary run folder linked to its number
        assert t.user_attrs["run_folders"] == [f"trials/{t.number:04d}_seed0"]
        assert (study.path / t.user_attrs["run_folders"][0] / "summary.json").is_file()


def test_killed_worker_trial_is_failed_and_retried(tmp_path, storage):
    study = create(tmp_path / "s", storage, epochs=10)
    p = worker(study.path, 2, 0)
    deadline = time.monotonic() + 120
    while not list((study.path / "trials").glob("0000_seed0/metrics.jsonl")):
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    assert [t.number for t in tune.load(study.path).trials("RUNNING")] == [0]
    if storage != "journal":
        time.sleep(3)  # past the heartbeat's grace period
    finish([worker(study.path, 2, 1)])
    trials = tune.load(study.path).trials()
    states = {t.number: t.state.name for t in trials}
    assert states[0] == "FAIL"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].state.name in tune.FINISHED and retry[0].params == trials[0].params
    assert len(finished(study)) == 2


def test_resumed_study_proposes_new_trials(tmp_path, storage):
    study = create(tmp_path / "s", storage)
    finish([worker(study.path, 3, 0)])
    first = finished(study)
    finish([worker(study.path, 6, 0)])  # the same worker index again: its seed moves on with the finished trials
    trials = tune.load(study.path).trials()
    done = [t for t in trials if t.state.name in tune.FINISHED]
    assert len(done) == 6 and {t.number for t in first} <= {t.number for t in done}
    assert_unique(done)
    assert not [t for t in trials if t.user_attrs.get("duplicate_of") is not None]


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


def test_requeued_worker_finishes_its_running_trial(tmp_path):
    """A SLURM time-out requeues the worker (submitit calls `checkpoint`): the new job takes up the trial it ran."""
    pytest.importorskip("submitit")
    from remixup.slurm import TuneJob

    study = create(tmp_path / "s", "journal")
    trial = study.study.ask()  # the trial the first job was running when time ran out
    tune._own(study, trial, 0)
    job = TuneJob(study.path, 1, None, 0)
    job._running(trial.number)
    again = job.checkpoint()
    assert again.kwargs == {"resume_trial": trial.number}
    assert again.function(**again.kwargs) == 1
    trials = tune.load(study.path).trials()
    assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE")]
