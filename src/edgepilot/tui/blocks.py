"""Screenshots in the terminal, drawn with half blocks.

Each terminal cell shows two pixels stacked: the character ``▀`` in the upper
pixel's colour (foreground) over the lower pixel's colour (background). The
image is scaled down with Pillow to the cells available (one pixel wide, two
tall per cell, aspect kept), so a 1080x2400 phone screen becomes about 30x33
cells: a few thousand segments, built in a millisecond or two and cached.
Every terminal with true colour (or 256 colours, approximated by Rich) can
show it; nothing here depends on sixel or kitty graphics.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from edgepilot.errors import PerceptionError
from edgepilot.perception.som import open_png

UPPER_HALF = "▀"
MARK = (255, 40, 40)

Box = tuple[int, int, int, int]  # left, top, right, bottom


def fit_cells(width: int, height: int, cols: int, rows: int) -> tuple[int, int]:
    """The largest (cols, rows) grid an image of ``width`` x ``height`` pixels fits in, aspect kept.

    A cell is one pixel wide and two tall, so the image is drawn ``cols`` pixels
    wide and ``2 * rows`` pixels tall.
    """
    if width <= 0 or height <= 0 or cols <= 0 or rows <= 0:
        return 0, 0
    scale = min(cols / width, (rows * 2) / height)
    return max(1, min(cols, round(width * scale))), max(1, min(rows, round(height * scale / 2)))


def block_rows(img: Image.Image, cols: int, rows: int) -> list[list[Segment]]:
    """``img`` scaled to ``cols`` x ``rows`` cells, as one list of Rich segments per row.

    Runs of cells with the same two colours are merged into one segment.
    """
    if cols <= 0 or rows <= 0:
        return []
    small = img.convert("RGB").resize((cols, rows * 2), Image.Resampling.BOX, reducing_gap=2.0)
    data = small.tobytes()
    styles: dict[tuple[int, int], Style] = {}
    stride = cols * 3
    out: list[list[Segment]] = []
    for row in range(rows):
        top_at, bottom_at = 2 * row * stride, (2 * row + 1) * stride
        segments: list[Segment] = []
        run_key: tuple[int, int] | None = None
        run_len = 0
        for x in range(cols):
            i = 3 * x
            top = (data[top_at + i] << 16) | (data[top_at + i + 1] << 8) | data[top_at + i + 2]
            bottom = (data[bottom_at + i] << 16) | (data[bottom_at + i + 1] << 8) | data[bottom_at + i + 2]
            key = (top, bottom)
            if key == run_key:
                run_len += 1
                continue
            if run_key is not None:
                segments.append(Segment(UPPER_HALF * run_len, _style(styles, run_key)))
            run_key, run_len = key, 1
        if run_key is not None:
            segments.append(Segment(UPPER_HALF * run_len, _style(styles, run_key)))
        out.append(segments)
    return out


def _style(cache: dict[tuple[int, int], Style], key: tuple[int, int]) -> Style:
    style = cache.get(key)
    if style is None:
        top, bottom = key
        style = Style(color=Color.from_rgb(top >> 16, (top >> 8) & 255, top & 255),
                      bgcolor=Color.from_rgb(bottom >> 16, (bottom >> 8) & 255, bottom & 255))
        cache[key] = style
    return style


def _clamp(img: Image.Image, box: Sequence[int] | None) -> Box | None:
    if not box or len(box) != 4:
        return None
    try:
        left, top, right, bottom = (int(v) for v in box)
    except (TypeError, ValueError):
        return None
    left, right = max(0, min(left, right)), min(img.width, max(left, right))
    top, bottom = max(0, min(top, bottom)), min(img.height, max(top, bottom))
    return (left, top, right, bottom) if right > left and bottom > top else None


def mark_box(img: Image.Image, box: Sequence[int] | None) -> Image.Image:
    """A copy of ``img`` with ``box`` (left, top, right, bottom) outlined in red, thick enough to survive scaling."""
    out = img.convert("RGB")
    out = out.copy() if out is img else out
    found = _clamp(out, box)
    if found is not None:
        thickness = max(3, round(min(out.size) / 120))
        left, top, right, bottom = found
        ImageDraw.Draw(out).rectangle((left, top, right - 1, bottom - 1), outline=MARK, width=thickness)
    return out


def crop_around(img: Image.Image, box: Sequence[int] | None, *, margin: float = 0.6,
                least: int = 360) -> Image.Image:
    """The part of a screenshot around ``box`` (left, top, right, bottom), with the box outlined.

    The crop reaches ``margin`` times the box's size beyond each side (at least
    ``least`` pixels in all), clamped to the image. Without a box, or with one
    outside the image, the whole screenshot comes back (a copy).
    """
    found = _clamp(img, box)
    marked = mark_box(img, box)
    if found is None:
        return marked
    left, top, right, bottom = found
    pad_x = max(round((right - left) * margin), (least - (right - left)) // 2, 0)
    pad_y = max(round((bottom - top) * margin), (least - (bottom - top)) // 2, 0)
    return marked.crop((max(0, left - pad_x), max(0, top - pad_y), min(img.width, right + pad_x),
                        min(img.height, bottom + pad_y)))


class BlockImage(Widget):
    """A widget showing an image in half blocks, scaled to fit and centred; a message when there is none."""

    DEFAULT_CSS = """
    BlockImage {
        width: 1fr;
        height: 1fr;
    }
    """

    def __init__(self, *, empty: str = "no screenshot", name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._image: Image.Image | None = None
        self._message = empty
        self._empty = empty
        self._rows: list[list[Segment]] = []
        self._grid: tuple[int, int, int, int] | None = None  # cols, rows and the widget size they were made for

    @property
    def image(self) -> Image.Image | None:
        return self._image

    @property
    def message(self) -> str:
        return self._message

    def show_image(self, img: Image.Image | None, message: str | None = None) -> None:
        """Show ``img`` (None: show ``message``, or the widget's empty message)."""
        self._image = img
        self._message = message or self._empty
        self._grid = None
        self.refresh()

    def show_png(self, png: bytes | None, *, box: Sequence[int] | None = None, crop: bool = False,
                 message: str | None = None) -> None:
        """Decode and show a PNG; an unreadable one shows why instead. ``crop`` zooms in around ``box``."""
        if not png:
            self.show_image(None, message)
            return
        try:
            img = open_png(png)
        except PerceptionError as exc:
            self.show_image(None, f"screenshot unreadable: {exc}")
            return
        self.show_image(crop_around(img, box) if crop else img)

    def _layout(self) -> None:
        width, height = self.size.width, self.size.height
        if self._grid is not None and self._grid[2:] == (width, height):
            return
        if self._image is None:
            self._rows, self._grid = [], (0, 0, width, height)
            return
        cols, rows = fit_cells(self._image.width, self._image.height, width, height)
        self._rows = block_rows(self._image, cols, rows)
        self._grid = (cols, rows, width, height)

    def render_line(self, y: int) -> Strip:
        width, height = self.size.width, self.size.height
        base = self.rich_style
        self._layout()
        if self._image is None:
            if y != height // 2 or not self._message:
                return Strip.blank(width, base)
            text = self._message[:width]
            left = (width - len(text)) // 2
            dim = base + Style(dim=True, italic=True)
            return Strip([Segment(" " * left, base), Segment(text, dim)]).extend_cell_length(width, base)
        assert self._grid is not None
        cols, rows = self._grid[0], self._grid[1]
        top = (height - rows) // 2
        if not top <= y < top + rows:
            return Strip.blank(width, base)
        left = (width - cols) // 2
        segments = [Segment(" " * left, base), *self._rows[y - top]] if left else list(self._rows[y - top])
        return Strip(segments).extend_cell_length(width, base)
