"""One set of input checks for every config, public function and command line of the toolkit.

Each check returns the validated value (converted: ``int``, ``float``, a tuple, a float64
array) or raises ``ValueError`` with a one-line message that names the parameter, the allowed
range and the value received, e.g. ``lr must be a finite number > 0, got inf``. Nothing is
clipped or silently repaired.

The command-line helpers turn the same checks into ``argparse`` types, so a tool fails with
one line on stderr, ``prog: error: <parameter>: <allowed>``, and exit status 2:

* :func:`parser`: an ``ArgumentParser`` with defaults in ``--help``, ``--version`` and
  one-line errors;
* :func:`arg`: an argparse ``type=`` from a check (e.g. ``arg(positive_int, "--seeds")``);
* :func:`cli`: run a ``main`` and report a ``ValueError`` raised inside it the same way.

Example:
  >>> positive_int("steps", 3)
  3
  >>> real("lr", float("inf"), lo=0.0, lo_open=True)
  Traceback (most recent call last):
  ...
  ValueError: lr must be a finite number > 0, got inf
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

#: the toolkit's version (``--version`` of every command; re-exported as ``cmcd_theory.__version__``)
__version__ = "0.1.0"

__all__ = ["integer", "positive_int", "real", "probability", "unit_interval", "choice",
           "choices", "nonempty", "boolean", "array", "labels", "parser", "arg", "cli"]


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _range_text(lo, hi, lo_open, hi_open) -> str:
    lo_s, hi_s = _num(lo), _num(hi)
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo_s}, {hi_s}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo_s}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi_s}"
    return ""


def integer(name: str, value, lo: Optional[int] = None, hi: Optional[int] = None) -> int:
    """An integer (not a bool, not a float) in ``[lo, hi]``; returns ``int``."""
    rng = _range_text(lo, hi, False, False)
    msg = f"{name} must be an integer{' ' + rng if rng else ''}, got {value!r}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(msg)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(msg)
    return int(value)


def positive_int(name: str, value) -> int:
    """An integer >= 1."""
    return integer(name, value, lo=1)


def real(name: str, value, *, lo: Optional[float] = None, hi: Optional[float] = None,
         lo_open: bool = False, hi_open: bool = False, finite: bool = True) -> float:
    """A real number in the given range; finite unless ``finite=False``. Returns ``float``.

    Example:
      >>> real("tau", 0.5, lo=0.0, lo_open=True)
      0.5
    """
    rng = _range_text(lo, hi, lo_open, hi_open)
    what = "a finite number" if finite else "a number"
    msg = f"{name} must be {what}{' ' + rng if rng else ''}, got {value!r}"
    if isinstance(value, (bool, np.bool_)) or isinstance(value, str):
        raise ValueError(msg)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(msg) from None
    if math.isnan(x) or (finite and math.isinf(x)):
        raise ValueError(msg)
    if lo is not None and (x < lo or (lo_open and x == lo)):
        raise ValueError(msg)
    if hi is not None and (x > hi or (hi_open and x == hi)):
        raise ValueError(msg)
    return x


def probability(name: str, value) -> float:
    """A confidence parameter delta in the open interval (0, 1)."""
    return real(name, value, lo=0.0, hi=1.0, lo_open=True, hi_open=True)


def unit_interval(name: str, value) -> float:
    """A number in the closed interval [0, 1] (e.g. the channel knob t)."""
    return real(name, value, lo=0.0, hi=1.0)


def choice(name: str, value, allowed: Iterable) -> Any:
    """One of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def nonempty(name: str, values, item: Optional[Callable[[str, Any], Any]] = None) -> tuple:
    """A non-empty sequence (a string counts as one item), each item checked by ``item``.

    Example:
      >>> nonempty("t", [0.0, 0.5], unit_interval)
      (0.0, 0.5)
    """
    if isinstance(values, (str, bytes)) or np.ndim(values) == 0:
        values = (values,)
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} must be a non-empty sequence, got none")
    return tuple(item(name, v) for v in values) if item is not None else values


