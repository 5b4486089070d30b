"""run_interruptible: results and errors come back; a KeyboardInterrupt is not held up by the call."""

from __future__ import annotations

import _thread
import threading
import time

import pytest

from studio.native import abandoned, in_background, run_interruptible


def test_value_and_error_come_back_to_the_caller() -> None:
    assert run_interruptible(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        run_interruptible(lambda: 1 / 0)
    assert not abandoned()


def test_ctrl_c_interrupts_the_wait_not_after_the_call() -> None:
    release = threading.Event()
    threading.Timer(0.2, _thread.interrupt_main).start()  # what Ctrl-C does to the main thread
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_interruptible(release.wait, 30)  # a 30 s "native call" (Event.wait releases the GIL)
    assert time.perf_counter() - started < 2
    assert abandoned()
    release.set()
    deadline = time.perf_counter() + 5
    while abandoned() and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert not abandoned()


def test_a_server_cancel_is_not_an_abandonment_that_ends_the_process() -> None:
    """A cancelled job's check stops the wait, but the server process goes on: only Ctrl-C/SIGTERM count
    (they make the CLI leave with os._exit; a test process calling the CLI in-process must never do so)."""
    from studio.native import interrupt_check

    release = threading.Event()

    def cancelled() -> None:
        raise RuntimeError("job cancelled")

    with interrupt_check(cancelled), pytest.raises(RuntimeError):
        run_interruptible(release.wait, 30)
    assert not abandoned()
    release.set()


def test_in_background_hands_back_the_result_or_the_error() -> None:
    """The quality report's thread: a value arrives through the future, and so does an error."""
    assert in_background(sum, [1, 2, 3]).result(timeout=5) == 6
    failed = in_background(int, "not a number")
    with pytest.raises(ValueError):
        failed.result(timeout=5)


def test_every_call_runs_on_one_worker_thread() -> None:
    """The model load and the tiles share one thread, so ncnn's OpenMP keeps one team (see studio.native)."""
    first, second = run_interruptible(threading.get_ident), run_interruptible(threading.get_ident)
    assert first == second != threading.get_ident()
    assert run_interruptible(run_interruptible, threading.get_ident) == first  # nested: runs in place


def test_a_call_still_queued_when_its_caller_leaves_never_runs() -> None:
    """Ctrl-C while an earlier call holds the worker: the queued call is dropped, not run later."""
    from studio.native import interrupt_check

    release, ran = threading.Event(), threading.Event()
    busy = in_background(run_interruptible, release.wait, 30)  # holds the worker
    time.sleep(0.2)

    def cancelled() -> None:
        raise RuntimeError("job cancelled")

    with interrupt_check(cancelled), pytest.raises(RuntimeError):
        run_interruptible(ran.set)
    release.set()
    assert busy.result(timeout=5) is True
    assert run_interruptible(lambda: 1) == 1  # the worker went past the dropped call
    assert not ran.is_set()


def test_the_process_ends_cleanly_while_background_work_is_inside_opencv() -> None:
    """A daemon thread inside OpenCV's C++ when the interpreter shuts down aborts the process ("FATAL:
    exception not rethrown", exit 134: seen when Ctrl-C landed during the PNG write); in_background's threads
    are waited for instead, and the command line waits for them with signals ignored."""
    import subprocess
    import sys

    script = (
        "import cv2, numpy as np\n"
        "from studio.native import in_background\n"
        "image = np.random.rand(2048, 2048).astype(np.float32)\n"
        "in_background(lambda: [cv2.GaussianBlur(image, (11, 11), 1.5) for _ in range(40)])\n"
        "raise SystemExit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "FATAL" not in done.stderr


def test_wait_for_background_returns_once_the_work_is_done() -> None:
    from studio.native import wait_for_background

    release = threading.Event()
    future = in_background(release.wait, 30)
    threading.Timer(0.2, release.set).start()
    wait_for_background()
    assert future.done() and future.result() is True
