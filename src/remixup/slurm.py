"""Grids and searches on SLURM through submitit (optional extra ``remixup[slurm]``).

``remixup reproduce TABLE --slurm`` submits one job per unfinished run of the grid as a job array;
``remixup tune run STUDY_DIR --slurm --array K`` submits K workers. On a time-out submitit requeues the job
(SIGUSR2 → :meth:`checkpoint`): a grid run then resumes from its ``checkpoint.pt``; a worker fails the trial it
was running and retries it at once, and the retry resumes that trial's run folders from their checkpoints.
``--cluster local`` runs the same jobs as local processes (submitit's local executor), for testing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from remixup.errors import UserError

__all__ = ["GridJob", "TuneJob", "add_slurm_options", "executor", "submit_grid", "submit_tune"]


def add_slurm_options(parser: argparse.ArgumentParser, *, array: bool = False) -> None:
    """The ``--slurm`` options of ``reproduce`` and ``tune run``."""
    g = parser.add_argument_group("SLURM (through submitit: pip install 'remixup[slurm]')")
    g.add_argument("--slurm", action="store_true", help="submit the work as a SLURM job array instead of running it here")
    g.add_argument("--partition", default=None, help="SLURM partition")
    g.add_argument(
        "--time", type=int, default=240, help="minutes per job; a job that runs out is requeued and resumes (default 240)"
    )
    g.add_argument("--gpus", type=int, default=0, help="GPUs per job (default 0)")
    g.add_argument("--cpus", type=int, default=4, help="CPUs per job (default 4)")
    g.add_argument("--parallel", type=int, default=64, help="at most this many array tasks at once (default 64)")
    g.add_argument("--slurm-folder", type=Path, default=None, help="submitit's logs and job files (default: next to the runs)")
    g.add_argument(
        "--cluster", default="slurm", choices=("slurm", "local"), help="local: run the jobs as local processes (tests)"
    )
    g.add_argument("--wait", action="store_true", help="wait for the jobs and report how they ended")
    if array:
        g.add_argument("--array", type=int, default=1, help="number of workers to submit (default 1)")


def executor(args: argparse.Namespace, folder: Path) -> Any:
    """A submitit executor for the options of :func:`add_slurm_options`."""
    try:
        import submitit
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise UserError("--slurm needs submitit: pip install 'remixup[slurm]'") from exc
    ex = submitit.AutoExecutor(folder=str(folder), cluster=args.cluster)
    params: dict[str, Any] = {"timeout_min": args.time, "cpus_per_task": args.cpus, "gpus_per_node": args.gpus,
                              "slurm_array_parallelism": args.parallel}  # fmt: skip
    if args.partition:
        params["slurm_partition"] = args.partition
    ex.update_parameters(**params)
    return ex


class GridJob:
    """One run of a grid as a submitit job; a requeued job resumes the run from its checkpoint."""

    def __init__(self, spec: Any, runs_dir: Path, command: Any) -> None:
        self.spec, self.runs_dir, self.command = spec, Path(runs_dir), command

    def __call__(self) -> str:
        from remixup import reproduce as rp

        result = rp.run_grid([self.spec], self.runs_dir, command=self.command, progress=False, echo=print)
        if result.failed:
            raise RuntimeError(f"run {self.spec.run_id} failed; log: {self.runs_dir / rp.LOG_DIR / (self.spec.run_id + '.log')}")
        return str(self.spec.run_id)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(GridJob(self.spec, self.runs_dir, self.command))


class TuneJob:
    """A ``tune run`` worker as a submitit job; a requeued job retries the trial it was running first."""

    def __init__(self, study: Path, n_trials: int, timeout: float | None, worker: int) -> None:
        self.study, self.n_trials, self.timeout, self.worker = Path(study), n_trials, timeout, worker
        self.trial: int | None = None

    def _running(self, number: int | None) -> None:
        self.trial = number

    def __call__(self, resume_trial: int | None = None) -> int:
        from remixup.tune import run_worker

        return run_worker(self.study, n_trials=self.n_trials, timeout=self.timeout, worker=self.worker,
                          resume_trial=resume_trial, on_trial=self._running)  # fmt: skip

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        job = TuneJob(self.study, self.n_trials, self.timeout, self.worker)
        return submitit.helpers.DelayedSubmission(job, resume_trial=self.trial)


def _wait(jobs: Sequence[Any]) -> int:
    failed = 0
    for job in jobs:
        try:
            print(f"job {job.job_id}: done, {job.result()}")
        except Exception as exc:  # noqa: BLE001 - submitit re-raises the job's error; report it, go on
            failed += 1
            print(f"job {job.job_id}: FAILED: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
    return failed


def submit_grid(runs: Sequence[Any], runs_dir: Path, command: Any, args: argparse.Namespace) -> int:
    """Submit the unfinished ``runs`` as a job array; return the number of failed jobs (0 unless ``--wait``)."""
    from remixup.rundir import run_status

    todo = [spec for spec in runs if run_status(runs_dir / spec.run_id) != "done"]
    if not todo:
        print(f"# all {len(runs)} runs finished already; nothing to submit")
        return 0
    ex = executor(args, args.slurm_folder or runs_dir / "_slurm")
    with ex.batch():
        jobs = [ex.submit(GridJob(spec, runs_dir, command)) for spec in todo]
    print(f"# submitted {len(jobs)} runs: jobs {', '.join(str(j.job_id) for j in jobs)}")
    return _wait(jobs) if args.wait else 0


def submit_tune(args: argparse.Namespace) -> int:
    """Submit ``--array`` workers of ``tune run``; 1 if any failed (with ``--wait``), else 0."""
    from remixup.tune import load

    load(args.study)  # fail here, not in the jobs, when the study is missing or its storage unreachable
    ex = executor(args, args.slurm_folder or args.study / "slurm")
    first = args.worker or 0
    with ex.batch():
        jobs = [ex.submit(TuneJob(args.study, args.n_trials, args.timeout, first + k)) for k in range(args.array)]
    print(f"submitted {len(jobs)} workers: jobs {', '.join(str(j.job_id) for j in jobs)}")
    return int(_wait(jobs) > 0) if args.wait else 0
