"""Results that came back from a remote, written here as a local run writes them.

The output takes the pixels from the remote and everything else from the local input (ICC profile, EXIF,
XMP, print resolution, bit depth), then goes through studio's own atomic writer with the provenance, so a
remote output differs from a local one only in what its provenance says about where it ran.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from studio.engines import engine_class
from studio.errors import StudioError
from studio.io import Picture, print_size, read_image, with_pixels, write_image, write_text_atomic
from studio.runner import JobResult, Plan, reproduce_command, sidecar_path
from studio.runner.choice import engine_settings
from studio.serve.uploads import sniff_extension

LOCAL_SETTINGS = ("format", "quality", "force_jpeg", "dpi", "sidecar")
"""Settings the local writer applies; a remote is asked for a lossless PNG and never sees them."""
RESULT_PIXEL_ALLOWANCE = 4096 * 4096 * 256
"""A result's pixel budget when it is decoded here: outputs are legitimately far above the input budget."""


def decode_result(data: bytes, label: str) -> Picture:
    """A downloaded result (PNG, JPEG, WebP...) as pixels, with any studio provenance it carries."""
    with tempfile.TemporaryDirectory(prefix="studio-remote-") as folder:
        path = Path(folder) / ("result" + (sniff_extension(data[:16]) or ".png"))
        path.write_bytes(data)
        try:
            return read_image(path, RESULT_PIXEL_ALLOWANCE)
        except StudioError as exc:
            raise StudioError(
                f"{label} returned an unreadable result ({str(exc).replace(str(path), 'result')})"
            ) from None


def studio_result(
    plan: Plan, source: Path, output: Path, picture: Picture, result: Picture, remote: dict[str, Any]
) -> tuple[Picture, dict[str, Any]]:
    """A studio server's (or studio-on-RunPod's) result as this machine's output: the remote's pixels and
    provenance, the local file's metadata and output settings, and the command that reproduces it here."""
    settings = plan.settings
    provenance = dict(result.provenance or {})
    if not provenance:
        raise StudioError(f"{remote['label']} returned a result without studio provenance")
    expected = provenance.get("output_size")
    if expected and list(result.size) != list(expected):
        raise StudioError(f"{remote['label']} returned {result.size[0]}x{result.size[1]}, expected {expected}")
    restored = with_pixels(picture, result.rgb, result.alpha, settings.dpi)
    ran = provenance.get("engine", plan.engine)
    ran_settings = replace(engine_settings(settings, ran, plan.engine), engine=ran)
    shown = settings.to_dict()  # the token shows as set, never its value
    provenance["settings"] = {
        **provenance.get("settings", {}),
        **{name: shown[name] for name in (*LOCAL_SETTINGS, "remote", "remote_token")},
    }
    provenance["setting_sources"] = dict(settings.sources)
    provenance["input"] = {"name": source.name, "size": list(picture.size), "bit_depth": picture.bit_depth}
    provenance["command"] = reproduce_command(source, output, ran_settings, engine_class(ran))
    provenance["remote"] = {key: value for key, value in remote.items() if key != "label"}
    return restored, provenance


def write_output(
    job_source: Path, output: Path, picture: Picture, provenance: dict[str, Any], plan: Plan, started: float
) -> JobResult:
    """The same atomic writes as a local run (image, then sidecar), and the report's line for the file."""
    settings = plan.settings
    provenance["print_size"] = print_size(picture.size, picture.dpi)
    write_image(output, picture, settings.format, settings.quality, provenance, settings.force_jpeg)
    if settings.sidecar:
        write_text_atomic(sidecar_path(output), json.dumps(provenance, indent=2, default=str))
    quality = provenance.get("quality") or {}
    return JobResult(
        input=str(job_source),
        output=str(output),
        status="ok",
        input_size=list(provenance.get("input", {}).get("size") or []) or None,
        output_size=list(picture.size),
        engine=provenance.get("engine"),
        model=provenance.get("model"),
        seconds=round(time.perf_counter() - started, 3),
        quality=quality,
        notes=list(provenance.get("notes") or []),
    )
