"""Every edge a user touches (issue 23): one-line errors before any work, clean interrupts,
grids as sets, no silent label-count inference, the certify table's columns, B3's Monte Carlo
at scale with the same numbers, files with the user's umask.

The command-line cases run in fresh interpreters: one driver process runs every "Why" case
of the issue through the commands' ``main`` (so the interpreter's imports are paid once), one
process is interrupted mid-sweep and one resumes it."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from cmcd_theory import certify_features
from cmcd_theory import validation as V
from cmcd_theory.bounds import pac_bayes, pac_bayes_mc
from cmcd_theory.certify import Certificate, build_parser, load_npz
from cmcd_theory.certify.certificate import value_text
from cmcd_theory.sweeps import cli as sweep_cli
from cmcd_theory.sweeps import storage, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _unit_features(n, K=4, d=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    z = 2.0 * np.eye(K, d)[y] + 0.7 * rng.standard_normal((n, d))
    return z / np.linalg.norm(z, axis=1, keepdims=True), y


# ---- the "Why" cases, each as a user runs it ---------------------------------------------------

_DRIVER = textwrap.dedent("""
    import contextlib, io, json, os, sys
    from cmcd_theory import validation as V
    from cmcd_theory.certify import main as certify_main
    from cmcd_theory.sweeps.cli import main as sweep_main
    tmp, cases = sys.argv[1], json.loads(sys.argv[2])
    os.chdir(tmp)
    writable, out = V._writable, {}

    def files():
        return {os.path.join(d, f) for d, _, fs in os.walk(tmp) for f in fs}

    for name, (cmd, argv, unwritable) in cases.items():
        # a read-only path: chmod for a user, the check told so for root (root writes anyway)
        V._writable = (lambda p, _u=set(unwritable): os.path.abspath(p) not in _u and writable(p))
        before, err = files(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = (certify_main if cmd == "certify" else sweep_main)(argv) or 0
            except SystemExit as e:
                code = e.code
        out[name] = [code, err.getvalue(), sorted(files() - before)]
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def why(tmp_path_factory):
    """Every "Why" case of issue 23 run by one fresh interpreter: ``{name: (exit status,
    stderr, files created)}``, and the cases' folder."""
    tmp = tmp_path_factory.mktemp("why")
    z, y = _unit_features(400)
    np.savez(tmp / "run.npz", train_features=z, train_labels=y)
    np.savez(tmp / "k4.npz", train_features=z, train_labels=y, num_classes=4)
    y7 = y.copy()
    y7[5] = 7  # one stray label: K would silently become 8
    np.savez(tmp / "stray.npz", train_features=z, train_labels=y7)
    np.savez(tmp / "no_test_features.npz", train_features=z, train_labels=y, test_labels=y[:50])
    np.savez(tmp / "no_columns.npz", train_features=np.zeros((400, 0)), train_labels=y)
    np.savez(tmp / "half.npz", train_features=z.astype(np.float16), train_labels=y)
    (tmp / "dir").mkdir()
    (tmp / "ro").mkdir()
    (tmp / "ro.csv").write_text("x\n")
    for p in (tmp / "ro", tmp / "ro.csv"):
        p.chmod(0o555 if p.is_dir() else 0o444)
    ro_dir, ro_csv = str(tmp / "ro"), str(tmp / "ro.csv")
    sweep_args = ["--quick", "--no-progress", "--scheduler", "none", "--methods", "random"]
    cases = {
        "certify --out DIR": ("certify", ["run.npz", "--out", "dir"], []),
        "certify --out in a read-only folder": (
            "certify",
            ["run.npz", "--out", "ro/r.csv"],
            [ro_dir],
        ),
        "sweep --out DIR": ("sweep", sweep_args + ["--out", "dir"], []),
        "sweep --out in a read-only folder": (
            "sweep",
            sweep_args + ["--out", "ro/s.csv"],
            [ro_dir],
        ),
        "sweep --overwrite on a read-only file": (
            "sweep",
            sweep_args + ["--out", "ro.csv", "--overwrite"],
            [ro_csv],
        ),
        "sweep --scheduler nothing listening": (
            "sweep",
            sweep_args[:2]
            + ["--methods", "random", "--scheduler", "tcp://127.0.0.1:1", "--out", "s.csv"],
            [],
        ),
        "sweep --t 0,0": ("sweep", sweep_args + ["--t", "0,0", "--out", "s.csv"], []),
        "sweep --M 64,64": ("sweep", sweep_args + ["--M", "64,64", "--out", "s.csv"], []),
        "certify one stray label": ("certify", ["stray.npz"], []),
        "certify test_labels alone": ("certify", ["no_test_features.npz"], []),
        "certify (400, 0) features": ("certify", ["no_columns.npz"], []),
        "certify --weight-samples unbounded": (
            "certify",
            ["run.npz", "--weight-samples", "1000000000"],
            [],
        ),
        "certify --num-classes disagrees": ("certify", ["k4.npz", "--num-classes", "5"], []),
        "certify float16 features": (
            "certify",
            ["half.npz", "--weight-samples", "10", "--out", "half.csv"],
            [],
        ),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(tmp), json.dumps(cases)],
        cwd=tmp,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "case, param",
    [
        ("certify --out DIR", "--out"),
        ("certify --out in a read-only folder", "--out"),
        ("sweep --out DIR", "--out"),
        ("sweep --out in a read-only folder", "--out"),
        ("sweep --overwrite on a read-only file", "--out"),
        ("sweep --scheduler nothing listening", "--scheduler"),
        ("sweep --t 0,0", "--t"),
        ("sweep --M 64,64", "--M"),
        ("certify one stray label", "num_classes"),
        ("certify test_labels alone", "test_features"),
        ("certify (400, 0) features", "train_features"),
        ("certify --weight-samples unbounded", "--weight-samples"),
        ("certify --num-classes disagrees", "--num-classes"),
    ],
)
def test_why_case_is_one_line_exit_2_and_writes_nothing(why, case, param):
    _, done = why
    code, err, created = done[case]
    assert code == 2, (case, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert ": error: " in err and param in err, err
    assert created == [], created  # no half-written file, no JSON of a sweep that never ran


def test_why_valid_request_works(why):
    """float16-normalised features are inside the unit ball up to float16 rounding."""
    tmp, done = why
    code, err, created = done["certify float16 features"]
    assert code == 0, err
    table = pd.read_csv(tmp / "half.csv")
    assert table.set_index("bound").loc["B2_data_free", "applicable"]
    assert stat.S_IMODE(os.stat(tmp / "half.csv").st_mode) == V.file_mode()


# ---- interrupts: SIGINT mid-sweep, then resume -------------------------------------------------


def test_sigint_keeps_finished_chunks_in_one_line_and_the_rerun_resumes(tmp_path):
    out = tmp_path / "i.csv"
    cmd = [
        sys.executable,
        "-m",
        "cmcd_theory.sweeps",
        "--quick",
        "--methods",
        "random",
        "--t",
        "0,0.25,0.5,0.75,1",
        "--seeds",
        "8",
        "--chunk-size",
        "1",
        "--scheduler",
        "none",
        "--no-progress",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=ENV,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 2:  # a finished chunk is on disk
            break
        time.sleep(0.02)
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: the whole process group
    _, err = proc.communicate(timeout=30)
    assert time.time() - t0 < 2.0
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cmcd-sweep: interrupted: "), err
    kept = int(lines[0].split("interrupted: ")[1].split()[0])
    rows = pd.read_csv(out)
    assert kept == len(rows) and 1 <= kept < 40  # exactly the finished chunks (1 row each)
    assert not rows.duplicated(["t", "seed"]).any()
    assert json.loads((tmp_path / "i.json").read_text())["complete"] is False
    again = subprocess.run(cmd, cwd=ROOT, env=ENV, text=True, capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr
    done = pd.read_csv(out)
    assert len(done) == 40 and not done.duplicated(["t", "seed"]).any()
    pd.testing.assert_frame_equal(done.iloc[:kept], rows)  # the kept rows, untouched
    assert json.loads((tmp_path / "i.json").read_text())["complete"] is True
    assert stat.S_IMODE(os.stat(out).st_mode) == V.file_mode()


# ---- grids are sets, the same way in the API and the command line -------------------------------


@pytest.mark.parametrize(
    "grid, seeds, match",
    [
        ({"t": [0.0, 0.0]}, 1, r"t must not repeat a value"),
        ({"t": [0.1, 0.1 + 1e-12]}, 1, r"t must not repeat a value"),
        ({"method": ["cmc", "cmc"]}, 1, r"method must not repeat a value"),
        ({"M": [64, 64]}, 1, r"M must not repeat a value"),
        ({"tau": [0.5, 0.5]}, 1, r"tau must not repeat a value"),
        ({"t": []}, 1, r"t must be a non-empty sequence"),
        ({"t": [0.0]}, [], r"seeds must be a non-empty sequence"),
        ({"t": [0.0]}, [0, 0], r"seeds must not repeat a value"),
        ({"t": [0.0]}, 0, r"seeds must be an integer >= 1"),
        ({"n": [0]}, 1, r"n must be an integer >= 1"),
    ],
)
def test_run_sweep_refuses_what_the_command_line_refuses(tmp_path, grid, seeds, match):
    with pytest.raises(ValueError, match=match):
        sweep.run_sweep(grid, seeds=seeds, out=str(tmp_path / "g.csv"), progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, axis, values",
    [
        (["--t", "0,0"], "t", [0.0, 0.0]),
        (["--M", "64,64"], "M", [64, 64]),
        (["--methods", "cmc,cmc"], "method", ["cmc", "cmc"]),
    ],
)
def test_command_line_says_what_run_sweep_says(argv, axis, values, capsys):
    """The same check, the same words: ``argument --t: <msg>`` on the command line,
    ``t <msg>`` from :func:`run_sweep`."""
    with pytest.raises(SystemExit) as e:
        sweep_cli.main(argv + ["--no-progress", "--out", "unused.csv"])
    err = capsys.readouterr().err
    with pytest.raises(ValueError) as api:
        sweep.run_sweep({axis: values}, seeds=1, progress=False)
    msg = str(api.value)
    assert e.value.code == 2 and msg.startswith(f"{axis} must not repeat a value")
    assert err == f"cmcd-sweep: error: argument {argv[0]}: {msg[len(axis) + 1 :]}\n"


def test_unreachable_scheduler_fails_before_any_file(tmp_path):
    with pytest.raises(
        ValueError, match=r"cluster: no Dask scheduler answers at tcp://127.0.0.1:1"
    ):
        sweep.run_sweep(
            {"method": ["random"]},
            seeds=1,
            out=str(tmp_path / "s.csv"),
            cluster="tcp://127.0.0.1:1",
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []


def test_scheduler_address_accepts_a_listening_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        addr = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        assert V.scheduler_address("--scheduler", addr) == addr
    assert V.scheduler_address("--scheduler", "inproc://x") == "inproc://x"  # left to Dask


def test_output_file_checks(tmp_path, monkeypatch):
    assert V.output_file("out", tmp_path / "new" / "deeper" / "x.csv").endswith("x.csv")
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="cannot create the folder .* is a file"):
        V.output_file("out", tmp_path / "f" / "x.csv")
    with pytest.raises(ValueError, match="is a directory"):
        V.output_file("--out", tmp_path)
    monkeypatch.setattr(V, "_writable", lambda p: False)
    with pytest.raises(ValueError, match="cannot write into the folder"):
        V.output_file("--out", tmp_path / "x.csv")


# ---- files take the user's umask ----------------------------------------------------------------


def test_sweep_files_take_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        config = {"grid": {}, "world": {}, "pipeline": {}}
        store = storage.open_store(str(tmp_path / "u.csv"), config)
        assert list(tmp_path.iterdir()) == []  # nothing is written before the first rows
        store.append([{"a": 1}])
        store.append([{"a": 2}])
        for name in ("u.csv", "u.json"):
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o640
        assert V.file_mode() == 0o640
    finally:
        os.umask(old)
    assert storage.count_rows(str(tmp_path / "u.csv")) == 2


# ---- no silent inference; messages that name the right array ------------------------------------


def test_label_count_must_be_stated_when_the_data_disagree():
    z, y = _unit_features(400)
    y7 = y.copy()
    y7[5] = 7
    with pytest.raises(ValueError, match=r"no sample of class\(es\) 4, 5, 6 .* num_classes"):
        certify_features(z, y7, n_weight_samples=10)
    with pytest.raises(ValueError, match=r"train_labels give K = 4 .* test_labels give 3"):
        certify_features(
            z, y, test_features=z[:30], test_labels=np.minimum(y[:30], 2), n_weight_samples=10
        )
    cert = certify_features(
        z,
        y7,
        num_classes=8,
        n_weight_samples=10,
        not_applicable={"B3": "skipped", "probe": "skipped"},
    )
    assert {r["K"] for r in cert.rows if r["applicable"]} == {8}


# ---- the certify table and the npz route -----------------------------------------------------


def test_table_says_how_values_are_computed_and_clips_lower_bounds():
    z, y = _unit_features(600)
    zs, _ = _unit_features(600, seed=1)  # the same law: the certified TV lower bound is < 0
    cert = certify_features(
        z[:300],
        y[:300],
        test_features=z[300:],
        test_labels=y[300:],
        pair_source=zs,
        pair_target=z,
        n_weight_samples=20,
    )
    by = {r["bound"]: r for r in cert.rows}
    tv = by["TV_lower"]
    assert tv["value_raw"] < 0 and tv["value"] == 0.0 and cert.wide["tv_features_lower"] == 0.0
    assert value_text(tv).startswith("max(0, ")
    b3 = by["B3"]
    assert value_text(b3).startswith("2 kl^-1(")
    for name in ("B2_sample", "B2_data_free"):
        r = by[name]
        assert r["empirical"] + r["complexity"] + r["confidence"] == pytest.approx(r["value"])
    text = cert.format()
    assert "value = ..." in text and "empirical + complexity + confidence" in text


def test_help_lists_every_row_and_the_normalised_arrays():
    text = build_parser().format_help()
    rows = [
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
    for name in rows + ["stage2n_", "stage1n_", "--num-classes", "130", "143"]:
        assert name in text, name


def test_npz_route_gives_b4n_and_b5n(tmp_path):
    rng = np.random.default_rng(0)
    z, y = _unit_features(200)
    d, k, n = 6, 3, 128
    W = rng.standard_normal((k, d))
    x = rng.standard_normal((n, d))
    teach = x @ W.T + 0.3 * rng.standard_normal((n, k))
    teach /= np.linalg.norm(teach, axis=1, keepdims=True)
    N = 4
    np.savez(
        tmp_path / "run.npz",
        train_features=z,
        train_labels=y,
        stage2n_x=x,
        stage2n_z=teach,
        stage2n_W=W,
        stage2n_W_prior=W + 0.1,
        stage2n_bank=teach,
        stage2n_tau=0.5,
        stage2n_tuple_size=N,
        stage1n_x=x,
        stage1n_x_pos=x + 0.1 * rng.standard_normal((n, d)),
        stage1n_W=W,
        stage1n_W_prior=W + 0.1,
        stage1n_candidates=rng.standard_normal((n * (N - 1), d)),
        stage1n_tau=0.5,
        stage1n_tuple_size=N,
        stage1n_ssl_train_loss=1.0,
    )
    kw = load_npz(tmp_path / "run.npz")
    cert = certify_features(
        **kw, n_weight_samples=10, not_applicable={"B3": "skipped", "probe": "skipped"}
    )
    by = {r["bound"]: r for r in cert.rows}
    for name in ("B4n", "B5n"):
        assert by[name]["applicable"] and np.isfinite(by[name]["value"]), by[name]["reason"]
    assert cert.wide["ssl_train_loss"] == 1.0
    np.savez(
        tmp_path / "short.npz",
        train_features=z,
        train_labels=y,
        stage1n_x=x,
        stage1n_x_pos=x,
        stage1n_W=W,
        stage1n_W_prior=W,
        stage1n_tau=0.5,
        stage1n_tuple_size=N,
        stage1n_candidates=x[:10],
    )
    with pytest.raises(ValueError, match="stage1n_candidates has 10 rows; B5n uses"):
        load_npz(tmp_path / "short.npz")
    np.savez(tmp_path / "unknown.npz", train_features=z, train_labels=y, stage2n_q=x)
    with pytest.raises(ValueError, match="unknown array 'stage2n_q'"):
        load_npz(tmp_path / "unknown.npz")


# ---- B3's Monte Carlo at scale: the same draws, the same counts ------------------------------


def _reference_errors(z, y, w, sigma_q, seed, n_draws, chunk):
    """B3's Monte Carlo as it was first written (one (draws, n, K) array per chunk, every
    sigma in turn): the numbers the counting must reproduce exactly."""
    rng = np.random.default_rng(seed)
    K = w.shape[0]
    base = z @ w.T
    norms = np.linalg.norm(z, axis=1)[None, :, None]
    idx = np.asarray(y)[None, :, None]
    is_label = np.zeros(base.shape, bool)
    np.put_along_axis(is_label, idx[0], True, axis=-1)
    errors = np.zeros(len(sigma_q))
    done = 0
    while done < n_draws:
        c = min(chunk, n_draws - done)
        noise = norms * rng.standard_normal((c, z.shape[0], K))
        for g, s in enumerate(sigma_q):
            scores = noise * s + base
            at = np.broadcast_to(idx, (c, *idx.shape[1:]))
            correct = np.take_along_axis(scores, at, -1)[..., 0]
            scores[np.broadcast_to(is_label, scores.shape)] = -np.inf
            errors[g] += np.count_nonzero(correct - scores.max(axis=-1) <= 0)
        done += c
    return errors / (n_draws * z.shape[0])


def test_monte_carlo_counts_equal_the_reference_draw_for_draw(monkeypatch):
    """5,000 points, 4 classes, B3's 11 scales: the default pieces, small pieces with the
    prefetching thread, and a wide recount margin (many (point, draw, s) recounted by the
    reference arithmetic) all give the reference's numbers (and ties, a scale 0, wrong points)."""
    rng = np.random.default_rng(3)
    n, K = 5000, 4
    z = rng.standard_normal((n, 3))
    z[:, -1] = 1.0
    y = rng.integers(0, K, n)
    w = 2.0 * rng.standard_normal((K, 3))
    w[1, :] = w[0, :]  # exact ties between two classes
    scale = np.linalg.norm(w) / np.sqrt(w.size)
    sig = np.r_[0.0, np.asarray(pac_bayes.SIGMA_Q_RELATIVE_GRID) * scale]
    want = _reference_errors(z, y, w, sig, 11, 30, 7)
    default = (pac_bayes_mc.PIECE, pac_bayes_mc.TOL)
    for piece, tol in (default, (4096, pac_bayes_mc.TOL), (4096, 0.05)):
        monkeypatch.setattr(pac_bayes_mc, "PIECE", piece)
        monkeypatch.setattr(pac_bayes_mc, "TOL", tol)
        pac_bayes._MC_MEMO.clear()
        got = pac_bayes._stochastic_errors(z, y, w, sig, 11, 30, 7)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        assert np.array_equal(got, want)


def test_certify_numbers_do_not_depend_on_the_pieces(monkeypatch):
    """certify_features on 5,000 rows: the table is the same with B3's draws in one piece per
    run or in many small ones generated by a second thread (to 1e-12; in fact equal)."""
    z, y = _unit_features(5000, d=8, seed=4)
    kw = dict(test_features=z[:500], test_labels=y[:500], n_weight_samples=40)
    pac_bayes._MC_MEMO.clear()
    a = certify_features(z, y, **kw).frame()
    monkeypatch.setattr(pac_bayes_mc, "PIECE", 2048)
    pac_bayes._MC_MEMO.clear()
    b = certify_features(z, y, **kw).frame()
    num = [c for c in a.columns if a[c].dtype.kind == "f"]
    np.testing.assert_allclose(a[num].values, b[num].values, rtol=0, atol=1e-12)
    assert isinstance(Certificate, type)


# ---- a write that fails, a SIGTERM ---------------------------------------------------------------


def test_a_failed_write_is_one_line(tmp_path, monkeypatch, capsys):
    """A full disk at the end of a certification (or mid-sweep) is one line naming --out."""
    from cmcd_theory.certify import main

    def full(path, text):
        raise OSError(28, "No space left on device", path)

    z, y = _unit_features(200)
    np.savez(tmp_path / "run.npz", train_features=z, train_labels=y)
    monkeypatch.setattr(V, "write_atomic", full)
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "run.npz"), "--out", str(tmp_path / "r.csv"), "--weight-samples", "5"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("cmcd-certify: error: --out: cannot write") and "No space left" in err
    store = storage.open_store(str(tmp_path / "s.csv"), {"grid": {}, "world": {}, "pipeline": {}})
    with pytest.raises(storage.SweepWriteError, match="cannot write .*No space left"):
        store.append([{"a": 1}])


_TERM = textwrap.dedent("""
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("v", sys.argv[1])
    V = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(V)

    def work():
        print("ready", flush=True)
        while True:
            time.sleep(0.01)

    V.interruptible(work, "prog", lambda: "3 rows kept in out.csv")
""")


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_ends_the_work_with_one_line_and_128_plus_the_signal(sig, status):
    proc = subprocess.Popen(
        [sys.executable, "-c", _TERM, V.__file__],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.time()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=10)
    assert time.time() - t0 < 1.0
    assert proc.returncode == status and err == "prog: interrupted: 3 rows kept in out.csv\n"


# ---- the compile cache of cmcd-certify, the probe certificate's thread -------------------------


def test_certify_reads_its_probe_fits_back_from_the_compile_cache(tmp_path):
    """A second cmcd-certify call on data of the same shape compiles nothing new (every
    program it runs is read back from $JAX_COMPILATION_CACHE_DIR), and the table is the same
    as with the cache off."""
    z, y = _unit_features(300, d=8, seed=5)
    np.savez(tmp_path / "run.npz", train_features=z, train_labels=y)
    cache = tmp_path / "cache"

    def run(out, cache_dir):
        cmd = [sys.executable, "-m", "cmcd_theory.certify", str(tmp_path / "run.npz")]
        cmd += ["--out", str(tmp_path / out), "--weight-samples", "5", "--no-progress"]
        env = {**ENV, "JAX_COMPILATION_CACHE_DIR": cache_dir}
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
        return (tmp_path / out).read_bytes()

    def entries():
        return sorted(p.name for p in cache.iterdir() if p.name.endswith("-cache"))

    first = run("a.csv", str(cache))
    compiled = entries()
    assert any(name.startswith("jit__fit_probe") for name in compiled)
    second = run("b.csv", str(cache))
    assert entries() == compiled  # nothing compiled the second time
    off = run("c.csv", "")  # cache off
    assert first == second == off


def test_an_error_of_the_probe_certificate_thread_reaches_the_caller(monkeypatch):
    """The probe certificate's rows are computed on a thread (beside B3's draws); what it
    raises is raised by certify_features."""
    from cmcd_theory.certify import features

    def broken(*args, **kwargs):
        raise ValueError("probe certificate: broken on purpose")

    monkeypatch.setattr(features, "probe_certificate_rows", broken)
    z, y = _unit_features(200)
    with pytest.raises(ValueError, match="broken on purpose"):
        certify_features(z, y, n_weight_samples=5)
