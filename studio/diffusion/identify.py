"""What an `--adapter` holds, told from its key names alone, so that both adapter engines (stablesr, supir)
send a single file to the right loader and refuse one they cannot use in one line, before any pixel.

A folder or hub id is a diffusers ControlNet. A single file is told apart by its keys: a research checkpoint
of one engine (each engine tells its own files: `Engine.checkpoint_layout`, collected by the engine registry
and handed in here, so the core knows no engine), or a ControlNet in diffusers' or the original layout
(controlnet_files.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from studio.diffusion import loading
from studio.diffusion.controlnet_files import controlnet_layout
from studio.errors import ModelLoadError, UsageError, WeightsMissing


@dataclass(frozen=True)
class Checkpoint:
    """A research checkpoint kind: the one engine that takes it (ControlNets steer every adapter engine), its
    name for messages, and the test that tells its files from their key names (the layout, or None)."""

    engine: str
    name: str
    layout_of: Callable[[Collection[str]], str | None]


@dataclass(frozen=True)
class AdapterSource:
    """An adapter as given: `ref` (path or hub id), where it lives (file, folder, hub), its kind and layout.

    layout: for a ControlNet 'diffusers' or 'original' (lllyasviel/ldm); for StableSR 'full', 'adapter' or
    'cfw'; for SUPIR 'official'.
    """

    ref: str
    where: str
    kind: str
    layout: str

    def record(self) -> dict[str, Any]:
        """What provenance keeps of it."""
        return {"source": self.ref, "where": self.where, "kind": self.kind, "layout": self.layout}


def kind_of(keys: Collection[str], checkpoints: Sequence[Checkpoint]) -> tuple[str, str] | None:
    """(kind, layout) of a weights file from its key names, or None when no known layout fits."""
    for checkpoint in checkpoints:
        if layout := checkpoint.layout_of(keys):
            return checkpoint.engine, layout
    if layout := controlnet_layout(keys):
        return "controlnet", layout
    return None


def identify(ref: str, weights_name: str, engine: str, checkpoints: Sequence[Checkpoint]) -> AdapterSource:
    """What `ref` is, checked to be something `engine` takes. A file is read for its key names only;
    absent -> WeightsMissing, unreadable or of no known layout -> ModelLoadError, another engine's
    research checkpoint -> UsageError; each one line naming the file."""
    try:
        source = loading.resolve_source(ref)
    except WeightsMissing:
        raise WeightsMissing(
            f"--adapter {ref}: no such ControlNet folder or checkpoint file (a hub id looks like 'owner/name')"
        ) from None
    if source.kind != "file":
        return AdapterSource(source.describe(), source.kind, "controlnet", "diffusers")
    keys = loading.weights_file_keys(source.ref, weights_name)
    found = kind_of(keys, checkpoints)
    names = {checkpoint.engine: checkpoint.name for checkpoint in checkpoints}
    if found is None:
        sample = ", ".join(sorted(keys)[:2]) or "none"
        raise ModelLoadError(
            f"--adapter {source.ref}: neither a ControlNet (diffusers or original layout) nor a "
            f"{names[engine]} checkpoint; its keys ({sample}, ...) fit no known layout"
        )
    kind, layout = found
    if kind != "controlnet" and kind != engine:
        raise UsageError(
            f"--adapter {source.ref}: a {names[kind]} checkpoint steers the {kind} engine, not {engine}; "
            f"use --engine {kind}"
        )
    return AdapterSource(source.ref, "file", kind, layout)
