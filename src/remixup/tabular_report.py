"""The report of ``remixup reproduce tabular``: mean ± std per cell, paired Wilcoxon tests over seeds with a Holm
correction, a critical-difference plot of average ranks over the sets, and where Remix does not help."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from remixup.tabular_design import BOOSTED, QUESTIONS, STUDY_METHODS, STUDY_SETS

ROW = "row.json"
HGB_FILE = "boosted.json"
CLAIM = ".claim"


# ------------------------------------------------------------------------------------------------- report
def collect_rows(runs_dir: Path) -> list[dict[str, Any]]:
    """Every finished row under ``runs_dir`` (network ``row.json`` files and boosted-tree files)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(runs_dir.glob(f"*/seed*/*/{ROW}")):
        rows.append(json.loads(path.read_text(encoding="utf-8")))
    for path in sorted(runs_dir.glob(f"*/seed*/{HGB_FILE}")):
        rows += json.loads(path.read_text(encoding="utf-8"))
    return rows


def _cell(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else float("nan")


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def _by(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    out: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["set"], r["method"]), {})[int(r["seed"])] = r
    return out


def _value(row: dict[str, Any], metric: str, split: str = "test") -> float:
    v = row[split].get(metric)
    return float("nan") if v is None else float(v)


def _paired(
    by: dict[tuple[str, str], dict[int, dict[str, Any]]], s: str, a: str, b: str, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    ra, rb = by.get((s, a), {}), by.get((s, b), {})
    seeds = sorted(set(ra) & set(rb))
    return (np.array([_value(ra[k], metric) for k in seeds]), np.array([_value(rb[k], metric) for k in seeds]))


def _best_by_validation(by: dict[tuple[str, str], dict[int, dict[str, Any]]], s: str, candidates: Sequence[str]) -> str | None:
    scored = [
        (float(np.mean([_value(r, "balanced_acc", "val") for r in by[(s, m)].values()])), m) for m in candidates if (s, m) in by
    ]
    return max(scored)[1] if scored else None


def _mean_recall(lists: Sequence[Sequence[float | None]]) -> list[float | None]:
    """Per-class mean over runs of the recall (%), skipping runs where a class had no test row."""
    out: list[float | None] = []
    for values in zip(*lists, strict=False):
        present = [float(v) for v in values if v is not None]
        out.append(round(float(np.mean(present)), 2) if present else None)
    return out


def _markdown_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(line) + " |" for line in lines)]


