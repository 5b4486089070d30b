"""studio's settings as a Replicate model's inputs, read from the model version's OpenAPI schema.

Mapped where the model has the input: scale, prompt, negative prompt, seed, steps, guidance, face
enhancement. What studio applies here after the download (colour fix, fidelity, alpha, output format,
print resolution) needs no input. Any other setting the user chose is refused up front in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio.errors import UsageError
from studio.remote.output import LOCAL_SETTINGS
from studio.settings import Settings, layer_rank, long_flag, setting_fields

IMAGE_INPUTS = ("image", "img", "input_image", "input")
MAPPED: dict[str, tuple[str, ...]] = {
    "scale": ("scale", "upscale", "outscale", "upscale_factor", "scale_factor"),
    "prompt": ("prompt",),
    "negative_prompt": ("negative_prompt",),
    "seed": ("seed",),
    "steps": ("num_inference_steps", "steps"),
    "guidance": ("guidance_scale", "guidance"),
    "faces": ("face_enhance",),
}
"""studio setting -> the input names Replicate models use for it, most common first."""
APPLIED_HERE = ("color_fix", "fidelity", "alpha", "max_pixels", "max_output_pixels", "remote", "remote_token")
APPLIED_HERE += ("preset", "variables")
APPLIED_HERE += LOCAL_SETTINGS
"""Settings studio applies on this machine, before the upload or after the download."""
INSISTED_RANKS = (2, 5)
"""layer_rank of --config files and of the command line."""


@dataclass
class ModelInputs:
    """The model's image input, the settings sent as its inputs, and which studio settings that used."""

    image: str
    values: dict[str, Any]
    used: tuple[str, ...]


def input_properties(version: dict[str, Any]) -> dict[str, Any]:
    """A version's input schema: openapi_schema.components.schemas.Input.properties."""
    schema = version.get("openapi_schema") or {}
    return schema.get("components", {}).get("schemas", {}).get("Input", {}).get("properties", {}) or {}


def map_inputs(settings: Settings, properties: dict[str, Any], label: str) -> ModelInputs:
    """The inputs to send; a UsageError naming every chosen setting the model cannot take."""
    image = next((name for name in IMAGE_INPUTS if name in properties), None)
    image = image or next((n for n, p in properties.items() if p.get("format") == "uri"), None)
    if image is None:
        raise UsageError(f"{label} takes no image input (its inputs: {', '.join(properties) or 'none'})")
    values: dict[str, Any] = {}
    used: list[str] = []
    refused: list[str] = []
    for name, candidates in MAPPED.items():
        key = next((candidate for candidate in candidates if candidate in properties), None)
        value, chosen = getattr(settings, name), _chosen(settings, name)
        if name == "faces":
            value = chosen = settings.faces != "none"
        if key is not None and (chosen or name in ("seed", "scale")):
            values[key] = _fit(name, key, value, properties[key], label)
            used.append(name)
        elif chosen and name != "scale" and _insisted(settings, name):  # scale: resized here instead
            refused.append(name)
    for item in setting_fields():
        if item.name not in MAPPED and item.name not in APPLIED_HERE and _insisted(settings, item.name):
            refused.append(item.name)
    if refused:
        flags = ", ".join(long_flag(item) for item in setting_fields() if item.name in refused)
        raise UsageError(
            f"{flags}: {label} has no input for that (its inputs: {', '.join(properties)}); "
            "remove it, or run studio's own engines without --remote"
        )
    return ModelInputs(image, values, tuple(used))


def _chosen(settings: Settings, name: str) -> bool:
    """Set by any layer (a flag, a config file, a preset), not a built-in default."""
    return layer_rank(settings.source_of(name)) > 0


def _insisted(settings: Settings, name: str) -> bool:
    """Set for this run (a flag or --config): refused when the model cannot take it. The user config's
    defaults and a preset's suggestions are for studio's engines, and are left out without a word."""
    return layer_rank(settings.source_of(name)) in INSISTED_RANKS


def _fit(name: str, key: str, value: Any, schema: dict[str, Any], label: str) -> Any:
    """The value in the input's type, within its bounds; out of bounds is one line."""
    if schema.get("type") == "integer" and isinstance(value, float):
        if not value.is_integer():
            raise UsageError(f"--{name.replace('_', '-')} {value:g}: {label}'s '{key}' takes whole numbers")
        value = int(value)
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if (low is not None and value < low) or (high is not None and value > high):
            raise UsageError(f"--{name.replace('_', '-')} {value:g}: {label}'s '{key}' takes {low} to {high}")
    return value
