"""certify_features: the bounds on features exported from any model (docs/theory.md, B6)."""

import math

import numpy as np
import pytest

from cmcd_theory import bounds, certify_features
from cmcd_theory.certify import ROW_KEYS, WIDE_KEYS, Stage2Stats


def _features(seed=0, n=1500, K=3, sep=1.5, noise=0.6):
    """Normalised Gaussian class clusters: (z, y)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    z = sep * np.eye(K)[y] + noise * rng.standard_normal((n, K))
    return z / np.linalg.norm(z, axis=1, keepdims=True), y


@pytest.fixture(scope="module")
def cert():
    z, y = _features()
    zs, _ = _features(seed=1)
    rng = np.random.default_rng(2)
    W = rng.standard_normal((3, 3))
    stats = dict(
        loss="cmc",
        train_loss=3.0,
        tau=0.5,
        tuple_size=16,
        m=512,
        student_norm=2.0,
        input_radius=3.0,
        feature_dim=3,
        sum_sq_inputs=512 * 4.0,
        pop_loss=3.1,
        n_pop=512,
    )
    return certify_features(
        z[:500],
        y[:500],
        probe_weights=W,
        probe_bias=np.zeros(3),
        test_features=z[500:],
        test_labels=y[500:],
        pair_source=zs[500:],
        pair_target=z[500:],
        stage2=stats,
        n_weight_samples=100,
    )


def test_every_bound_reported_with_fixed_keys(cert):
    names = [r["bound"] for r in cert.rows]
    assert names == [
        "B2_sample",
        "B2_data_free",
        "B3",
        "B3p",
        "B4_data_free",
        "B4_sample",
        "B4n",
        "B5_data_free",
        "B5_sample",
        "B5n",
        "B1b",
        "TV_lower",
        "B1a",
        "floor",
        "probe",
    ]
    for r in cert.rows:
        assert tuple(r)[: len(ROW_KEYS)] == ROW_KEYS
        assert r["applicable"] == (r["reason"] == "")
    assert tuple(cert.wide) == WIDE_KEYS
    assert math.isnan(cert.wide["b5_total"]) and math.isnan(cert.wide["tv_features_upper"])


def test_not_applicable_rows_say_why(cert):
    by = {r["bound"]: r for r in cert.rows}
    assert "no finite sample certifies" in by["B1b"]["reason"]
    assert "synthetic world" in by["B1a"]["reason"]
    assert "stage-1" in by["B5_sample"]["reason"]
    for name in ("B1b", "B1a", "floor", "B5_sample"):
        assert by[name]["holds"] is None and math.isnan(by[name]["value"])


def test_delta_bookkeeping_and_values_match_bounds(cert):
    """Forms combined by min spend delta / 2 each; the values are bounds.py's."""
    by = {r["bound"]: r for r in cert.rows}
    z, y = _features()
    W = np.random.default_rng(2).standard_normal((3, 3))
    for form in ("sample", "data_free"):
        assert by[f"B2_{form}"]["delta"] == 0.025
        mb = bounds.margin_bound(z[:500], y[:500], W, np.zeros(3), 0.025, form=form)
        assert by[f"B2_{form}"]["value"] == mb.total
        assert by[f"B4_{form}"]["delta"] == 0.025
    assert by["B3"]["delta"] == by["B3p"]["delta"] == 0.025
    assert cert.wide["b3_total"] == min(by["B3"]["value"], by["B3p"]["value"]) / 2
    assert cert.wide["b2_total"] == min(by["B2_sample"]["value"], by["B2_data_free"]["value"])
    assert cert.wide["b4_total"] == min(by["B4_sample"]["value"], by["B4_data_free"]["value"])
    err = np.mean(np.argmax(z[500:] @ W.T, 1) != y[500:])
    assert by["B3"]["measured"] == err
    assert by["B3"]["slack"] == bounds.hoeffding_slack(1000, 0.05)


def test_tv_lower_bound_on_distinct_laws():
    """Shifted features: the certified TV lower bound is positive (and <= 1)."""
    z, y = _features(n=2000)
    shifted = z + np.array([0.8, 0.0, 0.0])
    c = certify_features(
        z[:300], y[:300], pair_source=z[300:], pair_target=shifted[300:], n_weight_samples=50
    )
    tv = [r for r in c.rows if r["bound"] == "TV_lower"][0]
    assert tv["applicable"] and 0.5 < tv["value"] <= 1.0
    assert c.wide["tv_features_lower"] == tv["value"]


def test_fits_the_probe_when_no_weights():
    z, y = _features(n=800)
    c = certify_features(
        z[:400], y[:400], test_features=z[400:], test_labels=y[400:], n_weight_samples=50
    )
    b3 = [r for r in c.rows if r["bound"] == "B3"][0]
    assert b3["holds"] and b3["measured"] < 0.2


def test_data_free_form_needs_the_norm_bound():
    z, y = _features(n=400)
    c = certify_features(3 * z, y, n_weight_samples=20, not_applicable={"B3": "skipped"})
    by = {r["bound"]: r for r in c.rows}
    assert not by["B2_data_free"]["applicable"] and "norm" in by["B2_data_free"]["reason"]
    assert by["B2_sample"]["applicable"] and by["B3"]["reason"] == "skipped"
    assert c.wide["b2_total"] == by["B2_sample"]["value"]
    c = certify_features(z, y, label_free=False, n_weight_samples=20)
    assert all(not r["applicable"] for r in c.rows if r["bound"][:2] in ("B2", "B3"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(train_labels=np.zeros(5, int)), "train_labels must have shape"),
        (dict(train_features=np.full((10, 2), np.nan)), "train_features must hold finite"),
        (dict(probe_weights=np.ones((3, 5))), "probe_weights must have shape"),
        (dict(delta=1.5), r"delta must be a finite number in \(0, 1\)"),
        (dict(test_features=np.ones((4, 2))), "test_labels"),
        (dict(stage2={"loss": "cmc"}), "stage2 is missing"),
        (
            dict(
                stage2={
                    "loss": "xyz",
                    "train_loss": 1.0,
                    "tau": 1.0,
                    "tuple_size": 2,
                    "m": 4,
                    "student_norm": 1.0,
                    "input_radius": 1.0,
                    "feature_dim": 2,
                }
            ),
            "loss must be one of",
        ),
    ],
)
def test_invalid_inputs_name_the_parameter(kwargs, match):
    args = dict(train_features=np.eye(2)[[0, 1] * 5], train_labels=np.array([0, 1] * 5))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        certify_features(args.pop("train_features"), args.pop("train_labels"), **args)


def test_stage2_stats_reject_m_below_tuple():
    with pytest.raises(ValueError, match="m must be an integer >= 8"):
        Stage2Stats("cmc", 1.0, 1.0, 8, 4, 1.0, 1.0, 2)


def test_format_lists_every_bound(cert):
    text = cert.format()
    for r in cert.rows:
        assert r["bound"] in text
    assert "not applicable" in text
