"""What every remote does for the shared job loop: connect, decide the engine, submit, poll, finish, cancel.

A provider is asked everything it can answer before the first upload (`connect`, `choose_engine`, `check`,
`upload_problem`), so `--dry-run` gets the same verdict as the run; the job loop (loop.py) then keeps up to
`in_flight` jobs on it at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from studio.io import Picture
from studio.remote.target import RemoteTarget
from studio.runner import Job, Plan
from studio.settings import Settings

FINISHED = ("done", "failed", "cancelled")


@dataclass
class Flight:
    """One job on the remote: the local job and picture, the remote's id, and what the provider keeps."""

    index: int
    job: Job
    picture: Picture
    remote_id: str
    started: float
    last: Any = None  # the provider's last status payload (a result may arrive with it)


@dataclass
class Status:
    state: str  # queued | running | done | failed | cancelled
    step: int = 0
    steps: int = 0
    error: str | None = None


@dataclass
class RemotePlan(Plan):
    """A plan whose jobs run on `provider`."""

    provider: Provider | None = None


class Provider(ABC):
    target: RemoteTarget
    in_flight: int = 1
    """Jobs on the remote at once (set by `connect` from what the remote says about itself)."""
    poll_floor_s: float = 0.2
    """The shortest wait between two status polls."""
    sends: str = "each input file and its settings"
    """What leaves this machine, for the privacy line."""

    @abstractmethod
    def connect(self) -> None:
        """Reachable, token accepted, and what the remote is (version, device, limits); else one line."""

    @abstractmethod
    def choose_engine(self, settings: Settings) -> str:
        """The engine that will run: the remote's answer to `--engine auto`."""

    @abstractmethod
    def check(self, plan: Plan) -> None:
        """The remote's verdict on the resolved settings (engine, weights, faces), before any upload."""

    def upload_problem(self, job: Job) -> str | None:
        """Why this file cannot be sent (over the remote's upload limit), or None."""
        return None

    @abstractmethod
    def submit(self, job: Job, picture: Picture, plan: Plan) -> str:
        """Upload one job; its id on the remote. A refusal for this file alone is a RemoteRefused."""

    @abstractmethod
    def poll(self, flight: Flight) -> Status: ...

    @abstractmethod
    def finish(self, flight: Flight, plan: Plan) -> tuple[Picture, dict[str, Any]]:
        """The finished job as this machine's output picture and its provenance."""

    @abstractmethod
    def cancel(self, flight: Flight) -> None:
        """Stop the job on the remote (Ctrl-C); quick, one try."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Where jobs ran, for provenance and `--dry-run`: provider, server or model, version, device."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
