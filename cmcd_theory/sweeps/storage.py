"""The files of a resumable sweep: a CSV of finished rows and the JSON of what it holds.

A sweep writes to ``out`` (CSV, one row per cell, method and seed) and ``<out stem>.json``
(the grid and the world and pipeline configurations the CSV is for). The rules:

* **Rows land whole.** Each chunk's rows are appended in one write, flushed and fsynced
  (:meth:`SweepStore.append`); a file that must change its columns is rewritten to a temporary
  file and renamed over the old one. A process killed mid-write leaves at most one partial
  last line, which :func:`read_rows` drops (with a warning saying how many rows were kept) and
  which is truncated away before anything is appended.
* **One file, one sweep.** :func:`open_store` refuses (:class:`SweepConfigError`) an existing
  ``out`` whose JSON records another world or pipeline configuration, or a grid that is not
  the requested one: a grid that contains the requested one is resumed as is; a requested grid
  that contains the recorded one needs ``extend=True`` (the JSON then records the new grid);
  anything else needs ``overwrite=True`` (the old files are discarded) or another path.

The JSON's ``"complete"`` is ``false`` while the sweep runs and ``true`` once every cell of its
grid is in the CSV. Nothing is written before the first chunk's rows are (the JSON just before
them): a sweep that fails or is interrupted before then leaves ``out`` as it found it, and
``overwrite=True`` discards the old files only then. Files take the user's umask
(:func:`cmcd_theory.validation.write_atomic`); a write that fails (a full disk, say) raises
:class:`SweepWriteError`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings

import pandas as pd

from cmcd_theory import validation as V

FORMAT = 1  # version of the JSON layout


class SweepConfigError(ValueError):
    """``out`` holds another sweep (grid or configuration) than the one requested."""


class SweepFileError(ValueError):
    """The CSV is corrupt beyond a partial last line (not one this module wrote)."""


class SweepWriteError(ValueError):
    """The CSV or JSON could not be written (a full disk, a folder made read-only meanwhile)."""


def config_path(out: str) -> str:
    """The JSON beside a sweep CSV: ``results/x.csv`` -> ``results/x.json``."""
    return os.path.splitext(out)[0] + ".json"


def read_rows(path: str, warn: bool = True) -> tuple[pd.DataFrame | None, int]:
    """The complete rows of a sweep CSV and the byte length they occupy.

    A last line without its newline, or with another number of fields than the header, is a
    row cut by a crash: it is left out (a ``UserWarning`` says so and how many rows were
    kept). A malformed line before the last one raises :class:`SweepFileError`.

    Returns:
      ``(rows, n_bytes)``: ``rows`` is ``None`` for a missing or empty file (or one holding
      only part of a header); ``n_bytes`` is the length of the valid prefix of the file.
    """
    if not os.path.exists(path):
        return None, 0
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if len(lines) < 2:  # no complete header line
        if data:
            _warn(warn, f"{path}: dropped a partial header line; kept 0 rows")
        return None, 0
    header = next(csv.reader([lines[0].decode()]))
    body, tail = lines[1:-1], lines[-1]  # tail: text after the last newline ("" if none)
    keep = len(body)
    dropped = bool(tail)
    for i, line in enumerate(body):
        n_fields = len(next(csv.reader([line.decode()]))) if line else 0
        if n_fields != len(header):
            if i == len(body) - 1:
                keep, dropped = i, True
            else:
                raise SweepFileError(
                    f"{path}: line {i + 2} has {n_fields} fields, the header "
                    f"{len(header)}; the file was not written by a sweep"
                )
    n_bytes = len(lines[0]) + 1 + sum(len(b) + 1 for b in body[:keep])
    if dropped:
        _warn(
            warn,
            f"{path}: dropped a partial last row (a run was cut mid-write); "
            f"kept {keep} complete row(s)",
        )
    text = data[:n_bytes].decode()
    return pd.read_csv(io.StringIO(text)), n_bytes


def _warn(enabled: bool, msg: str) -> None:
    if enabled:
        warnings.warn(msg, UserWarning, stacklevel=3)


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` by ``text`` in one step (:func:`cmcd_theory.validation.write_atomic`:
    temporary file, fsync, rename; the user's umask)."""
    V.write_atomic(path, text)


def count_rows(out: str) -> int:
    """How many complete rows the sweep CSV ``out`` holds (0 for none or no file)."""
    try:
        rows, _ = read_rows(out, warn=False)
    except SweepFileError:
        return 0
    return 0 if rows is None else len(rows)


def _grid_contains(big: dict, small: dict) -> bool:
    return set(big) == set(small) and all(
        set(map(_key, small[k])) <= set(map(_key, big[k])) for k in small
    )


def _key(v):
    return round(v, 9) if isinstance(v, float) else v


def _describe_difference(old: dict, new: dict) -> str:
    for part in ("world", "pipeline"):
        if old.get(part) != new.get(part):
            keys = sorted(
                k
                for k in set(old.get(part) or {}) | set(new[part])
                if (old.get(part) or {}).get(k) != new[part].get(k)
            )
            return f"another {part} configuration (differs in {', '.join(keys)})"
    g_old, g_new = old.get("grid") or {}, new["grid"]
    axes = sorted(
        k
        for k in set(g_old) | set(g_new)
        if set(map(_key, g_old.get(k, []))) != set(map(_key, g_new.get(k, [])))
    )
    return (
        "another grid ("
        + "; ".join(f"{k}: {g_old.get(k)} there, {g_new.get(k)} asked" for k in axes)
        + ")"
    )


