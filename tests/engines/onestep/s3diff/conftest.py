"""Tiny random S3Diff files (a toy SD folder, the weights file in the authors' layout, a toy estimator)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.s3diff_tiny import write_s3diff


@pytest.fixture(scope="session")
def tiny_s3diff(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(base folder, s3diff_tiny.pkl, de_net.pth); random weights, written once per run."""
    return write_s3diff(tmp_path_factory.mktemp("s3diff"))
