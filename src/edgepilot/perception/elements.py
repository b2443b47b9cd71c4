"""Which nodes of a screen a model is shown, and as what.

A real app's tree is not what a person sees: keyboards expose every key,
windows and overlays lie over pages that stay in the tree, rows come as a
clickable wrapper and three text views, icons have no name. This module turns
a tree into the elements an agent acts on:

- hidden nodes go: those the tree marks invisible, those off the screen, and
  (on Android, whose trees say how windows and views stack) those under
  another window (the keyboard and the system bars lie over the app; the app
  in front over what is behind it) or under a larger clickable overlay drawn
  after them (a dialog's scrim), so the point a tap on them would hit
  belongs to something else;
- an on-screen keyboard becomes one ``Keyboard`` element that cannot be
  tapped (typing goes through the ``type`` action);
- plain text folds into the clickable row that holds it (its text and its
  description both), a wrapper with one interactive child of the same size
  becomes one element, and exact duplicates go;
- an interactive element with neither text nor description gets a ``name``:
  the words of its resource id, else the text beside or above it, else its
  place on the screen.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from edgepilot.perception.nodes import Bounds, UINode

SYSTEM_UI = "com.android.systemui"
STATUS_BAR_FRACTION = 0.05
"""The top strip of the screen, as a fraction of its height, where the system's status bar lies."""
STATUS_BAR_MAX_PX = 130
"""...and in pixels, whatever the screen's height: 24 to 48 dp is 63 to 126 px at 420 dpi."""

KEYBOARD_PACKAGES = frozenset({
    "com.google.android.inputmethod.latin", "com.android.inputmethod.latin", "com.touchtype.swiftkey",
    "com.samsung.android.honeyboard", "com.sec.android.inputmethod", "com.baidu.input", "com.baidu.input_mi",
    "com.sohu.inputmethod.sogou", "com.sohu.inputmethod.sogou.xiaomi", "com.iflytek.inputmethod",
    "com.tencent.qqpinyin", "ru.yandex.androidkeyboard", "com.google.android.apps.inputmethod.hindi",
    "com.android.adbkeyboard", "com.huawei.ohos.inputmethod", "com.miui.securityinputmethod",
})
KEYBOARD_DESC = "on-screen keyboard (type text with the type action, not by tapping keys)"


def is_keyboard_package(package: str) -> bool:
    """Whether ``package`` is an input method (its window is the on-screen keyboard)."""
    return package in KEYBOARD_PACKAGES or "inputmethod" in package or package.endswith((".keyboard", "keyboard"))


def in_status_bar(node: UINode, screen_height: int) -> bool:
    """Whether ``node`` belongs to the system's status bar (a clock, a battery, signal and notification icons)."""
    if node.package != SYSTEM_UI:
        return False
    if "status_bar" in node.resource_id or node.bounds.bottom <= screen_height * STATUS_BAR_FRACTION:
        return True
    return node.bounds.bottom <= STATUS_BAR_MAX_PX  # landscape: the bar keeps its height, the screen is shorter


def screen_elements(nodes: Sequence[UINode], width: int, height: int, package: str = "", *,
                    hide: bool = True) -> tuple[UINode, ...]:
    """The elements a model is shown for a tree, in document order (their indices are the actions' targets).

    Args:
        nodes: the whole tree in document order, with parent indices.
        width, height: the screen in the tree's orientation.
        package: the app in front (its window lies over other apps' windows).
        hide: leave out what other windows and overlays cover; False keeps everything on the screen (the
            policy's view: which of two overlapping controls takes a touch is a guess it must not rely on).
    """
    screen = Bounds(left=0, top=0, right=width, bottom=height)
    hidden = _hidden(nodes, screen, package) if hide and _android(nodes) else {
        i for i, n in enumerate(nodes) if not n.visible and hide or n.bounds.intersect(screen).area == 0}
    keyboard = [i for i, n in enumerate(nodes) if i not in hidden and is_keyboard_package(n.package)]
    hidden |= set(keyboard)
    owner = _text_owners(nodes, hidden)
    texts: dict[int, list[str]] = {}
    for i, o in owner.items():
        texts.setdefault(o, []).append(_both(nodes[i]))
    picked: list[tuple[int, UINode]] = []
    for i, n in enumerate(nodes):
        if i in hidden or i in owner or (not n.is_element and i not in texts):
            continue
        if i in texts and not n.text.strip():
            n = n.model_copy(update={"text": "\n".join(t for t in texts[i] if t.strip())})
        picked.append((i, n))
    picked = _merge_wrappers(nodes, picked)
    picked = _drop_duplicates(picked)
    picked = _fold_status_bar(picked, height)
    out = [n for _, n in picked]
    key_nodes = [nodes[i] for i in keyboard if nodes[i].is_element]
    if key_nodes:  # last, so that a keyboard opening renumbers nothing
        out.append(_keyboard_element(key_nodes, screen))
    return tuple(_named(out, width, height))


