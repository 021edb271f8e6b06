"""Pipeline, training stages and sweeps: shapes, validation, determinism, resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from cmcd_theory import pipeline, sweep, training
from cmcd_theory.models import linear_encoder, normalize
from cmcd_theory.probe import fit_probe, probe_error
from cmcd_theory.worlds import WorldConfig, make_world

TINY = sweep.quick_pipeline().replace(
    M=256, m=256, n=64, n_test=512, n_pop=256, probe_steps=50,
    ssl=training.TrainConfig(steps=20, batch_size=64), distill=training.TrainConfig(steps=20, batch_size=64),
    supervised=training.TrainConfig(steps=20, batch_size=32), tuple_size=64)


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
    w = make_world(WorldConfig())
    a = pipeline.run_pipeline_jit(w, jax.random.key(5), "cmd", TINY, 0.5)
    b = pipeline.run_pipeline_jit(w, jax.random.key(5), "cmd", TINY, 0.5)
    c = pipeline.run_pipeline_jit(w, jax.random.key(6), "cmd", TINY, 0.5)
    for k in sweep.METRICS:
        assert float(a[k]) == float(b[k])
    assert float(a["distill_train_loss"]) != float(c["distill_train_loss"])
    df = sweep.run_sweep({"t": [0.5], "method": ["cmd"]}, pipeline=TINY, seeds=[5], progress=False)
    # the vmapped sweep computes the same cell (batched float32 arithmetic may differ in ulps)
    assert df["err_B"].iloc[0] == pytest.approx(float(a["err_B"]), abs=2e-3)
    assert df["distill_train_loss"].iloc[0] == pytest.approx(float(a["distill_train_loss"]), rel=1e-3)


def test_sweep_writes_config_and_resumes(tmp_path):
    out = tmp_path / "s.csv"
    grid = {"t": [0.0, 1.0], "method": ["l2"]}
    df1 = sweep.run_sweep(grid, pipeline=TINY, seeds=2, out=str(out), progress=False)
    assert len(df1) == 4 and (tmp_path / "s.json").exists()
    for col in ("channel", "t", "method", "seed", "M", "m", "n", "tv_latent", "bayes_A", "bayes_B",
                "err_B", "err_A_head"):
        assert col in df1.columns
    # a rerun with a larger grid computes only the new cells and keeps the old ones untouched
    df2 = sweep.run_sweep({"t": [0.0, 0.5, 1.0], "method": ["l2"]}, pipeline=TINY, seeds=2,
                          out=str(out), progress=False)
    assert len(df2) == 6 and len(pd.read_csv(out)) == 6
    old = df1.sort_values(["t", "seed"]).reset_index(drop=True)
    again = df2[df2.t != 0.5].sort_values(["t", "seed"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(old[list(old.columns)], again[list(old.columns)], check_dtype=False)
    # a different base configuration is refused rather than mixed in
    with pytest.raises(ValueError, match="another base configuration"):
        sweep.run_sweep(grid, pipeline=TINY.replace(n=65), seeds=2, out=str(out), progress=False)


def test_sweep_killed_midway_keeps_finished_chunks(tmp_path, monkeypatch):
    out = tmp_path / "k.csv"
    calls = {"n": 0}
    real = sweep._DOWNSTREAM_JIT

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(sweep, "_DOWNSTREAM_JIT", flaky)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep({"t": [0.0, 1.0], "method": ["random"]}, pipeline=TINY, seeds=2, out=str(out),
                        chunk_size=2, progress=False)
    assert len(pd.read_csv(out)) == 2  # the first chunk survived
    monkeypatch.setattr(sweep, "_DOWNSTREAM_JIT", real)
    df = sweep.run_sweep({"t": [0.0, 1.0], "method": ["random"]}, pipeline=TINY, seeds=2, out=str(out),
                         chunk_size=2, progress=False)
    assert len(df) == 4 and len(pd.read_csv(out)) == 4


def test_sweep_rejects_bad_grid():
    with pytest.raises(ValueError, match="grid axes"):
        sweep.run_sweep({"temperature": [1]}, pipeline=TINY, progress=False)
    with pytest.raises(ValueError, match="t must be in"):
        sweep.run_sweep({"t": [1.5]}, pipeline=TINY, progress=False)
    with pytest.raises(ValueError, match="method"):
        sweep.run_sweep({"method": ["byol"]}, pipeline=TINY, progress=False)


def test_cli_help_and_quick(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep.main(["--help"])
    assert "--channel" in capsys.readouterr().out


def test_sweep_csv_stays_aligned_when_columns_differ(tmp_path):
    """Rows whose postprocess adds other columns are aligned, not appended under a wrong header."""
    out = tmp_path / "a.csv"

    def post(w, c, method, t, seed, row, arts):
        return {"extra_" + method: 1.0}

    sweep.run_sweep({"t": [0.0], "method": ["random", "oracle"]}, pipeline=TINY, seeds=1, out=str(out),
                    postprocess=post, progress=False)
    df = pd.read_csv(out)
    assert df.set_index("method").loc["random", "extra_random"] == 1.0
    assert np.isnan(df.set_index("method").loc["random", "extra_oracle"])
    assert df.set_index("method").loc["oracle", "extra_oracle"] == 1.0


def test_multi_method_downstream_equals_each_method_alone():
    """All methods in one program on shared data compute what each computes alone."""
    w = make_world(WorldConfig(t=0.4))
    key = jax.random.key(7)
    k_teacher, k_down = jax.random.split(key)
    teacher = pipeline.train_teacher(w, k_teacher, TINY)
    multi = jax.jit(pipeline.run_downstream_multi, static_argnames=("methods", "cfg"))(
        w, k_down, teacher, pipeline.METHODS, TINY, 0.4)
    assert set(multi) == set(pipeline.METHODS)
    for method in pipeline.METHODS:
        alone = pipeline.run_pipeline_jit(w, key, method, TINY, 0.4)
        for k in sweep.METRICS:
            a, b = float(alone[k]), float(multi[method][k])
            assert np.isnan(a) == np.isnan(b), (method, k)
            if not np.isnan(a):
                assert b == pytest.approx(a, rel=1e-5, abs=1e-6), (method, k)


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


@pytest.mark.parametrize("n_cells,chunk_size,n_dev", [(40, 16, 2), (40, 10, 2), (7, 64, 1), (5, 1, 2),
                                                       (1, 16, 2), (33, 8, 3)])
def test_chunk_plan_covers_every_cell_with_one_shape(n_cells, chunk_size, n_dev):
    n_chunks, size = sweep.chunk_plan(n_cells, chunk_size, n_dev)
    assert size % n_dev == 0 and size <= max(chunk_size, n_dev) + n_dev - 1
    assert n_chunks * size >= n_cells > (n_chunks - 1) * size
    assert n_chunks * size - n_cells < n_chunks * n_dev  # padding: under n_dev cells per chunk


def test_sweep_rejects_bad_devices_and_chunks():
    with pytest.raises(ValueError, match=r"n_devices must be an integer in \[1, "):
        sweep.run_sweep({"method": ["random"]}, pipeline=TINY, n_devices=len(jax.local_devices()) + 1,
                        progress=False)
    with pytest.raises(ValueError, match="chunk_size"):
        sweep.run_sweep({"method": ["random"]}, pipeline=TINY, chunk_size=0, progress=False)


_SHARDED_SCRIPT = """
import sys
from cmcd_theory.devices import use_host_cores
assert use_host_cores(2) == 2
import jax
from cmcd_theory import sweep, training
TINY = sweep.quick_pipeline().replace(
    M=256, m=256, n=64, n_test=512, n_pop=256, probe_steps=50,
    ssl=training.TrainConfig(steps=20, batch_size=64), distill=training.TrainConfig(steps=20, batch_size=64),
    supervised=training.TrainConfig(steps=20, batch_size=32), tuple_size=64)
