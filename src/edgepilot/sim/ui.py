"""A tiny view toolkit for the virtual phone's apps.

Apps build a :class:`Page` (title bar + body rows) out of :class:`View` trees;
the phone lays it out on a 1080x2400 screen, dumps it as uiautomator XML and
draws it as a PNG with a real font. Builders (:func:`text`, :func:`button`,
:func:`field`, :func:`toggle`, :func:`item`, :func:`row`...) keep app code short.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from functools import lru_cache
from typing import Literal
from xml.sax.saxutils import quoteattr

from PIL import Image, ImageDraw, ImageFont

Handler = Callable[[], None]
TextHandler = Callable[[str], None]

WIDTH, HEIGHT = 1080, 2400
STATUS_H = 80
TITLE_H = 170
NAV_H = 130
KEYBOARD_H = 820
PAD = 48

BG = (250, 250, 252)
FG = (28, 28, 32)
MUTED = (105, 105, 115)
ACCENT = (26, 115, 232)
LINE = (225, 225, 232)
FIELD_BG = (240, 241, 246)
DANGER = (200, 40, 40)


@dataclass
class View:
    """One node of a page. ``rid`` is the short resource id (``name`` in ``pkg:id/name``)."""

    cls: str = "android.view.View"
    text: str = ""
    desc: str = ""
    rid: str = ""
    height: int = 0
    weight: float = 1.0
    layout: Literal["column", "row", "hscroll"] = "column"
    width: int = 0  # a child's width in an ``hscroll`` row (0: 200)
    scroll_x: int = 0  # how far an ``hscroll`` row is scrolled
    children: list[View] = dc_field(default_factory=list)
    on_click: Handler | None = None
    on_long_click: Handler | None = None
    on_text: TextHandler | None = None
    on_submit: Handler | None = None
    checkable: bool = False
    checked: bool = False
    password: bool = False
    enabled: bool = True
    selected: bool = False
    hint: str = ""
    style: str = "plain"
    size: int = 44
    bold: bool = False
    align: Literal["left", "center"] = "left"
    # filled in by layout
    bounds: tuple[int, int, int, int] = (0, 0, 0, 0)
    focused: bool = False
    scrollable: bool = False
    package: str = ""

    @property
    def clickable(self) -> bool:
        return self.on_click is not None or self.editable

    @property
    def editable(self) -> bool:
        return self.on_text is not None

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Page:
    """What an app shows on one screen."""

    title: str
    body: list[View]
    back: bool = True
    actions: list[View] = dc_field(default_factory=list)
    fab: View | None = None
    bottom: list[View] = dc_field(default_factory=list)
    secure: bool = False
    activity: str = ""


# ---------------------------------------------------------------- builders


def text(value: str, *, rid: str = "", size: int = 44, height: int = 0, bold: bool = False,
         muted: bool = False, desc: str = "") -> View:
    """A line (or paragraph) of static text."""
    lines = max(1, len(wrap(value, size, WIDTH - 2 * PAD)))
    return View(cls="android.widget.TextView", text=value, rid=rid, size=size, bold=bold, desc=desc,
                height=height or (lines * int(size * 1.35) + 50), style="muted" if muted else "plain")


def header(value: str) -> View:
    """A section header inside a list."""
    return View(cls="android.widget.TextView", text=value, size=36, bold=True, height=110, style="section")


def button(label: str, on_click: Handler | None, *, rid: str = "", desc: str = "", danger: bool = False,
           enabled: bool = True, height: int = 150, weight: float = 1.0) -> View:
    return View(cls="android.widget.Button", text=label, desc=desc, rid=rid, on_click=on_click if enabled else None,
                enabled=enabled, height=height, style="danger" if danger else "button", align="center",
                weight=weight)


def icon_button(desc: str, glyph: str, on_click: Handler, *, rid: str = "") -> View:
    """A button with no text, only a content description (like an ImageButton)."""
    return View(cls="android.widget.ImageButton", desc=desc, rid=rid, on_click=on_click, height=TITLE_H - 30,
                style="icon", text="", hint=glyph, weight=0.0)


def field(value: str, on_text: TextHandler, *, rid: str, hint: str = "", password: bool = False,
          on_submit: Handler | None = None, height: int = 150) -> View:
    """An EditText. ``on_text`` receives the whole new value after each edit."""
    return View(cls="android.widget.EditText", text=value, rid=rid, hint=hint, on_text=on_text,
                password=password, on_submit=on_submit, height=height, style="field")


def toggle(label: str, checked: bool, on_toggle: Handler, *, rid: str) -> View:
    """A settings-style row: label on the left, a Switch on the right; the whole row toggles."""
    label_view = View(cls="android.widget.TextView", text=label, rid="switch_title", size=46, weight=4.0)
    switch = View(cls="android.widget.Switch", text="ON" if checked else "OFF", rid=rid, checkable=True,
                  checked=checked, on_click=on_toggle, style="switch", weight=1.0)
    return View(cls="android.widget.LinearLayout", layout="row", children=[label_view, switch], height=170,
                on_click=on_toggle, style="row")


def item(title: str, on_click: Handler | None = None, *, subtitle: str = "", rid: str = "",
         on_long_click: Handler | None = None, desc: str = "", selected: bool = False,
         checkable: bool = False, checked: bool = False) -> View:
    """A list row with a title and an optional subtitle."""
    children = [View(cls="android.widget.TextView", text=title, rid="title", size=46, height=70)]
    if subtitle:
        children.append(View(cls="android.widget.TextView", text=subtitle, rid="summary", size=36,
                             height=55, style="muted"))
    return View(cls="android.widget.LinearLayout", rid=rid, desc=desc, children=children,
                height=190 if subtitle else 150, on_click=on_click, on_long_click=on_long_click,
                style="row", selected=selected, checkable=checkable, checked=checked)


def radio(label: str, checked: bool, on_click: Handler, *, rid: str = "") -> View:
    return View(cls="android.widget.RadioButton", text=label, rid=rid, checkable=True, checked=checked,
                on_click=on_click, height=150, style="radio")


def row(*children: View, height: int = 0) -> View:
    """Children side by side, sharing the width by their ``weight``."""
    return View(cls="android.widget.LinearLayout", layout="row", children=list(children),
                height=height or max((c.height for c in children), default=150), style="plain")


def chips(labels: list[str], selected: str, on_select: Callable[[str], None], *, rid: str = "chips") -> View:
    """A horizontally scrolling row of filter chips (a HorizontalScrollView inside the page's list)."""
    items = [View(cls="android.widget.Button", text=label, rid="chip", size=36, height=120, style="chip",
                  align="center", selected=label == selected, checkable=True, checked=label == selected,
                  width=int(font(36).getlength(label)) + 110, on_click=_call(on_select, label)) for label in labels]
    return View(cls="android.widget.HorizontalScrollView", rid=rid, layout="hscroll", scrollable=True,
                children=items, height=130, style="plain")


def _call(fn: Callable[[str], None], arg: str) -> Handler:
    return lambda: fn(arg)


def hscroll_extent(view: View) -> int:
    """The width of an ``hscroll`` row's content."""
    return sum(c.width or 200 for c in view.children)


def spacer(height: int = 40) -> View:
    return View(cls="android.view.View", height=height, style="plain")


# ---------------------------------------------------------------- text measure


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def wrap(value: str, size: int, width: int) -> list[str]:
    """Greedy word wrap in pixels for the given font size."""
    if not value:
        return [""]
    f = font(size)
    lines: list[str] = []
    for para in value.split("\n"):
        current = ""
        for word in para.split(" "):
            trial = f"{current} {word}" if current else word
            if f.getlength(trial) <= width or not current:
                current = trial
            else:
                lines.append(current)
                current = word
        lines.append(current)
    return lines


# ---------------------------------------------------------------- layout


def layout(view: View, left: int, top: int, width: int) -> int:
    """Give ``view`` and its descendants bounds; return its height."""
    if view.layout == "hscroll":  # children side by side at their own widths, scrolled, cut at the edges
        h = view.height or 120
        x = left - view.scroll_x
        for child in view.children:
            w = child.width or 200
            layout(child, x, top, w)
            x += w
        for v in view.walk():
            if v is not view:
                l, t, r, b = v.bounds
                l, r = min(max(l, left), left + width), min(max(r, left), left + width)
                v.bounds = (l, t, r, top + h if v in view.children else b)
        view.bounds = (left, top, left + width, top + h)
        return h
    if view.layout == "row" and view.children:
        total = sum(c.weight for c in view.children) or 1.0
        fixed = [c for c in view.children if c.weight == 0]
        fixed_w = 150 * len(fixed)
        x = left
        h = view.height or 0
        for child in view.children:
            w = 150 if child.weight == 0 else int((width - fixed_w) * child.weight / total)
            ch = layout(child, x, top, w)
            h = max(h, ch)
            x += w
        for child in view.children:  # stretch to the row's height
            l, t, r, _ = child.bounds
            child.bounds = (l, t, r, top + h)
        view.bounds = (left, top, left + width, top + h)
        return h
    if view.children:
        y = top
        for child in view.children:
            y += layout(child, left, y, width)
        h = max(view.height, y - top)
    else:
        h = view.height or 120
    view.bounds = (left, top, left + width, top + h)
    return h


# ---------------------------------------------------------------- dump


_FLAG_ATTRS = ("checkable", "checked", "clickable", "enabled", "focusable", "focused", "scrollable",
               "long-clickable", "password", "selected")


def _flags(v: View) -> dict[str, bool]:
    return {
        "checkable": v.checkable,
        "checked": v.checked,
        "clickable": v.clickable,
        "enabled": v.enabled,
        "focusable": v.clickable or v.editable,
        "focused": v.focused,
        "scrollable": v.scrollable,
        "long-clickable": v.on_long_click is not None,
        "password": v.password,
        "selected": v.selected,
    }


def _labelled(v: View) -> bool:
    """Whether a node or one of its descendants has text or a description (uiautomator's NAF check)."""
    return any(n.text or n.desc or (n.editable and n.hint) for n in v.walk())


def dump_node(v: View, index: int, out: list[str], depth: int, drawing_order: int = 0) -> None:
    """One node as uiautomator (Android 11+) writes it.

    An empty editable field shows its hint as its text, and every editable field
    carries the ``hint`` attribute; a clickable node with no text or description
    anywhere below it is marked ``NAF="true"`` (not accessibility friendly).
    """
    l, t, r, b = v.bounds
    shown = "•" * len(v.text) if v.password else v.text
    if v.editable and not v.text:
        shown = v.hint
    rid = f"{v.package}:id/{v.rid}" if v.rid else ""
    flags = _flags(v)
    naf = 'NAF="true" ' if (v.clickable or v.on_long_click is not None) and not _labelled(v) else ""
    visible = "true" if r > l and b > t else "false"
    attrs = (
        f'{naf}index="{index}" text={quoteattr(shown)} resource-id={quoteattr(rid)} class={quoteattr(v.cls)} '
        f'package={quoteattr(v.package)} content-desc={quoteattr(v.desc)} '
        + " ".join(f'{k}="{str(flags[k]).lower()}"' for k in _FLAG_ATTRS)
        + f' visible-to-user="{visible}" bounds="[{l},{t}][{r},{b}]" drawing-order="{drawing_order}"'
        + (f" hint={quoteattr(v.hint)}" if v.editable else "")
    )
    pad = "  " * depth
    if v.children:
        out.append(f"{pad}<node {attrs}>")
        for i, child in enumerate(v.children):
            dump_node(child, i, out, depth + 1, i + 1)
        out.append(f"{pad}</node>")
    else:
        out.append(f"{pad}<node {attrs} />")


def dump_xml(windows: list[View], rotation: int = 0) -> str:
    out = ["<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>", f'<hierarchy rotation="{rotation}">']
    for i, w in enumerate(windows):
        dump_node(w, i, out, 1)
    out.append("</hierarchy>")
    return "\n".join(out)


# ---------------------------------------------------------------- draw


def draw_view(d: ImageDraw.ImageDraw, v: View) -> None:
    l, t, r, b = v.bounds
    if r - l <= 0 or b - t <= 0:
        return
    style = v.style
    if style == "row":
        d.line([(l + PAD, b - 1), (r - PAD, b - 1)], fill=LINE, width=2)
        if v.selected or v.checked:
            d.rectangle([l, t, r, b - 2], fill=(232, 240, 254))
    elif style in ("button", "danger"):
        color = DANGER if style == "danger" else ACCENT
        if not v.enabled:
            color = (180, 180, 190)
        d.rounded_rectangle([l + 24, t + 18, r - 24, b - 18], radius=40, fill=color)
    elif style == "field":
        d.rounded_rectangle([l + PAD, t + 14, r - PAD, b - 14], radius=18, fill=FIELD_BG,
                            outline=ACCENT if v.focused else LINE, width=4 if v.focused else 2)
    elif style == "switch":
        cx, cy = (l + r) // 2, (t + b) // 2
        on = v.checked
        d.rounded_rectangle([cx - 60, cy - 30, cx + 60, cy + 30], radius=30,
                            fill=ACCENT if on else (190, 190, 200))
        kx = cx + 30 if on else cx - 30
        d.ellipse([kx - 26, cy - 26, kx + 26, cy + 26], fill=(255, 255, 255))
        return
    elif style == "radio":
        cy = (t + b) // 2
        d.ellipse([l + PAD, cy - 26, l + PAD + 52, cy + 26], outline=ACCENT, width=5)
        if v.checked:
            d.ellipse([l + PAD + 13, cy - 13, l + PAD + 39, cy + 13], fill=ACCENT)
    elif style == "icon":
        cx, cy = (l + r) // 2, (t + b) // 2
        glyph = v.hint or "?"
        f = font(60)
        w = f.getlength(glyph)
        d.text((cx - w / 2, cy - 36), glyph, font=f, fill=FG)
        return
    elif style == "fab":
        d.ellipse([l, t, r, b], fill=ACCENT)
        if v.hint and not v.text:
            f = font(80)
            w = f.getlength(v.hint)
            d.text(((l + r - w) / 2, (t + b) / 2 - 48), v.hint, font=f, fill=(255, 255, 255))
            return
    elif style == "key":
        _draw_key(d, v)
        return
    elif style == "sysicon":
        _draw_system_icon(d, v)
        return
    elif style == "chip":
        if r - l > 40:
            d.rounded_rectangle([l + 8, t + 20, r - 8, b - 20], radius=40, fill=(232, 240, 254) if v.selected else BG,
                                outline=ACCENT if v.selected else LINE, width=3)
    elif style == "tile":
        d.rounded_rectangle([l + 16, t + 16, r - 16, b - 16], radius=36,
                            fill=ACCENT if v.checked else (220, 222, 230))
    elif style == "appicon":
        cx = (l + r) // 2
        d.rounded_rectangle([cx - 70, t + 20, cx + 70, t + 160], radius=36, fill=_icon_color(v.text))
    _draw_text(d, v)


KEY_BG, KEY_SPECIAL_BG = (255, 255, 255), (186, 190, 202)
ICON = (170, 170, 180)  # status-bar icons: light, so OCR does not take them for letters


def _draw_key(d: ImageDraw.ImageDraw, v: View) -> None:
    """One key of the on-screen keyboard: a rounded cap with its glyph (``hint``, else its text)."""
    l, t, r, b = v.bounds
    special = len(v.desc) > 1 or v.rid.endswith("space")
    d.rounded_rectangle([l + 6, t + 10, r - 6, b - 10], radius=14, fill=KEY_SPECIAL_BG if special else KEY_BG)
    glyph = v.hint or v.text
    if glyph:
        f = font(48 if len(glyph) == 1 else 34)
        d.text(((l + r - f.getlength(glyph)) / 2, (t + b) / 2 - 30), glyph, font=f, fill=FG)


def _draw_system_icon(d: ImageDraw.ImageDraw, v: View) -> None:
    """A small status-bar icon: Wi-Fi (bars, hollow when offline), battery (filled to its level), a dot.

    Drawn small and flat so that OCR does not read them as letters.
    """
    l, t, r, b = v.bounds
    cx, cy = (l + r) // 2, (t + b) // 2
    if v.hint in ("wifi", "nowifi"):
        for i in range(4):  # signal bars, rising to the right
            x = cx - 20 + i * 11
            top = cy + 14 - (i + 1) * 7
            if v.hint == "wifi":
                d.rectangle([x, top, x + 6, cy + 14], fill=ICON)
            else:
                d.rectangle([x, top, x + 6, cy + 14], outline=ICON, width=2)
    elif v.hint == "battery":
        level = int("".join(ch for ch in v.desc if ch.isdigit()) or 0)
        d.rectangle([cx - 22, cy - 9, cx + 18, cy + 9], outline=ICON, width=2)
        d.rectangle([cx + 18, cy - 4, cx + 22, cy + 4], fill=ICON)
        d.rectangle([cx - 19, cy - 6, cx - 19 + int(34 * min(level, 100) / 100), cy + 6], fill=ICON)
    elif v.hint == "airplane":
        d.polygon([(cx, cy - 14), (cx + 12, cy + 10), (cx, cy + 4), (cx - 12, cy + 10)], fill=ICON)
    else:
        d.ellipse([cx - 8, cy - 8, cx + 8, cy + 8], fill=ICON)


def _icon_color(label: str) -> tuple[int, int, int]:
    h = sum(ord(c) * (i + 1) for i, c in enumerate(label))
    return (60 + h * 37 % 150, 60 + h * 53 % 150, 60 + h * 97 % 150)


def _draw_text(d: ImageDraw.ImageDraw, v: View) -> None:
    l, t, r, b = v.bounds
    value = v.text
    color = FG
    if v.password and value:
        value = "*" * len(value)  # the bundled font has no bullet glyph
    if v.editable and not value:
        value, color = v.hint, MUTED
    if not value:
        return
    if v.style in ("button", "danger", "fab"):
        color = (255, 255, 255)
    elif v.style in ("muted", "section"):
        color = MUTED if v.style == "muted" else ACCENT
    elif not v.enabled:
        color = (160, 160, 170)
    f = font(v.size)
    inner = r - l - 2 * PAD
    if v.style == "radio":
        inner -= 80
    lines = wrap(value, v.size, max(inner, 40))
    line_h = int(v.size * 1.35)
    if v.style == "appicon":
        y = t + 175
    else:
        y = t + max(0, (b - t - line_h * len(lines)) // 2)
    for line in lines:
        if y + line_h > b + 4:
            break
        if v.align == "center":
            x = l + (r - l - f.getlength(line)) / 2
        else:
            x = l + PAD + (80 if v.style == "radio" else 0) + (24 if v.style == "field" else 0)
        d.text((x, y), line, font=f, fill=color)
        y += line_h


def draw(windows: list[View], *, size: tuple[int, int] = (WIDTH, HEIGHT), black: bool = False) -> Image.Image:
    img = Image.new("RGB", size, (0, 0, 0) if black else BG)
    if black:
        return img
    d = ImageDraw.Draw(img)
    for w in windows:
        if w.style in ("statusbar", "navbar", "titlebar", "shade", "keyboard", "scrim"):
            l, t, r, b = w.bounds
            fill = {"statusbar": (236, 236, 240), "navbar": (236, 236, 240), "titlebar": (255, 255, 255),
                    "shade": (40, 42, 54), "keyboard": (214, 216, 224), "scrim": (245, 245, 248)}[w.style]
            d.rectangle([l, t, r, b], fill=fill)
        for v in w.walk():
            if v is w and w.style in ("statusbar", "navbar", "titlebar", "shade", "keyboard", "scrim"):
                continue
            draw_view(d, v)
    return img


def encode_png(img: Image.Image) -> bytes:
    """Encode an RGB image as PNG, fast: no row filters, zlib level 1.

    Screens are mostly flat colour, so unfiltered rows compress well enough,
    and this is 2-4x faster than Pillow's encoder, which dominates the cost of
    a screenshot otherwise.
    """
    import struct
    import zlib

    width, height = img.size
    raw = img.convert("RGB").tobytes()
    stride = width * 3
    rows = b"".join(b"\x00" + raw[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")
