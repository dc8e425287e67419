"""What a ``remixup tune`` study found: its status, the best trials as a table, their confirmation on fresh seeds
(with test accuracy, the only place the test split is seen), and PNG plots."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from remixup.tune import Study, import_optuna, redact

__all__ = ["best_table", "best_trials", "confirm", "plots", "status_lines"]


def best_trials(s: Study, top: int) -> list[Any]:
    done = [t for t in s.trials("COMPLETE") if t.value is not None]
    return sorted(done, key=lambda t: (-t.value, t.number))[:top]


def status_lines(s: Study) -> list[str]:
    counts: dict[str, int] = {}
    trials = s.trials()
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    extra = {"surplus": sum(bool(t.user_attrs.get("surplus")) for t in trials),
             "duplicate": sum(t.user_attrs.get("duplicate_of") is not None for t in trials),
             "retries": sum("failed_trial" in t.system_attrs for t in trials),
             "errors": sum("error" in t.user_attrs for t in trials)}  # fmt: skip
    st = s.settings
    lines = [f"study {s.path}: storage {redact(st.storage)}, objective {s.metric} (mean of "
             f"{st.objective.seeds_per_trial} seed(s)), sampler {st.sampler.name}, pruner {st.pruner.name}"]  # fmt: skip
    lines.append(f"trials: {len(trials)} (" + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items())) + ")"
                 + "".join(f", {k} {v}" for k, v in extra.items() if v))  # fmt: skip
    for t in s.trials("RUNNING"):
        w = t.user_attrs.get("worker", {})
        lines.append(f"  running: trial {t.number} on {w.get('host', '?')} pid {w.get('pid', '?')}")
    for t in [t for t in trials if "error" in t.user_attrs][-1:]:
        lines.append(f"  last error: trial {t.number}: {t.user_attrs['error']}")
    best = best_trials(s, 1)
    if best:
        lines.append(f"best: trial {best[0].number} {s.metric} {best[0].value:.2f} " + _params_text(best[0].params))
    return lines


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def best_table(s: Study, top: int) -> str:
    """A Markdown table of the ``top`` complete trials by objective."""
    keys = list(s.space)
    head = ["rank", "trial", s.metric, *keys, "seeds", "run folder"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, t in enumerate(best_trials(s, top), 1):
        cells = [str(rank), str(t.number), f"{t.value:.2f}"]
        cells += [f"{t.params[k]:.4g}" if isinstance(t.params.get(k), float) else str(t.params.get(k)) for k in keys]
        folders = t.user_attrs.get("run_folders", [])
        cells += [str(len(t.user_attrs.get("seed_values", []))), folders[0] if folders else ""]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def confirm(s: Study, *, top: int, seeds: list[int]) -> tuple[str, list[dict[str, Any]]]:
    """Retrain the ``top`` best trials on ``seeds`` (their own run folders under ``confirm/``) and report the
    validation metric and test accuracy as mean ± std; returns (Markdown table, rows) and writes confirm.json."""

    from remixup._files import atomic_write
    from remixup.engine import train

    results = []
    for t in best_trials(s, top):
        runs = []
        for seed in seeds:
            config = s.trial_config(t.params, seed=seed, out=s.path / "confirm" / f"{t.number:04d}_seed{seed}", test=True)
            summary = train(config, resume="auto")
            runs.append({"seed": seed, s.metric: summary[s.metric], "test_top1": summary["top1"],
                         "test_balanced_acc": summary["balanced_acc"], "run_folder": config.run.out})  # fmt: skip
        results.append({"trial": t.number, "search_value": t.value, "params": t.params, "runs": runs})

    def cell(values: list[float]) -> str:
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"

    head = ["trial", *s.space, f"search {s.metric}", f"{s.metric}", "test top-1", "test balanced", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        ps = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (r["params"].get(k) for k in s.space)]
        lines.append("| " + " | ".join([str(r["trial"]), *ps, f"{r['search_value']:.2f}",
                                        *(cell([x[k] for x in r["runs"]]) for k in (s.metric, "test_top1", "test_balanced_acc")),
                                        ",".join(str(x) for x in seeds)]) + " |")  # fmt: skip
    atomic_write(s.path / "confirm" / "confirm.json", json.dumps(results, indent=1) + "\n")
    return "\n".join(lines), results


def plots(s: Study, out: Path) -> list[Path]:
    """history.png (objective per trial, best so far), importances.png (fANOVA), kappa_tau.png (when both are
    searched); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    optuna = import_optuna()
    out.mkdir(parents=True, exist_ok=True)
    done = sorted(s.trials("COMPLETE"), key=lambda t: t.number)
    written: list[Path] = []
    if not done:
        return written
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    xs, ys = [t.number for t in done], [t.value for t in done]
    best = [max(ys[: i + 1]) for i in range(len(ys))]
    ax.scatter(xs, ys, s=14, label="trial")
    ax.step(xs, best, where="post", color="C3", label="best so far")
    pruned = [t.number for t in s.trials("PRUNED")]
    if pruned:
        ax.scatter(pruned, [min(ys)] * len(pruned), marker="x", color="grey", s=14, label="pruned")
    ax.set(xlabel="trial", ylabel=s.metric, title="search history")
    ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(out / "history.png")
    fig.savefig(written[-1])
    plt.close(fig)
    if len(done) >= 3 and len(s.space) > 1:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        imp = optuna.importance.get_param_importances(s.study, evaluator=evaluator)
        fig, ax = plt.subplots(figsize=(5, 0.4 * len(imp) + 1.2), dpi=100)
        ax.barh(list(imp)[::-1], list(imp.values())[::-1])
        ax.set(xlabel="importance (fANOVA)", title="parameter importances")
        fig.tight_layout()
        written.append(out / "importances.png")
        fig.savefig(written[-1])
        plt.close(fig)
    if {"mixing.kappa", "mixing.tau"} <= set(s.space):
        fig, ax = plt.subplots(figsize=(4.6, 3.6), dpi=100)
        sc = ax.scatter(
            [t.params["mixing.kappa"] for t in done], [t.params["mixing.tau"] for t in done], c=ys, cmap="viridis", s=30
        )
        fig.colorbar(sc, label=s.metric)
        ax.set(xlabel="κ (mixing.kappa)", ylabel="τ (mixing.tau)", title="κ × τ")
        fig.tight_layout()
        written.append(out / "kappa_tau.png")
        fig.savefig(written[-1])
        plt.close(fig)
    return written
