"""One typed training configuration: dataclasses loaded from a YAML recipe, a YAML file and ``key=value`` overrides.

Resolution order (later wins)::

    dataclass defaults  <  recipe (recipes/<name>.yaml)  <  --config FILE  <  --epochs N (scales the schedule)
                        <  CLI flags (--dataset, --seed, ...)  <  key=value overrides

Every key is checked against the dataclass field types (``optim.lr=0.05`` is a float, ``run.amp=bf16`` a string,
``schedule.milestones=[30,60]`` a list of ints); an unknown key is rejected with the closest valid key as a
suggestion, and :meth:`TrainConfig.validate` checks every range (κ ≥ 1, 0 ≤ τ ≤ 1, α > 0, ...) and everything else
that can be known before training (a CutMix method on vector data, a deferral epoch outside the run) before any work
starts.

The dataclasses, their validation and the coercion of values live in :mod:`remixup.config_schema`; every public
name of it is importable from here too.

**Scaling a recipe to fewer epochs.** ``with_epochs(config, N)`` maps a recipe of E epochs to N epochs so short runs
keep the schedule's shape: every epoch count e (warm-up length, learning-rate milestones, deferral epoch) becomes
``round(e · N / E)`` (halves round up). A milestone or deferral epoch that lies inside the original schedule
(1 ≤ e < E) is then clamped to [1, N − 1], so the last phase (e.g. the deferred re-weighting at a small learning rate)
still runs for at least one epoch whenever N ≥ 2. The mapping is monotone, so the order of milestones is kept.
Example: the ``ldam`` recipe (200 epochs; milestones 160, 180; deferral 160; warm-up 5) at N = 25 becomes
milestones 20, 23, deferral 20, warm-up 1; at N = 2 it becomes milestones 1, 1, deferral 1, warm-up 0. At N = 1 a
deferral epoch inside the recipe becomes 0, so a one-epoch smoke run of a DRW/DRS method still exercises its
deferred phase (a deferral epoch outside a run is refused by :meth:`TrainConfig.validate`).

Epochs count from 0. A milestone m means: from epoch m on, lr = base lr × the milestone's factor (``lr_factors``
are cumulative multipliers of the base lr, e.g. [0.01, 0.0001] for LDAM-DRW). The deferral epoch d means: deferred
re-weighting/re-sampling (DRW/DRS) is active from epoch d on. The warm-up is linear per epoch: epoch e < W trains at
base lr × (e + 1) / W.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from remixup._validation import check_number, closest, suggest
from remixup.config_schema import (
    AMP_CHOICES,
    FALSE_WORDS,
    IMBALANCE_PROFILES,
    METHOD_REDUCTIONS,
    SECTIONS,
    SWITCH_KEYS,
    SWITCHES,
    TRUE_WORDS,
    DataConfig,
    MethodConfig,
    MixingConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
    assign_value,
    field_types,
    merge_into,
    unknown_key,
    valid_keys,
)
from remixup.errors import ConfigError, UserError
from remixup.yaml_files import parse_yaml, read_yaml

__all__ = [
    "AMP_CHOICES", "FALSE_WORDS", "IMBALANCE_PROFILES", "METHOD_REDUCTIONS", "SECTIONS", "SWITCHES", "SWITCH_KEYS",
    "TRUE_WORDS", "DataConfig", "MethodConfig", "MixingConfig", "ModelConfig", "OptimConfig", "RunConfig",
    "ScheduleConfig", "TrainConfig", "apply_override", "build_config", "closest", "format_keys", "key_docs",
    "load_recipe", "merge_into", "recipe_names", "suggest", "valid_keys", "with_epochs",
]  # fmt: skip


def _type_name(tp: Any) -> str:
    """``float``, ``list[int]``, ``float | None``: a field type as ``--keys`` shows it."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is list:
        return f"list[{_type_name(args[0])}]"
    if args:  # a union such as float | None
        return " | ".join("None" if a is type(None) else _type_name(a) for a in args)
    return str(getattr(tp, "__name__", tp))


