"""Every command line fails on an invalid value the same way: one line on stderr naming the
parameter and what it allows, exit status 2, no traceback (run as a user runs them)."""

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
    certify = ["-m", "cmcd_theory.certify"]
    sweep = ["-m", "cmcd_theory.sweep", "--quick", "--no-progress", "--out",
             os.path.join(tmp, "s.csv")]
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
        "experiment seeds": (["-m", "experiments.error_vs_distance", "--seeds", "0"], "--seeds"),
        "reproduce only": (["-m", "experiments.reproduce", "--only", "nope"], "--only"),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """All cases at once (each is a fresh interpreter that stops at argument checking; the
    sweep cases cover every invalid value of the acceptance list once: a sweep interpreter
    costs seconds)."""
    tmp = str(tmp_path_factory.mktemp("cli"))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = {name: (subprocess.Popen([sys.executable, *args], cwd=tmp, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE), param)
             for name, (args, param) in _cases(tmp).items()}
    out = {}
    for name, (p, param) in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[name] = (p.returncode, stdout, stderr, param)
    return out


@pytest.mark.parametrize("case", list(_cases("/tmp")))
def test_invalid_value_is_one_line_and_exit_2(runs, case):
    rc, stdout, stderr, param = runs[case]
    assert rc == 2, (case, rc, stderr)
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert ": error: " in lines[0] and param in lines[0], lines[0]
