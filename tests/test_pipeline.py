"""Pipeline and training stages: shapes, validation, determinism (sweeps: test_sweep.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmcd_theory.learn import pipeline, training
from cmcd_theory.learn.models import linear_encoder, normalize
from cmcd_theory.learn.probe import fit_probe, probe_error
from cmcd_theory.sweeps import sweep
from cmcd_theory.worlds import WorldConfig, make_world

TINY = sweep.quick_pipeline().replace(
    M=256,
    m=256,
    n=64,
    n_test=512,
    n_pop=256,
    probe_steps=50,
    ssl=training.TrainConfig(steps=20, batch_size=64),
    distill=training.TrainConfig(steps=20, batch_size=64),
    supervised=training.TrainConfig(steps=20, batch_size=32),
    tuple_size=64,
)


def test_pipeline_config_validation():
    with pytest.raises(ValueError, match="m must be"):
        pipeline.PipelineConfig(m=10, tuple_size=128)
    with pytest.raises(ValueError, match="encoder"):
        pipeline.PipelineConfig(encoder="cnn")
    with pytest.raises(ValueError, match="M must be"):
        pipeline.PipelineConfig(M=0)
    with pytest.raises(ValueError, match="student_features"):
        training.TrainConfig(student_features="scaled")
    with pytest.raises(ValueError, match="tau"):
        training.TrainConfig(tau=0.0)
    with pytest.raises(ValueError, match="method"):
        pipeline.run_pipeline(make_world(WorldConfig()), jax.random.key(0), "seed", TINY)


def test_probe_reaches_separable_solution():
    z = normalize(jax.random.normal(jax.random.key(0), (400, 4)))
    y = jnp.argmax(z, axis=1)
    probe = fit_probe(z, y, 4, l2=1e-4, steps=300)
    assert float(probe_error(probe, z, y)) < 0.02


def test_distill_learns_teacher_features():
    """Stage 2 on an exactly learnable problem drives CMC below its value at initialisation."""
    key = jax.random.key(1)
    x = jax.random.normal(key, (512, 6))
    teacher = normalize(x @ jax.random.normal(jax.random.key(2), (6, 4)))
    enc = linear_encoder(6, 4)
    cfg = training.TrainConfig(steps=300, batch_size=64, lr=0.05)
    p0 = enc.init(jax.random.key(3))
    p1 = training.train_distill(jax.random.key(3), enc, x, teacher, "cmc", cfg)
    before = training.tuple_loss("cmc", normalize(enc.apply(p0, x)), teacher, cfg, 64)
    after = training.tuple_loss("cmc", normalize(enc.apply(p1, x)), teacher, cfg, 64)
    assert float(after) < float(before) - 0.5


@pytest.mark.parametrize("method", pipeline.METHODS)
def test_every_method_runs_and_reports(method):
    w = make_world(WorldConfig(t=0.3))
    out = pipeline.run_pipeline_jit(w, jax.random.key(0), method, TINY, 0.3)
    err = float(out["err_B"])
    assert 0.0 <= err <= 1.0
    has_teacher = method in pipeline.TEACHER_METHODS
    assert np.isfinite(float(out["err_A_head"])) == has_teacher
    assert np.isfinite(float(out["distill_gap"])) == has_teacher


def test_same_seed_same_numbers_and_sweep_matches_pipeline():
    w = make_world(WorldConfig(t=0.3))  # reuses the cmd program of test_every_method_runs
    a = pipeline.run_pipeline_jit(w, jax.random.key(5), "cmd", TINY, 0.5)
    b = pipeline.run_pipeline_jit(w, jax.random.key(5), "cmd", TINY, 0.5)
    c = pipeline.run_pipeline_jit(w, jax.random.key(6), "cmd", TINY, 0.5)
    for k in sweep.METRICS:
        assert float(a[k]) == float(b[k])
    assert float(a["distill_train_loss"]) != float(c["distill_train_loss"])
    df = sweep.run_sweep({"t": [0.5], "method": ["cmd"]}, pipeline=TINY, seeds=[5], progress=False)
    # the vmapped sweep computes the same cell (batched float32 arithmetic may differ in ulps)
    assert df["err_B"].iloc[0] == pytest.approx(float(a["err_B"]), abs=2e-3)
    assert df["distill_train_loss"].iloc[0] == pytest.approx(
        float(a["distill_train_loss"]), rel=1e-3
    )


def test_multi_method_downstream_equals_each_method_alone():
    """All methods at two label counts in one program on shared data compute what each method
    computes alone, and what the one-n program computes at the other n."""
    # the world of test_every_method_runs_and_reports (its own t is not used: t = 0.4 is
    # passed), so the single-method programs compiled there are reused here
    w = make_world(WorldConfig(t=0.3))
    key = jax.random.key(7)
    k_teacher, k_down = jax.random.split(key)
    teacher = pipeline.train_teacher(w, k_teacher, TINY)
    n2 = 2 * TINY.n
    both = jax.jit(pipeline.run_downstream_ns, static_argnames=("methods", "cfg", "ns"))(
        w, k_down, teacher, pipeline.METHODS, TINY, (TINY.n, n2), 0.4
    )
    assert set(both) == {TINY.n, n2} and set(both[n2]) == set(pipeline.METHODS)
    # at n2, against the one-n program of a label-free route and the labeled route
    at_n2 = jax.jit(pipeline.run_downstream_multi, static_argnames=("methods", "cfg"))(
        w, k_down, teacher, ("cmc", "supervised"), TINY.replace(n=n2), 0.4
    )
    for method in pipeline.METHODS:
        alone = pipeline.run_pipeline_jit(w, key, method, TINY, 0.4)
        pairs = [(alone, both[TINY.n][method])] + (
            [(at_n2[method], both[n2][method])] if method in at_n2 else []
        )
        for ref, got in pairs:
            for k in sweep.METRICS:
                a, b = float(ref[k]), float(got[k])
                assert np.isnan(a) == np.isnan(b), (method, k)
                if not np.isnan(a):
                    assert b == pytest.approx(a, rel=1e-5, abs=1e-6), (method, k)
        assert both[n2][method]["artifacts"]["z_train"].shape[0] == n2
    # what the n share is returned once, at the first n
    assert {"z_test", "student", "teacher", "stage2"}.isdisjoint(both[n2]["cmc"]["artifacts"])
    assert {"z_test", "student"} <= set(both[n2]["supervised"]["artifacts"])  # trained per n
    # the label-free stage is trained once: its losses are the same numbers at both n
    assert float(both[TINY.n]["cmc"]["distill_pop_loss"]) == float(
        both[n2]["cmc"]["distill_pop_loss"]
    )
    assert float(both[TINY.n]["cmc"]["err_B"]) != float(
        both[n2]["cmc"]["err_B"]
    )  # the probes differ


def test_multi_method_downstream_rejects_bad_methods():
    w = make_world(WorldConfig())
    with pytest.raises(ValueError, match="method must be one of"):
        pipeline.run_downstream_multi(w, jax.random.key(0), None, ("cmc", "byol"), TINY)
    with pytest.raises(ValueError, match="must not repeat"):
        pipeline.run_downstream_multi(w, jax.random.key(0), None, ("random", "random"), TINY)
    with pytest.raises(ValueError, match="at least one"):
        pipeline.run_downstream_multi(w, jax.random.key(0), None, (), TINY)
    with pytest.raises(ValueError, match="teacher"):
        pipeline.run_downstream_multi(w, jax.random.key(0), None, ("cmd",), TINY)
    with pytest.raises(ValueError, match="ns must not repeat"):
        pipeline.run_downstream_ns(w, jax.random.key(0), None, ("random",), TINY, (64, 64))
    with pytest.raises(ValueError, match="ns must be an integer >= 1"):
        pipeline.run_downstream_ns(w, jax.random.key(0), None, ("random",), TINY, (64, 0))
    with pytest.raises(ValueError, match="at least one label count"):
        pipeline.run_downstream_ns(w, jax.random.key(0), None, ("random",), TINY, ())


@pytest.fixture(scope="module")
def mispair_sweep():
    """The mispair channel at t = 1, oracle and cmc on seed 3, as one sweep program (shared by
    the run_cell and the mispair tests: one compile)."""
    return sweep.run_sweep(
        {"channel": ["mispair"], "t": [1.0], "method": ["oracle", "cmc"]},
        pipeline=TINY,
        seeds=[3],
        progress=False,
    ).set_index("method")


def test_run_cell_is_one_sweep_row(mispair_sweep):
    """A single pipeline call returns the row a sweep writes: metrics and the world's ground
    truth (of its own channel, here mispair at t = 1, not the default world's)."""
    from cmcd_theory.learn import divergences

    wc = WorldConfig(channel="mispair")
    row = pipeline.run_cell(make_world(wc), jax.random.key(3), "cmc", TINY, t=1.0)
    assert all(isinstance(v, float) for v in row.values())
    assert row["tv_latent"] == divergences.tv_latent(wc.replace(t=1.0))
    assert row["bayes_B"] == divergences.bayes_error(wc.replace(t=1.0), "B").estimate
    assert row["bayes_A"] == divergences.bayes_error(wc, "A").estimate
    assert row["pair_agreement"] == divergences.pair_agreement(wc.replace(t=1.0))
    cell = mispair_sweep.loc["cmc"]
    for k in ("tv_latent", "bayes_A", "bayes_B", "pair_agreement", "sum_sq_inputs"):
        assert cell[k] == row[k], k
    assert cell["err_B"] == pytest.approx(row["err_B"], abs=2e-3)


def test_user_channel_runs_through_sweep_and_certify():
    """A channel registered by the user (no package change) runs through run_sweep (jit with
    the config as a static argument) and certify; its unknown Bayes error is NaN, not a guess."""
    import scipy.stats

    from cmcd_theory import certify, worlds

    class Shift(worlds.Channel):
        name = "test_pipeline_shift"

        def apply(self, world, key, y, s, t):
            return y, s.at[:, 0].add(2.0 * t)

        def tv_latent_per_class(self, config, t):
            return np.full(config.num_classes, 2 * scipy.stats.norm.cdf(t / config.sigma) - 1)

    worlds.register_channel(Shift())
    try:
        rows = []

        def post(w, cfg, method, t, seed, row, arts):
            c = certify.certify(w, cfg, method, t, seed, row, arts, parts=("B2",))
            rows.append(c)
            return {"b2_total": c["wide"].get("b2_total", np.nan)}

        df = sweep.run_sweep(
            {"channel": ["test_pipeline_shift"], "t": [0.0, 0.5], "method": ["cmc"]},
            pipeline=TINY,
            seeds=[0],
            progress=False,
            postprocess=post,
        )
        assert (
            len(df) == 2
            and np.all(np.isfinite(df["err_B"]))
            and np.all(np.isfinite(df["b2_total"]))
        )
        assert df["tv_latent"].iloc[1] == pytest.approx(
            2 * scipy.stats.norm.cdf(0.5) - 1, abs=1e-12
        )
        assert np.all(np.isnan(df["bayes_B"])) and np.all(df["pair_agreement"] == 1.0)
        assert all(r["wide"]["bounds_hold"] for r in rows)
    finally:
        worlds.unregister_channel("test_pipeline_shift")


def test_mispair_targets_use_the_target_labels(mispair_sweep):
    """On mispair at t = 1 every target label differs from the source's: the oracle probe on s_B
    (which follows y_B) still reaches about eps*_B, the teacher's head on source features with
    the source labels is then far from it; ground truth carries pair_agreement = 1 - t."""
    row = mispair_sweep.loc["oracle"]
    assert row["pair_agreement"] == 0.0 and row["tv_latent"] == 0.0
    assert row["bayes_B"] == row["bayes_A"]
    assert row["err_B"] < row["bayes_B"] + 0.08
    row = mispair_sweep.loc["cmc"]
    assert row["err_A_head"] > 0.5  # the head learned y_B, which never equals y at t = 1
