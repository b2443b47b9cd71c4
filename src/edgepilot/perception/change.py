"""Did the screen change? Perceptual hashes and a pixel comparison that ignores clocks and cursors.

Two tools, both on a grayscale copy with the status bar masked out:

- :func:`screen_hash` is a difference hash (dHash): 16x16 bits that stay
  the same for the same screen, for a cheap "seen this screen before" or
  "is this the same screen" check with a small :func:`hamming` tolerance;
- :func:`changed_regions` compares two screenshots cell by cell (8x8-pixel
  cells, mean grey level) and returns where they differ, leaving out a lone
  thin vertical change (a text cursor blinking). :func:`screens_differ` is
  whether any region is left. A hash of a whole screen is too coarse for a
  reflector: flipping one switch on a phone screen moves a 16x16 dHash by
  only a few bits, about what noise does.

What is masked: on a portrait screenshot (a phone), the top
:data:`STATUS_BAR_FRACTION` of its height, where the clock, battery and
notification icons change on their own. Landscape screenshots (desktops) mask
nothing by default; pass the panel with the clock as ``ignore``.
Pillow only; no OCR extra needed.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageChops, ImageDraw

from edgepilot.perception.signature import screen_key
from edgepilot.perception.som import open_png
from edgepilot.perception.types import Bounds, Observation

STATUS_BAR_FRACTION = 0.04  # 96 px of a 2400-pixel-tall phone; Android's status bar is 24-48 dp
CELL = 8  # pixels per comparison cell
CELL_THRESHOLD = 8  # mean grey levels a cell must move to count as changed


def _gray(png: bytes | Image.Image, status_bar: bool | None, ignore: Sequence[Bounds]) -> Image.Image:
    img = png if isinstance(png, Image.Image) else open_png(png)
    img = img.convert("L")
    masks = list(ignore)
    if status_bar if status_bar is not None else img.height > img.width:
        masks.append(Bounds(left=0, top=0, right=img.width, bottom=round(img.height * STATUS_BAR_FRACTION)))
    if masks:
        img = img.copy()
        d = ImageDraw.Draw(img)
        for b in masks:
            d.rectangle([b.left, b.top, b.right - 1, b.bottom - 1], fill=0)
    return img


def screen_hash(png: bytes | Image.Image, *, size: int = 16, status_bar: bool | None = None,
                ignore: Sequence[Bounds] = ()) -> int:
    """Difference hash of a screenshot: ``size * size`` bits, each whether a cell is brighter than its right neighbour.

    Args:
        png: the screenshot.
        size: cells per side.
        status_bar: mask the status bar strip (default: for portrait screenshots).
        ignore: more regions to mask (a desktop panel with a clock).

    Raises:
        PerceptionError: the screenshot is unreadable.
    """
    small = _gray(png, status_bar, ignore).resize((size + 1, size), Image.Resampling.BOX)
    px = small.tobytes()  # mode L: one byte per pixel
    bits = 0
    for row in range(size):
        for col in range(size):
            left, right = px[row * (size + 1) + col], px[row * (size + 1) + col + 1]
            bits = bits << 1 | (left > right)
    return bits


def hamming(a: int, b: int) -> int:
    """How many bits two hashes differ in."""
    return (a ^ b).bit_count()


def _groups(cells: set[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """8-connected groups of changed cells."""
    groups, seen = [], set()
    for start in cells:
        if start in seen:
            continue
        seen.add(start)
        group, todo = [], [start]
        while todo:
            x, y = todo.pop()
            group.append((x, y))
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    nxt = (x + dx, y + dy)
                    if nxt in cells and nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
        groups.append(group)
    return groups


def _cursor_like(width: int, height: int) -> bool:
    """A blinking text cursor: at most two cells (16 px) wide, at least twice as tall, at most 12 cells tall."""
    return width <= 2 and 2 * width <= height <= 12


def changed_regions(before: bytes | Image.Image, after: bytes | Image.Image, *, status_bar: bool | None = None,
                    ignore: Sequence[Bounds] = (), threshold: int = CELL_THRESHOLD) -> list[Bounds]:
    """Where two screenshots differ, in screen pixels, ignoring the status bar and one blinking cursor.

    Both are reduced to cells of 8x8 pixels (their mean grey level); a cell
    changed when its mean moved by more than ``threshold`` levels. Changed
    cells are grouped (8-connected) into regions. When the only change is a
    single thin vertical region (a text cursor that blinked), there is no
    change. Screenshots of different sizes differ everywhere.

    Raises:
        PerceptionError: a screenshot is unreadable.
    """
    a, b = _gray(before, status_bar, ignore), _gray(after, status_bar, ignore)
    if a.size != b.size:
        return [Bounds(left=0, top=0, right=max(a.width, b.width), bottom=max(a.height, b.height))]
    diff = ImageChops.difference(a.reduce(CELL), b.reduce(CELL))
    if diff.getbbox() is None:
        return []
    cols = diff.width
    cells = {(i % cols, i // cols) for i, v in enumerate(diff.tobytes()) if v > threshold}
    boxes = []
    for group in _groups(cells):
        xs, ys = [c[0] for c in group], [c[1] for c in group]
        boxes.append((min(xs), min(ys), max(xs) + 1, max(ys) + 1))
    if len(boxes) == 1 and _cursor_like(boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]):
        return []
    return [Bounds(left=x0 * CELL, top=y0 * CELL, right=min(a.width, x1 * CELL), bottom=min(a.height, y1 * CELL))
            for x0, y0, x1, y1 in sorted(boxes, key=lambda box: (box[1], box[0]))]


def screens_differ(before_png: bytes | Image.Image, after_png: bytes | Image.Image, *,
                   status_bar: bool | None = None, ignore: Sequence[Bounds] = ()) -> bool:
    """Whether the screen changed between two screenshots (see :func:`changed_regions` for what is ignored)."""
    return bool(changed_regions(before_png, after_png, status_bar=status_bar, ignore=ignore))


def observations_differ(before: Observation, after: Observation) -> bool:
    """Whether the screen changed: the tree (elements outside the status bar), then, if it agrees, the pixels.

    A tree can stay the same while the screen changes (a canvas, a game, a
    web view without accessibility), so when both observations carry
    screenshots an unchanged tree is checked against :func:`screens_differ`.
    """
    if screen_key(before) != screen_key(after):
        return True
    if before.screenshot_png and after.screenshot_png:
        return screens_differ(before.screenshot_png, after.screenshot_png)
    return False
