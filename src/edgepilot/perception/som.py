"""Set-of-mark: a screenshot with each element's number drawn on it, and downscaling for VLMs.

The numbers are the element indices of :meth:`Observation.to_text`, so a
vision model (or a person reading the HTML report) sees ``[7]`` in the text
and the same 7 on the picture. Pillow only; no OCR extra needed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from edgepilot.errors import PerceptionError
from edgepilot.perception.types import Bounds, Observation

# Dark, saturated colours: white digits stay readable on every one of them.
PALETTE = ((200, 30, 30), (20, 90, 200), (20, 130, 50), (125, 50, 170), (170, 20, 120), (0, 115, 125),
           (150, 85, 20), (70, 70, 80))


def open_png(png: bytes) -> Image.Image:
    """Decode a screenshot with Pillow.

    Raises:
        PerceptionError: the bytes are not an image Pillow can read.
    """
    try:
        img = Image.open(io.BytesIO(png))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PerceptionError(f"the screenshot is not a readable image ({len(png)} bytes starting {png[:8]!r}); "
                              "take it again") from exc
    return img


def encode(img: Image.Image, fmt: Literal["PNG", "JPEG"] = "PNG", quality: int = 85) -> bytes:
    """PNG (fast, zlib level 1) or JPEG bytes of an image."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buf, format="JPEG", quality=quality)
    else:
        img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def mark_size(width: int, height: int) -> int:
    """Height of a mark's digits: 1/28 of the shorter side, so they stay about 12 pixels tall
    when a phone screenshot is scaled to 768 pixels for a vision model."""
    return max(12, round(min(width, height) / 28))


def draw_marks(png: bytes, boxes: Sequence[Bounds], labels: Sequence[str] | None = None, *,
               outline: bool = True) -> bytes:
    """Draw a numbered mark (and a thin outline) for each box on a copy of a screenshot.

    Each mark is a filled tag with white digits, placed at the box's top-left
    corner inside it; where that would cover an earlier mark it moves above
    the box, to the top-right, or to the bottom-left.

    Args:
        png: the screenshot.
        boxes: one box per mark, in screen pixels.
        labels: the text of each mark (default: ``0``, ``1``, ...).
        outline: also outline each box in its mark's colour.

    Returns:
        PNG bytes of the same size as the screenshot.

    Raises:
        PerceptionError: the screenshot is unreadable.
    """
    img = open_png(png).convert("RGB")
    d = ImageDraw.Draw(img)
    size = mark_size(*img.size)
    font = _font(size)
    pad = max(2, size // 6)
    line = max(2, size // 12)
    placed: list[tuple[int, int, int, int]] = []
    for i, box in enumerate(boxes):
        color = PALETTE[i % len(PALETTE)]
        if outline and box.area:
            d.rectangle([box.left, box.top, box.right - 1, box.bottom - 1], outline=color, width=line)
    for i, box in enumerate(boxes):
        color = PALETTE[i % len(PALETTE)]
        text = labels[i] if labels is not None else str(i)
        left, top, right, bottom = d.textbbox((0, 0), text, font=font, stroke_width=1)
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        spot = _free_spot(box, tw, th, placed, img.size)
        placed.append((spot[0], spot[1], spot[0] + tw, spot[1] + th))
        d.rectangle([spot[0], spot[1], spot[0] + tw - 1, spot[1] + th - 1], fill=color)
        d.text((spot[0] + pad - left, spot[1] + pad - top), text, font=font, fill=(255, 255, 255),
               stroke_width=1, stroke_fill=(255, 255, 255))
    return encode(img)


def _free_spot(box: Bounds, tw: int, th: int, placed: list[tuple[int, int, int, int]],
               size: tuple[int, int]) -> tuple[int, int]:
    width, height = size
    candidates = [(box.left, box.top), (box.left, box.top - th), (box.right - tw, box.top),
                  (box.left, box.bottom - th), (box.right, box.top)]
    clamped = [(min(max(0, x), width - tw), min(max(0, y), height - th)) for x, y in candidates]
    for x, y in clamped:
        if not any(x < right and left < x + tw and y < bottom and top < y + th
                   for left, top, right, bottom in placed):
            return x, y
    return clamped[0]


def set_of_marks(obs: Observation, png: bytes | None = None, *, limit: int = 120, outline: bool = True) -> bytes:
    """The observation's screenshot with each element's number (as in :meth:`Observation.to_text`) drawn on it.

    Args:
        obs: the observation; its elements are marked.
        png: the screenshot (default: ``obs.screenshot_png``).
        limit: mark only the first ``limit`` elements, as ``to_text`` lists only those.
        outline: also outline each element.

    Raises:
        PerceptionError: there is no screenshot, or it is unreadable.
    """
    png = png if png is not None else obs.screenshot_png
    if not png:
        raise PerceptionError("set-of-mark needs a screenshot; observe with screenshots on")
    return draw_marks(png, [n.bounds for n in obs.elements[:limit]], outline=outline)


def downscale(png: bytes, max_side: int, *, fmt: Literal["PNG", "JPEG"] = "PNG", quality: int = 85) -> bytes:
    """The screenshot scaled so that its longer side is at most ``max_side`` pixels (for a VLM's input).

    Returns the bytes unchanged when the image is already small enough and
    ``fmt`` is PNG.

    Raises:
        PerceptionError: the screenshot is unreadable, or ``max_side`` is not positive.
    """
    if max_side <= 0:
        raise PerceptionError(f"max_side must be positive, not {max_side}")
    img = open_png(png)
    if max(img.size) <= max_side and fmt == "PNG":
        return png
    scale = min(1.0, max_side / max(img.size))
    new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if new != img.size:
        img = img.convert("RGB").resize(new, Image.Resampling.LANCZOS, reducing_gap=2.0)
    return encode(img, fmt, quality)