class SweepStore:
    """The CSV and JSON of one sweep; the only writer of both (see the module docstring).

    Nothing is written until the first :meth:`append` (or :meth:`write_config`): then the JSON
    (``complete: false``), and for ``replace`` (``overwrite=True``) the old files go.
    """

    def __init__(
        self,
        out: str,
        config: dict,
        rows: pd.DataFrame | None,
        n_bytes: int | None,
        replace: bool = False,
    ):
        self.out = out
        self.config = config
        self.rows = rows  # the complete rows found on opening (None: none)
        self._n_bytes = n_bytes
        self._header: list | None = list(rows.columns) if rows is not None else None
        self._replace = replace  # overwrite: the old CSV is replaced by the first append
        self._started = False  # the JSON of this sweep is on disk
        # False when the sweep asked for a part of the recorded grid: finishing it does not
        # complete the file; ``was_complete`` is what the file's JSON said on opening
        self.asked_whole_grid = True
        self.was_complete = False

    def write_config(self, complete: bool) -> None:
        """Record the grid and configs; ``complete``: every cell of the grid is in the CSV."""
        text = json.dumps({**self.config, "complete": bool(complete), "format": FORMAT}, indent=2)
        self._write(lambda: write_atomic(config_path(self.out), text + "\n"))
        self._started = True

    def append(self, rows: list[dict]) -> None:
        """Add rows at the end of the CSV, whole: one write, flushed and fsynced (the JSON is
        written first, on the first call)."""
        if not rows:
            return
        with V.WRITE_LOCK:
            if not self._started:
                self.write_config(complete=self.was_complete and not self.asked_whole_grid)
            self._write(lambda: self._append(rows))

    def _write(self, fn) -> None:
        try:
            fn()
        except OSError as e:
            raise SweepWriteError(
                f"cannot write {e.filename or self.out}: {e.strerror or e}"
            ) from None

    def _append(self, rows: list[dict]) -> None:
        new = pd.DataFrame(rows)
        if self._header is None or self._replace:
            write_atomic(self.out, new.to_csv(index=False))
            self._header, self._replace, self._n_bytes = list(new.columns), False, None
            return
        if list(new.columns) != self._header:  # other columns: rewrite the file aligned
            old, _ = read_rows(self.out, warn=False)
            both = pd.concat([old, new], ignore_index=True) if old is not None else new
            write_atomic(self.out, both.to_csv(index=False))
            self._header, self._n_bytes = list(both.columns), None
            return
        text = new.to_csv(index=False, header=False)
        with open(self.out, "r+b") as f:
            if self._n_bytes is not None:  # the first append drops a partial tail
                f.truncate(self._n_bytes)
                self._n_bytes = None
            f.seek(0, os.SEEK_END)
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())


def open_store(
    out: str, config: dict, *, extend: bool = False, overwrite: bool = False
) -> SweepStore:
    """Open ``out`` for the sweep described by ``config`` (``{"grid", "world", "pipeline"}``).

    Checks that ``out`` and its JSON can be written
    (:func:`cmcd_theory.validation.output_file`), reads the complete rows already there and
    checks that the recorded sweep is this one (see the module docstring). Writes nothing:
    the JSON is recorded (``complete: false``) just before the first rows.

    Raises:
      ValueError: ``out`` or its JSON cannot be written (a directory, a read-only file or
        folder), naming ``out``.
      SweepConfigError: ``out`` holds another sweep and neither ``extend`` (for a grid that
        grows, configurations identical) nor ``overwrite`` allows it.
    """
    V.output_file("out", out)
    cfg_path = V.output_file("out", config_path(out), example="sweep.json")
    if overwrite:
        return SweepStore(out, config, None, None, replace=True)
    rows, n_bytes = read_rows(out)
    prev = None
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            prev = json.load(f)
    if rows is None and not os.path.exists(out):
        prev = None  # a JSON without its CSV describes nothing
    part = asked_whole = False
    if rows is not None or os.path.exists(out):
        if prev is None:
            raise SweepConfigError(
                f"{out} exists without {cfg_path}, so what it holds is "
                "unknown; pass --overwrite (overwrite=True) or another --out"
            )
        same_config = (
            prev.get("world") == config["world"] and prev.get("pipeline") == config["pipeline"]
        )
        if not same_config:
            raise SweepConfigError(
                f"{out} holds a sweep with {_describe_difference(prev, config)}; "
                "pass --overwrite (overwrite=True) or another --out"
            )
        grows = _grid_contains(config["grid"], prev["grid"])
        part = _grid_contains(prev["grid"], config["grid"])
        if part:
            asked_whole = grows
            config = {**config, "grid": prev["grid"]}  # a part of the recorded grid: resume
        elif not (extend and grows):
            hint = "pass --extend (extend=True) to grow it, " if grows else ""
            raise SweepConfigError(
                f"{out} holds a sweep with {_describe_difference(prev, config)}; "
                f"{hint}--overwrite (overwrite=True) to discard it, or another --out"
            )
    store = SweepStore(out, config, rows, n_bytes if rows is not None else None)
    if prev is not None and (rows is not None or os.path.exists(out)):
        store.was_complete = bool(prev.get("complete", False))
        store.asked_whole_grid = asked_whole if part else True
    return store
