"""Parameter validation with one error format, in the manner of scikit-learn.

Every message names the parameter, its owner, the allowed range and the value received, e.g.
"`kappa` of `RemixLabels` must be >= 1; got 0.5".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, overload

import numpy as np
import torch

from remixup.errors import InvalidParameterError, InvalidTypeError


def _where(owner: str | None) -> str:
    return f" of `{owner}`" if owner else ""


@overload
def check_number(
    value: Any,
    name: str,
    *,
    owner: str | None = None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: Literal[True],
) -> int: ...
@overload
def check_number(
    value: Any,
    name: str,
    *,
    owner: str | None = None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: Literal[False] = False,
) -> float: ...
def check_number(
    value: Any,
    name: str,
    *,
    owner: str | None = None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float | int:
    """Check that ``value`` is a finite real (or integer) number inside an interval and return it.

    ``low``/``high`` are inclusive unless ``low_open``/``high_open``. Raises ``TypeError`` for a non-number and
    ``ValueError`` for a number outside the interval, each naming ``name`` and ``owner``.
    """
    where = _where(owner)
    kind = "an integer" if integer else "a real number"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"`{name}`{where} must be {kind}; got {value!r} of type {type(value).__name__}")
    if integer and not float(value).is_integer():
        raise InvalidTypeError(f"`{name}`{where} must be {kind}; got {value!r}")
    if not math.isfinite(float(value)):
        raise InvalidParameterError(f"`{name}`{where} must be finite; got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        if low is not None and high is not None:
            left, right = ("(" if low_open else "["), (")" if high_open else "]")
            allowed = f"in {left}{low:g}, {high:g}{right}"
        elif low is not None:
            allowed = f"{'>' if low_open else '>='} {low:g}"
        else:
            allowed = f"{'<' if high_open else '<='} {high:g}"
        raise InvalidParameterError(f"`{name}`{where} must be {allowed}; got {value!r}")
    return int(value) if integer else float(value)


def check_choice(value: Any, name: str, choices: Sequence[Any], *, owner: str | None = None) -> Any:
    """Check that ``value`` is one of ``choices``; the error lists the valid ones."""
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise InvalidParameterError(f"`{name}`{_where(owner)} must be one of {valid}; got {value!r}")
    return value


def check_class_counts(class_counts: Any, *, owner: str | None = None, num_classes: int | None = None) -> torch.Tensor:
    """Return ``class_counts`` as a float64 tensor (C,) after checking every entry is a positive finite number.

    With ``num_classes`` the length must match (one entry per class).
    """
    where = _where(owner)
    try:
        counts = torch.as_tensor(np.asarray(class_counts, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise InvalidTypeError(f"`class_counts`{where} must be a sequence of positive numbers; got {class_counts!r}") from exc
    if counts.ndim != 1 or counts.numel() == 0:
        raise InvalidParameterError(
            f"`class_counts`{where} must be one-dimensional with one entry per class; got shape {tuple(counts.shape)}"
        )
    if num_classes is not None and counts.numel() != num_classes:
        raise InvalidParameterError(f"`class_counts`{where} must have one entry per class ({num_classes}); got {counts.numel()}")
    bad = ~torch.isfinite(counts) | (counts <= 0)
    if bool(bad.any()):
        c = int(torch.nonzero(bad)[0])
        raise InvalidParameterError(
            f"`class_counts`{where} must be positive for every class; class {c} has {counts[c].item():g} "
            "(drop the empty class or give it samples)"
        )
    return counts


def check_tensor(value: Any, name: str, *, owner: str | None = None, what: str = "a torch.Tensor") -> torch.Tensor:
    """Check that ``value`` is a tensor holding data (not on the ``meta`` device, which has no values)."""
    where = _where(owner)
    if not isinstance(value, torch.Tensor):
        raise InvalidTypeError(f"`{name}`{where} must be {what}; got {type(value).__name__}")
    if value.device.type == "meta":
        raise InvalidParameterError(f"`{name}`{where} is on the meta device, which holds no values; move it to a real device")
    return value


def check_generator(generator: Any, *, owner: str | None = None) -> None:
    """Check that ``generator`` is a ``torch.Generator`` or ``None`` (an int seed is a common mistake)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        hint = f" (for a seed use torch.Generator().manual_seed({generator!r}))" if isinstance(generator, int) else ""
        raise InvalidTypeError(f"`generator`{_where(owner)} must be a torch.Generator or None; got {generator!r}{hint}")