# ---------------------------------------------------------------- hidden nodes


def _android(nodes: Sequence[UINode]) -> bool:
    """Whether a tree is Android's (Java class names), where windows stack by kind and views draw in document
    order. A desktop's accessibility tree (AT-SPI, UIA, AX role names) keeps a menu's popup under the menu bar
    and says nothing of which window is in front, so nothing there is taken for hidden but what the tree hides."""
    return any("." in n.class_name for n in nodes[:50])


def _rank(root: UINode, package: str) -> int:
    """A window's place in the stack: the keyboard over the system bars over the app in front over the rest."""
    if is_keyboard_package(root.package):
        return 3
    if root.package == SYSTEM_UI:
        return 2
    return 1 if root.package == package or not package else 0


def _root_of(nodes: Sequence[UINode]) -> list[int]:
    roots = []
    for i, n in enumerate(nodes):
        p = n.parent
        roots.append(i if p is None or not 0 <= p < i else roots[p])
    return roots


def _hidden(nodes: Sequence[UINode], screen: Bounds, package: str) -> set[int]:
    """Indices of nodes a person cannot see or reach (see the module's docstring)."""
    hidden = {i for i, n in enumerate(nodes) if not n.visible or n.bounds.intersect(screen).area == 0}
    roots = _root_of(nodes)
    covers: list[tuple[int, Bounds]] = []  # (rank, the area a window covers)
    for r in sorted(set(roots)):
        rank = _rank(nodes[r], package)
        if rank >= 2:  # keyboards and system bars cover what they draw on: the panel that holds their elements
            members = [i for i, n in enumerate(nodes) if roots[i] == r and n.is_element and i not in hidden]
            if members:
                area = _panel(nodes, members, r)
                covers.append((rank, area))
        elif rank == 1:
            covers.append((rank, nodes[r].bounds))
    overlays = [i for i, n in enumerate(nodes) if n.clickable and i not in hidden
                and n.bounds.area >= screen.area // 5]
    ordered = any(n.drawing_order >= 0 for n in nodes)  # else document order stands in, and it misses elevation
    for i, n in enumerate(nodes):
        if i in hidden:
            continue
        x, y = n.bounds.intersect(screen).center
        rank = _rank(nodes[roots[i]], package)
        if any(r > rank and area.contains(x, y) for r, area in covers):
            hidden.add(i)
        elif any(roots[j] == roots[i] and _covered(nodes[j].bounds, n.bounds, x, y, partly=ordered)
                 and _above(nodes, j, i) for j in overlays):
            hidden.add(i)
    return hidden


def _panel(nodes: Sequence[UINode], members: list[int], root: int) -> Bounds:
    """The area a window's elements lie on: their union, widened to the node that holds them all (a keyboard's
    panel between its keys), unless that is the window's root (an input method's root spans the screen)."""
    area = nodes[members[0]].bounds
    for i in members[1:]:
        area = area.union(nodes[i].bounds)
    paths = [_path(nodes, i) for i in members]
    common = None
    for level in zip(*paths, strict=False):
        if len(set(level)) != 1:
            break
        common = level[0]
    if common is not None and common != root:
        area = area.union(nodes[common].bounds)
    return area


def _covered(over: Bounds, under: Bounds, x: int, y: int, *, partly: bool) -> bool:
    """Whether ``over`` hides ``under``: all of it, or (``partly``: where the tree gives the drawing order) its
    centre (x, y) when ``over`` is much larger. Without the drawing order only a whole cover counts: document
    order misses elevation (a floating button early in the tree is drawn over the list rows after it)."""
    return over.covers(under) or partly and over.contains(x, y) and over.area >= 4 * max(1, under.area)


def _path(nodes: Sequence[UINode], i: int) -> list[int]:
    """``i`` and its ancestors, root first."""
    path = [i]
    p = nodes[i].parent
    while p is not None and 0 <= p < len(nodes) and len(path) <= len(nodes):
        path.append(p)
        p = nodes[p].parent
    return path[::-1]


def _above(nodes: Sequence[UINode], j: int, i: int) -> bool:
    """Whether node ``j`` is drawn over node ``i``: neither holds the other, and at the ancestor they share,
    ``j``'s branch comes later in the drawing order (the tree's ``drawing-order``, else document order)."""
    pj, pi = _path(nodes, j), _path(nodes, i)
    k = 0
    while k < min(len(pj), len(pi)) and pj[k] == pi[k]:
        k += 1
    if k == len(pj) or k == len(pi):
        return False  # one holds the other
    cj, ci = pj[k], pi[k]
    oj, oi = nodes[cj].drawing_order, nodes[ci].drawing_order
    if oj >= 0 and oi >= 0 and oj != oi:
        return oj > oi
    return cj > ci


# ---------------------------------------------------------------- folding and merging


def _both(node: UINode) -> str:
    """A node's text and its description, each once (``Cloudy`` and ``13°C`` both stay)."""
    text, desc = node.text.strip(), node.content_desc.strip()
    if not desc or desc in text:
        return text
    if not text or text in desc:
        return desc
    return f"{desc}\n{text}"


def _text_owners(nodes: Sequence[UINode], hidden: set[int]) -> dict[int, int]:
    """Plain text nodes mapped to the clickable container (without text of its own) that holds them."""
    owners: dict[int, int] = {}
    for i, n in enumerate(nodes):
        if i in hidden or n.interactive or not (n.text.strip() or n.content_desc.strip()):
            continue
        p = n.parent
        while p is not None and 0 <= p < len(nodes):
            anc = nodes[p]
            if anc.clickable or anc.long_clickable or anc.checkable:
                if not anc.text.strip() and not anc.editable and p not in hidden:
                    owners[i] = p
                break
            if anc.scrollable:
                break
            p = anc.parent
    return owners


def _iou(a: Bounds, b: Bounds) -> float:
    inter = a.intersect(b).area
    return inter / max(1, a.area + b.area - inter)


def _merge_wrappers(nodes: Sequence[UINode], picked: list[tuple[int, UINode]]) -> list[tuple[int, UINode]]:
    """A clickable wrapper with exactly one interactive element inside, of about its size, becomes one element.

    The inner one stays where it is a field or a switch (what it is matters), or where the wrapper is a bare
    frame around it whose tap lands on it anyway; otherwise the wrapper stays and takes the inner one's label.
    Scrollable containers are never merged.
    """
    where = {i: k for k, (i, _) in enumerate(picked)}
    inner: dict[int, list[int]] = {}
    for i, n in picked:
        if not n.actionable or n.scrollable:
            continue
        p = nodes[i].parent
        while p is not None and 0 <= p < len(nodes):
            if p in where:
                if picked[where[p]][1].interactive:
                    inner.setdefault(p, []).append(i)
                break
            p = nodes[p].parent
    drop: set[int] = set()
    items = dict(picked)
    for w, kids in inner.items():
        outer = items[w]
        if len(kids) != 1 or outer.scrollable or outer.editable:
            continue
        k = kids[0]
        child = items[k]
        same_place = (not outer.label.strip() and outer.bounds.covers(child.bounds)
                      and child.bounds.contains(*outer.bounds.center))  # a bare frame round its one control
        if _iou(outer.bounds, child.bounds) < 0.8 and not same_place:
            continue
        if child.editable or child.checkable or same_place:
            if outer.text.strip() and not child.label:
                items[k] = child.model_copy(update={"content_desc": outer.text})
            drop.add(w)
        else:
            update: dict[str, object] = {"long_clickable": outer.long_clickable or child.long_clickable}
            if not outer.text.strip() and not outer.content_desc.strip():
                update |= {"text": child.text, "content_desc": child.content_desc}
            items[w] = outer.model_copy(update=update)
            drop.add(k)
    return [(i, items[i]) for i, _ in picked if i not in drop]


def _drop_duplicates(picked: list[tuple[int, UINode]]) -> list[tuple[int, UINode]]:
    seen: set[tuple] = set()
    out = []
    for i, n in picked:
        key = (n.bounds, n.class_name, n.text, n.content_desc, n.clickable, n.editable, n.checkable, n.scrollable)
        if key in seen:
            continue
        seen.add(key)
        out.append((i, n))
    return out


_CLOCK = re.compile(r"^\s*\d{1,2}:\d{2}(:\d{2})?\s*([AaPp]\.?[Mm]\.?)?\s*$")
CLOCK_IDS = ("clock", "status_bar_clock")


def shows_time(node: UINode) -> bool:
    """Whether a node's text (or description) is a time of day (``9:41``, ``11:44 AM``)."""
    return bool(_CLOCK.match(node.text or node.content_desc))


def is_clock(node: UINode) -> bool:
    """Whether a node is a clock: its resource id says so, or its text is a time of day."""
    return node.resource_id.rsplit("/", 1)[-1] in CLOCK_IDS or shows_time(node)


def _fold_status_bar(picked: list[tuple[int, UINode]], height: int) -> list[tuple[int, UINode]]:
    """The status bar as at most two elements: its clock, and one that holds every icon's words (signal,
    battery, notification icons: up to 21 elements on a real phone, which would renumber the app's elements
    whenever a notification came or went)."""
    bar = [k for k, (_, n) in enumerate(picked) if in_status_bar(n, height) and not n.interactive]
    rest = [k for k in bar if not is_clock(picked[k][1])]
    if len(rest) < 2:
        return picked
    holder, folded = rest[0], rest[1:]
    lines = [_both(picked[k][1]) for k in folded]
    node = picked[holder][1]
    text = "\n".join(t for t in ([node.text.strip()] if node.text.strip() else []) + lines if t)
    picked[holder] = (picked[holder][0], node.model_copy(update={"text": text}))
    drop = set(folded)
    return [p for k, p in enumerate(picked) if k not in drop]


def _keyboard_element(keys: list[UINode], screen: Bounds) -> UINode:
    area = keys[0].bounds
    for k in keys[1:]:
        area = area.union(k.bounds)
    return UINode(bounds=area.intersect(screen), class_name="Keyboard", package=keys[0].package,
                  content_desc=KEYBOARD_DESC)


# ---------------------------------------------------------------- names for unlabelled elements

_ID_NOISE = {"btn", "button", "iv", "img", "image", "imageview", "icon", "ic", "view", "layout", "container",
             "wrapper", "root", "content", "id", "ll", "rl", "fl", "cl", "tv", "ib", "item", "widget", "frame",
             "holder", "parent", "main", "android", "res", "action", "bar", "menu", "list"}


def id_words(resource_id: str) -> str:
    """The meaningful words of a resource id (``com.app:id/btn_send_message`` -> ``send message``)."""
    name = resource_id.rsplit("/", 1)[-1]
    if not name or "obfuscated" in name:
        return ""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    words = [w for w in re.split(r"[^A-Za-z]+", spaced.lower()) if len(w) > 1]
    meaningful = [w for w in words if w not in _ID_NOISE]
    return " ".join(meaningful)


def _named(elements: list[UINode], width: int, height: int) -> list[UINode]:
    texts = [n for n in elements if not n.interactive and n.label.strip() and not in_status_bar(n, height)]
    out = []
    for n in elements:
        if n.actionable and not n.label.strip():
            name = id_words(n.resource_id) or _neighbour_text(n, texts, width) or _place(n, width, height)
            n = n.model_copy(update={"name": name})
        out.append(n)
    return out


def _neighbour_text(node: UINode, texts: list[UINode], width: int) -> str:
    """The nearest text on the same line beside ``node``, else (for a field or a switch) the caption just above."""
    b = node.bounds
    best, best_gap = None, width * 0.4
    for t in texts:
        overlap = min(b.bottom, t.bounds.bottom) - max(b.top, t.bounds.top)
        if overlap < 0.5 * min(b.height, t.bounds.height):
            continue
        gap = b.left - t.bounds.right if t.bounds.right <= b.left else t.bounds.left - b.right + 1
        if 0 <= gap < best_gap:
            best, best_gap = t, gap
    if best is None and (node.editable or node.checkable):  # a field's or a switch's caption
        for t in texts:
            above = b.top - t.bounds.bottom
            if 0 <= above <= max(b.height, 60) and min(b.right, t.bounds.right) > max(b.left, t.bounds.left):
                if best is None or t.bounds.bottom > best.bounds.bottom:
                    best = t
    return best.label.split("\n")[0][:60] if best is not None else ""


def _place(node: UINode, width: int, height: int) -> str:
    x, y = node.bounds.center
    row = "top" if y < height / 3 else "bottom" if y > 2 * height / 3 else "middle"
    col = "left" if x < width / 3 else "right" if x > 2 * width / 3 else "centre"
    return f"unlabelled {node.short_class or 'element'}, {row} {col}"
