"""A resumable grid runner for the paper's tables, and their Markdown tables and sweep plots.

Each run of a grid (:func:`remixup.experiments.enumerate_runs`) is one independent process,
``python -m remixup train ... --out RUNS/<run id>``, so a grid can be spread over machines (``--shard i/n`` gives
shard ``i`` the runs ``k`` with ``k mod n == i``) and a killed grid picks up where it stopped:

- a run whose ``summary.json`` exists is finished (the engine writes it last) and is skipped;
- a run whose ``checkpoint.pt`` exists is resumed with ``--resume``;
- any other run starts from scratch (its folder, if any, holds no finished epoch and is cleared first).

With ``--fork-deferred`` (:func:`plan_forks`) a deferred run (DRW/DRS) whose plain twin is in the same grid (Remix
for Remix-DRW, ERM for DRW and DRS) is not trained from scratch: the twin keeps its checkpoint of the deferral
epoch (``run.keep_every``) and the deferred run starts from it (``remixup train --fork``), since the two train
alike until then. On the 200-epoch ``ldam`` recipe that saves 160 of the deferred run's 200 epochs.

The command builder and the executor are parameters of :func:`run_grid`, so the runner can be tested without
training anything.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remixup._files import ensure_writable
from remixup.errors import InvalidParameterError
from remixup.experiments import Experiment, RunSpec
from remixup.rundir import RunFolder, run_status
from remixup.tables import CellStats as CellStats  # the grid's tables, importable from here as before
from remixup.tables import as_run as as_run
from remixup.tables import collect as collect
from remixup.tables import format_cell as format_cell
from remixup.tables import markdown_table as markdown_table
from remixup.tables import metric_value as metric_value
from remixup.tables import plot_sweep as plot_sweep
from remixup.tables import read_metric
from remixup.tables import write_results as write_results

LOG_DIR = "_logs"

CommandBuilder = Callable[[RunSpec, Path, bool], list[str]]
Executor = Callable[[list[str], Path], int]


# ----------------------------------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class ForkPlan:
    """Which runs of a grid keep a checkpoint for others, and which start from one.

    Attributes:
        keep: run id -> the epoch whose checkpoint it keeps (its deferral epoch).
        forks: run id of a deferred run -> (run id of its plain twin, the epoch it starts from).
    """

    keep: dict[str, int]
    forks: dict[str, tuple[str, int]]


def plain_twin(method: str) -> str | None:
    """The registry method that trains exactly as the deferred ``method`` does before its deferral epoch.

    That is the method with the same mixer, label rule and loss and no re-balancing (``remix-drw`` -> ``remix``,
    ``drw`` and ``drs`` -> ``erm``). None for a method that is not deferred, that also re-balances from the start,
    or that has no such twin (``remix-ldam-drw``).
    """
    from remixup.methods import METHODS, get_method

    m = get_method(method)
    if "drw" not in (m.weighting, m.sampling) and "drs" not in (m.weighting, m.sampling):
        return None
    if m.weighting == "rw" or m.sampling == "rs":
        return None

    def family(x: Any) -> tuple[Any, ...]:  # the mixing family's axes (partner, λ draw, CMO's probability and window)
        return (x.partner, x.draw, x.prob, x.skip_first, x.skip_last)

    for twin in METHODS.values():
        if (twin.mixer, twin.labels, twin.loss, twin.weighting, twin.sampling) == (m.mixer, m.labels, m.loss, None, None) and (
            family(twin) == family(m)
        ):
            return twin.name
    return None


def recipe_epochs(recipe: str) -> int:
    """The number of epochs ``recipe`` itself trains for."""
    from remixup.tables import recipe_epochs as epochs

    return epochs(recipe)


def deferral_and_length(spec: RunSpec) -> tuple[int, int]:
    """``spec``'s (0-based) deferral epoch and its number of epochs, from its recipe, epochs and overrides."""
    from remixup.config import build_config

    config = build_config(spec.recipe, epochs=spec.epochs, overrides=list(spec.overrides), validate=False)
    return config.schedule.deferral_epoch, config.run.epochs


def plan_forks(grid: Sequence[RunSpec]) -> ForkPlan:
    """Pair every deferred run of ``grid`` with its plain twin (same column, seeds, recipe, epochs and overrides).

    A run with no twin in the grid, or whose deferral epoch is 0 or not before its last epoch, is trained whole.
    """
    by_key = {(s.method, s.column, s.seed, s.subset_seed, s.recipe, s.epochs, s.overrides): s for s in grid}
    keep: dict[str, int] = {}
    forks: dict[str, tuple[str, int]] = {}
    for spec in grid:
        if spec.first_stage is not None:
            continue
        twin_method = plain_twin(spec.method)
        if twin_method is None:
            continue
        twin = by_key.get((twin_method, spec.column, spec.seed, spec.subset_seed, spec.recipe, spec.epochs, spec.overrides))
        if twin is None:
            continue
        epoch, epochs = deferral_and_length(spec)
        if 0 < epoch < epochs:
            keep[twin.run_id] = epoch
            forks[spec.run_id] = (twin.run_id, epoch)
    return ForkPlan(keep, forks)