def check_callable(value: Any, name: str, kind: str, *, owner: str | None = None) -> None:
    """Check that ``value`` is a callable object (a mixer, a label policy), not a name of one."""
    if not callable(value) or isinstance(value, type):
        example = f" such as {kind}" if kind else ""
        raise InvalidTypeError(f"`{name}`{_where(owner)} must be an object{example}; got {value!r}")


def check_shares(lam: Any, name: str, *, owner: str | None = None) -> None:
    """Check mixing shares λ: a floating tensor (B,) with values in [0, 1].

    The values (finite, in [0, 1]) are checked only for CPU tensors, where it costs no device synchronisation; on a
    GPU a NaN propagates into the targets (and the training engine's per-epoch finiteness check stops the run).
    """
    where = _where(owner)
    check_tensor(lam, name, owner=owner)
    if lam.ndim != 1 or not lam.dtype.is_floating_point:
        raise InvalidParameterError(
            f"`{name}`{where} must be a floating tensor of shape (B,); got {lam.dtype} of shape {tuple(lam.shape)}"
        )
    inside = (lam >= 0) & (lam <= 1) if lam.device.type == "cpu" else None  # False for NaN too
    if inside is not None and not bool(inside.all()):
        bad = lam[~inside][0].item()
        raise InvalidParameterError(f"`{name}`{where} must hold shares in [0, 1]; got {bad}")


def check_labels(y: torch.Tensor, num_classes: int, *, name: str = "y", owner: str | None = None) -> None:
    """Check labels are an integer tensor (B,) with values in [0, num_classes).

    The value range is checked only for CPU tensors: on a GPU it would cost a host synchronisation every step, and
    an out-of-range index fails there anyway (a device-side assert) when the targets are built. The training engine
    checks the whole dataset's labels once, when it loads them.
    """
    where = _where(owner)
    check_tensor(y, name, owner=owner, what="a torch.Tensor of class indices")
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise InvalidParameterError(
            f"`{name}`{where} must be an integer tensor of shape (B,); got {y.dtype} of shape {tuple(y.shape)}"
        )
    if y.numel() and y.device.type == "cpu" and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise InvalidParameterError(
            f"`{name}`{where} must hold class indices in [0, {num_classes - 1}]; got values in [{int(y.min())}, {int(y.max())}]"
        )


def check_batch(x: torch.Tensor, y: torch.Tensor | None = None, *, owner: str | None = None) -> None:
    """Check a batch for mixing: x a tensor (B, ...) with B >= 2, y (B,) when given, neither on the meta device.

    The values of x are not checked: NaN or infinite inputs propagate into the mixed batch, as in any tensor
    operation (a check would cost a device synchronisation every step on a GPU).
    """
    where = _where(owner)
    check_tensor(x, "x", owner=owner, what="a torch.Tensor of shape (B, ...)")
    if y is not None:
        check_tensor(y, "y", owner=owner, what="a torch.Tensor of class indices (B,)")
    if x.ndim < 1 or x.shape[0] < 2:
        raise InvalidParameterError(f"the batch size{where} must be >= 2 to form pairs; got x of shape {tuple(x.shape)}")
    if y is not None and (y.ndim != 1 or y.shape[0] != x.shape[0]):
        raise InvalidParameterError(f"`y`{where} must have shape ({x.shape[0]},) to match x; got {tuple(y.shape)}")


def closest(name: str, choices: Any) -> str | None:
    """The choice closest to ``name`` by :func:`difflib.get_close_matches`, or ``None`` when none is close."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return close[0] if close else None


def suggest(name: str, choices: Any) -> str:
    """``"; did you mean 'x'?"`` for the choice closest to ``name``, or ``""`` when none is close."""
    close = closest(name, choices)
    return f"; did you mean {close!r}?" if close else ""
