"""Long native calls that Ctrl-C can still stop at once.

A native call (one ncnn tile: seconds to minutes on a busy CPU) holds the main thread until it
returns, and Python raises KeyboardInterrupt only after it. Such a call that releases the GIL runs
here in a daemon worker while the main thread waits in short steps, so Ctrl-C is raised within
~0.1 s; the abandoned worker ends with the process (see `abandoned`). A server's worker thread, which
gets no Ctrl-C, registers a check instead (`interrupt_check`): a cancelled job stops as promptly.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_abandoned: set[int] = set()  # ids of workers still running a call that Ctrl-C (or SIGTERM) gave up on
_lock = threading.Lock()
_checks = threading.local()  # this thread's interrupt check, if any


@contextlib.contextmanager
def interrupt_check(check: Callable[[], None]) -> Iterator[None]:
    """While inside, a native call on this thread runs `check` at every short wait; what it raises (a
    cancelled job) abandons the call at once, as Ctrl-C does. The abandoned call ends its tile unseen."""
    previous = getattr(_checks, "check", None)
    _checks.check = check
    try:
        yield
    finally:
        _checks.check = previous


def run_interruptible(call: Callable[..., T], *args: Any) -> T:
    """`call(*args)` in a daemon worker; exceptions are re-raised here, KeyboardInterrupt arrives at once."""
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def work() -> None:
        try:
            outcome["value"] = call(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread below
            outcome["error"] = exc
        finally:
            with _lock:
                _abandoned.discard(threading.get_ident())
            finished.set()

    worker = threading.Thread(target=work, name="studio-native", daemon=True)
    worker.start()
    check = getattr(_checks, "check", None)
    try:
        while not finished.wait(0.1):  # short waits: KeyboardInterrupt (or the check's error) is raised between them
            if check is not None:
                check()
    except KeyboardInterrupt:
        with _lock:
            if not finished.is_set():
                _abandoned.add(worker.ident or 0)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def in_background(call: Callable[..., T], *args: Any) -> Future[T]:
    """`call(*args)` started in a daemon thread, its result (or error) in the returned future: work that
    releases the GIL (numpy, OpenCV, zlib) then overlaps the caller's. Daemon, so Ctrl-C never waits for it."""
    future: Future[T] = Future()

    def work() -> None:
        try:
            future.set_result(call(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever asks for the result
            future.set_exception(exc)

    threading.Thread(target=work, name="studio-background", daemon=True).start()
    return future


def abandoned() -> bool:
    """True while a worker's native call still runs after Ctrl-C (or SIGTERM) gave up on it: the process must
    then leave with os._exit. A server's cancelled job is not counted: the server process goes on."""
    with _lock:
        return bool(_abandoned)
