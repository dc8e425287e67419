"""The design of ``remixup reproduce tabular``: which tables (and profiles), which methods, the boosted-tree
reference's grid, the training budget, and the questions the report answers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StudySet:
    """One column of the study: a table, as it is (``imbalance="none"``) or with a profile on its training split."""

    label: str
    dataset: str
    imbalance: str = "none"
    ratio: float = 1.0


STUDY_SETS: tuple[StudySet, ...] = (
    StudySet("fars", "tabular:fars"),
    StudySet("kr_vs_k", "tabular:kr_vs_k"),
    StudySet("page_blocks", "tabular:page_blocks"),
    StudySet("abalone", "tabular:abalone"),
    StudySet("yeast", "tabular:yeast"),
    StudySet("ecoli", "tabular:ecoli"),
    StudySet("glass", "tabular:glass"),
    StudySet("cleveland", "tabular:cleveland"),
    StudySet("satimage-LT10", "tabular:satimage", "longtail", 10.0),
    StudySet("satimage-LT100", "tabular:satimage", "longtail", 100.0),
    StudySet("segment-LT10", "tabular:segment", "longtail", 10.0),
    StudySet("vowel-LT10", "tabular:vowel", "longtail", 10.0),
)

# Balanced softmax is left out: it is the logit-adjusted loss at τ = 1, the same loss as "la".
STUDY_METHODS = ("erm", "drw", "la", "mixup", "remix", "mixup-drw", "remix-drw", "remix-mm", "remix-la")
BOOSTED = ("hgb", "hgb-balanced")
HGB_LEARNING_RATES = (0.1, 0.3)  # the grid; the number of iterations (≤ HGB_MAX_ITER) is chosen on validation too
HGB_MAX_ITER = 60
HGB_LEAVES = 31
STEP_TARGET = 600  # optimisation steps per run, for sizing the epochs (the CPU is shared: see the report)
EPOCH_RANGE = (8, 40)

# The questions the report answers with paired tests: (a, b) asks whether a beats b.
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("remix", "mixup"),
    ("remix", "erm"),
    ("remix-drw", "drw"),
    ("remix-drw", "mixup-drw"),
    ("remix", "la"),
    ("best network", "best boosted tree"),
)
