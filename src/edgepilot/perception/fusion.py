"""One element list from a tree and the pixels: OCR merged into the tree, or a screen read from pixels alone.

:func:`fuse` keeps the accessibility tree and lets OCR fill its gaps:

- an OCR line whose text a tree node already shows (the node overlaps the
  line and holds the line's text, or the line holds the node's) is dropped;
- a line of one or two characters inside a leaf node that has a label is
  that icon's glyph (``+`` on "Add alarm") and is dropped too;
- an OCR line inside a leaf node with no text and no description (an image,
  an unlabelled icon button) becomes that node's text when all the leaf's
  lines sit on one row;
- every other line is added as a new node (``source="ocr"``, class ``Text``)
  under the smallest node that contains it. Under a clickable container with
  no text it folds into the container like any other text; elsewhere it is
  marked clickable, since a tree that lacks text (a canvas, a web view) is
  usually also what must be tapped.

:func:`observe_pixels` builds an :class:`Observation` from a screenshot alone:
OCR lines plus :func:`detect_widgets`, a cheap detector of non-text widgets
(icons, switches, check boxes, buttons around text) from the edges of a
downscaled grayscale image. Everything it finds is clickable, since there is
no tree to say otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edgepilot.perception.ocr import OcrEngine, TextBox, default_engine, load_image, reading_order
from edgepilot.perception.textmatch import matches
from edgepilot.perception.types import Bounds, Observation, UINode

OCR_CLASS = "Text"


# ---------------------------------------------------------------- tree + OCR


def _smallest_containing(nodes: Sequence[UINode], x: int, y: int) -> int | None:
    best, best_key = None, None
    for i, n in enumerate(nodes):
        if n.bounds.area and n.bounds.contains(x, y):
            key = (n.bounds.area, -n.depth)
            if best_key is None or key < best_key:
                best, best_key = i, key
    return best


def _overlap(a: Bounds, b: Bounds) -> float:
    """Intersection over the smaller of the two areas."""
    small = min(a.area, b.area)
    return a.intersect(b).area / small if small else 0.0


def _already_shown(box: TextBox, nodes: Sequence[UINode]) -> bool:
    for n in nodes:
        if not n.label or _overlap(n.bounds, box.bounds) < 0.5:
            continue
        for label in (n.text, n.content_desc):
            if label and (matches(box.text, label) or matches(label, box.text)):
                return True
    return False


def _children(nodes: Sequence[UINode]) -> set[int]:
    """Indices of nodes that have at least one child."""
    return {n.parent for n in nodes if n.parent is not None}


def _one_row(boxes: Sequence[TextBox]) -> bool:
    first = boxes[0].bounds
    return all(b.bounds.top < first.bottom and first.top < b.bounds.bottom for b in boxes)


def _clickable_above(nodes: Sequence[UINode], index: int | None) -> bool:
    while index is not None and 0 <= index < len(nodes):
        if nodes[index].clickable or nodes[index].long_clickable:
            return True
        index = nodes[index].parent
    return False


def fuse(obs: Observation, boxes: Sequence[TextBox]) -> Observation:
    """Merge OCR lines into an observation's tree (rules in the module docstring).

    Args:
        obs: an observation from a tree reader (its nodes keep their order and flags).
        boxes: OCR lines of the same screen, in the same pixels.

    Returns:
        A new observation whose nodes are the tree's, some with text filled in,
        plus one ``source="ocr"`` node per line the tree lacks, placed in
        document order right after the subtree of the node that contains it.
    """
    nodes = list(obs.nodes)
    parents_of_children = _children(nodes)
    fills: dict[int, list[TextBox]] = {}
    adds: list[tuple[int | None, TextBox]] = []
    for box in boxes:
        if not box.text.strip() or _already_shown(box, nodes):
            continue
        owner = _smallest_containing(nodes, *box.bounds.center)
        leaf = owner is not None and owner not in parents_of_children
        if leaf and not nodes[owner].label:
            fills.setdefault(owner, []).append(box)
        elif leaf and len(box.text.strip()) <= 2:
            continue  # the glyph of an icon that the tree already names ("+" on "Add alarm")
        else:
            adds.append((owner, box))
    for index, lines in fills.items():
        if _one_row(lines):
            text = " ".join(b.text for b in reading_order(list(lines)))
            nodes[index] = nodes[index].model_copy(update={"text": text})
        else:
            adds += [(index, b) for b in lines]
    if not adds:
        return _with_nodes(obs, nodes)
    return _with_nodes(obs, _insert(nodes, adds, obs.package))


def add_ocr(obs: Observation, engine: OcrEngine | None = None) -> Observation:
    """:func:`fuse` with the observation's own screenshot read by ``engine`` (default: the shared one).

    An observation without a screenshot, or of a secure (black) screen, comes back unchanged.

    Raises:
        PerceptionError: the screenshot is unreadable, or OCR is not installed.
    """
    if not obs.screenshot_png or obs.secure:
        return obs
    return fuse(obs, (engine or default_engine()).read(obs.screenshot_png))


def _insert(nodes: list[UINode], adds: list[tuple[int | None, TextBox]], package: str) -> list[UINode]:
    """Insert OCR nodes after their parents' subtrees and renumber every parent index."""
    end = list(range(len(nodes)))  # last index of each node's subtree
    for i in range(len(nodes) - 1, -1, -1):
        p = nodes[i].parent
        if p is not None and 0 <= p < len(nodes):
            end[p] = max(end[p], end[i])
    after: dict[int, list[tuple[int | None, TextBox]]] = {}
    for parent, box in adds:
        after.setdefault(len(nodes) - 1 if parent is None else end[parent], []).append((parent, box))
    order: list[tuple[int | None, int | None, TextBox | None]] = []  # (old index, parent, box)
    for i in range(len(nodes)):
        order.append((i, None, None))
        for parent, box in sorted(after.get(i, []), key=lambda pb: (pb[1].bounds.top, pb[1].bounds.left)):
            order.append((None, parent, box))
    if not nodes:
        order = [(None, None, box) for _, box in adds]
    new_index = {old: new for new, (old, _, _) in enumerate(order) if old is not None}
    out: list[UINode] = []
    for old, parent, box in order:
        if old is not None:
            n = nodes[old]
            out.append(n if n.parent is None else n.model_copy(update={"parent": new_index.get(n.parent)}))
            continue
        assert box is not None
        host = nodes[parent] if parent is not None else None
        out.append(UINode(bounds=box.bounds, text=box.text, class_name=OCR_CLASS, source="ocr",
                          package=host.package if host else package,
                          depth=host.depth + 1 if host else 0,
                          parent=new_index[parent] if parent is not None else None,
                          clickable=not _clickable_above(nodes, parent)))
    return out


