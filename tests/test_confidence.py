"""Confidence accounting: no reported bound column spends more than its stated delta.

``certify(...)["spent"]`` gives, for every bound column of ``wide``, the sum of the ``delta``
of every bound object (form, grid) its value was computed from, read from those objects. A
column that takes the minimum of two forms computed at the full delta each would show 2 delta
here and fail. The experiments' postprocesses return certify's columns (no copies).
"""

import jax
import numpy as np
import pytest

from cmcd_theory import certify as certify_mod
from cmcd_theory.learn.pipeline import PipelineConfig
from cmcd_theory.worlds import WorldConfig, make_world

DELTA = 0.05
BOUND_SUFFIXES = ("_total", "_total_deterministic", "_upper", "_lower", "_gap")


def _fake_run(cfg, world, rng, student_features="raw"):
    """Arrays shaped like one linear-track run (no training: the accounting does not care)."""
    wc = world.config
    k, K, n = wc.latent_dim, wc.num_classes, cfg.n
    z = rng.standard_normal((n, k))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    y = rng.integers(0, K, n)
    probe = {"W": 3.0 * rng.standard_normal((K, k)), "b": 0.1 * rng.standard_normal(K)}
    teacher = {"W": rng.standard_normal((k, wc.d_A))}
    student = {"W": rng.standard_normal((k, wc.d_B))}
    n_t = cfg.m // cfg.tuple_size
    r = wc.input_radius()
    metrics = {
        "err_B": 0.2,
        "err_A_head": 0.15,
        "distill_train_loss": 0.5,
        "distill_pop_loss": 0.6,
        "student_norm": float(np.linalg.norm(student["W"])),
        "sum_sq_inputs": 0.5 * n_t * cfg.tuple_size * r * r,
        "tv_latent": 0.0,
        "bayes_A": 0.1,
        "bayes_B": 0.1,
    }
    arts = {"probe": probe, "z_train": z, "y_train": y, "student": student, "teacher": teacher}
    return metrics, arts


@pytest.mark.parametrize("method", ["cmc", "cmd"])
def test_every_bound_column_spends_at_most_delta(method):
    world = make_world(WorldConfig(), jax.random.key(0))
    base = PipelineConfig(M=512, m=1024, n=300, n_pop=1024)
    cfg = base.replace(distill=base.distill.replace(student_features="raw"))
    metrics, arts = _fake_run(cfg, world, np.random.default_rng(0))
    res = certify_mod.certify(
        world,
        cfg,
        method,
        0.0,
        0,
        metrics,
        arts,
        delta=DELTA,
        n_tv_mc=2000,
        n_weight_samples=50,
        parts=("B1b", "B2", "B3", "B4", "probe"),
    )
    wide, spent = res["wide"], res["spent"]
    bound_cols = [c for c in wide if c.endswith(BOUND_SUFFIXES) and np.isfinite(wide[c])]
    assert {"b2_total", "b3_total", "b4_total", "tv_features_upper", "probe_total"} <= set(
        bound_cols
    )
    for col in bound_cols:
        assert col in spent, f"{col} is reported without its confidence accounted"
        assert spent[col] <= DELTA * (1 + 1e-12), f"{col} spends {spent[col]} > delta = {DELTA}"
    # the minimum of two forms is charged for both
    assert spent["b2_total"] == pytest.approx(
        spent["b2_sample_total"] + spent["b2_data_free_total"]
    )
    assert spent["b4_total"] == pytest.approx(
        spent["b4_sample_total"] + spent["b4_data_free_total"]
    )
    assert spent["b3_total"] == pytest.approx(spent["b3_zero_prior_total"] + spent["b3p_total"])
    # every part's columns are present (NaN where not applicable), the same for every call
    for part, keys in certify_mod.PART_KEYS.items():
        assert set(keys) <= set(wide), part