def forking_command(command: CommandBuilder, plan: ForkPlan, runs_dir: Path) -> CommandBuilder:
    """Wrap ``command``: twins keep their deferral-epoch checkpoint, and a deferred run that starts (not resumes)
    after its twin kept that checkpoint starts from it with ``--fork``; otherwise it is trained whole."""

    def build(spec: RunSpec, run_dir: Path, resume: bool) -> list[str]:
        argv = command(spec, run_dir, resume)
        if "train" not in argv:  # a second stage (remixup decouple) neither keeps nor forks
            return argv
        at = argv.index("train") + 1
        if spec.run_id in plan.keep:
            argv.append(f"run.keep_every={plan.keep[spec.run_id]}")
        if spec.run_id in plan.forks and not resume:
            twin, epoch = plan.forks[spec.run_id]
            ckpt = RunFolder(runs_dir / twin).kept_checkpoint(epoch)
            if ckpt.is_file():
                argv[at:at] = ["--fork", str(ckpt)]
        return argv

    return build


def order_for_forks(runs: Sequence[RunSpec], plan: ForkPlan) -> list[RunSpec]:
    """``runs`` with every forked run moved after the others (so its twin runs first); order otherwise kept."""
    return [s for s in runs if s.run_id not in plan.forks] + [s for s in runs if s.run_id in plan.forks]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0 ≤ i < n) into ``(i, n)``."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise InvalidParameterError(f"`--shard` must look like i/n, e.g. 0/4; got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise InvalidParameterError(f"`--shard` i/n needs n >= 1 and 0 <= i < n; got {text!r}")
    return i, n


def take_shard(runs: Sequence[RunSpec], index: int, count: int) -> list[RunSpec]:
    """Shard ``index`` of ``count``: the runs at positions k with k mod count == index, in grid order."""
    return [run for k, run in enumerate(runs) if k % count == index]


def parse_seeds(text: str) -> list[int]:
    """Parse ``"0,1,2"`` or a range ``"0-4"`` (inclusive) or a mix (``"0-2,7"``) into a list of seeds."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-", 1)
                if int(hi) < int(lo):
                    raise InvalidParameterError(f"a seed range must go upwards (like 0-4); got {part!r}")
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise InvalidParameterError(
            f"seeds must be a comma-separated list of integers or ranges like 0-4; got {text!r}"
        ) from None
    if not seeds:
        raise InvalidParameterError(f"no seeds in {text!r}")
    return seeds


def select_rows(experiment: Experiment, text: str) -> list[str]:
    """The labels of the rows named in ``text`` (comma-separated method names or row labels, any case).

    ``"erm, remix-drw"`` and ``"ERM,Remix-DRW"`` both pick those two rows of a method table; a sweep's rows go by
    their labels (``"κ = 3"``). An unknown name raises ``ValueError`` listing the table's rows.
    """
    from remixup.methods import canonical_name

    by_name: dict[str, str] = {}
    for row in experiment.rows:
        by_name.setdefault(canonical_name(row.label), row.label)
        if experiment.sweep is None:
            by_name.setdefault(canonical_name(row.method), row.label)
    picked: list[str] = []
    for part in text.split(","):
        if not part.strip():
            continue
        label = by_name.get(canonical_name(part))
        if label is None:
            valid = ", ".join(row.label for row in experiment.rows)
            raise InvalidParameterError(f"`--rows`: table {experiment.name} has no row {part.strip()!r}; its rows: {valid}")
        if label not in picked:
            picked.append(label)
    if not picked:
        raise InvalidParameterError(f"`--rows` names no row; got {text!r}")
    return picked


def build_command(
    spec: RunSpec,
    run_dir: Path,
    resume: bool,
    *,
    data_root: Path | str | None = None,
    device: str | None = None,
    python: str | None = None,
) -> list[str]:
    """The ``remixup train`` command line of one run (a list for :mod:`subprocess`, no shell); for a second stage
    (``spec.row.stage2``), the ``remixup decouple`` command on its first stage's run folder beside ``run_dir``."""
    first = spec.first_stage
    if first is not None:
        cmd = [python or sys.executable, "-m", "remixup", "decouple", str(run_dir.parent / first.run_id), "--method",
               spec.row.stage2, "--out", str(run_dir), "--no-progress"]  # fmt: skip
        if spec.epochs is not None:  # a shortened grid shortens the second stage alike (10 epochs at full length)
            cmd += ["--epochs", str(max(1, round(10 * spec.epochs / recipe_epochs(spec.recipe))))]
        if device is not None:
            cmd += ["--device", device]
        return cmd + (["--resume"] if resume else [])
    col = spec.column
    cmd = [python or sys.executable, "-m", "remixup", "train", "--dataset", col.dataset, "--imbalance", col.imbalance]
    if col.imbalance != "none":
        cmd += ["--ratio", str(col.ratio)]
    cmd += ["--method", spec.method, "--recipe", spec.recipe, "--seed", str(spec.seed), "--subset-seed", str(spec.subset_seed)]
    if spec.epochs is not None:
        cmd += ["--epochs", str(spec.epochs)]
    if data_root is not None:
        cmd += ["--data-root", str(data_root)]
    if device is not None:
        cmd += ["--device", device]
    cmd += ["--out", str(run_dir)]
    if resume:
        cmd.append("--resume")
    cmd += list(spec.overrides)
    return cmd


