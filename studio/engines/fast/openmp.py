"""How ncnn's OpenMP threads wait, chosen from how busy the machine is before ncnn starts.

libgomp spins for a while at every barrier before it sleeps. On idle cores that keeps both threads of a
tile busy (the bare ncnn figure); on a machine other processes keep busy, the spinning thread burns the
slice its partner needs: a 96 px tile beside four busy processes on 2 cores took 13-14 s and 8-9 CPU
seconds spinning, against 8-9.5 s and ~4 CPU seconds with libgomp's short spin (GOMP_SPINCOUNT=1000, the
count libgomp itself falls back to when it manages more threads than cores). The choice is made once, before
`import ncnn` starts libgomp, which reads its environment then; a user's own OMP_WAIT_POLICY or
GOMP_SPINCOUNT is left alone.
"""

from __future__ import annotations

import os
import resource
import sys
import time

BUSY_SHARE = 0.25
"""Other processes using more than this share of the machine's CPU make it busy (half a core of 2)."""
SHORT_SPIN = "1000"
"""libgomp's throttled spin count (iterations before a waiting thread sleeps); the default is 300000."""
MIN_WINDOW_S = 0.1
"""The shortest look at the machine (10 ms clock ticks: a share to within ~5% on 2 cores)."""


def machine_cpu_seconds() -> float | None:
    """CPU seconds all processes used since boot (every /proc/stat state but idle and iowait); None off Linux."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(value) for value in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(fields) < 8:
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


_START = (time.monotonic(), machine_cpu_seconds(), _own_cpu_seconds())


def others_cpu_share(since: tuple[float, float | None, float] = _START) -> float | None:
    """The share of the machine's cores other processes kept busy since `since` (by default: since studio
    started); None where /proc/stat is not there. Waits until MIN_WINDOW_S have passed."""
    started, machine_then, own_then = since
    if machine_then is None:
        return None
    time.sleep(max(0.0, started + MIN_WINDOW_S - time.monotonic()))
    machine_now, own_now = machine_cpu_seconds(), _own_cpu_seconds()
    if machine_now is None:
        return None
    window = (time.monotonic() - started) * (os.cpu_count() or 1)
    return max(0.0, (machine_now - machine_then) - (own_now - own_then)) / window


def choose_spinning() -> str | None:
    """Before the first `import ncnn`: on a busy machine, libgomp's short spin (returned, and set in the
    environment); None when the default stays (idle machine, a user's own setting, ncnn already started)."""
    if "ncnn" in sys.modules or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return None
    share = others_cpu_share()
    if share is None or share <= BUSY_SHARE:
        return None
    os.environ["GOMP_SPINCOUNT"] = SHORT_SPIN
    return SHORT_SPIN