def _with_nodes(obs: Observation, nodes: Sequence[UINode]) -> Observation:
    data = {name: getattr(obs, name) for name in type(obs).model_fields}
    data["nodes"] = tuple(nodes)
    return Observation(**data)


# ---------------------------------------------------------------- pixels only


WidgetKind = Literal["Button", "EditText", "Switch", "CheckBox", "ImageButton"]


@dataclass(frozen=True)
class Widget:
    """A control found in the pixels; ``text`` is the line drawn inside it (a button's label, a field's text)."""

    kind: WidgetKind
    bounds: Bounds
    text: str = ""
    checked: bool | None = None


def _text_mask(shape: tuple[int, int], boxes: Sequence[TextBox], f: float) -> Any:
    import numpy as np

    mask = np.zeros(shape, np.int32)
    for b in boxes:
        mask[int(b.bounds.top * f):int(b.bounds.bottom * f) + 1, int(b.bounds.left * f):int(b.bounds.right * f) + 1] = 1
    return mask.cumsum(0).cumsum(1)


def _masked_share(integral: Any, x0: int, y0: int, x1: int, y1: int) -> float:
    """Share of the rectangle [x0, x1) x [y0, y1) that the integral image's mask covers."""
    total = integral[y1 - 1, x1 - 1]
    if x0:
        total -= integral[y1 - 1, x0 - 1]
    if y0:
        total -= integral[y0 - 1, x1 - 1]
    if x0 and y0:
        total += integral[y0 - 1, x0 - 1]
    return float(total) / max(1, (x1 - x0) * (y1 - y0))


def detect_widgets(image: Any, boxes: Sequence[TextBox], *, contrast: int = 16) -> list[Widget]:
    """Find controls in a screenshot from its edges: icons, switches, check boxes, buttons around text.

    The screenshot is scaled to at most 1200 pixels on its longer side,
    its morphological gradient thresholded at ``contrast`` grey levels, and
    each connected group of edges becomes a candidate: one that is mostly
    covered by OCR lines is text; one that holds a line and is at most a few
    lines tall is a button with that text (a field when the text is not
    centred but starts at its left); one with no text is a switch (a
    pill about twice as wide as tall), a check box (a small hollow square or
    circle), an empty field (a wide hollow box) or an icon. Thin lines
    (separators) and panels larger than a third of the screen are not controls.

    Args:
        image: the screenshot (anything :func:`edgepilot.perception.ocr.load_image` reads).
        boxes: the OCR lines of the same screenshot.
        contrast: the edge threshold, in grey levels.

    Raises:
        PerceptionError: the image is unreadable or OpenCV is missing.
    """
    return _widgets(load_image(image), boxes, contrast)


