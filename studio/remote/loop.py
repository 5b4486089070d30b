"""The job loop every remote shares: several jobs in flight, polling with backoff, results written here.

It mirrors the local batch (runner/batch.py): the same checks before a file is read, the same report, a bad
file fails alone. Ctrl-C cancels the jobs it started on the remote; a remote that stops answering marks the
files it held (and those not yet sent) failed in one line, and the report is still written.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from studio.engines.base import ProgressFn
from studio.errors import EnvironmentProblem, StudioError, UsageError
from studio.io import InputSet, check_output_path, read_image
from studio.messages import warn
from studio.remote.http import ServerGone
from studio.remote.output import write_output
from studio.remote.provider import FINISHED, Flight, RemotePlan, Status
from studio.runner import BatchReport, Job, JobResult, sidecar_path

JobStart = Callable[[Job, int, int], ProgressFn | None]
JobDone = Callable[[JobResult], None]
"""The display's callbacks, as the local batch takes them."""
POLL_CEILING_S = 2.0
POLL_GROWTH = 1.5


class Pause:
    """Waits between polls: short while jobs move, growing to POLL_CEILING_S while nothing changes."""

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self.current = floor

    def wait(self, changed: bool) -> None:
        self.current = self.floor if changed else min(POLL_CEILING_S, self.current * POLL_GROWTH)
        time.sleep(self.current)


def run_remote_batch(
    plan: RemotePlan,
    skip_existing: bool = False,
    overwrite: bool = False,
    on_job_start: JobStart | None = None,
    on_job_done: JobDone | None = None,
    debug: bool = False,
) -> BatchReport:
    """Run every job of a checked remote plan; returns the report a local batch would give."""
    provider = plan.provider
    assert provider is not None
    batch = _Batch(plan, skip_existing, overwrite, on_job_start, on_job_done)
    interrupted = False
    try:
        batch.run()
    except KeyboardInterrupt:
        interrupted = True
        batch.cancel_all()
        batch.mark_rest("interrupted", None)
    except ServerGone as exc:
        running, unsent = len(batch.flights), len(batch.queue)
        for flight in batch.flights.values():
            batch.results[flight.index] = _failed(flight.job, f"{exc}; its result never came back")
        batch.flights.clear()
        batch.mark_rest("failed", f"not sent: {exc}")
        warn(
            f"{exc}: {running} running and {unsent} unsent file(s) marked failed; "
            "run the same command with --skip-existing once it answers again"
        )
    except BaseException:
        batch.cancel_all()  # environment or usage problems stop the batch, as locally: leave nothing running
        raise
    finally:
        provider.close()
    results = [batch.results[index] for index in range(len(plan.jobs))]
    return BatchReport(results, plan.settings.to_dict(), dict(plan.settings.sources), interrupted=interrupted)


