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
# The boosted tree's grid, every point tuned on the validation split: learning rate × leaves × minimum rows per
# leaf, each grown HGB_STEP iterations at a time up to HGB_MAX_ITER and stopped once HGB_PATIENCE iterations pass
# without a better validation balanced accuracy (the best number of iterations is kept).
HGB_LEARNING_RATES = (0.05, 0.2)
HGB_LEAVES = (15, 63)
HGB_MIN_LEAF = (5, 40)
HGB_MAX_ITER = 400
HGB_STEP = 10
HGB_PATIENCE = 40
# Every network trains STEP_BUDGET optimiser steps (rounded up to whole epochs), measured with
# `remixup reproduce tabular --measure-budget 4000` (remixup.tabular_budget; results/tabular/budget.json), and is
# evaluated on the validation split EVALS_PER_RUN times; the reported checkpoint is the one with the best
# validation balanced accuracy among the evaluations from the deferral epoch (80 %) on.
STEP_BUDGET = 4000
EVALS_PER_RUN = 40

# The questions the report answers with paired tests: (a, b) asks whether a beats b.
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("remix", "mixup"),
    ("remix", "erm"),
    ("remix-drw", "drw"),
    ("remix-drw", "mixup-drw"),
    ("remix", "la"),
    ("best network", "best boosted tree"),
)