def key_docs() -> list[tuple[str, str, Any, str]]:
    """``(key, type, default, meaning)`` for every key: the meaning is the first sentence of its entry in the
    section dataclass's ``Attributes:`` docstring."""
    import re

    rows = []
    for name, cls in SECTIONS.items():
        meanings: dict[str, str] = {}
        doc = cls.__doc__ or ""
        if "Attributes:" in doc:
            current = None
            for line in doc.split("Attributes:", 1)[1].splitlines():
                m = re.match(r"^\s{4,8}(\w+(?:, \w+)*): (.*)$", line)
                if m and len(line) - len(line.lstrip()) <= 8:
                    current = m.group(1).split(", ")
                    for field_name in current:
                        meanings[field_name] = m.group(2).strip()
                elif current and line.strip():
                    for field_name in current:
                        meanings[field_name] += " " + line.strip()
        default = cls()
        types = field_types(default)
        for f in dataclasses.fields(default):
            tp = types[f.name]
            type_name = _type_name(tp)
            key = f"{name}.{f.name}"
            if key in SWITCH_KEYS:
                type_name = "switch"
            text = re.sub(r":\w+:`~?([^`]+)`|``([^`]+)``", lambda m: m.group(1) or m.group(2), meanings.get(f.name, ""))
            first = re.split(r"(?<!e\.g)(?<!i\.e)\.\s", text, maxsplit=1)[0].rstrip(".")
            if len(first) > 110:
                first = first[:110].rsplit(" ", 1)[0] + " ..."
            rows.append((key, type_name, getattr(default, f.name), first))
    return rows


def format_keys() -> str:
    """The ``remixup train --keys`` listing: key, type, default, meaning; one line each."""
    rows = [
        (k, t, yaml.safe_dump(d, default_flow_style=True).strip().removesuffix("...").strip(), m) for k, t, d, m in key_docs()
    ]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{'key':<{width[0]}}  {'type':<{width[1]}}  {'default':<{width[2]}}  meaning"]
    lines += [f"{k:<{width[0]}}  {t:<{width[1]}}  {d:<{width[2]}}  {m}".rstrip() for k, t, d, m in rows]
    note = ("booleans take true/false, on/off, yes/no or 1/0; switches the same or auto. Defaults are before a recipe: "
            "`remixup train ... --print-config` shows the resolved values.")  # fmt: skip
    return "\n".join([*lines, "", note])


def apply_override(config: TrainConfig, item: str) -> None:
    """Apply one ``section.key=value`` override in place; the value is parsed as YAML (``[30, 60]``, ``true``, ``0.05``).

    String fields take the text as written (``run.out=2024`` is the folder "2024").
    """
    if "=" not in item:
        raise ConfigError(f"an override must look like key=value (e.g. mixing.kappa=2); got {item!r}")
    key, text = (part.strip() for part in item.split("=", 1))
    if key.count(".") != 1:
        raise unknown_key(key)
    name, sub = key.split(".")
    if name not in SECTIONS:
        raise unknown_key(key)
    section = getattr(config, name)
    types = field_types(section)
    if sub not in types:
        raise unknown_key(key)
    if types[sub] is str:
        value: Any = text
    else:
        value = parse_yaml(text, f"the value of override {key!r}")
    assign_value(section, name, sub, value)


# -- recipes and files -----------------------------------------------------------------------------------------


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``remixup/recipes``."""
    folder = resources.files("remixup") / "recipes"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(path: Path | Any, what: str) -> dict[str, Any]:
    data = read_yaml(path, what)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must be a mapping of sections (data, model, method, ...)")
    return data


def load_recipe(name: str) -> dict[str, Any]:
    """The nested dict of a recipe given by name (``paper``, ``ldam``, ``inat90``, ``inat200``) or a YAML path."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        data = _read_yaml(Path(name), "recipe file")
    else:
        names = recipe_names()
        if name not in names:
            raise ConfigError(f"unknown recipe {name!r}{suggest(name, names)} (valid recipes: {', '.join(names)})")
        data = _read_yaml(resources.files("remixup") / "recipes" / f"{name}.yaml", "recipe")
    data.setdefault("recipe", name)
    return data


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def with_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    """A copy of ``config`` scaled to ``epochs`` epochs (milestones, warm-up, deferral; see the module docstring)."""
    epochs = int(check_number(epochs, "epochs", low=1, integer=True))
    old = config.run.epochs
    new = copy.deepcopy(config)
    new.run.epochs = epochs
    if epochs == old:
        return new
    factor = epochs / old

    def inside(e: int) -> int:
        scaled = _round_half_up(e * factor)
        if 1 <= e < old:  # keep a phase that existed in the recipe inside the short run
            scaled = min(max(scaled, 1), max(epochs - 1, 1))
        return scaled

    s = new.schedule
    s.warmup_epochs = _round_half_up(s.warmup_epochs * factor)
    s.milestones = [inside(m) for m in s.milestones]
    s.deferral_epoch = inside(s.deferral_epoch)
    if epochs == 1 and 1 <= config.schedule.deferral_epoch < old:
        s.deferral_epoch = 0  # one epoch: the deferred phase is that epoch (epoch 1 would never come)
    return new


