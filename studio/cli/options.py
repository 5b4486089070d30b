"""Option parsing shared by several commands."""

from __future__ import annotations

from studio.errors import UsageError


def parse_vars(items: list[str] | None) -> dict[str, str]:
    """`--var era=1950s --var subject=bride` -> {"era": "1950s", "subject": "bride"}."""
    variables: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--var {item!r}: expected KEY=VALUE, e.g. --var era=1950s")
        variables[key.strip()] = value
    return variables


def parse_blend(text: str | None) -> list[float] | None:
    """`--blend 0.6,0.4` -> [0.6, 0.4]; the settings check the count against the --model list."""
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--blend {text!r}: expected comma-separated numbers, e.g. --blend 0.6,0.4") from None