def choices(name: str, values, allowed: Iterable, *, unique: bool = True) -> tuple:
    """A non-empty sequence of distinct items of ``allowed``."""
    allowed = tuple(allowed)
    out = nonempty(name, values, lambda n, v: choice(n, v, allowed))
    if unique and len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a value, got {out}")
    return out


def boolean(name: str, value) -> bool:
    """A bool (``True``/``False``, or a numpy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def array(name: str, value, *, ndim: Optional[int] = None, shape: Optional[Sequence] = None,
          kind: str = "float", finite: bool = True, min_rows: int = 1) -> np.ndarray:
    """A numeric array: float64 (``kind="float"``, any real dtype accepted) or integer
    (``kind="int"``), with ``ndim``, a ``shape`` (None entries are free) and at least
    ``min_rows`` rows.

    Example:
      >>> array("z", [[1, 2]], ndim=2).dtype
      dtype('float64')
    """
    try:
        a = np.asarray(value)
    except Exception:  # noqa: BLE001 - any failure to read it is the same error
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__}") from None
    if kind == "int":
        if a.dtype.kind not in "iu":
            raise ValueError(f"{name} must be an integer array, got dtype {a.dtype}")
    elif a.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a real-valued array, got dtype {a.dtype}")
    else:
        a = a.astype(np.float64)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array, got shape {a.shape}")
    if shape is not None:
        if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + (
                ",)" if len(shape) == 1 else ")")
            raise ValueError(f"{name} must have shape {want}, got {a.shape}")
    if a.ndim >= 1 and a.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows, got {a.shape[0]}")
    if finite and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must hold finite numbers (found NaN or inf)")
    return a


def labels(name: str, value, n: Optional[int] = None, num_classes: Optional[int] = None) -> np.ndarray:
    """Integer class labels of shape ``(n,)`` in ``[0, num_classes)``; returns int64."""
    y = array(name, value, ndim=1, shape=None if n is None else (n,), kind="int")
    if np.any(y < 0) or (num_classes is not None and np.any(y >= num_classes)):
        hi = "K" if num_classes is None else str(num_classes)
        raise ValueError(f"{name} must lie in [0, {hi}), got values in [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


# ---- command lines ---------------------------------------------------------------------------


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in --help (not for flags, nor for None: the help text says what it means), and
    the description / epilog printed as written."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser(prog: str, description: str, epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` for a toolkit command: defaults shown in ``--help``, ``--version``,
    and every error as one line ``prog: error: <message>`` with exit status 2."""
    p = _Parser(prog=prog, description=description, epilog=epilog, formatter_class=_Formatter)
    p.add_argument("--version", action="version", version=f"%(prog)s (cmcd_theory) {__version__}")
    return p


def arg(check: Callable, name: str, *extra, **kw) -> Callable[[str], Any]:
    """An argparse ``type=``: parse the string (int, float or str, by the check), then apply
    ``check(name, value, *extra, **kw)``; a failure reads ``argument NAME: <message>``.

    Example:
      >>> arg(positive_int, "--seeds")("3")
      3
    """
    def convert(text: str):
        value: Any = text
        cast = int if check in (integer, positive_int) else (
            float if check in (real, probability, unit_interval) else None)
        if cast is not None:
            try:
                value = cast(text)
            except ValueError:
                pass  # the check rejects the string, naming the parameter and the range
        try:
            return check(name, value, *extra, **kw)
        except ValueError as e:
            msg = str(e)  # argparse prefixes "argument NAME: "; do not say the name twice
            raise argparse.ArgumentTypeError(msg[len(name) + 1:] if msg.startswith(name + " ")
                                             else msg) from None
    convert.__name__ = name.lstrip("-")
    return convert


def cli(main: Callable, argv=None, prog: Optional[str] = None):
    """Run ``main(argv)``; a ``ValueError`` (bad input found past argument parsing) becomes
    one line ``prog: error: <message>`` on stderr and exit status 2, without a traceback."""
    try:
        return main(argv)
    except BrokenPipeError:  # output piped into e.g. head: stop quietly
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except ValueError as e:
        name = prog or (sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "cmcd")
        msg = " ".join(str(e).split())
        sys.stderr.write(f"{name}: error: {msg}\n")
        raise SystemExit(2) from None
