"""Temporal consistency: carry the previous restored frame along the motion, and measure flicker.

Engines restore each frame on its own, so invented texture (GAN grain, diffusion detail) changes from one
frame to the next and the clip flickers. Between two input frames, OpenCV's DIS optical flow gives the
motion both ways; a pixel whose backward and forward vectors do not cancel (Sundaram et al. 2010's
forward-backward check) is occluded or mis-tracked and is left alone. Elsewhere the previous output, warped
to the current frame, is blended in with weight `strength`, fading out where the two outputs disagree by
more than flicker does (a real change the flow missed): so the filter damps flicker without smearing motion.
Applied recursively it is a motion-compensated running average.

Flicker is measured the same way for the output and for a Lanczos upscale of the input: the mean absolute
change between a frame and the previous one warped onto it, over the pixels that stay visible and
consistently tracked (the scene's static regions once camera motion is compensated; with a still camera,
simply the static regions). The ratio output/Lanczos says how much the restoration adds to the input's own
frame-to-frame change.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from studio.ops.resize import resize

FLOW_MAX_SIDE = 512
"""Flow is computed on the input at most this large (vectors scaled up): motion is smooth, the cost is not."""
DISAGREEMENT = 0.06
"""Output difference (of 1) at which the blend weight falls to 1/e: larger than flicker, smaller than change."""
STATIC_MASK = 0.99
"""Consistency above which a pixel counts as static (motion-compensated) for the flicker measure."""
BORDER = 4
"""Output pixels along the edges left out of the measure (the flow is least sure there)."""


@dataclass
class Motion:
    """Where each output pixel of the current frame was in the previous one, and how sure the flow is."""

    map_x: np.ndarray  # float32 (H, W), sampling positions in the previous frame
    map_y: np.ndarray
    confidence: np.ndarray  # float32 (H, W) in [0, 1]: 1 = forward-backward consistent

    def warp(self, image: np.ndarray) -> np.ndarray:
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _grey(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    small = rgb if rgb.shape[:2] == (height, width) else resize(rgb, height, width, "area")
    return cv2.cvtColor(np.rint(np.clip(small, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def estimate_motion(previous: np.ndarray, current: np.ndarray, out_h: int, out_w: int) -> Motion:
    """Backward flow (current -> previous) with a forward-backward consistency mask, at the output size."""
    height, width = previous.shape[:2]
    factor = min(1.0, FLOW_MAX_SIDE / max(height, width))
    fh, fw = max(8, round(height * factor)), max(8, round(width * factor))
    prev_g, cur_g = _grey(previous, fh, fw), _grey(current, fh, fw)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    backward = dis.calc(cur_g, prev_g, None)
    forward = dis.calc(prev_g, cur_g, None)
    grid_x, grid_y = np.meshgrid(np.arange(fw, dtype=np.float32), np.arange(fh, dtype=np.float32))
    at_x, at_y = grid_x + backward[..., 0], grid_y + backward[..., 1]
    forward_there = cv2.remap(forward, at_x, at_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    error = np.sum((backward + forward_there) ** 2, axis=2)
    bound = 0.01 * (np.sum(backward**2, axis=2) + np.sum(forward_there**2, axis=2)) + 0.5
    inside = (at_x >= 0) & (at_x <= fw - 1) & (at_y >= 0) & (at_y <= fh - 1)
    confidence = ((error < bound) & inside).astype(np.float32)
    flow = cv2.resize(backward, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    flow[..., 0] *= out_w / fw
    flow[..., 1] *= out_h / fh
    out_x, out_y = np.meshgrid(np.arange(out_w, dtype=np.float32), np.arange(out_h, dtype=np.float32))
    confidence = cv2.resize(confidence, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return Motion(out_x + flow[..., 0], out_y + flow[..., 1], confidence)


def blend_previous(current: np.ndarray, previous: np.ndarray, motion: Motion, strength: float) -> np.ndarray:
    """The current output with the previous one (warped along the motion) blended in at up to `strength`,
    only where the flow is consistent and the two outputs agree to within flicker."""
    if strength <= 0:
        return current
    warped = motion.warp(previous)
    difference = cv2.GaussianBlur(np.abs(warped - current).mean(axis=2), (5, 5), 0)
    weight = strength * motion.confidence * np.exp(-((difference / DISAGREEMENT) ** 2))
    return (current + weight[..., None] * (warped - current)).astype(np.float32)


@dataclass
class FlickerMeter:
    """Mean frame-to-frame change over static (motion-compensated) pixels, of the output and of Lanczos."""

    output_sum: float = 0.0
    lanczos_sum: float = 0.0
    pairs: int = 0

    def add(
        self, motion: Motion, output: tuple[np.ndarray, np.ndarray], lanczos: tuple[np.ndarray, np.ndarray]
    ) -> tuple[float, float] | None:
        """One pair (previous, current) of outputs and of Lanczos upscales; returns the pair's figures (x255)."""
        mask = motion.confidence >= STATIC_MASK
        mask[:BORDER], mask[-BORDER:], mask[:, :BORDER], mask[:, -BORDER:] = False, False, False, False
        if not mask.any():
            return None
        out_change = float(np.abs(output[1] - motion.warp(output[0]))[mask].mean()) * 255
        ref_change = float(np.abs(lanczos[1] - motion.warp(lanczos[0]))[mask].mean()) * 255
        self.record(out_change, ref_change)
        return out_change, ref_change

    def record(self, out_change: float, ref_change: float) -> None:
        self.output_sum += out_change
        self.lanczos_sum += ref_change
        self.pairs += 1

    def summary(self) -> dict[str, float | int | None]:
        """Per clip: mean change of output and Lanczos (in 1/255), and their ratio (1 = as steady as Lanczos)."""
        if not self.pairs:
            return {"output": None, "lanczos": None, "ratio": None, "pairs": 0}
        output, lanczos = self.output_sum / self.pairs, self.lanczos_sum / self.pairs
        ratio = round(output / lanczos, 3) if lanczos > 0 else None
        return {"output": round(output, 3), "lanczos": round(lanczos, 3), "ratio": ratio, "pairs": self.pairs}
