"""Sweeps: planning, one chunk, the files on disk (resume, crash, refusal), the CLI, a Dask
cluster."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from cmcd_theory.learn import training
from cmcd_theory.sweeps import cli as sweep_cli
from cmcd_theory.sweeps import storage as sweep_io
from cmcd_theory.sweeps import sweep
from cmcd_theory.worlds import WorldConfig

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
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ["method", "t", "seed"]
GRID = {"t": [0.0, 1.0], "method": ["l2", "random"]}
# Every XLA compile costs seconds: the tests share three programs -- GRID's two methods in chunks
# of 2 cells (CHUNK), "random" alone on 1 cell (a resumed or interrupted chunk), and the
# --quick pipeline's "random" on 1 cell (the command line test) -- besides the Dask workers'.
CHUNK = 2


def _sorted(df):
    return df.sort_values(KEYS).reset_index(drop=True)


def _assert_same_rows(a, b, exact=False):
    """Same cells, one row each, same numbers (to float32 batching unless ``exact``)."""
    a, b = _sorted(a), _sorted(b)
    assert not a.duplicated(KEYS).any() and not b.duplicated(KEYS).any()
    pd.testing.assert_frame_equal(a[KEYS], b[KEYS], check_dtype=False)
    for k in ("tv_latent", "bayes_A", "bayes_B"):
        np.testing.assert_array_equal(a[k].values, b[k].values)
    for k in ("err_B", "err_A_head", "distill_train_loss", "student_norm"):
        if exact:
            np.testing.assert_array_equal(a[k].values, b[k].values)
        else:
            np.testing.assert_allclose(
                a[k].values, b[k].values, rtol=1e-4, atol=2e-3, equal_nan=True
            )


# ---- planning ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_cells,chunk_size,min_chunks",
    [(40, 16, 1), (40, 10, 4), (7, 64, 1), (5, 1, 1), (1, 16, 4), (33, 8, 3), (3, 16, 8)],
)
def test_chunk_plan_covers_every_cell_with_one_shape(n_cells, chunk_size, min_chunks):
    n_chunks, size = sweep.chunk_plan(n_cells, chunk_size, min_chunks)
    assert 1 <= size <= chunk_size
    assert n_chunks * size >= n_cells > (n_chunks - 1) * size
    assert n_chunks >= min(min_chunks, n_cells)
    assert n_chunks * size - n_cells < n_chunks  # padding: under one cell per chunk


def test_plan_chunks_every_missing_row_once_one_shape_per_program():
    g = sweep._normalise_grid(
        {"t": [0.0, 0.5, 1.0], "method": ["cmd", "random"], "n": [64, 128]}, WorldConfig(), TINY, 3
    )
    chunks = sweep.plan_chunks(g, set(), chunk_size=4)
    rows = [(n, m, t, s) for c in chunks for n, m in c.wanted for t, s in c.cells]
    assert len(rows) == len(set(rows)) == 2 * 2 * 3 * 3
    # one program for both label counts and both methods, one shape
    assert all(
        "n" not in dict(c.cell) and c.ns == (64, 128) and c.methods == ("cmd", "random")
        for c in chunks
    )
    assert len({c.size for c in chunks}) == 1 and sum(c.n_rows for c in chunks) == 36
    assert all(c.n_teachers == min(c.size, 3) for c in chunks)  # cmd needs the teacher
    # resumed: cmd done for (t=0, seed 0) at n=64 -> that cell runs the other three rows alone
    done = {sweep._cell_id({**dict(chunks[0].cell), "n": 64, "method": "cmd", "t": 0.0, "seed": 0})}
    again = sweep.plan_chunks(g, done, chunk_size=4)
    assert sum(c.n_rows for c in again) == 35
    alone = [c for c in again if len(c.wanted) == 3]
    assert len(alone) == 1 and alone[0].cells == ((0.0, 0),) and alone[0].n_teachers == 1
    assert alone[0].wanted == ((64, "random"), (128, "cmd"), (128, "random"))
    # a resumed cell that needs no teacher trains none
    done |= {
        sweep._cell_id({**dict(chunks[0].cell), "n": n, "method": "cmd", "t": 0.5, "seed": 1})
        for n in (64, 128)
    }
    rnd = [c for c in sweep.plan_chunks(g, done, chunk_size=4) if c.methods == ("random",)]
    assert len(rnd) == 1 and rnd[0].cells == ((0.5, 1),) and rnd[0].n_teachers == 0
    # 9 cells in at least 4 chunks of one shape: 3 chunks of 3
    assert len(sweep.plan_chunks(g, set(), chunk_size=16, min_chunks=4)) == 3


def test_run_chunk_is_pure_and_passes_every_scalar_through():
    g = sweep._normalise_grid(GRID, WorldConfig(), TINY, 2)
    chunks = sweep.plan_chunks(g, set(), chunk_size=CHUNK)
    assert [len(c.cells) for c in chunks] == [2, 2]
    # teachers of these seeds cached by another test file may have been trained in another
    # vmapped batch (the same numbers up to float32 rounding): start both runs without them
    sweep._TEACHERS.clear()
    a = [r for c in chunks for r in sweep.run_chunk(WorldConfig(), TINY, c)]
    sweep._TEACHERS.clear()
    b = [r for c in chunks for r in sweep.run_chunk(WorldConfig(), TINY, c)]
    assert len(a) == 8
    pd.testing.assert_frame_equal(
        pd.DataFrame(a), pd.DataFrame(b)
    )  # a retrained teacher: same rows
    for col in (
        "channel",
        "t",
        "seed",
        "method",
        "tv_latent",
        "bayes_A",
        "bayes_B",
        *sweep.METRICS,
    ):
        assert col in a[0]


# ---- the files: resume, extend, refusal, crash ---------------------------------------------


def test_sweep_writes_config_resumes_and_extends(tmp_path):
    out = tmp_path / "s.csv"
    grid = GRID
    df1 = sweep.run_sweep(
        grid, pipeline=TINY, seeds=2, out=str(out), progress=False, chunk_size=CHUNK
    )
    assert len(df1) == 8 and df1.attrs["sweep"]["computed"] == 8
    cfg = json.loads((tmp_path / "s.json").read_text())
    assert (
        cfg["complete"] is True and cfg["grid"]["t"] == [0.0, 1.0] and cfg["grid"]["seed"] == [0, 1]
    )
    # the same grid again, and a part of it: nothing computed
    again = sweep.run_sweep(grid, pipeline=TINY, seeds=2, out=str(out), progress=False)
    assert again.attrs["sweep"]["computed"] == 0 and len(again) == 8
    part = sweep.run_sweep(
        {"t": [1.0], "method": ["l2"]}, pipeline=TINY, seeds=[1], out=str(out), progress=False
    )
    assert len(part) == 1 and part.attrs["sweep"]["computed"] == 0
    cfg = json.loads((tmp_path / "s.json").read_text())
    assert cfg["complete"] is True and cfg["grid"]["t"] == [
        0.0,
        1.0,
    ]  # still the whole grid's record
    # a larger grid is refused without extend ...
    big = {"t": [0.0, 0.5, 1.0], "method": ["l2", "random"]}
    with pytest.raises(sweep_io.SweepConfigError, match="another grid.*--extend"):
        sweep.run_sweep(big, pipeline=TINY, seeds=2, out=str(out), progress=False)
    # ... and computes only the new cells with it, leaving the old rows untouched
    df2 = sweep.run_sweep(
        big, pipeline=TINY, seeds=2, out=str(out), progress=False, extend=True, chunk_size=CHUNK
    )
    assert len(df2) == 12 and len(pd.read_csv(out)) == 12 and df2.attrs["sweep"]["computed"] == 4
    assert json.loads((tmp_path / "s.json").read_text())["grid"]["t"] == [0.0, 0.5, 1.0]
    old = _sorted(df1)
    kept = _sorted(df2[df2.t != 0.5])
    pd.testing.assert_frame_equal(old, kept[list(old.columns)], check_dtype=False)
    # a grid that neither contains nor is contained, or another configuration: refused
    with pytest.raises(sweep_io.SweepConfigError, match="another grid"):
        sweep.run_sweep(
            {"t": [0.25], "method": ["l2"]},
            pipeline=TINY,
            seeds=3,
            out=str(out),
            progress=False,
            extend=True,
        )
    with pytest.raises(
        sweep_io.SweepConfigError, match="another pipeline configuration .*differs in n"
    ):
        sweep.run_sweep(grid, pipeline=TINY.replace(n=65), seeds=2, out=str(out), progress=False)
    with pytest.raises(sweep_io.SweepConfigError, match="another world configuration"):
        sweep.run_sweep(
            grid,
            world=WorldConfig(num_classes=3),
            pipeline=TINY,
            seeds=2,
            out=str(out),
            progress=False,
        )
    assert len(pd.read_csv(out)) == 12  # refusals touch nothing
    fresh = sweep.run_sweep(
        grid, pipeline=TINY, seeds=2, out=str(out), progress=False, overwrite=True, chunk_size=CHUNK
    )
    assert fresh.attrs["sweep"]["computed"] == 8 and len(pd.read_csv(out)) == 8


def test_truncated_csv_partial_row_is_recomputed_not_kept(tmp_path):
    out = tmp_path / "cut.csv"
    grid = GRID
    full = sweep.run_sweep(
        grid, pipeline=TINY, seeds=2, out=str(out), progress=False, chunk_size=CHUNK
    )
    text = out.read_text()
    lines = text.splitlines(keepends=True)
    last = lines[-1]
    out.write_text("".join(lines[:-1]) + last[: len(last) // 2])  # a crash mid-line
    with pytest.warns(UserWarning, match=r"dropped a partial last row .*kept 7 complete row"):
        df = sweep.run_sweep(grid, pipeline=TINY, seeds=2, out=str(out), progress=False)
    assert df.attrs["sweep"]["resumed"] == 7 and df.attrs["sweep"]["computed"] == 1
    on_disk = pd.read_csv(out)  # parses: no half row glued to a new one
    assert len(on_disk) == 8 and not on_disk.duplicated(KEYS).any()
    _assert_same_rows(on_disk, full)
    # the recomputed row is the cut one, with its numbers
    cut = dict(zip(lines[0].strip().split(","), last.strip().split(",")))
    row = on_disk[
        (on_disk.method == cut["method"])
        & (on_disk.t == float(cut["t"]))
        & (on_disk.seed == int(cut["seed"]))
    ]
    assert len(row) == 1 and row["err_B"].iloc[0] == pytest.approx(float(cut["err_B"]), abs=2e-3)


def test_read_rows_drops_a_cut_line_and_rejects_corruption_inside(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("a,b\n1,2\n3,4\n5,")
    with pytest.warns(UserWarning, match="kept 2 complete row"):
        rows, n_bytes = sweep_io.read_rows(str(p))
    assert len(rows) == 2 and n_bytes == len("a,b\n1,2\n3,4\n")
    p.write_text("a,b\n1,2\n3,4\n5\n")  # a full line with a field missing (cut, then newline)
    with pytest.warns(UserWarning, match="kept 2 complete row"):
        rows, _ = sweep_io.read_rows(str(p))
    assert len(rows) == 2
    p.write_text("a,b\n1\n3,4\n")
    with pytest.raises(sweep_io.SweepFileError, match="line 2"):
        sweep_io.read_rows(str(p))
    p.write_text("a,")
    with pytest.warns(UserWarning, match="kept 0 rows"):
        assert sweep_io.read_rows(str(p)) == (None, 0)


def test_sweep_killed_midway_keeps_finished_chunks(tmp_path, monkeypatch):
    out = tmp_path / "k.csv"
    calls = {"n": 0}
    real = sweep._downstream_program

    def flaky_program(*a, **k):
        program = real(*a, **k)

        def run(*args):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
            return program(*args)

        return run

    monkeypatch.setattr(sweep, "_downstream_program", flaky_program)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(
            {"t": [0.0, 1.0], "method": ["random"]},
            pipeline=TINY,
            seeds=2,
            out=str(out),
            chunk_size=1,
            progress=False,
            threads=1,  # one chunk after the other: the second one is interrupted
        )
    assert len(pd.read_csv(out)) == 1  # the first chunk (one cell) survived
    assert json.loads((tmp_path / "k.json").read_text())["complete"] is False
    monkeypatch.setattr(sweep, "_downstream_program", real)
    df = sweep.run_sweep(
        {"t": [0.0, 1.0], "method": ["random"]},
        pipeline=TINY,
        seeds=2,
        out=str(out),
        chunk_size=1,
        progress=False,
    )
    assert len(df) == 4 and len(pd.read_csv(out)) == 4 and df.attrs["sweep"]["computed"] == 3


def test_sweep_csv_stays_aligned_when_columns_differ(tmp_path):
    """Rows whose postprocess adds other columns are aligned, not appended under a wrong header."""
    out = tmp_path / "a.csv"

    def post(w, c, method, t, seed, row, arts):
        return {"extra_" + method: 1.0}

    sweep.run_sweep(
        {"t": [0.0], "method": ["l2", "random"]},
        pipeline=TINY,
        seeds=2,
        out=str(out),
        postprocess=post,
        progress=False,
    )
    df = pd.read_csv(out)
    rnd, l2 = df[df.method == "random"], df[df.method == "l2"]
    assert len(rnd) == len(l2) == 2
    assert (rnd["extra_random"] == 1.0).all() and rnd["extra_l2"].isna().all()
    assert (l2["extra_l2"] == 1.0).all() and l2["extra_random"].isna().all()


def test_sweep_rejects_bad_arguments():
    with pytest.raises(ValueError, match="grid axes"):
        sweep.run_sweep({"temperature": [1]}, pipeline=TINY, progress=False)
    with pytest.raises(ValueError, match="t must be in"):
        sweep.run_sweep({"t": [1.5]}, pipeline=TINY, progress=False)
    with pytest.raises(ValueError, match="method"):
        sweep.run_sweep({"method": ["byol"]}, pipeline=TINY, progress=False)
    with pytest.raises(ValueError, match="chunk_size"):
        sweep.run_sweep({"method": ["random"]}, pipeline=TINY, chunk_size=0, progress=False)
    with pytest.raises(ValueError, match="cluster must be"):
        sweep.run_sweep({"method": ["random"]}, pipeline=TINY, cluster="cloud", progress=False)


# ---- command line --------------------------------------------------------------------------


def test_cli_help_shows_defaults_columns_and_resume(capsys):
    with pytest.raises(SystemExit) as e:
        sweep_cli.main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for s in ("--channel", "--scheduler", "(default: none)", "err_B", "--extend", "--overwrite"):
        assert s in text


@pytest.mark.parametrize(
    "argv,param",
    [
        (["--t", "0,1.5"], "--t"),
        (["--channel", "fog"], "--channel"),
        (["--methods", ""], "--methods"),
        (["--seeds", "0"], "--seeds"),
        (["--scheduler", "cloud"], "--scheduler"),
    ],
)
def test_cli_bad_value_is_one_line_and_status_2(argv, param, capsys):
    with pytest.raises(SystemExit) as e:
        sweep_cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cmcd-sweep: error: ") and param in err


def test_cli_refuses_another_grid_at_the_same_out(tmp_path):
    """A second run with another grid at the same --out: one line on stderr, exit status 2."""
    out = tmp_path / "cli.csv"
    sweep.run_sweep(
        {"t": [0.0], "method": ["random"]},
        pipeline=sweep.quick_pipeline(),
        seeds=1,
        out=str(out),
        progress=False,
    )  # what `--quick --t 0 --methods random --seeds 1` runs
    before = out.read_text()
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cmcd_theory.sweeps",
            "--quick",
            "--t",
            "0.5",
            "--methods",
            "random",
            "--seeds",
            "1",
            "--scheduler",
            "none",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("cmcd-sweep: error: --out: ") and "another grid" in proc.stderr
    assert out.read_text() == before


# ---- on a Dask cluster ---------------------------------------------------------------------


def test_setup_jax_sets_one_cache_for_every_process(monkeypatch, tmp_path):
    from cmcd_theory.sweeps import devices

    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path))
    env = devices.jax_env()
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path)
    assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    assert devices.jax_env("/x")["JAX_COMPILATION_CACHE_DIR"] == "/x"
    # the CPU compile level is added where no level is named, an explicit one is kept
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
    assert devices.jax_env()["XLA_FLAGS"] == (
        "--xla_cpu_multi_thread_eigen=true --xla_backend_optimization_level=1"
    )
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    assert devices.jax_env()["XLA_FLAGS"] == "--xla_backend_optimization_level=0"


@pytest.mark.slow
def test_dask_sweep_survives_a_killed_worker_and_matches_in_process(tmp_path):
    """A 2-worker LocalCluster loses a worker mid-sweep: its chunk runs again, and the CSV holds
    every cell exactly once, row for row the in-process sweep's."""
    from cmcd_theory.sweeps import cluster

    out = tmp_path / "d.csv"
    grid = {"t": [0.0, 0.5, 1.0], "method": GRID["method"]}
    killed = {}

    with cluster.local_cluster(2) as client:

        def kill_when_a_chunk_is_in():
            deadline = time.time() + 240
            while time.time() < deadline and not killed:
                if out.exists() and out.stat().st_size > 0:
                    busy = [w for w, keys in client.processing().items() if keys]
                    if busy:
                        pids = client.run(os.getpid, workers=busy[:1])
                        pid = pids[busy[0]]
                        os.kill(pid, signal.SIGKILL)
                        killed["pid"] = pid
                        return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_when_a_chunk_is_in, daemon=True)
        killer.start()
        df = sweep.run_sweep(
            grid, pipeline=TINY, seeds=3, out=str(out), chunk_size=1, progress=False, cluster=client
        )
        killer.join(timeout=5)
    assert killed, "no worker was killed mid-sweep"
    assert df.attrs["sweep"]["retried_chunks"] >= 1
    on_disk = pd.read_csv(out)
    assert len(on_disk) == 18 and not on_disk.duplicated(KEYS).any()
    here = sweep.run_sweep(grid, pipeline=TINY, seeds=3, chunk_size=CHUNK, progress=False)
    _assert_same_rows(on_disk, here)


