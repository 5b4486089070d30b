"""Image captions for `{caption}` in the prompt (--caption; supir, onestep), from a transformers captioner.

SUPIR captions with LLaVA 13B (16 GB more); studio defaults to BLIP base (Salesforce, BSD-3-Clause,
~250 M parameters, ~1 GB in fp32) and takes any `AutoModelForImageTextToText` captioner via
--caption-model. Missing weights never stop a run: one line says so and the prompt goes on without it.
Unless --offload none, the captioner waits in RAM and visits the device only while it captions, as the text
encoders do: it runs once per image and need not sit on the GPU through the sampling loop.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from studio.diffusion.offload import Placement
from studio.messages import warn

DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-base"
PLACEHOLDER = "{caption}"
MAX_NEW_TOKENS = 40


class Captioner:
    """Loads the model on first use; `caption(image)` returns a short description or '' when unavailable.
    `placement` says where the model waits between captions (a 'model' placement: in RAM)."""

    def __init__(self, model: str | None, placement: Placement) -> None:
        self.model_ref = model or DEFAULT_CAPTION_MODEL
        self.placement = placement
        self._parts: tuple[Any, Any] | None = None
        self._failed = False

    def _load(self) -> tuple[Any, Any] | None:
        if self._parts is None and not self._failed:
            from transformers import AutoModelForImageTextToText, AutoProcessor
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # studio shows its own progress
            try:
                processor = AutoProcessor.from_pretrained(self.model_ref)
                model = AutoModelForImageTextToText.from_pretrained(self.model_ref).eval()
            except (OSError, ValueError) as exc:
                self._failed = True
                first = str(exc).strip().splitlines()[0][:140] if str(exc).strip() else type(exc).__name__
                warn(f"--caption: cannot load {self.model_ref} ({first}); going on without a caption")
                return None
            self.placement.prepare([model])
            self._parts = (processor, model)
        return self._parts

    def caption(self, image: np.ndarray) -> str:
        """A caption of an (H, W, 3) float image in [0, 1]; '' when the captioner cannot load."""
        import torch
        from PIL import Image

        parts = self._load()
        if parts is None:
            return ""
        processor, model = parts
        pixels = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
        inputs = processor(images=pixels, return_tensors="pt").to(self.placement.device)
        with torch.no_grad(), self.placement.using(model):
            ids = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        return processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


def fill_caption(prompt: str, caption: str) -> str:
    """Put the caption where the preset's template has {caption}, else in front of the prompt; tidy commas."""
    text = prompt.replace(PLACEHOLDER, caption) if PLACEHOLDER in prompt else ", ".join(filter(None, [caption, prompt]))
    return re.sub(r"\s*,(\s*,)+", ",", text).strip(" ,")