class _Batch:
    def __init__(
        self,
        plan: RemotePlan,
        skip_existing: bool,
        overwrite: bool,
        on_job_start: JobStart | None,
        on_job_done: JobDone | None,
    ) -> None:
        self.plan, self.provider = plan, plan.provider
        self.skip_existing, self.overwrite = skip_existing, overwrite
        self.on_job_start, self.on_job_done = on_job_start, on_job_done
        self.all_inputs = InputSet([job.source for job in plan.jobs])
        self.queue: deque[tuple[int, Job]] = deque(enumerate(plan.jobs))
        self.flights: dict[int, Flight] = {}
        self.results: dict[int, JobResult] = {}
        self.lead: int | None = None
        self.lead_progress: ProgressFn | None = None

    def run(self) -> None:
        pause = Pause(self.provider.poll_floor_s)
        while self.queue or self.flights:
            changed = self.fill()
            for index in sorted(self.flights):
                flight = self.flights[index]
                status = self.poll(flight)
                self.show(flight, status)
                if status.state in FINISHED:
                    result = self.land(flight, status)  # in flight until written: Ctrl-C meanwhile marks it
                    del self.flights[index]
                    self.record(index, result)
                    changed = True
            if self.flights:
                pause.wait(changed)

    def fill(self) -> bool:
        """Send files until the remote holds `in_flight` of them; files that need no upload finish here."""
        changed = False
        while self.queue and len(self.flights) < self.provider.in_flight:
            index, job = self.queue[0]  # left in the queue until launched: Ctrl-C during an upload marks it
            outcome = self.launch(index, job)
            self.queue.popleft()
            if isinstance(outcome, Flight):
                self.flights[index] = outcome
            else:
                self.record(index, outcome)
            changed = True
        return changed

    def launch(self, index: int, job: Job) -> Flight | JobResult:
        """The local checks of a local run (input, output path), then the upload."""
        started = time.perf_counter()
        try:
            if job.error:
                raise StudioError(job.error)
            if self.skip_existing and job.output.exists():
                return JobResult(str(job.source), str(job.output), "skipped", notes=["output exists (--skip-existing)"])
            check_output_path(job.output, self.all_inputs, self.overwrite)
            if self.plan.settings.sidecar:
                check_output_path(sidecar_path(job.output), self.all_inputs, self.overwrite)
            picture = read_image(job.source, self.plan.settings.max_pixels)
            remote_id = self.provider.submit(job, picture, self.plan)
        except (EnvironmentProblem, UsageError, ServerGone):
            raise
        except StudioError as exc:
            return _failed(job, str(exc), started)
        return Flight(index, job, picture, remote_id, started)

    def poll(self, flight: Flight) -> Status:
        """The job's state; a remote that lost the job (404 after a restart, expired) fails that file alone."""
        try:
            return self.provider.poll(flight)
        except (EnvironmentProblem, UsageError, ServerGone):
            raise
        except StudioError as exc:
            return Status("failed", error=str(exc))

    def land(self, flight: Flight, status: Status) -> JobResult:
        job = flight.job
        if status.state == "cancelled":
            return _failed(job, "cancelled on the remote", flight.started)
        if status.state == "failed":
            return _failed(job, status.error or "failed on the remote", flight.started)
        try:
            picture, provenance = self.provider.finish(flight, self.plan)
            return write_output(job.source, job.output, picture, provenance, self.plan, flight.started)
        except (EnvironmentProblem, UsageError, ServerGone):
            raise
        except StudioError as exc:
            return _failed(job, str(exc), flight.started)

    def show(self, flight: Flight, status: Status) -> None:
        """The image bar follows the oldest job in flight: its remote step/steps."""
        if self.on_job_start is None:
            return
        if self.lead != flight.index and flight.index == min(self.flights):
            self.lead = flight.index
            self.lead_progress = self.on_job_start(flight.job, flight.index, len(self.plan.jobs))
        if self.lead == flight.index and self.lead_progress and status.steps:
            self.lead_progress(status.step, status.steps)

    def record(self, index: int, result: JobResult) -> None:
        self.results[index] = result
        if self.on_job_done:
            self.on_job_done(result)

    def cancel_all(self) -> None:
        for flight in self.flights.values():
            try:
                self.provider.cancel(flight)
            except (StudioError, OSError):
                pass  # best effort: the remote may already be gone
        for flight in self.flights.values():
            self.results[flight.index] = JobResult(str(flight.job.source), str(flight.job.output), "interrupted")
        self.flights.clear()

    def mark_rest(self, status: str, error: str | None) -> None:
        for index, job in self.queue:
            self.results[index] = JobResult(
                str(job.source), str(job.output), status, error=error and f"{job.source}: {error}"
            )
        self.queue.clear()


def _failed(job: Job, error: str, started: float | None = None) -> JobResult:
    """A failed file, its error naming it once (a remote names it by its file name)."""
    if error.startswith(f"{job.source.name}: "):
        error = error[len(job.source.name) + 2 :]
    text = error if str(job.source) in error else f"{job.source}: {error}"
    seconds = round(time.perf_counter() - started, 3) if started else 0.0
    return JobResult(str(job.source), str(job.output), "failed", error=text, seconds=seconds)
