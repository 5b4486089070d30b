"""Text and flat-area masks on scikit-image's real documents and photos."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from studio.ops.regions import flat_mask, text_mask


def _rgb(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32) / 255.0
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def test_text_lines_are_found_on_a_page_and_not_in_photos() -> None:
    page = _rgb(data.page())
    mask = text_mask(page)
    assert mask.mean() > 0.3
    assert mask[:100].mean() > 0.5  # the page's printed lines fill its upper half
    for photo in (data.astronaut(), data.camera(), data.coffee(), data.rocket()):
        assert text_mask(_rgb(photo)).mean() < 0.01


@pytest.mark.parametrize("grain", [0.0, 0.02])
def test_flat_areas_are_smooth_ones_even_when_grainy(grain: float) -> None:
    """Left half: an even grey (with film grain); right half: grass. Only the left half is flat."""
    grass = _rgb(data.grass())[:256, :256]
    image = np.concatenate([np.full_like(grass, 0.5), grass], axis=1)
    image[:, :256] += np.random.default_rng(3).normal(0.0, grain, image[:, :256].shape[:2])[..., None]
    mask = flat_mask(np.clip(image, 0.0, 1.0))
    assert mask[:, 16:240].mean() > 0.95
    assert mask[:, 272:].mean() < 0.05