def test_sweep_threads_give_the_same_rows_in_plan_order():
    """Chunks on two threads (independent programs, no collectives) give the rows of one
    thread, bit for bit and in the same order, whatever order the chunks finish in."""
    grid = {"t": [0.0, 0.5, 1.0], "method": ["cmc", "supervised"]}
    one = sweep.run_sweep(grid, pipeline=TINY, seeds=2, chunk_size=2, progress=False, threads=1)
    two = sweep.run_sweep(grid, pipeline=TINY, seeds=2, chunk_size=2, progress=False, threads=2)
    assert one.attrs["sweep"]["chunks"] == two.attrs["sweep"]["chunks"] == 3
    pd.testing.assert_frame_equal(one, two, check_exact=True)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_sweep_refuses_bad_threads(threads):
    with pytest.raises(ValueError, match="threads must be None or an integer >= 1"):
        sweep.run_sweep({"t": [0.0]}, pipeline=TINY, seeds=1, threads=threads, progress=False)


def test_precompile_compiles_each_shape_once_and_the_run_reuses_it():
    """precompile (what the driver does for an embedded LocalCluster while its workers start)
    compiles every downstream shape of a plan once; running the chunks compiles none again."""
    import jax

    from cmcd_theory.sweeps.grid import _normalise_grid, plan_chunks

    grid = {"t": [0.0, 0.5, 1.0], "method": ["cmc", "random"]}
    wc = WorldConfig()
    chunks = plan_chunks(_normalise_grid(grid, wc, TINY, 2), set(), chunk_size=2)
    assert len(chunks) == 3 and len({c.size for c in chunks}) == 1
    sweep._PROGRAMS.clear()
    assert sweep.precompile(wc, TINY, chunks, artifacts=False) == 1  # run_chunk: no postprocess
    compiled = []

    def listen(event, duration, fun_name="", **_):
        if event == "/jax/core/compile/backend_compile_duration" and "downstream" in fun_name:
            compiled.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        for chunk in chunks:
            sweep.run_chunk(wc, TINY, chunk)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiled == []


def test_prepare_lowers_each_shape_once_and_the_run_compiles_that_lowering():
    """prepare (what each embedded-cluster worker does while the driver compiles) lowers every
    downstream shape of its chunks once and keeps it; the chunk then compiles that lowering
    (no second trace) and gives the rows of a run without it."""
    from cmcd_theory.sweeps.grid import _normalise_grid, plan_chunks

    grid = {"t": [0.0, 0.5, 1.0], "method": ["cmc", "random"]}
    wc = WorldConfig()
    chunks = plan_chunks(_normalise_grid(grid, wc, TINY, 2), set(), chunk_size=2)
    sweep._PROGRAMS.clear()
    sweep._LOWERED.clear()
    want = [r for c in chunks for r in sweep.run_chunk(wc, TINY, c)]
    sweep._PROGRAMS.clear()
    assert sweep.prepare(wc, TINY, chunks, artifacts=False) == 1  # one shape
    assert sweep.prepare(wc, TINY, chunks, artifacts=False) == 0  # kept: not lowered again
    assert len(sweep._LOWERED) == 1
    got = [r for c in chunks for r in sweep.run_chunk(wc, TINY, c)]
    assert sweep._LOWERED == {}  # the run compiled the kept lowering
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]), k