def write_report(
    rows: Sequence[dict[str, Any]],
    out_dir: Path,
    *,
    timing: dict[str, Any] | None = None,
    command: str = "remixup reproduce tabular",
) -> dict[str, Path]:
    """Write ``report.md``, ``cd_balanced_acc.png``, ``runs.csv`` and ``per_class_recall.json`` into ``out_dir``.

    Cells are mean ± sample std over seeds of test metrics. Paired two-sided Wilcoxon signed-rank tests over
    seeds (test balanced accuracy) answer :data:`QUESTIONS` per set; the same
    questions over sets use each set's mean. The CD diagram ranks every row by its mean test balanced accuracy
    on each set (Friedman test, Nemenyi critical difference at α = 0.05). Holm's correction runs within each
    question (its tests over the sets).
    """
    from remixup.stats import average_ranks, friedman, holm, nemenyi_cd, plot_cd, wilcoxon

    out_dir.mkdir(parents=True, exist_ok=True)
    by = _by(rows)
    set_labels = [s.label for s in STUDY_SETS if any(k[0] == s.label for k in by)]
    methods = [m for m in (*STUDY_METHODS, *BOOSTED) if any(k[1] == m for k in by)]
    networks = [m for m in methods if m in STUDY_METHODS]
    seeds = sorted({int(r["seed"]) for r in rows})
    paths: dict[str, Path] = {}

    # -- compact per-run table
    columns = [
        "set",
        "method",
        "seed",
        "kind",
        "test_balanced_acc",
        "test_macro_f1",
        "test_accuracy",
        "test_many",
        "test_medium",
        "test_few",
        "val_balanced_acc",
        "val_macro_f1",
        "n_train",
        "epochs",
        "batch_size",
        "forked",
        "learning_rate",
        "iterations",
        "wall_s",
    ]
    lines = [",".join(columns)]
    for r in sorted(rows, key=lambda r: (r["set"], r["method"], r["seed"])):
        values = {
            "set": r["set"],
            "method": r["method"],
            "seed": r["seed"],
            "kind": r["kind"],
            **{f"test_{k}": r["test"].get(k) for k in ("balanced_acc", "macro_f1", "accuracy", "many", "medium", "few")},
            **{f"val_{k}": r["val"].get(k) for k in ("balanced_acc", "macro_f1")},
            **{k: r.get(k) for k in ("n_train", "epochs", "batch_size", "forked", "learning_rate", "iterations", "wall_s")},
        }
        lines.append(
            ",".join(
                "" if values[c] is None else (f"{values[c]:.4f}" if isinstance(values[c], float) else str(values[c]))
                for c in columns
            )
        )
    paths["csv"] = out_dir / "runs.csv"
    paths["csv"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    recall = {
        s: {
            "classes": next(iter(by[(s, methods[0])].values()))["classes"] if (s, methods[0]) in by else [],
            "train_counts_seed0": next(iter(by[(s, methods[0])].values()))["train_counts"] if (s, methods[0]) in by else [],
            **{m: _mean_recall([r["test"]["per_class_recall"] for r in by[(s, m)].values()]) for m in methods if (s, m) in by},
        }
        for s in set_labels
    }
    paths["per_class"] = out_dir / "per_class_recall.json"
    paths["per_class"].write_text(json.dumps(recall, indent=1) + "\n", encoding="utf-8")

    md: list[str] = [
        "# Remix on imbalanced tables",
        "",
        f"Rebuilt with `{command}`. {len(rows)} finished rows: {len(set_labels)} sets × {len(methods)} methods × "
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}); seed s is the split seed, the training seed and the "
        "profile's subset seed. Test metrics in %; the validation split is used only to pick the best network "
        "method and to tune the boosted tree.",
        "",
    ]
    if timing:
        md += [
            f"Wall time of the grid on this machine: {timing['elapsed_s'] / 60:.1f} min with {timing['workers']} worker "
            f"process(es) of one thread each ({timing['sessions']} session(s)); the runs themselves add up to "
            f"{sum(float(r.get('wall_s', 0.0)) for r in rows) / 60:.1f} min of one core.",
            "",
        ]
    # -- data sets
    md += ["## Data sets", ""]
    set_lines = []
    for s in set_labels:
        any_row = next(iter(by[(s, methods[0])].values())) if (s, methods[0]) in by else next(r for r in rows if r["set"] == s)
        counts = [c for c in any_row["train_counts"] if c > 0]
        spec = next(x for x in STUDY_SETS if x.label == s)
        net = next((r for m in networks if (s, m) in by for r in by[(s, m)].values()), None)
        dropped = ", ".join(f"{k} ({v})" for k, v in any_row["dropped"].items()) or "—"
        set_lines.append(
            [
                s,
                spec.dataset + ("" if spec.imbalance == "none" else f", {spec.imbalance} ρ={spec.ratio:g} on train"),
                str(len(any_row["classes"])),
                str(any_row["n_train"]),
                f"{max(counts) / min(counts):.1f}",
                dropped,
                "—" if net is None else f"{net['epochs']} / {net['batch_size']}",
            ]
        )
    md += _markdown_table(
        ["set", "source", "classes", "train rows (seed 0)", "train max/min", "dropped (rows)", "epochs / batch"], set_lines
    )
    md += [""]

    # -- main tables
    def table(metric: str, title: str) -> list[str]:
        out = [f"## {title}", "", "Mean ± std over seeds; **bold**: the best mean of the column.", ""]
        means = {
            (s, m): _cell([_value(r, metric) for r in by[(s, m)].values()]) for s in set_labels for m in methods if (s, m) in by
        }
        best = {s: max((means[(s, m)][0] for m in methods if (s, m) in means), default=None) for s in set_labels}
        body = []
        for m in methods:
            cells = []
            for s in set_labels:
                if (s, m) not in means:
                    cells.append("—")
                    continue
                text = _fmt(*means[(s, m)])
                cells.append(f"**{text}**" if means[(s, m)][0] == best[s] else text)
            body.append([m, *cells])
        return out + _markdown_table(["method", *set_labels], body) + [""]

    md += table("balanced_acc", "Test balanced accuracy (mean per-class recall)")
    md += table("macro_f1", "Test macro-F1")
    # -- averages over sets of accuracy and shot groups
    md += [
        "## Averages over the sets",
        "",
        "Each set's mean over seeds, then averaged over sets (many/medium/few: over the sets that have such classes; "
        "many > 100, medium 20–100, few < 20 training rows).",
        "",
    ]
    avg_lines = []
    for m in methods:
        line = [m]
        for metric in ("balanced_acc", "macro_f1", "accuracy", "many", "medium", "few"):
            per_set = []
            for s in set_labels:
                vals = [v for v in (_value(r, metric) for r in by.get((s, m), {}).values()) if not math.isnan(v)]
                if vals:
                    per_set.append(float(np.mean(vals)))
            line.append(f"{np.mean(per_set):.1f}" if per_set else "—")
        avg_lines.append(line)
    md += _markdown_table(["method", "balanced acc", "macro-F1", "accuracy", "many", "medium", "few"], avg_lines) + [""]

    # -- paired tests
    tests: list[dict[str, Any]] = []
    for a, b in QUESTIONS:
        for s in set_labels:
            if a == "best network":
                ma, mb = _best_by_validation(by, s, networks), _best_by_validation(by, s, [m for m in BOOSTED])
            else:
                ma, mb = a, b
            if ma is None or mb is None or (s, ma) not in by or (s, mb) not in by:
                continue
            xa, xb = _paired(by, s, ma, mb, "balanced_acc")
            if xa.size == 0:
                continue
            stat, p = wilcoxon(xa, xb)
            tests.append(
                {
                    "question": f"{a} vs {b}",
                    "set": s,
                    "a": ma,
                    "b": mb,
                    "n": int(xa.size),
                    "diff": float(np.mean(xa - xb)),
                    "W": stat,
                    "p": p,
                }
            )
    for question in dict.fromkeys(t["question"] for t in tests):  # one family per question: its tests over the sets
        family = [t for t in tests if t["question"] == question]
        for t, padj in zip(family, holm([t["p"] for t in family]), strict=False):
            t["p_holm"] = padj
    md += [
        "## Paired tests over seeds",
        "",
        "Two-sided Wilcoxon signed-rank test over the seeds of one set (test balanced accuracy), Holm-adjusted within "
        "each question over its sets (with 10 seeds the smallest exact p is 2/1024, so a correction over every test "
        "of the table together could never reach 0.05). Δ = mean(a − b) in points. Verdict at α = 0.05 after Holm. For "
        "*best network vs best boosted tree* the network method and the boosted-tree variant are each the one with the "
        "best mean validation balanced accuracy on that set.",
        "",
    ]
    verdicts: dict[tuple[str, str], str] = {}
    test_lines: list[list[str]] = []
    for t in tests:
        verdict = (
            "a better"
            if t["p_holm"] < 0.05 and t["diff"] > 0
            else "b better"
            if t["p_holm"] < 0.05
            else "no significant difference"
        )
        verdicts[(t["question"], t["set"])] = verdict
        test_lines.append(
            [
                t["question"],
                t["set"],
                f"{t['a']} vs {t['b']}",
                str(t["n"]),
                f"{t['diff']:+.2f}",
                f"{t['W']:.1f}",
                f"{t['p']:.4f}",
                f"{t['p_holm']:.4f}",
                verdict,
            ]
        )
    md += _markdown_table(["question (a vs b)", "set", "compared", "n", "Δ", "W", "p", "p (Holm)", "verdict"], test_lines) + [""]
    # -- over sets
    over: list[dict[str, Any]] = []
    for a, b in QUESTIONS:
        sa: list[float] = []
        sb: list[float] = []
        for s in set_labels:
            if a == "best network":
                ma, mb = _best_by_validation(by, s, networks), _best_by_validation(by, s, list(BOOSTED))
            else:
                ma, mb = a, b
            if ma is None or mb is None or (s, ma) not in by or (s, mb) not in by:
                continue
            sa.append(float(np.mean([_value(r, "balanced_acc") for r in by[(s, ma)].values()])))
            sb.append(float(np.mean([_value(r, "balanced_acc") for r in by[(s, mb)].values()])))
        if len(sa) >= 2:
            stat, p = wilcoxon(sa, sb)
            wins = int(np.sum(np.array(sa) > np.array(sb)))
            over.append(
                {
                    "question": f"{a} vs {b}",
                    "n": len(sa),
                    "wins": wins,
                    "diff": float(np.mean(np.array(sa) - np.array(sb))),
                    "W": stat,
                    "p": p,
                }
            )
    for o, padj in zip(over, holm([o["p"] for o in over]), strict=False):
        o["p_holm"] = padj
    md += [
        "## The same questions over sets",
        "",
        "Wilcoxon signed-rank test over the sets (each set's mean test balanced accuracy; Demšar 2006 §3.1.3), "
        "Holm-adjusted over the questions. wins: sets where a's mean is higher.",
        "",
    ]
    md += _markdown_table(
        ["question (a vs b)", "sets", "wins of a", "mean Δ", "W", "p", "p (Holm)"],
        [
            [
                o["question"],
                str(o["n"]),
                str(o["wins"]),
                f"{o['diff']:+.2f}",
                f"{o['W']:.1f}",
                f"{o['p']:.4f}",
                f"{o['p_holm']:.4f}",
            ]
            for o in over
        ],
    ) + [""]

    # -- best network vs boosted tree, per set
    md += ["## Best network (chosen on validation) vs the boosted tree", ""]
    bl: list[list[str]] = []
    for s in set_labels:
        best_net, tree = _best_by_validation(by, s, networks), _best_by_validation(by, s, list(BOOSTED))
        if best_net is None or tree is None:
            continue
        bl.append(
            [
                s,
                best_net,
                _fmt(*_cell([_value(r, "balanced_acc") for r in by[(s, best_net)].values()])),
                tree,
                _fmt(*_cell([_value(r, "balanced_acc") for r in by[(s, tree)].values()])),
                verdicts.get(("best network vs best boosted tree", s), "—")
                .replace("a better", "network better")
                .replace("b better", "tree better"),
            ]
        )
    md += _markdown_table(["set", "network (val)", "test bal. acc", "tree (val)", "test bal. acc", "paired test"], bl) + [""]

    # -- CD diagram
    complete = [m for m in methods if all((s, m) in by for s in set_labels)]
    if len(set_labels) >= 2 and len(complete) >= 3:  # Friedman needs three methods
        scores = np.array(
            [[np.mean([_value(r, "balanced_acc") for r in by[(s, m)].values()]) for m in complete] for s in set_labels]
        )
        ranks = average_ranks(scores)
        cd = nemenyi_cd(len(complete), len(set_labels))
        chi2, p_f = friedman(scores)
        paths["cd"] = plot_cd(
            ranks.tolist(),
            complete,
            cd,
            out_dir / "cd_balanced_acc.png",
            title=f"average rank of test balanced accuracy over {len(set_labels)} sets (Nemenyi CD, α = 0.05)",
        )
        md += [
            "## Average ranks and the critical-difference diagram",
            "",
            f"Rank of each method's mean test balanced accuracy on each of the {len(set_labels)} sets (1 = best), "
            f"averaged. Friedman χ² = {chi2:.1f}, p = {p_f:.2g}; Nemenyi critical difference CD = {cd:.2f} "
            f"(k = {len(complete)}, N = {len(set_labels)}, α = 0.05): methods joined by a bar do not differ significantly.",
            "",
            f"![critical-difference diagram]({paths['cd'].name})",
            "",
        ]
        md += _markdown_table(
            ["method", "average rank"], [[m, f"{r:.2f}"] for r, m in sorted(zip(ranks, complete, strict=False))]
        ) + [""]

    # -- where Remix does not help (generated from the tests above)
    md += ["## Where Remix does not help", ""]
    for a, b in QUESTIONS[:4]:
        q = f"{a} vs {b}"
        worse = [s for s in set_labels if verdicts.get((q, s)) == "b better"]
        better = [s for s in set_labels if verdicts.get((q, s)) == "a better"]
        same = [s for s in set_labels if verdicts.get((q, s)) == "no significant difference"]
        if not (worse or better or same):
            continue
        across = next((o for o in over if o["question"] == q), None)
        overall = (
            f" Over sets: higher mean on {across['wins']} of {across['n']}, mean Δ {across['diff']:+.2f}, "
            f"p (Holm) = {across['p_holm']:.4f}."
            if across is not None
            else ""
        )
        md.append(
            f"- **{a} vs {b}**, per set over seeds: significantly better on {len(better)} set(s)"
            f"{' (' + ', '.join(better) + ')' if better else ''}, significantly worse on {len(worse)}"
            f"{' (' + ', '.join(worse) + ')' if worse else ''}, no significant difference on {len(same)}.{overall}"
        )
    md.append("")
    paths["report"] = out_dir / "report.md"
    paths["report"].write_text("\n".join(md), encoding="utf-8")
    return paths


def load_timing(runs_dir: Path) -> dict[str, Any] | None:
    path = runs_dir / "_grid_time.json"
    if not path.is_file():
        return None
    sessions = json.loads(path.read_text(encoding="utf-8"))
    return {
        "elapsed_s": sum(s["elapsed_s"] for s in sessions),
        "workers": max(s["workers"] for s in sessions),
        "sessions": len(sessions),
    }
