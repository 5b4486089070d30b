"""How ncnn's OpenMP threads wait: libgomp's default spinning on an idle machine, its short spin on a busy one."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from studio.engines.fast import openmp


def _reading() -> tuple[float, float | None, float]:
    return time.monotonic(), openmp.machine_cpu_seconds(), openmp._own_cpu_seconds()


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc/stat (Linux)")
def test_busy_cores_are_seen_as_other_processes_cpu() -> None:
    """One spinning process per core for ~0.6 s: most of the machine was busy, and none of it was ours."""
    hog = "import time\nend = time.monotonic() + 0.6\nwhile time.monotonic() < end: pass"
    since = _reading()
    hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(os.cpu_count() or 1)]
    for process in hogs:
        process.wait()
    assert openmp.others_cpu_share(since) > 0.5


def test_a_busy_machine_gets_the_short_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delitem(sys.modules, "ncnn", raising=False)
    monkeypatch.setattr(openmp, "others_cpu_share", lambda: 0.9)
    assert openmp.choose_spinning() == openmp.SHORT_SPIN
    assert os.environ["GOMP_SPINCOUNT"] == openmp.SHORT_SPIN


@pytest.mark.parametrize(
    "share, environment, ncnn_started",
    [(0.05, {}, False), (None, {}, False), (0.9, {"OMP_WAIT_POLICY": "passive"}, False), (0.9, {}, True)],
)
def test_the_default_stays(monkeypatch: pytest.MonkeyPatch, share, environment, ncnn_started) -> None:
    """An idle machine, no /proc/stat, a user's own OpenMP setting, or libgomp already started: nothing set."""
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    if ncnn_started:
        monkeypatch.setitem(sys.modules, "ncnn", object())
    else:
        monkeypatch.delitem(sys.modules, "ncnn", raising=False)
    monkeypatch.setattr(openmp, "others_cpu_share", lambda: share)
    assert openmp.choose_spinning() is None
    assert "GOMP_SPINCOUNT" not in os.environ
