"""Long native calls that Ctrl-C can still stop at once.

A native call (one ncnn tile: seconds to minutes on a busy CPU) holds the main thread until it
returns, and Python raises KeyboardInterrupt only after it. Such a call that releases the GIL runs
here in a daemon worker while the main thread waits in short steps, so Ctrl-C is raised within
~0.1 s; the abandoned call ends with the process (see `abandoned`). A server's worker thread, which
gets no Ctrl-C, registers a check instead (`interrupt_check`): a cancelled job stops as promptly.

Every such call runs on one long-lived worker, in order, the model loads included. ncnn's OpenMP keeps
a thread team per calling thread; a second team (the model loaded on one thread, the tiles run on
another) counts more threads than cores, and libgomp then sleeps at barriers instead of spinning:
1.7 cores kept busy instead of 1.9 on an idle 2-core machine (3500 context switches against 220 for
one 128 px tile; benchmarks/bench_fast_e2e.py measures both arrangements).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

_abandoned: set[int] = set()  # ids of calls still running that Ctrl-C (or SIGTERM) gave up on
_lock = threading.Lock()
_checks = threading.local()  # this thread's interrupt check, if any
_background: weakref.WeakSet[threading.Thread] = weakref.WeakSet()  # in_background threads (finished ones drop out)


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


@dataclass(eq=False)
class _Call:
    """One call queued for the worker; `given_up`: its caller left before it started (then it never runs)."""

    call: Callable[..., Any]
    args: tuple[Any, ...]
    finished: threading.Event = field(default_factory=threading.Event)
    outcome: dict[str, Any] = field(default_factory=dict)
    started: bool = False
    given_up: bool = False


_queue: queue.SimpleQueue[_Call] = queue.SimpleQueue()
_worker: threading.Thread | None = None


def _work() -> None:
    while True:
        item = _queue.get()
        with _lock:
            if item.given_up:
                item.finished.set()
                continue
            item.started = True
        try:
            item.outcome["value"] = item.call(*item.args)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            item.outcome["error"] = exc
        finally:
            with _lock:
                _abandoned.discard(id(item))
                item.finished.set()


def _forget_worker() -> None:
    """In a forked child the worker thread does not exist (nor any call of it, nor a holder of the lock): the
    first call there starts a new one."""
    global _worker, _queue, _lock
    _worker, _queue, _lock = None, queue.SimpleQueue(), threading.Lock()
    _abandoned.clear()


os.register_at_fork(after_in_child=_forget_worker)


def _submit(item: _Call) -> None:
    global _worker
    with _lock:
        if _worker is None:
            _worker = threading.Thread(target=_work, name="studio-native", daemon=True)
            _worker.start()
    _queue.put(item)


def run_interruptible(call: Callable[..., T], *args: Any) -> T:
    """`call(*args)` on the native worker; exceptions are re-raised here, KeyboardInterrupt arrives at once.

    Calls made on the worker itself run in place (no deadlock on a nested call)."""
    if threading.current_thread() is _worker:
        return call(*args)
    item = _Call(call, args)
    _submit(item)
    check = getattr(_checks, "check", None)
    try:
        while not item.finished.wait(0.1):  # KeyboardInterrupt (or the check's error) is raised between waits
            if check is not None:
                check()
    except BaseException as exc:
        with _lock:
            if not item.finished.is_set():
                if not item.started:
                    item.given_up = True  # still queued: it will not run
                elif isinstance(exc, KeyboardInterrupt):
                    _abandoned.add(id(item))
        raise
    if "error" in item.outcome:
        raise item.outcome["error"]
    return item.outcome["value"]


def in_background(call: Callable[..., T], *args: Any) -> Future[T]:
    """`call(*args)` started in a thread, its result (or error) in the returned future: work that releases
    the GIL (numpy, OpenCV, onnxruntime) then overlaps the caller's.

    Not a daemon: the interpreter waits for it before it shuts down (a quality report or a face detection,
    under a second). A daemon still inside OpenCV's or onnxruntime's C++ at shutdown is ended by a forced
    unwind that their catch-all handlers swallow, and the process aborts ("FATAL: exception not rethrown",
    seen when Ctrl-C landed during the PNG write)."""
    future: Future[T] = Future()

    def work() -> None:
        try:
            future.set_result(call(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever asks for the result
            future.set_exception(exc)

    thread = threading.Thread(target=work, name="studio-background")
    with _lock:
        _background.add(thread)
    thread.start()
    return future


def wait_for_background() -> None:
    """Wait for every `in_background` call still running (the command line's last step before it exits)."""
    with _lock:
        threads = list(_background)
    for thread in threads:
        thread.join()


def abandoned() -> bool:
    """True while a native call still runs after Ctrl-C (or SIGTERM) gave up on it: the process must
    then leave with os._exit. A server's cancelled job is not counted: the server process goes on."""
    with _lock:
        return bool(_abandoned)