def _widgets(img: Any, boxes: Sequence[TextBox], contrast: int = 16) -> list[Widget]:
    import cv2
    import numpy as np

    h, w = img.shape[:2]
    f = min(1.0, 1200 / max(h, w))
    small = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (max(1, round(w * f)), max(1, round(h * f))),
                       interpolation=cv2.INTER_AREA)
    kernel = np.ones((3, 3), np.uint8)
    edges = cv2.dilate((cv2.morphologyEx(small, cv2.MORPH_GRADIENT, kernel) > contrast).astype(np.uint8), kernel)
    count, _, stats, _ = cv2.connectedComponentsWithStats(edges, connectivity=8)
    covered = _text_mask(small.shape, boxes, f)
    min_side = max(12.0, 0.012 * max(h, w))
    line_h = sorted(b.bounds.height for b in boxes)[len(boxes) // 2] if boxes else 0.04 * max(h, w)
    found: list[Widget] = []
    for x, y, bw, bh, area in (tuple(int(v) for v in stats[i]) for i in range(1, count)):
        b = Bounds(left=int(x / f), top=int(y / f), right=min(w, int((x + bw) / f)), bottom=min(h, int((y + bh) / f)))
        if min(b.width, b.height) < min_side or b.area > w * h / 3 or b.width > 0.95 * w and b.height < min_side * 2:
            continue  # a separator, a bar's edge, a whole panel
        inside = [t for t in boxes if b.contains(*t.bounds.center)]
        if inside and _switch_shape(b, line_h) and all(len(t.text) <= 2 for t in inside):
            inside = []  # a switch's knob, read as "O"
        if inside:
            found += _around_text(b, inside)
        elif _masked_share(covered, x, y, x + bw, y + bh) < 0.6:  # else the ink of a text line
            found += _textless(img, small, (x, y, bw, bh), area / max(1, bw * bh), b, line_h)
    return _outermost(found)


def _around_text(b: Bounds, inside: list[TextBox]) -> list[Widget]:
    """A button or field drawn around one row of text; nothing for the text's own ink or a panel of several rows."""
    text_area = _union(t.bounds for t in inside).area
    if b.area < 1.3 * text_area or b.height > 3.5 * max(t.bounds.height for t in inside) or not _one_row(inside):
        return []
    return [Widget(_text_widget_kind(b, inside), b, " ".join(t.text for t in reading_order(list(inside))))]


def _textless(img: Any, small: Any, rect: tuple[int, int, int, int], fill: float, b: Bounds,
              line_h: float) -> list[Widget]:
    """A control with no text: a switch, an empty field, a check box or an icon, told apart by shape."""
    import cv2
    import numpy as np

    aspect = b.width / b.height
    if aspect > 4 and b.height <= 3 * line_h and _hollow(small, *rect):
        return [Widget("EditText", b)]
    if _switch_shape(b, line_h):
        saturation = cv2.cvtColor(img[b.top:b.bottom, b.left:b.right], cv2.COLOR_BGR2HSV)[:, :, 1]
        return [Widget("Switch", b, checked=bool(np.percentile(saturation, 75) > 80))]  # a coloured track is on
    if 0.75 <= aspect <= 1.33 and b.height <= 1.5 * line_h and fill < 0.5 and _hollow(small, *rect):
        return [Widget("CheckBox", b, checked=False)]
    if 1 / 6 <= aspect <= 6:
        return [Widget("ImageButton", b)]
    return []


def _switch_shape(b: Bounds, line_h: float) -> bool:
    """A pill about twice as wide as tall, no taller than two lines of text."""
    return 1.5 <= b.width / b.height <= 2.8 and b.height <= 2 * line_h


def _union(bounds: Any) -> Bounds:
    bounds = list(bounds)
    return Bounds(left=min(b.left for b in bounds), top=min(b.top for b in bounds),
                  right=max(b.right for b in bounds), bottom=max(b.bottom for b in bounds))


def _text_widget_kind(box: Bounds, lines: Sequence[TextBox]) -> WidgetKind:
    """A box around text: a button when the text is centred in it, a field when it starts at its left."""
    left = min(t.bounds.left for t in lines)
    right = max(t.bounds.right for t in lines)
    centred = abs((left + right) / 2 - box.center[0]) < 0.1 * box.width
    if not centred and left - box.left < 0.25 * box.width:
        return "EditText"
    return "Button"


def _hollow(small: Any, x: int, y: int, bw: int, bh: int) -> bool:
    """Whether a square's middle is one flat colour (an empty check box or radio button)."""
    mx, my = max(1, bw // 4), max(1, bh // 4)
    middle = small[y + my:y + bh - my, x + mx:x + bw - mx]
    return middle.size > 0 and int(middle.max()) - int(middle.min()) < 24


def _outermost(widgets: list[Widget]) -> list[Widget]:
    """Drop widgets that lie inside another one (the glyph inside an icon's outline)."""
    keep = []
    for a in widgets:
        inside = any(b is not a and b.bounds.area > a.bounds.area and _overlap(a.bounds, b.bounds) > 0.9
                     for b in widgets)
        if not inside:
            keep.append(a)
    return keep


def keyboard_region(boxes: Sequence[TextBox], height: int) -> Bounds | None:
    """Where an on-screen QWERTY keyboard is, judged from OCR: rows of single letters in the lower half.

    Returns:
        The keyboard's extent (its rows of letter keys and the space row
        below them), or None when no keyboard is shown.
    """
    letters = [b for b in boxes if len(b.text) == 1 and b.text.isalnum() and b.bounds.top > height / 2]
    rows: list[list[TextBox]] = []
    for b in sorted(letters, key=lambda t: t.bounds.top):
        if rows and abs(rows[-1][0].bounds.top - b.bounds.top) < b.bounds.height / 2:
            rows[-1].append(b)
        else:
            rows.append([b])
    rows = [r for r in rows if len(r) >= 5]
    if len(rows) < 2:
        return None
    top = min(b.bounds.top for b in rows[0])
    bottom = max(b.bounds.bottom for b in rows[-1])
    pitch = (bottom - top) / len(rows)
    return Bounds(left=0, top=max(0, int(top - 0.4 * pitch)), right=10**6,
                  bottom=min(height, int(bottom + 1.3 * pitch)))


def observe_pixels(image: Any, *, engine: OcrEngine | None = None, boxes: Sequence[TextBox] | None = None,
                   package: str = "", activity: str = "", timestamp: float = 0.0) -> Observation:
    """Build an observation from a screenshot alone (no accessibility tree).

    Elements, numbered in reading order: OCR lines (class ``Text``), buttons
    drawn around a line of text (``Button`` or ``EditText`` with that text),
    and text-less widgets (``Switch`` with its state guessed from its colour,
    ``CheckBox``, an empty ``EditText``, ``ImageButton``). All are clickable. Lines and widgets that fall on an
    on-screen keyboard are left out and ``keyboard_shown`` is set instead.
    An all-black screenshot (a secure screen) gives no elements and
    ``secure=True``.

    Args:
        image: the screenshot (PNG bytes are kept as the observation's screenshot).
        engine: the OCR engine (default: :func:`edgepilot.perception.ocr.default_engine`).
        boxes: OCR lines already read from this screenshot (skips OCR).
        package: the foreground app, when the caller knows it.

    Raises:
        PerceptionError: the image is unreadable, or OCR is not installed.
    """
    img = load_image(image)
    h, w = img.shape[:2]
    png = bytes(image) if isinstance(image, (bytes, bytearray)) else None
    base = {"package": package, "activity": activity, "screen_width": w, "screen_height": h,
            "screenshot_png": png, "timestamp": timestamp}
    if int(img.max()) < 16:
        return Observation(nodes=(), secure=True, **base)
    if boxes is None:
        boxes = (engine or default_engine()).read_bgr(img)
    keyboard = keyboard_region(boxes, h)
    if keyboard is not None:
        boxes = [b for b in boxes if not keyboard.contains(*b.bounds.center)]
    widgets = _widgets(img, boxes)
    if keyboard is not None:
        widgets = [wd for wd in widgets if not keyboard.contains(*wd.bounds.center)]
    used = {id(t) for wd in widgets for t in boxes if wd.bounds.contains(*t.bounds.center)}  # its label or glyph
    nodes = [UINode(bounds=wd.bounds, text=wd.text, class_name=wd.kind, clickable=True, source="pixels",
                    checkable=wd.checked is not None, checked=bool(wd.checked), package=package)
             for wd in widgets]
    nodes += [UINode(bounds=t.bounds, text=t.text, class_name=OCR_CLASS, clickable=True, source="ocr",
                     package=package) for t in boxes if id(t) not in used]
    return Observation(nodes=tuple(reading_order(nodes)), keyboard_shown=keyboard is not None, **base)
