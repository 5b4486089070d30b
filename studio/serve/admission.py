"""What a client may ask for: its settings, checked as `studio restore` checks its flags, before queueing.

A client names weights only by registry name, or by the file name of a file in one of the operator's
weights folders (`studio serve --weights-dir`): every setting declared `names_file` (model, face model,
adapter, caption model...) refuses paths, so no request can make the server read a file of its choosing.
Every check the CLI makes before the first pixel runs here too (`check_settings`), with the same message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from studio import weights
from studio.runner import check_settings
from studio.serve.config import ServeConfig
from studio.settings import Settings, setting_fields, spec_of

SERVER_SETTINGS = ("device", "max_pixels", "max_output_pixels")
"""Restore settings the server decides (serve --max-pixels and --max-output-pixels; one worker per GPU)."""
CLIENT_SETTINGS = ("remote", "remote_token")
"""Restore settings that say where a client sends its jobs: a server never forwards a job elsewhere."""

FILE_SETTINGS = frozenset(item.name for item in setting_fields() if spec_of(item).names_file)
"""Settings that may name a file: from clients, registry names (or files of the operator's weights folders)."""


def parse_settings(text: str | None, config: ServeConfig) -> dict[str, Any]:
    """The request's settings as a dict of known keys, file-naming values checked and resolved."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise HTTPException(422, f"settings: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise HTTPException(422, 'settings: expected a JSON object such as {"engine": "fast", "scale": 2}')
    known = Settings().to_dict()
    checked: dict[str, Any] = {}
    for key, given in value.items():
        name = key.replace("-", "_")
        if name not in known:
            raise HTTPException(
                422,
                f"settings: unknown key '{key}'; expected restore settings such as engine, "
                "scale, preset, prompt, strength, fidelity, faces, color_fix, seed",
            )
        if name in SERVER_SETTINGS:
            raise HTTPException(422, f"settings: '{key}' is set by the server, not per job")
        if name in CLIENT_SETTINGS:
            raise HTTPException(422, f"settings: '{key}' is the client's; a server runs its jobs itself")
        checked[name] = _weights_value(key, given, config.weights_dirs) if name in FILE_SETTINGS else given
    return checked


def _weights_value(key: str, given: Any, folders: tuple[Path, ...]) -> Any:
    """A registry name as given, or a file of an operator's weights folder as its path; else 422."""
    if given is None:
        return None
    if isinstance(given, list):
        return [_weights_value(key, member, folders) for member in given]
    if isinstance(given, str) and weights.find(given) is not None:
        return given
    if isinstance(given, str) and _plain_file_name(given):
        for folder in folders:
            candidate = folder / given
            if candidate.is_file():
                return str(candidate)
    where = " or the file name of a file in the server's weights folders" if folders else ""
    raise HTTPException(
        422,
        f"settings: '{key}' {json.dumps(given)[:80]}: give a registry name (GET /api/v1/weights){where}; "
        "the server does not accept paths from clients",
    )


def _plain_file_name(text: str) -> bool:
    """A bare file name: no folder part, nothing hidden, no way up."""
    return bool(text) and Path(text).name == text and "\\" not in text and not text.startswith(".") and "\0" not in text


def checked_settings(requested: dict[str, Any], config: ServeConfig) -> tuple[Settings, str]:
    """The CLI's own resolution and up-front checks, so the same verdicts and messages (UsageError
    becomes 422, EnvironmentProblem 503, in the app's StudioError handler)."""
    plan = check_settings(_server_values(requested, config), preset_dirs=list(config.preset_dirs))
    return plan.settings, plan.engine


def job_settings(requested: dict[str, Any], seed: int | None, config: ServeConfig) -> dict[str, Any]:
    """What the job stores: the request, its seed, and the server's budgets (enough to rebuild it exactly)."""
    return {**_server_values(requested, config), "seed": seed}


def _server_values(requested: dict[str, Any], config: ServeConfig) -> dict[str, Any]:
    return {**requested, "max_pixels": config.max_pixels, "max_output_pixels": config.max_output_pixels}