def subprocess_executor(command: list[str], log_file: Path) -> int:
    """Run ``command`` as a child process with its output appended to ``log_file``; return its exit status."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"$ {shlex.join(command)}\n".encode())
        log.flush()
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode


@dataclass
class GridResult:
    """What :func:`run_grid` did: run ids by outcome."""

    skipped: list[str]
    finished: list[str]
    failed: list[str]


def run_grid(
    runs: Sequence[RunSpec],
    runs_dir: Path,
    *,
    command: CommandBuilder,
    executor: Executor = subprocess_executor,
    fail_fast: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> GridResult:
    """Run every unfinished run of ``runs`` one after the other, skipping finished ones and resuming others.

    Args:
        runs: the runs to do (a shard of a grid, typically).
        runs_dir: the folder that holds one folder per run (named by :attr:`RunSpec.run_id`) and ``_logs/``.
        command: ``command(spec, run_dir, resume) -> argv``.
        executor: ``executor(argv, log_file) -> exit status``; a run counts as finished only when it exits 0
            *and* left its ``summary.json``.
        fail_fast: stop at the first failed run instead of going on with the others.
        progress: show a progress bar over runs (with elapsed time and ETA) on stderr.
        echo: where to print one line per run (default: through the progress bar, or stderr).

    Returns:
        The run ids skipped, finished and failed.
    """
    from tqdm.auto import tqdm

    result = GridResult([], [], [])
    todo = []
    for spec in runs:
        if run_status(runs_dir / spec.run_id) == "done":
            result.skipped.append(spec.run_id)
        else:
            todo.append(spec)
    bar = tqdm(total=len(todo), desc="runs", unit="run", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    say = echo or (lambda msg: tqdm.write(msg, file=sys.stderr))
    if result.skipped:
        say(f"{len(result.skipped)} of {len(runs)} runs already finished; {len(todo)} to do")
    try:
        for k, spec in enumerate(todo, 1):
            run_dir = runs_dir / spec.run_id
            resume = run_status(run_dir) == "resume"
            if not resume and run_dir.exists():
                # No checkpoint means no finished epoch: nothing to keep, and a fresh run wants an empty folder.
                shutil.rmtree(run_dir)
            bar.set_postfix_str(spec.run_id, refresh=True)
            argv = command(spec, run_dir, resume)
            log_file = runs_dir / LOG_DIR / f"{spec.run_id}.log"
            start = time.monotonic()
            code = executor(argv, log_file)
            took = time.monotonic() - start
            ok = code == 0 and run_status(run_dir) == "done"
            verb = "resumed" if resume else "ran"
            if ok:
                result.finished.append(spec.run_id)
                top1 = read_metric(run_dir, "top1")
                shown = f", top-1 {top1:.2f}%" if top1 is not None else ""
                say(f"[{k}/{len(todo)}] {verb} {spec.run_id} in {_duration(took)}{shown}")
            else:
                result.failed.append(spec.run_id)
                say(f"[{k}/{len(todo)}] FAILED {spec.run_id} (exit {code}) after {_duration(took)}; log: {log_file}")
            bar.update(1)
            if not ok and fail_fast:
                break
    finally:
        bar.close()
    return result


def fuse_groups(runs: Sequence[RunSpec], fuse: int, command: CommandBuilder, runs_dir: Path) -> list[list[RunSpec]]:
    """``runs`` in groups of at most ``fuse`` that :func:`remixup.fused.train_fused` can train together.

    Runs fuse when their resolved configs (from the ``remixup train`` command each would run) share
    :func:`remixup.fused.group_key`: the architecture, the data set, the optimiser and the schedule's length. A run
    that cannot be fused (manifold mixing, a second stage) is a group of its own, after the fused groups. Groups
    keep the runs' grid order.
    """
    from remixup.commands.fused import config_from_train_args
    from remixup.fused import fusable, group_key

    by_key: dict[object, list[RunSpec]] = {}
    alone: list[list[RunSpec]] = []
    for spec in runs:
        argv = command(spec, runs_dir / spec.run_id, False)
        if "train" not in argv:  # a second stage: after the groups, so its first stage has finished
            alone.append([spec])
            continue
        config = config_from_train_args(argv[argv.index("train") + 1 :])
        if fusable(config):
            by_key.setdefault(group_key(config), []).append(spec)
        else:
            alone.append([spec])
    groups = [members[i : i + fuse] for members in by_key.values() for i in range(0, len(members), fuse)]
    return groups + alone


def fused_command(group: Sequence[RunSpec], runs_dir: Path, command: CommandBuilder, python: str | None = None) -> list[str]:
    """The one command that trains ``group`` fused (``python -m remixup.commands.fused -- TRAIN_ARGS -- ...``); a group of one
    is the run's own ``remixup train`` command."""
    argvs = [command(spec, runs_dir / spec.run_id, run_status(runs_dir / spec.run_id) == "resume") for spec in group]
    if len(group) == 1:
        return argvs[0]
    cmd = [python or sys.executable, "-m", "remixup.commands.fused"]
    for argv in argvs:
        cmd += ["--", *argv[argv.index("train") + 1 :]]
    return cmd


