"""The batch report: one result per job, written atomically as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.errors import UsageError
from studio.io import SUPPORTED_EXTENSIONS, InputSet, write_text_atomic
from studio.version import __version__


@dataclass
class JobResult:
    input: str
    output: str | None
    status: str  # ok | failed | skipped | interrupted
    error: str | None = None
    input_size: list[int] | None = None
    output_size: list[int] | None = None
    engine: str | None = None
    model: str | None = None
    seconds: float = 0.0
    faces: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class BatchReport:
    results: list[JobResult]
    settings: dict[str, Any]
    sources: dict[str, str]
    interrupted: bool = False  # Ctrl-C: the files after the last finished one are marked `interrupted`
    studio_version: str = __version__

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def succeeded(self) -> int:
        return self.count("ok")

    def summary(self) -> str:
        """One line for people: `3/4 succeeded, 1 skipped (output exists)`."""
        line = f"{self.succeeded}/{len(self.results)} succeeded"
        for status, label in (
            ("skipped", "skipped (output exists)"),
            ("failed", "failed"),
            ("interrupted", "not done (interrupted)"),
        ):
            if self.count(status):
                line += f", {self.count(status)} {label}"
        return line

    def to_json(self) -> str:
        from dataclasses import asdict

        data = {
            "studio_version": self.studio_version,
            "summary": {
                "total": len(self.results),
                "succeeded": self.succeeded,
                "failed": self.failed,
                "skipped": self.count("skipped"),
                "interrupted": self.count("interrupted"),
            },
            "settings": self.settings,
            "setting_sources": self.sources,
            "files": [asdict(r) for r in self.results],
        }
        return json.dumps(data, indent=2, default=str)


def check_report_path(path: Path, inputs: list[Path], overwrite: bool) -> None:
    """Before any work: the report must not land on an input, an image, a folder or a foreign file."""
    if path.suffix.lower() in SUPPORTED_EXTENSIONS or path in InputSet(inputs):
        raise UsageError(f"--report {path}: looks like an image or is an input; give a .json path")
    if path.is_dir():
        raise UsageError(f"--report {path}: is a folder; give a file name such as {path / 'report.json'}")
    if path.exists() and not overwrite and not _is_studio_report(path):
        raise UsageError(f"--report {path}: exists and is not a studio report; pass --overwrite or choose another path")


def _is_studio_report(path: Path) -> bool:
    try:
        return "studio_version" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        return False


def write_report(path: Path, report: BatchReport) -> None:
    """The JSON report, written atomically like every output."""
    write_text_atomic(path, report.to_json())
