"""The search space of ``remixup tune``: YAML entries that mirror Optuna's ``suggest_*`` over any config key."""

from __future__ import annotations

import copy
from typing import Any

from remixup.errors import ConfigError, UserError

__all__ = ["TYPES", "check_against_config", "parse_space", "suggest"]

TYPES = ("float", "int", "categorical")


def parse_space(data: Any, source: str = "the space") -> dict[str, dict[str, Any]]:
    """Check a search space ``{config key: {type, low, high, log, step} | {type: categorical, choices}}``.

    Raises:
        ConfigError: an unknown key or field, an unknown type, an empty or inverted range, a bad step or choices.
    """
    from remixup.config import valid_keys

    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{source}: `space` must map config keys to distributions; got {data!r}")
    keys = set(valid_keys())
    space: dict[str, dict[str, Any]] = {}
    for key, dist in data.items():
        if key not in keys:
            raise ConfigError(f"{source}: unknown config key {key!r} in the space (see `remixup train --keys`)")
        if not isinstance(dist, dict) or dist.get("type") not in TYPES:
            raise ConfigError(f"{source}: {key} needs a `type` of {', '.join(TYPES)}; got {dist!r}")
        kind = dist["type"]
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log", "step"}
        if extra := sorted(set(dist) - allowed):
            raise ConfigError(
                f"{source}: {key} ({kind}) has unknown field(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}"
            )
        if kind == "categorical":
            choices = dist.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{source}: {key} needs a non-empty list of `choices`; got {choices!r}")
            space[key] = {"type": kind, "choices": list(choices)}
            continue
        low, high = dist.get("low"), dist.get("high")
        number = int if kind == "int" else (int, float)
        for name, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, number):
                raise ConfigError(f"{source}: {key} needs a numeric `{name}` ({kind}); got {value!r}")
        assert low is not None and high is not None
        if not low < high:
            raise ConfigError(f"{source}: {key} has an empty or inverted range [{low}, {high}]; `low` must be below `high`")
        log, step = bool(dist.get("log", False)), dist.get("step")
        if log and low <= 0:
            raise ConfigError(f"{source}: {key} is log-scaled, so `low` must be > 0; got {low}")
        if step is not None and (log or isinstance(step, bool) or not isinstance(step, number) or step <= 0 or step > high - low):
            raise ConfigError(f"{source}: {key} has a bad `step` {step!r}: positive, at most high - low, and not with log")
        space[key] = {"type": kind, "low": low, "high": high, "log": log, **({"step": step} if step is not None else {})}
    return space


def check_against_config(space: dict[str, dict[str, Any]], base: Any) -> None:
    """Every end of every range (and every choice) must make a valid config."""
    from remixup.config import apply_override

    for key, dist in space.items():
        for value in dist["choices"] if dist["type"] == "categorical" else (dist["low"], dist["high"]):
            trial = copy.deepcopy(base)
            apply_override(trial, f"{key}={value}")
            try:
                trial.validate()
            except UserError as exc:
                raise ConfigError(f"the space's {key}={value!r} is not a valid setting: {exc}") from exc


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Draw one value per key through Optuna's ``suggest_*`` (a retried or enqueued trial returns its fixed ones)."""
    params: dict[str, Any] = {}
    for key, d in space.items():
        if d["type"] == "categorical":
            params[key] = trial.suggest_categorical(key, d["choices"])
        elif d["type"] == "int":
            params[key] = trial.suggest_int(key, d["low"], d["high"], step=d.get("step", 1), log=d["log"])
        else:
            params[key] = trial.suggest_float(key, d["low"], d["high"], step=d.get("step"), log=d["log"])
    return params
