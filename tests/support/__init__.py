"""Helpers the tests share: where the committed fixtures are, tiny random files in official layouts."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
"""tests/fixtures: key layouts, the tiny photo VAE, reproduction outputs."""
REPO = Path(__file__).resolve().parents[2]
"""The checkout: examples/, configs/, the package."""