def run_grid_fused(
    runs: Sequence[RunSpec],
    runs_dir: Path,
    *,
    fuse: int,
    command: CommandBuilder,
    executor: Executor = subprocess_executor,
    fail_fast: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> GridResult:
    """:func:`run_grid` with up to ``fuse`` runs trained together in one process (:func:`fuse_groups`).

    Finished runs are skipped and runs with a checkpoint resumed exactly as in :func:`run_grid`, run by run: a fused
    group resumes each of its runs from its own checkpoint. A run counts as finished when the group's command exited
    0 and the run left its ``summary.json``. Logs go to ``_logs/<first run id>.log`` for the whole group.
    """
    from tqdm.auto import tqdm

    result = GridResult([], [], [])
    todo = []
    for spec in runs:
        if run_status(runs_dir / spec.run_id) == "done":
            result.skipped.append(spec.run_id)
        else:
            todo.append(spec)
    groups = fuse_groups(todo, fuse, command, runs_dir)
    bar = tqdm(total=len(todo), desc="runs", unit="run", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    say = echo or (lambda msg: tqdm.write(msg, file=sys.stderr))
    if result.skipped:
        say(f"{len(result.skipped)} of {len(runs)} runs already finished; {len(todo)} to do in {len(groups)} fused groups")
    try:
        for k, group in enumerate(groups, 1):
            for spec in group:
                run_dir = runs_dir / spec.run_id
                if run_status(run_dir) != "resume" and run_dir.exists():
                    shutil.rmtree(run_dir)  # as in run_grid: no checkpoint, no finished epoch to keep
            argv = fused_command(group, runs_dir, command)
            log_file = runs_dir / LOG_DIR / f"{group[0].run_id}.log"
            bar.set_postfix_str(f"{group[0].run_id} +{len(group) - 1}", refresh=True)
            start = time.monotonic()
            code = executor(argv, log_file)
            took = time.monotonic() - start
            ok = []
            for spec in group:
                done = code == 0 and run_status(runs_dir / spec.run_id) == "done"
                (result.finished if done else result.failed).append(spec.run_id)
                ok.append(done)
            verb = f"{len(group)} runs fused" if len(group) > 1 else "1 run"
            state = "ran" if all(ok) else f"FAILED {ok.count(False)} of {len(group)} (exit {code})"
            say(f"[{k}/{len(groups)}] {state} {verb} from {group[0].run_id} in {_duration(took)}; log: {log_file}")
            bar.update(len(group))
            if not all(ok) and fail_fast:
                break
    finally:
        bar.close()
    return result


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe(runs: Sequence[RunSpec], runs_dir: Path, command: CommandBuilder) -> list[str]:
    """One line per run for ``--dry-run``: position, status (done/resume/todo) and the full command."""
    width = len(str(len(runs)))
    lines = []
    for k, spec in enumerate(runs, 1):
        run_dir = runs_dir / spec.run_id
        status = run_status(run_dir)
        lines.append(f"[{k:>{width}}/{len(runs)}] {status:<6} {shlex.join(command(spec, run_dir, status == 'resume'))}")
    return lines


def check_runs_dir(runs_dir: Path) -> None:
    """Fail early, with one clear line, if the runs folder cannot be created or written."""
    ensure_writable(runs_dir, what="the runs folder")
