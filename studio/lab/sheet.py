"""Drawing for `studio compare`: the comparison sheet (Pillow) and the before/after slider page (HTML).

Crops are pasted at 1:1, never resampled, so what the sheet shows is exactly what each run made.
Text uses Pillow's bundled scalable font, so the sheet looks the same on every machine.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MARGIN, GAP, FONT_SIZE, SMALL_SIZE = 24, 16, 16, 13
INPUT_LABEL = "input (nearest neighbour)"
BACKGROUND, PANEL, TEXT, MUTED, MARK = (24, 24, 27), (44, 44, 48), (236, 236, 236), (160, 160, 168), (255, 72, 72)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _wrap(text: str, font: Any, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap (breaking at commas too, since run labels are KEY=VALUE,KEY=VALUE)."""
    words = text.replace(",", ", ").split()
    lines: list[str] = []
    for word in words:
        if lines and font.getlength(lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            while font.getlength(word) > width and len(word) > 1:  # a single word wider than the panel
                cut = max(1, int(len(word) * width / font.getlength(word)) - 1)
                lines.append(word[:cut])
                word = word[cut:]
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [lines[max_lines - 1].rstrip() + " …"]
    return [line.replace(", ", ",") for line in lines]


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8))


def draw_sheet(title: str, source: np.ndarray, results: list, crop: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The sheet as float RGB, and each panel's box on it ({"label", "kind", "box": [x, y, w, h]})."""
    done = [r.image for r in results if r.image is not None]
    out_h, out_w = done[0].shape[:2]
    font, small = _font(FONT_SIZE), _font(SMALL_SIZE)
    line = FONT_SIZE + 5
    panel_w = max(crop.width, 180)
    columns = 1 + len(results)
    thumb_h = max(1, round(panel_w * out_h / out_w))
    labels = [_wrap(label, font, panel_w, 3) for label in [INPUT_LABEL] + [r.label for r in results]]
    label_h = max(len(lines) for lines in labels) * line + SMALL_SIZE + 12
    title_h = 2 * line + 10
    width = 2 * MARGIN + columns * panel_w + (columns - 1) * GAP
    crops_top = MARGIN + title_h + label_h
    thumbs_top = crops_top + crop.height + GAP + line + 6
    height = thumbs_top + thumb_h + MARGIN + line

    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((MARGIN, MARGIN), f"studio compare · {title}", font=_font(FONT_SIZE + 4), fill=TEXT)
    draw.text(
        (MARGIN, MARGIN + line + 4),
        f"crop {crop.x},{crop.y} {crop.width}x{crop.height} of the {out_w}x{out_h} results, "
        "shown at 1:1 pixels; the input is enlarged by nearest neighbour",
        font=small,
        fill=MUTED,
    )

    enlarged = _pil(source).resize((out_w, out_h), Image.Resampling.NEAREST)
    panels = [(INPUT_LABEL, None, np.asarray(enlarged, np.float32) / 255.0, None)]
    panels += [
        (r.label, f"{r.engine}, {r.seconds:.1f} s" if r.image is not None else "not run", r.image, r.error)
        for r in results
    ]
    layout: list[dict[str, Any]] = []
    scale_to_thumb = panel_w / out_w
    for column, (label, detail, image, error) in enumerate(panels):
        left = MARGIN + column * (panel_w + GAP)
        for row, text in enumerate(_wrap(label, font, panel_w, 3)):
            draw.text((left, MARGIN + title_h + row * line), text, font=font, fill=TEXT)
        if detail:
            draw.text((left, crops_top - SMALL_SIZE - 6), detail, font=small, fill=MUTED)
        crop_left = left + (panel_w - crop.width) // 2
        draw.rectangle((left, crops_top, left + panel_w - 1, crops_top + crop.height - 1), fill=PANEL)
        if image is not None:
            sheet.paste(_pil(crop.of(image)), (crop_left, crops_top))
            thumb = _pil(image).resize((panel_w, thumb_h), Image.Resampling.LANCZOS)
            sheet.paste(thumb, (left, thumbs_top))
            box = [round(v * scale_to_thumb) for v in (crop.x, crop.y, crop.x + crop.width, crop.y + crop.height)]
            draw.rectangle(
                (left + box[0], thumbs_top + box[1], left + box[2], thumbs_top + box[3]), outline=MARK, width=2
            )
            layout.append({"label": label, "kind": "crop", "box": [crop_left, crops_top, crop.width, crop.height]})
            layout.append({"label": label, "kind": "thumbnail", "box": [left, thumbs_top, panel_w, thumb_h]})
        else:
            draw.rectangle((left, thumbs_top, left + panel_w - 1, thumbs_top + thumb_h - 1), fill=PANEL)
            for row, text in enumerate(_wrap(error or "not run", small, panel_w - 16, 8)):
                draw.text((left + 8, crops_top + 8 + row * (SMALL_SIZE + 4)), text, font=small, fill=MARK)
    draw.text((MARGIN, thumbs_top - line - 2), "full images (red: the crop)", font=small, fill=MUTED)
    return np.asarray(sheet, np.float32) / 255.0, layout


def _data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    _pil(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>studio compare · {title}</title>
<style>
body {{ background:#18181b; color:#ececec; font:15px system-ui, sans-serif; margin:24px; }}
h1 {{ font-size:20px; }} h2 {{ font-size:16px; margin:28px 0 8px; }} .muted {{ color:#a0a0a8; }}
.slider {{ position:relative; display:inline-block; max-width:100%; line-height:0; }}
.slider img {{ max-width:100%; image-rendering:auto; }}
.slider .after {{ position:absolute; left:0; top:0; clip-path:inset(0 0 0 50%); }}
.slider .handle {{ position:absolute; top:0; bottom:0; left:50%; width:2px; background:#ff4848; pointer-events:none; }}
.slider input {{ position:absolute; inset:0; width:100%; height:100%; opacity:0; cursor:ew-resize; margin:0; }}
.tags {{ display:flex; justify-content:space-between; max-width:{width}px; }}
</style></head><body>
<h1>studio compare · {title}</h1>
<p class="muted">Drag across each image: left of the line the input (bicubic), right of it the run's result. Shown at most 100% size.</p>
{sections}
<script>
for (const slider of document.querySelectorAll('.slider')) {{
  const range = slider.querySelector('input'), after = slider.querySelector('.after'), handle = slider.querySelector('.handle');
  range.addEventListener('input', () => {{
    after.style.clipPath = `inset(0 0 0 ${{range.value}}%)`; handle.style.left = `${{range.value}}%`;
  }});
}}
</script></body></html>
"""

_SECTION = """<h2>{label}</h2><div class="tags"><span class="muted">before: input, bicubic</span><span class="muted">after: {detail}</span></div>
<div class="slider"><img class="before" src="{before}" alt="input"><img class="after" src="{after}" alt="{label}">
<div class="handle"></div><input type="range" min="0" max="100" value="50" aria-label="before/after position"></div>
"""


def slider_page(title: str, baseline: np.ndarray, results: list) -> str:
    """A self-contained HTML page (images as data URIs, no external files) with one before/after slider per run."""
    before = _data_uri(baseline)
    sections = []
    for result in results:
        label = html.escape(result.label)
        if result.image is None:
            sections.append(f"<h2>{label}</h2><p class='muted'>not run: {html.escape(result.error or '')}</p>")
            continue
        detail = html.escape(f"{result.engine}, {result.seconds:.1f} s")
        sections.append(_SECTION.format(label=label, detail=detail, before=before, after=_data_uri(result.image)))
    return _PAGE.format(title=html.escape(title), width=baseline.shape[1], sections="\n".join(sections))