def build_config(
    recipe: str | None = "paper",
    *,
    config_file: str | Path | None = None,
    epochs: int | None = None,
    values: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    validate: bool = True,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Resolve a config: recipe, then ``config_file``, then ``epochs`` scaling, then ``values``, then ``overrides``.

    A table (``tabular:...``) keeps its own class imbalance (``data.imbalance=none``) unless a config file, a
    value or an override names ``data.imbalance``: a recipe's profile (the paper's long tail for CIFAR) does not
    apply to it.

    Args:
        recipe: recipe name or YAML path; ``None`` takes the one named in ``config_file`` (or the defaults).
        config_file: a YAML file with any of the sections (it may name a ``recipe``).
        epochs: scale the schedule to this many epochs (:func:`with_epochs`).
        values: ``{"section.key": value}`` from CLI flags (``None`` values are skipped).
        overrides: ``"section.key=value"`` strings.
        validate: run :meth:`TrainConfig.validate` at the end.
        base: a resolved config as a dict (e.g. a checkpoint's ``config``) to start from instead of ``recipe``.

    Raises:
        ValueError / TypeError / UserError: unknown recipe or key, wrong type, out-of-range value, unreadable file.
    """
    file_data = _read_yaml(Path(config_file), "config file") if config_file is not None else {}
    recipe = recipe or file_data.get("recipe")
    if base is not None:
        config, recipe = TrainConfig.from_dict(base, source="the base config"), None
    else:
        config = TrainConfig.from_dict(load_recipe(recipe), source=f"recipe {recipe}") if recipe else TrainConfig()
    merge_into(config, file_data, source=f"config file {config_file}")
    if recipe:
        config.recipe = recipe
    if epochs is not None:
        config = with_epochs(config, epochs)
    for key, value in (values or {}).items():
        if value is not None:
            name, sub = key.split(".")
            assign_value(getattr(config, name), name, sub, value)
    for item in overrides:
        apply_override(config, item)
    if base is None and is_table(config.data.dataset) and not _names_imbalance(file_data, values, overrides):
        config.data.imbalance = "none"  # a table keeps its own imbalance unless a profile is asked for
    return config.validate() if validate else config


def is_table(dataset: str) -> bool:
    """Whether ``dataset`` names a table (``tabular:NAME`` or ``tabular:FILE``)."""
    return dataset.startswith("tabular:") and len(dataset) > len("tabular:")


def _names_imbalance(file_data: dict[str, Any], values: dict[str, Any] | None, overrides: list[str] | tuple[str, ...]) -> bool:
    """Whether the user (a config file, a flag or an override, not a recipe) chose ``data.imbalance``."""
    in_file = isinstance(file_data.get("data"), dict) and "imbalance" in file_data["data"]
    in_values = (values or {}).get("data.imbalance") is not None
    return in_file or in_values or any(item.split("=", 1)[0].strip() == "data.imbalance" for item in overrides)


def imbalance_line(config: TrainConfig) -> str:
    """One line saying which class profile a run trains on (the first line ``remixup train`` prints for a table)."""
    d = config.data
    if d.imbalance == "none":
        return (f"{d.dataset}: the data's own class imbalance (data.imbalance=none); a long-tailed or step profile "
                "on the training split is opt-in: --imbalance longtail --ratio R")  # fmt: skip
    extra = f", data.mu={d.mu:g}" if d.imbalance == "step" else ""
    return (
        f"{d.dataset}: {d.imbalance} profile on the training split (data.imbalance={d.imbalance}, data.ratio={d.ratio:g}{extra})"
    )
