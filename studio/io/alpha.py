"""Alpha bleed: give transparent pixels the colour of their opaque neighbours before restoring.

Why: the runner restores RGB only and re-attaches alpha afterwards; without this, the hidden colour
of transparent pixels shows as a dark halo along every visible edge.
"""

from __future__ import annotations

import numpy as np


def bleed_colors(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Fill the colour of transparent pixels from their opaque neighbours (push-pull).

    Transparent pixels often hold black (or garbage); upscalers and resamplers mix that colour into
    the visible edge, which shows as a dark halo once alpha is re-attached. Pixels with any coverage
    keep their colour.
    """
    weights = [alpha.astype(np.float32)]
    colours = [rgb * weights[0][..., None]]
    while min(weights[-1].shape) > 1:
        w, c = weights[-1], colours[-1]
        h2, w2 = (w.shape[0] + 1) // 2, (w.shape[1] + 1) // 2
        wp = np.pad(w, ((0, h2 * 2 - w.shape[0]), (0, w2 * 2 - w.shape[1])))
        cp = np.pad(c, ((0, h2 * 2 - c.shape[0]), (0, w2 * 2 - c.shape[1]), (0, 0)))
        weights.append(wp.reshape(h2, 2, w2, 2).sum(axis=(1, 3)))
        colours.append(cp.reshape(h2, 2, w2, 2, 3).sum(axis=(1, 3)))
    filled = colours[-1] / np.maximum(weights[-1], 1e-8)[..., None]
    for w, c in zip(reversed(weights[:-1]), reversed(colours[:-1]), strict=True):
        up = np.repeat(np.repeat(filled, 2, axis=0), 2, axis=1)[: w.shape[0], : w.shape[1]]
        coverage = np.clip(w, 0.0, 1.0)[..., None]
        mean = c / np.maximum(w, 1e-8)[..., None]
        filled = np.where(w[..., None] > 1e-8, coverage * mean + (1 - coverage) * up, up)
    return np.where(alpha[..., None] > 0, rgb, filled).astype(np.float32)
