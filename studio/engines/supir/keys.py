"""Where SUPIR's parts live in its official checkpoint, and how such a file is told from its key names alone
(light: read before any network is built, e.g. to send an --adapter file to the right engine)."""

from __future__ import annotations

from collections.abc import Collection

PREFIXES = {
    "adaptor": "model.control_model.",
    "connectors": "model.diffusion_model.project_modules.",
    "denoise_encoder": "first_stage_model.denoise_encoder.",
}
"""Where each part lives in the official checkpoint's state dict."""


def is_official_checkpoint(state: Collection[str]) -> bool:
    """A state dict (or its key names) holding SUPIR's adaptor and connectors."""
    return any(k.startswith(PREFIXES["adaptor"]) for k in state) and any(
        k.startswith(PREFIXES["connectors"]) for k in state
    )
