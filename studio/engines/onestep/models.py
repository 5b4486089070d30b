"""The one-step methods the `onestep` engine runs: one explicit, ordered list (the first is the default)."""

from __future__ import annotations

from studio.engines.onestep import osediff, s3diff
from studio.engines.onestep.method import MethodSpec
from studio.errors import UsageError

METHODS: tuple[MethodSpec, ...] = (osediff.SPEC, s3diff.SPEC)


def method_names() -> list[str]:
    return [spec.name for spec in METHODS]


def find_method(name: str) -> MethodSpec | None:
    """The method registered as `name`, or None (then `name` is a base model: folder, hub id, file)."""
    return next((spec for spec in METHODS if spec.name == name), None)


def method_for(name: str | None) -> MethodSpec:
    """The method --method-like names select; the default without one."""
    if name is None:
        return METHODS[0]
    found = find_method(name)
    if found is None:
        raise UsageError(f"one-step method {name!r}: expected one of {', '.join(method_names())}")
    return found
