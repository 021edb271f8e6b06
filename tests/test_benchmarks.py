"""The whole-process timer every benchmark uses (benchmarks/whole_process.py)."""

import sys

import pytest

from benchmarks.whole_process import host_speed, run_timed


def test_run_timed_reports_a_loud_command_without_blocking_on_its_output():
    """A child that writes more than a pipe holds (1 MB) still finishes and is timed."""
    r = run_timed([sys.executable, "-c", "print('x' * 1_000_000)"], {})
    assert set(r) == {"wall_s", "cpu_s", "peak_mib", "load", "host_ns_per_normal"}
    assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["peak_mib"] > 1
    assert 0 < r["host_ns_per_normal"] < 1000


def test_run_timed_raises_with_the_tail_of_stderr():
    cmd = [sys.executable, "-c", "import sys; sys.exit('broken on purpose')"]
    with pytest.raises(RuntimeError, match="broken on purpose"):
        run_timed(cmd, {})


def test_host_speed_is_nanoseconds_per_normal():
    assert 0 < host_speed(n=1 << 16, repeats=2) < 1000
