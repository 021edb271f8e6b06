"""Every command line fails on an invalid value the same way: one line on stderr naming the
parameter and what it allows, exit status 2, no traceback.

One case per command line runs as a user runs it (a fresh interpreter: the process boundary,
exit status and stderr as a shell sees them); the other cases check the same argument
validation by calling the same ``main(argv)`` in this process (a fresh interpreter costs
seconds of imports each)."""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cases(tmp):
    bad = os.path.join(tmp, "junk.npz")
    with open(bad, "w") as f:
        f.write("not an npz archive")
    partial = os.path.join(tmp, "partial.npz")
    np.savez(partial, train_features=np.eye(3))
    wrong = os.path.join(tmp, "wrong.npz")
    np.savez(wrong, train_features=np.eye(3), train_labels=np.array([0, 1]))
    good = os.path.join(tmp, "good.npz")
    y = np.arange(40) % 4
    z = np.eye(4)[y] + 0.1
    np.savez(good, train_features=z, train_labels=y)
    stray = os.path.join(tmp, "stray.npz")
    np.savez(stray, train_features=z, train_labels=np.where(np.arange(40) == 5, 7, y))
    certify = ["-m", "cmcd_theory.certify"]
    sweep = [
        "-m",
        "cmcd_theory.sweeps",
        "--quick",
        "--no-progress",
        "--out",
        os.path.join(tmp, "s.csv"),
    ]
    return {
        "bad channel": (sweep + ["--channel", "nope"], "--channel"),
        "t above 1": (sweep + ["--t", "0.5,1.5"], "--t"),
        "empty t": (sweep + ["--t", ""], "--t"),
        "seeds 0": (sweep + ["--seeds", "0"], "--seeds"),
        "unknown method": (sweep + ["--methods", "cmc,nope"], "--methods"),
        "empty methods": (sweep + ["--methods", ""], "--methods"),
        "unreadable npz": (certify + [bad], "junk.npz"),
        "missing npz": (certify + [os.path.join(tmp, "absent.npz")], "absent.npz"),
        "missing array": (certify + [partial], "train_labels"),
        "malformed array": (certify + [wrong], "train_labels"),
        "certify delta": (certify + [partial, "--delta", "1"], "--delta"),
        "certify out is a directory": (certify + [good, "--out", tmp], "--out"),
        "certify stray label": (certify + [stray], "num_classes"),
        "certify weight samples": (certify + [good, "--weight-samples", "0"], "--weight-samples"),
        "sweep repeated t": (sweep + ["--t", "0,0"], "--t"),
        "sweep out is a directory": (sweep + ["--out", tmp], "--out"),
        "sweep no scheduler there": (sweep + ["--scheduler", "tcp://127.0.0.1:1"], "--scheduler"),
        "experiment seeds": (["-m", "experiments.error_vs_distance", "--seeds", "0"], "--seeds"),
        "reproduce only": (["-m", "experiments.reproduce", "--only", "nope"], "--only"),
    }


# one case per command line (module) runs in a fresh interpreter
SUBPROCESS = ("t above 1", "unreadable npz", "experiment seeds", "reproduce only")


def _in_process_main(module):
    """The ``main(argv)`` that ``python -m module`` calls (only for modules whose ``__main__``
    does nothing else before it)."""
    if module == "cmcd_theory.sweeps":
        from cmcd_theory.sweeps import cli

        return cli.main
    if module == "cmcd_theory.certify":
        from cmcd_theory import certify

        return certify.main
    raise AssertionError(f"{module}: run this case in a subprocess")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The subprocess cases at once (each a fresh interpreter that stops at argument checking),
    and the folder holding the cases' files."""
    tmp = str(tmp_path_factory.mktemp("cli"))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = {
        name: (
            subprocess.Popen(
                [sys.executable, *args],
                cwd=tmp,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ),
            param,
        )
        for name, (args, param) in _cases(tmp).items()
        if name in SUBPROCESS
    }
    out = {}
    for name, (p, param) in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[name] = (p.returncode, stdout, stderr, param)
    return tmp, out


def test_one_subprocess_case_per_command_line():
    modules = {args[args.index("-m") + 1] for args, _ in _cases("/tmp").values()}
    assert modules == {_cases("/tmp")[c][0][1] for c in SUBPROCESS}


@pytest.mark.parametrize("case", list(_cases("/tmp")))
def test_invalid_value_is_one_line_and_exit_2(runs, case, capsys):
    tmp, done = runs
    if case in done:
        rc, stdout, stderr, param = done[case]
    else:
        args, param = _cases(tmp)[case]
        main = _in_process_main(args[1])
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:  # any other exception fails the test (a traceback)
            main(args[2:])
        rc, stderr = e.value.code, capsys.readouterr().err
    assert rc == 2, (case, rc, stderr)
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert ": error: " in lines[0] and param in lines[0], lines[0]