assert len(jax.local_devices()) == 2
df = sweep.run_sweep({"t": [0.0, 0.5, 1.0], "method": ["cmd", "l2", "random"]}, pipeline=TINY,
                     seeds=[0, 1, 2], chunk_size=4, progress=False)
df.to_csv(sys.argv[1], index=False)
print(repr(TINY))
"""


def test_sweep_split_across_host_devices_matches_one_device(tmp_path):
    """Cells split across two XLA CPU devices (padded chunks) give the one-device numbers."""
    import os
    import subprocess
    import sys
    out = tmp_path / "two.csv"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT, str(out)], check=True, cwd=root,
                          env=env, timeout=300, capture_output=True, text=True)
    assert proc.stdout.strip() == repr(TINY)  # the script's sizes are this module's
    two = pd.read_csv(out)
    one = sweep.run_sweep({"t": [0.0, 0.5, 1.0], "method": ["cmd", "l2", "random"]}, pipeline=TINY,
                          seeds=[0, 1, 2], chunk_size=4, n_devices=1, progress=False)
    keys = ["method", "t", "seed"]
    assert len(two) == len(one) == 27
    a = one.sort_values(keys).reset_index(drop=True)
    b = two.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[keys], b[keys], check_dtype=False)
    for k in ("err_B", "err_A_head", "distill_train_loss", "student_norm"):
        np.testing.assert_allclose(b[k].values, a[k].values, rtol=1e-4, atol=2e-3, equal_nan=True)


def test_run_cell_is_one_sweep_row():
    """A single pipeline call returns the row a sweep writes: metrics and the world's ground truth."""
    from cmcd_theory import divergences
    wc = WorldConfig(channel="noise")
    row = pipeline.run_cell(make_world(wc), jax.random.key(2), "l2", TINY, t=0.5)
    assert all(isinstance(v, float) for v in row.values())
    assert row["tv_latent"] == divergences.tv_latent(wc.replace(t=0.5))
    assert row["bayes_B"] == divergences.bayes_error(wc.replace(t=0.5), "B").estimate
    assert row["bayes_A"] == divergences.bayes_error(wc, "A").estimate
    df = sweep.run_sweep({"channel": ["noise"], "t": [0.5], "method": ["l2"]}, pipeline=TINY, seeds=[2],
                         progress=False)
    for k in ("tv_latent", "bayes_A", "bayes_B", "sum_sq_inputs"):
        assert df[k].iloc[0] == row[k]
    assert df["err_B"].iloc[0] == pytest.approx(row["err_B"], abs=2e-3)


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

        df = sweep.run_sweep({"channel": ["test_pipeline_shift"], "t": [0.0, 0.5], "method": ["cmc"]},
                             pipeline=TINY, seeds=[0], progress=False, postprocess=post)
        assert len(df) == 2 and np.all(np.isfinite(df["err_B"])) and np.all(np.isfinite(df["b2_total"]))
        assert df["tv_latent"].iloc[1] == pytest.approx(2 * scipy.stats.norm.cdf(0.5) - 1, abs=1e-12)
        assert np.all(np.isnan(df["bayes_B"])) and np.all(df["pair_agreement"] == 1.0)
        assert all(r["wide"]["bounds_hold"] for r in rows)
    finally:
        worlds.unregister_channel("test_pipeline_shift")


def test_mispair_targets_use_the_target_labels():
    """On mispair at t = 1 every target label differs from the source's: the oracle probe on s_B
    (which follows y_B) still reaches about eps*_B, the teacher's head on source features with
    the source labels is then far from it; ground truth carries pair_agreement = 1 - t."""
    wc = WorldConfig(channel="mispair")
    row = pipeline.run_cell(make_world(wc), jax.random.key(3), "oracle", TINY, t=1.0)
    assert row["pair_agreement"] == 0.0 and row["tv_latent"] == 0.0
    assert row["bayes_B"] == row["bayes_A"]
    assert row["err_B"] < row["bayes_B"] + 0.08
    row = pipeline.run_cell(make_world(wc), jax.random.key(3), "cmc", TINY, t=1.0)
    assert row["err_A_head"] > 0.5  # the head learned y_B, which never equals y at t = 1