def test_experiment_postprocesses_return_certify_columns():
    """experiments.common computes no bound itself: its columns equal certify's."""
    from experiments import common

    world = make_world(WorldConfig(), jax.random.key(0))
    base = PipelineConfig(M=512, m=1024, n=300, n_pop=1024)
    cfg = base.replace(distill=base.distill.replace(student_features="raw"))
    metrics, arts = _fake_run(cfg, world, np.random.default_rng(1))
    ref = certify_mod.certify(
        world,
        cfg,
        "cmc",
        0.0,
        3,
        metrics,
        arts,
        delta=common.DELTA,
        delta_test=common.DELTA_TEST,
        n_weight_samples=500,
        parts=("B2", "B3", "B4"),
    )["wide"]
    got = {
        **common.probe_bounds(world, cfg, "cmc", 0.0, 3, metrics, arts),
        **common.distill_bound(world, cfg, "cmc", 0.0, 3, metrics, arts),
    }
    assert set(got) == set(common.PROBE_BOUND_KEYS) | set(common.DISTILL_BOUND_KEYS)
    for k, v in got.items():
        assert v == pytest.approx(ref[k], nan_ok=True), k
    # not applicable: NaN in every fixed column
    nan = common.probe_bounds(world, cfg, "supervised", 0.0, 3, metrics, arts)
    assert set(nan) == set(common.PROBE_BOUND_KEYS) and all(np.isnan(v) for v in nan.values())


def test_probe_certificate_splits_delta_over_b2_and_b3():
    """probe_total (the minimum of B2's two forms and B3's 2 L(Q)) recomputes each at its share
    of delta: it spends delta in all, and is never below the same bounds at their larger
    shares (a smaller delta only loosens a bound; the B3 weight draws share the seed)."""
    rng = np.random.default_rng(2)
    n, k, K = 400, 4, 3
    y = rng.integers(0, K, n)
    z = np.eye(k)[y] + 0.4 * rng.standard_normal((n, k))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    W, b = 4.0 * np.eye(k)[:K], np.zeros(K)
    prior = {"W": 0.9 * W, "b": b, "n_prior": n // 2}  # B3p's prior (any function of S0)
    rows, wide = certify_mod.probe_rows(
        z, y, W, b, delta=DELTA, delta_test=DELTA, seed=1, n_weight_samples=50, prior=prior
    )
    prow, pwide = certify_mod.probe_certificate_rows(
        z, y, W, b, delta=DELTA, delta_test=DELTA, seed=1, n_weight_samples=50, prior=prior
    )
    (row,) = prow
    assert row["delta"] == pytest.approx(DELTA)
    assert sum(certify_mod.PROBE_SPLIT.values()) == pytest.approx(1.0)
    naive = min(wide["b2_total"], wide["b3_total_deterministic"])
    assert pwide["probe_total"] >= naive
    assert pwide["probe_total"] == pytest.approx(
        min(row[f"{f}_at_share"] for f in certify_mod.PROBE_FORMS)
    )
    assert certify_mod.PROBE_FORMS[int(pwide["probe_form"])] == row["attained_by"]
    # B2 at delta/4 is exactly the B2 formula at that delta
    from cmcd_theory import bounds

    mb = bounds.margin_bound(z, y, W, b, DELTA / 4, form="sample")
    assert row["B2_sample_at_share"] == pytest.approx(mb.total, rel=1e-12)
    # B3's two forms (zero-mean and split prior) each spend delta / 2 in probe_rows, and
    # b3_total, their minimum, is charged for both
    b3 = {r["bound"]: r for r in rows if r["bound"] in ("B3", "B3p")}
    assert b3["B3"]["delta"] == b3["B3p"]["delta"] == pytest.approx(DELTA / 2)
    assert wide["b3_total"] == min(wide["b3_zero_prior_total"], wide["b3p_total"])
    assert b3["B3p"]["n"] == n - n // 2 and b3["B3p"]["n_prior"] == n // 2
    # a form that does not apply leaves its share unspent (no data-free B2 on norms 2, no B3p)
    prow2, _ = certify_mod.probe_certificate_rows(
        2 * z, y, W, b, delta=DELTA, delta_test=DELTA, seed=1, n_weight_samples=50
    )
    assert prow2[0]["delta"] == pytest.approx(0.5 * DELTA)
    assert "B2_data_free_at_share" not in prow2[0]
