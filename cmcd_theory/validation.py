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
* :func:`cli`: run a ``main`` and report a ``ValueError`` raised inside it the same way;
* :func:`interruptible`: run a command's work so that SIGINT / SIGTERM end it within a second
  with one line (exit status 130 / 143).

What a command writes and connects to is checked before it computes anything:
:func:`output_file` (the folder can be written, the path is not a directory, an existing file
is not read-only) and :func:`scheduler_address` (a Dask scheduler answers). Files are written
whole by :func:`write_atomic` with the mode the user's umask gives.

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
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

#: the toolkit's version (``--version`` of every command; re-exported as
#: ``cmcd_theory.__version__``)
__version__ = "0.1.0"

__all__ = [
    "integer",
    "positive_int",
    "real",
    "probability",
    "unit_interval",
    "choice",
    "choices",
    "nonempty",
    "distinct",
    "boolean",
    "array",
    "labels",
    "output_file",
    "write_atomic",
    "file_mode",
    "scheduler_address",
    "parser",
    "arg",
    "cli",
    "interruptible",
    "WRITE_LOCK",
]


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


def integer(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
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


def real(
    name: str,
    value,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    finite: bool = True,
) -> float:
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


def nonempty(name: str, values, item: Callable[[str, Any], Any] | None = None) -> tuple:
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


def distinct(name: str, values, key: Callable[[Any], Any] | None = None) -> tuple:
    """``values`` as a tuple, refused if two of them are equal (compared as ``key(v)``): a grid
    axis or a seed list is a set, and a repeated value would be computed and counted twice.

    Example:
      >>> distinct("t", (0.0, 0.5))
      (0.0, 0.5)
      >>> distinct("t", (0.0, 0.0))
      Traceback (most recent call last):
      ...
      ValueError: t must not repeat a value, got (0.0, 0.0)
    """
    values = tuple(values)
    keys = [v if key is None else key(v) for v in values]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{name} must not repeat a value, got {values}")
    return values


def choices(name: str, values, allowed: Iterable, *, unique: bool = True) -> tuple:
    """A non-empty sequence of distinct items of ``allowed``."""
    allowed = tuple(allowed)
    out = nonempty(name, values, lambda n, v: choice(n, v, allowed))
    return distinct(name, out) if unique else out


def boolean(name: str, value) -> bool:
    """A bool (``True``/``False``, or a numpy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def array(
    name: str,
    value,
    *,
    ndim: int | None = None,
    shape: Sequence | None = None,
    kind: str = "float",
    finite: bool = True,
    min_rows: int = 1,
    min_cols: int = 0,
) -> np.ndarray:
    """A numeric array: float64 (``kind="float"``, any real dtype accepted) or integer
    (``kind="int"``), with ``ndim``, a ``shape`` (None entries are free), at least
    ``min_rows`` rows and (2-d) at least ``min_cols`` columns.

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
            want = (
                "("
                + ", ".join("*" if s is None else str(s) for s in shape)
                + (",)" if len(shape) == 1 else ")")
            )
            raise ValueError(f"{name} must have shape {want}, got {a.shape}")
    if a.ndim >= 1 and a.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows, got {a.shape[0]}")
    if a.ndim == 2 and a.shape[1] < min_cols:
        raise ValueError(f"{name} must have at least {min_cols} column(s), got shape {a.shape}")
    if finite and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must hold finite numbers (found NaN or inf)")
    return a


def labels(name: str, value, n: int | None = None, num_classes: int | None = None) -> np.ndarray:
    """Integer class labels of shape ``(n,)`` in ``[0, num_classes)``; returns int64."""
    y = array(name, value, ndim=1, shape=None if n is None else (n,), kind="int")
    if np.any(y < 0) or (num_classes is not None and np.any(y >= num_classes)):
        hi = "K" if num_classes is None else str(num_classes)
        raise ValueError(f"{name} must lie in [0, {hi}), got values in [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def n_cores() -> int:
    """The CPU cores this process may use (its affinity mask where the system has one): the
    thread and worker counts of the sweeps and of B3's Monte Carlo."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover


# ---- what a command writes and connects to -----------------------------------------------------

#: Held while a file is written (:func:`write_atomic`, a sweep's appends), so that an interrupt
#: (:func:`interruptible`) never ends the process in the middle of a write.
WRITE_LOCK = threading.RLock()


def _writable(path: str) -> bool:
    """Whether this process may write ``path`` (a folder: create and rename files in it)."""
    return os.access(path, os.W_OK | (os.X_OK if os.path.isdir(path) else 0))


def output_file(name: str, path, *, example: str = "out.csv") -> str:
    """A file path a command may write, checked before any work: not a directory, its folder
    (or the nearest folder above it that exists, the rest being created on writing) writable,
    and an existing file not read-only (a read-only file says "keep this"; neither a resume
    nor ``--overwrite`` replaces it). Returns the path as a string.

    Example:
      >>> output_file("--out", "/")
      Traceback (most recent call last):
      ...
      ValueError: --out: / is a directory; give a file path such as /out.csv
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"{name} must be a file path, got {path!r}")
    p = os.fspath(path)
    if os.path.isdir(p):
        raise ValueError(
            f"{name}: {p} is a directory; give a file path such as {os.path.join(p, example)}"
        )
    folder = os.path.dirname(os.path.abspath(p))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{name}: cannot create the folder {folder}: {existing} is a file")
    if not _writable(existing):
        raise ValueError(
            f"{name}: cannot write into the folder {existing} (permission denied); "
            f"choose another {name}"
        )
    if os.path.exists(p) and not _writable(p):
        raise ValueError(f"{name}: {p} is read-only; make it writable or choose another {name}")
    return p


def file_mode() -> int:
    """The mode a new file gets from the user's umask (``0o666 & ~umask``)."""
    try:
        with open("/proc/self/status") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)  # no /proc: read it by setting it, then put it back
        os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` by ``text`` in one step (temporary file in the same folder, fsync,
    rename; the folder is created if missing): a reader sees the old file or the new one,
    never a part. The file keeps the mode of the one it replaces, else the user's umask
    (:func:`file_mode`)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    with WRITE_LOCK:
        os.makedirs(folder, exist_ok=True)
        mode = (os.stat(path).st_mode & 0o7777) if os.path.exists(path) else file_mode()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


#: Seconds a scheduler address has to accept a connection (:func:`scheduler_address`).
CONNECT_TIMEOUT_S = 3.0


def scheduler_address(name: str, address: str, timeout: float = CONNECT_TIMEOUT_S) -> str:
    """A Dask scheduler address (``tcp://HOST:PORT``, ``tls://...``; port 8786 when left out)
    that accepts a TCP connection within ``timeout`` seconds, checked before any work. Other
    protocols are passed through to Dask unchecked.

    Example:
      >>> scheduler_address("--scheduler", "tcp://127.0.0.1:1", timeout=1)  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: --scheduler: no Dask scheduler answers at tcp://127.0.0.1:1 within 1 s (...)
    """
    scheme, sep, rest = str(address).partition("://")
    if not sep or scheme not in ("tcp", "tls"):
        return address
    host, colon, port = rest.rstrip("/").rpartition(":")
    if not colon or host.endswith(":"):  # no port (a bare IPv6 host has colons inside [...])
        host, port = rest.rstrip("/"), "8786"
    host = host.strip("[]")
    try:
        port_n = int(port)
    except ValueError:
        raise ValueError(
            f"{name} must be an address such as tcp://HOST:8786, got {address!r}"
        ) from None
    try:
        socket.create_connection((host, port_n), timeout=timeout).close()
    except OSError as e:
        why = e.strerror or (type(e).__name__ if not str(e) else str(e))
        if isinstance(e, socket.timeout):
            why = "timed out"
        raise ValueError(
            f"{name}: no Dask scheduler answers at {address} within {timeout:g} s ({why})"
        ) from None
    return address


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


def parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
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
        cast = (
            int
            if check in (integer, positive_int)
            else (float if check in (real, probability, unit_interval) else None)
        )
        if cast is not None:
            try:
                value = cast(text)
            except ValueError:
                pass  # the check rejects the string, naming the parameter and the range
        try:
            return check(name, value, *extra, **kw)
        except ValueError as e:
            msg = str(e)  # argparse prefixes "argument NAME: "; do not say the name twice
            raise argparse.ArgumentTypeError(
                msg[len(name) + 1 :] if msg.startswith(name + " ") else msg
            ) from None

    convert.__name__ = name.lstrip("-")
    return convert


def cli(main: Callable, argv=None, prog: str | None = None):
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


#: Exit status of a command ended by a signal: 128 + the signal's number (the shell's
#: convention): 130 for SIGINT (Ctrl-C), 143 for SIGTERM.
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A command received SIGINT or SIGTERM (``signum``)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def in_thread(fn: Callable[..., Any], *args, name: str, **kwargs) -> Callable[[], Any]:
    """Start ``fn(*args, **kwargs)`` on a daemon thread called ``name``; return a function
    that waits for it and returns what it returned (or raises what it raised)."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - raised by the caller of the result
            out["error"] = e

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()

    def result():
        thread.join()
        if "error" in out:
            raise out["error"]
        return out["value"]

    return result


def interruptible(
    work: Callable[[], Any],
    prog: str,
    kept: Callable[[], str],
    cleanup: Callable[[], None] | None = None,
) -> Any:
    """Run a command's ``work()`` so that SIGINT (Ctrl-C) and SIGTERM end it within a second.

    The work runs in a thread while the main thread waits; on a signal the main thread waits
    for a file write in progress to finish (:data:`WRITE_LOCK`, so what is on disk is whole),
    writes one line ``prog: interrupted: <kept()>`` on stderr and ends the process at once
    with status 128 + the signal number (130 for SIGINT, 143 for SIGTERM), which also ends the
    worker processes it started (Dask workers exit when their parent does); ``cleanup()``, if
    given, runs just before (it must be quick and quiet). Only for a
    command's ``main``, called from the main thread (elsewhere ``work()`` is simply called).
    Returns what ``work()`` returns and raises what it raises.
    """
    if threading.current_thread() is not threading.main_thread():
        return work()
    done: dict = {}

    def target():
        try:
            done["value"] = work()
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            done["error"] = e

    old = {s: signal.signal(s, _raise_interrupted) for s in INTERRUPT_SIGNALS}
    thread = threading.Thread(target=target, name=f"{prog}-work", daemon=True)
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.05)
    except Interrupted as e:
        for s in INTERRUPT_SIGNALS:  # a second Ctrl-C must not cut the line below
            signal.signal(s, signal.SIG_IGN)
        WRITE_LOCK.acquire(timeout=5)  # held until the end: no write starts after this
        try:
            what = kept()
        except Exception as err:  # noqa: BLE001 - the line must still be written
            what = f"could not count what was kept ({type(err).__name__})"
        sys.stdout.flush()
        if sys.stderr.isatty():  # clear a progress bar's line first
            sys.stderr.write("\r\x1b[K")
        sys.stderr.write(f"{prog}: interrupted: {what}\n")
        sys.stderr.flush()
        if cleanup is not None:
            try:
                cleanup()
            except Exception:  # noqa: BLE001, S110 - ending now matters more
                pass
        os._exit(128 + e.signum)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if "error" in done:
        raise done["error"]
    return done["value"]
