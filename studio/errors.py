"""Domain errors. Each class maps to one CLI exit code; only the CLI edge turns them into messages.

Exit codes: 0 ok, 1 some inputs failed, 2 usage or configuration error, 3 environment problem
(missing weights, missing GPU, missing optional package).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

_OS_PROBLEMS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENAMETOOLONG: "name too long",
    errno.ELOOP: "symbolic link loop",
    errno.ENOENT: "no such file",
    errno.EIO: "input/output error (failing disk or lost network share)",
}
"""OSErrors that say something about the machine, in the words a person reads at a glance."""


@dataclass(frozen=True)
class Availability:
    """Whether an engine or model can run on this machine now, and if not (or only slowly), why: the cheap
    answer given before any loading, which an EngineUnavailable error later confirms."""

    ok: bool
    reason: str = ""


class StudioError(Exception):
    """Base of every user-facing failure: the message is one line saying what, where, and what to do."""

    exit_code = 1


class InputError(StudioError):
    """One input file cannot be used (missing, corrupt, too small...). A batch goes on past it."""

    exit_code = 1


class PixelBudgetExceeded(InputError):
    """An input has more pixels than the budget (--max-pixels): a decompression bomb or a huge scan."""


class OutputError(StudioError):
    """An output cannot be written (exists already, would overwrite an input, folder not writable)."""

    exit_code = 1


class UsageError(StudioError):
    """A flag, config file or preset is wrong. Nothing was processed."""

    exit_code = 2


class ConfigError(UsageError):
    """A TOML file (config, preset, weights registry) is malformed; the message names file and key."""


class EnvironmentProblem(StudioError):
    """Something the machine lacks: weights, a GPU, an optional package, network for a download."""

    exit_code = 3


class EngineUnavailable(StudioError):
    """An engine cannot run here and now (weights missing, out of memory): the runner may fall back.

    Engines raise a subclass; the runner falls back on any of them when a fallback engine is set.
    """

    exit_code = 3


class WeightsMissing(EnvironmentProblem, EngineUnavailable):
    """Model weights are not present locally and cannot be fetched."""


class DeviceUnavailable(EnvironmentProblem):
    """The requested device (cuda, mps) is not available."""


class OutOfMemory(EngineUnavailable):
    """Raised by engines when even the smallest tile does not fit; the runner may fall back."""


class ModelLoadError(UsageError):
    """Weights are present but cannot be loaded (corrupt file, wrong architecture, bad config): not a
    reason to fall back silently; the message names the source and the cause is chained."""


def os_problem(exc: OSError) -> str | None:
    """What an OSError says about the machine in words ("disk full"), or None when it is no such problem."""
    return _OS_PROBLEMS.get(exc.errno) if exc.errno is not None else None
