"""Tiny random OSEDiff files shared by the onestep tests (written once per session: ~10 s)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def osediff_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(toy SD base folder, OSEDiff weights file in the authors' layout), random weights."""
    pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    from support.onestep_tiny import write_osediff

    return write_osediff(tmp_path_factory.mktemp("osediff"))
