"""The OCR benchmark: speed per screenshot and how much of the tree's text OCR recovers.

It walks the virtual phone (in-process, no adb) through a fixed list of
screens across its apps, reads each 1080x2400 screenshot with the OCR engine,
and checks every visible text of the accessibility tree against what OCR read
in that text's region; it also builds the pixels-only observation of each
screen and checks it against the tree's interactive elements. A desktop-like
1280x800 screenshot, drawn with Pillow, is timed (and scored) the same way.
Fields and rules: docs/perception.md.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from edgepilot import __version__
from edgepilot.errors import SimError
from edgepilot.perception.android_tree import parse_uiautomator_xml
from edgepilot.perception.fusion import observe_pixels
from edgepilot.perception.ocr import OcrEngine, OcrSettings, TextBox
from edgepilot.perception.textmatch import matches, normalize
from edgepilot.perception.types import Bounds, Observation, UINode
from edgepilot.sim.phone import VirtualPhone

Step = tuple[str, ...]
MIN_TEXT_HEIGHT = 24  # pixels; the smallest text the virtual phone draws is 32 px tall

# Each screen: a name and the steps that reach it from the home screen of a freshly reset phone.
# ("open", app key) · ("tap", label) · ("tap_id", resource id) · ("type", text) · ("key", code) · ("shade",)
SCREENS: tuple[tuple[str, tuple[Step, ...]], ...] = (
    ("home", ()),
    ("settings", (("open", "settings"),)),
    ("settings/network", (("open", "settings"), ("tap", "Network & internet"))),
    ("settings/wifi", (("open", "settings"), ("tap", "Network & internet"), ("tap", "Wi-Fi"))),
    ("settings/wifi-password", (("open", "settings"), ("tap", "Network & internet"), ("tap", "Wi-Fi"),
                                ("tap_id", "network_name", "1"))),
    ("settings/bluetooth", (("open", "settings"), ("tap", "Connected devices"), ("tap", "Bluetooth"))),
    ("settings/display", (("open", "settings"), ("tap", "Display"))),
    ("settings/about", (("open", "settings"), ("tap", "About phone"))),
    ("contacts", (("open", "contacts"),)),
    ("contacts/contact", (("open", "contacts"), ("tap_id", "contact"))),
    ("contacts/create+keyboard", (("open", "contacts"), ("tap", "Add contact"), ("tap_id", "name"),
                                  ("type", "Ada Lovelace"))),
    ("messages", (("open", "messages"),)),
    ("messages/conversation", (("open", "messages"), ("tap_id", "conversation"))),
    ("messages/new", (("open", "messages"), ("tap", "Start chat"))),
    ("clock/alarms", (("open", "clock"),)),
    ("clock/world", (("open", "clock"), ("tap", "Clock"))),
    ("clock/add", (("open", "clock"), ("tap", "Add alarm"))),
    ("notes", (("open", "notes"),)),
    ("notes/editor", (("open", "notes"), ("tap_id", "note"))),
    ("chrome/new-tab", (("open", "browser"),)),
    ("chrome/bookmark", (("open", "browser"), ("tap_id", "bookmark"))),
    ("chrome/shop", (("open", "browser"), ("tap_id", "url_bar"), ("type", "shop.example"), ("key", "66"))),
    ("shade", (("shade",),)),
)


def _tree(phone: Any) -> tuple[UINode, ...]:
    return parse_uiautomator_xml(phone.dump_xml()).nodes


def _find(phone: Any, step: Step) -> UINode:
    kind, value = step[0], step[1]
    nth = int(step[2]) if len(step) > 2 else 0
    if kind == "tap":
        hits = [n for n in _tree(phone) if value in (n.text, n.content_desc) and n.bounds.area]
    else:
        hits = [n for n in _tree(phone) if n.resource_id.rsplit("/", 1)[-1] == value and n.bounds.area]
    if len(hits) <= nth:
        raise SimError(f"the OCR benchmark walk found no {value!r} to tap on the virtual phone")
    return hits[nth]


def go_to(phone: Any, steps: Sequence[Step]) -> None:
    """Reset the phone and follow ``steps`` (see :data:`SCREENS`)."""
    phone.reset()
    for step in steps:
        kind = step[0]
        if kind == "open":
            phone.start_app(phone.app(step[1]).package)
        elif kind in ("tap", "tap_id"):
            phone.tap(*_find(phone, step).bounds.center)
        elif kind == "type":
            phone.input_text(step[1])
        elif kind == "key":
            phone.keyevent(int(step[1]))
        elif kind == "shade":
            phone.notify("com.google.android.apps.messaging", "Grace Hopper", "Are we still on for lunch?")
            phone.swipe(540, 20, 540, 1400)
    phone.changed()


# ---------------------------------------------------------------- text recovery

def expected_texts(nodes: Sequence[UINode], width: int, height: int) -> list[UINode]:
    """The tree's visible text that a screenshot shows, one node per string.

    Counted: every node with non-empty ``text`` whose bounds lie on the screen.
    Not counted, because the screen does not show them as text: password
    fields (drawn as masks); Switch/ToggleButton state text (``ON``/``OFF`` is
    the widget's accessibility text, the switch is drawn as a track and knob);
    and nodes less than :data:`MIN_TEXT_HEIGHT` pixels tall on screen (list
    rows cut off at the edge of a scrolling list, which the tree still reports).
    """
    screen = Bounds(left=0, top=0, right=width, bottom=height)
    out = []
    for n in nodes:
        if not n.text.strip() or n.password or n.bounds.intersect(screen).height < MIN_TEXT_HEIGHT:
            continue
        if n.checkable and n.short_class in ("Switch", "ToggleButton", "SwitchCompat", "SwitchMaterial"):
            continue
        out.append(n)
    return out


def text_in(region: Bounds, boxes: Sequence[TextBox]) -> str:
    """OCR's text for a region: the lines that overlap it by half of the smaller of the two, joined by spaces."""
    return " ".join(b.text for b in boxes
                    if region.intersect(b.bounds).area * 2 >= min(b.bounds.area, region.area) > 0)


def recovered(node: UINode, boxes: Sequence[TextBox], threshold: float = 0.8) -> bool:
    """Whether OCR read ``node``'s text in its region (edit similarity ≥ ``threshold``, see docs)."""
    return matches(node.text, text_in(node.bounds, boxes), threshold)


def exact(expected: str, read: str) -> bool:
    """Whether ``read`` holds ``expected`` character for character, ignoring case and spaces."""
    return normalize(expected).replace(" ", "") in normalize(read).replace(" ", "")


# ---------------------------------------------------------------- a desktop-like screenshot

def desktop_screenshot() -> tuple[bytes, list[tuple[str, Bounds]]]:
    """A 1280x800 desktop drawn with Pillow: a panel, a text editor, a file dialog.

    Returns:
        The PNG, and every string drawn with its box (the ground truth).
    """
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (1280, 800), (58, 96, 140))
    d = ImageDraw.Draw(img)
    truth: list[tuple[str, Bounds]] = []

    def text(x: int, y: int, s: str, size: int = 14, fill: tuple[int, int, int] = (30, 30, 30)) -> None:
        f = ImageFont.load_default(size=size)
        d.text((x, y), s, font=f, fill=fill)
        left, top, right, bottom = d.textbbox((x, y), s, font=f)
        truth.append((s, Bounds(left=left, top=top, right=right, bottom=bottom)))

    # top panel
    d.rectangle([0, 0, 1280, 28], fill=(36, 36, 40))
    text(12, 6, "Activities", 14, (235, 235, 235))
    text(600, 6, "Tue 9:41", 14, (235, 235, 235))
    text(1200, 6, "87%", 14, (235, 235, 235))
    # editor window
    d.rectangle([60, 60, 860, 740], fill=(255, 255, 255), outline=(150, 150, 155))
    d.rectangle([60, 60, 860, 96], fill=(232, 232, 236))
    text(380, 70, "notes.txt - Mousepad", 14)
    for i in range(3):  # close, maximize, minimize
        d.ellipse([780 + i * 26, 68, 800 + i * 26, 88], fill=(210, 210, 215))
    x = 72
    for item in ("File", "Edit", "Search", "View", "Document", "Help"):
        text(x, 104, item, 14)
        x += int(d.textlength(item, font=ImageFont.load_default(size=14))) + 22
    d.line([60, 128, 860, 128], fill=(220, 220, 225))
    for i in range(7):
        d.rounded_rectangle([72 + i * 36, 136, 100 + i * 36, 164], radius=4, outline=(120, 120, 130), width=2)
    lines = ("Shopping list for the weekend", "- milk, eggs, flour and two lemons", "- coffee beans (the dark roast)",
             "", "Call the landlord about the heating on Monday.", "Meeting notes 14 March:",
             "  budget approved, launch moved to 2 April", "  Ada owns the release checklist",
             "", "Passwords go in the password manager, not here.", "TODO: renew passport before June")
    for i, line in enumerate(lines):
        if line:
            text(80, 184 + i * 24, line, 15)
    d.rectangle([60, 712, 860, 740], fill=(240, 240, 242))
    text(72, 718, "Line 12, Column 4", 13, (80, 80, 85))
    text(600, 718, "Plain Text", 13, (80, 80, 85))
    text(760, 718, "UTF-8", 13, (80, 80, 85))
    # file dialog
    d.rectangle([900, 120, 1240, 620], fill=(250, 250, 250), outline=(150, 150, 155))
    d.rectangle([900, 120, 1240, 156], fill=(232, 232, 236))
    text(1030, 130, "Open File", 14)
    for i, place in enumerate(("Home", "Documents", "Downloads", "Music", "Pictures", "Videos", "Trash")):
        d.rounded_rectangle([914, 172 + i * 40, 934, 192 + i * 40], radius=3, fill=(120, 140, 170))
        text(946, 174 + i * 40, place, 14)
    d.rounded_rectangle([1010, 570, 1110, 604], radius=6, fill=(225, 225, 230))
    text(1036, 578, "Cancel", 14)
    d.rounded_rectangle([1124, 570, 1224, 604], radius=6, fill=(53, 132, 228))
    text(1155, 578, "Open", 14, (255, 255, 255))
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue(), truth


# ---------------------------------------------------------------- the benchmark

def _percentile(values: Sequence[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


def _timed_read(engine: OcrEngine, png: bytes, repeats: int,
                stages: list[dict[str, float]] | None = None) -> tuple[list[TextBox], list[float]]:
    times, boxes = [], []
    for _ in range(repeats):
        engine.clear_cache()
        t0 = time.perf_counter()
        boxes = engine.read(png)
        times.append((time.perf_counter() - t0) * 1000)
        if stages is not None:
            stages.append(dict(engine.last_timings))
    return boxes, times


def _stage_medians(stages: list[dict[str, float]]) -> dict[str, float]:
    """Median time of each stage of a read: decode, detect, recognize (ms), and the lines read."""
    keys = ("decode_ms", "detect_ms", "recognize_ms", "lines")
    return {k: round(statistics.median(s[k] for s in stages), 1) for k in keys} if stages else {}


def _rate(hit: int, total: int) -> float:
    return round(hit / total, 4) if total else 0.0


def pixels_score(elements: Sequence[UINode], pix: Observation) -> dict[str, int]:
    """How well a pixels-only observation stands in for the tree's elements.

    ``interactive``: tree elements that can be tapped, checked or typed into
    (at least :data:`MIN_TEXT_HEIGHT` tall); ``reachable``: those with a
    clickable pixels-only element whose centre lies inside them. ``fields`` /
    ``fields_found``: editable tree elements, and those with an editable
    pixels-only element inside. ``checkables`` / ``states_right``: checkable
    tree elements, and those with a checkable pixels-only element inside in
    the same on/off state.
    """
    score = dict.fromkeys(("interactive", "reachable", "fields", "fields_found", "checkables", "states_right"), 0)
    for el in elements:
        at = [q for q in pix.elements if el.bounds.contains(*q.bounds.center)]
        if (el.clickable or el.checkable or el.editable) and el.bounds.height >= MIN_TEXT_HEIGHT:
            score["interactive"] += 1
            score["reachable"] += any(q.clickable for q in at)
        if el.editable:
            score["fields"] += 1
            score["fields_found"] += any(q.editable for q in at)
        if el.checkable:
            score["checkables"] += 1
            score["states_right"] += any(q.checkable and q.checked == el.checked for q in at)
    return score


def _phone(engine: OcrEngine, n: int, repeats: int,
           progress: Callable[[str, dict[str, Any]], None] | None) -> dict[str, Any]:
    phone = VirtualPhone(serial="ocr-bench")
    width, height = phone.screen_size
    engine.read(phone.screencap_png())  # the first run of each session allocates; not timed
    times, next_ms, pixel_ms, screens, missed = [], [], [], [], []
    stages: list[dict[str, float]] = []
    counts = dict.fromkeys(("texts", "recovered", "exact"), 0)
    pixels: dict[str, int] = {}
    for i in range(n):
        name, steps = SCREENS[i % len(SCREENS)]
        go_to(phone, steps)
        png, tree = phone.screencap_png(), parse_uiautomator_xml(phone.dump_xml())
        engine.clear_cache(lines=False)  # as an agent's next look: the previous screen's lines are cached
        t0 = time.perf_counter()
        engine.read(png)
        next_ms.append((time.perf_counter() - t0) * 1000)
        boxes, ms = _timed_read(engine, png, repeats, stages)
        times += ms
        want = expected_texts(tree.nodes, width, height)
        got = [recovered(node, boxes) for node in want]
        counts["texts"] += len(want)
        counts["recovered"] += sum(got)
        counts["exact"] += sum(exact(node.text, text_in(node.bounds, boxes)) for node in want)
        missed += [{"screen": name, "text": node.text, "ocr": text_in(node.bounds, boxes)}
                   for node, ok in zip(want, got, strict=True) if not ok]
        t0 = time.perf_counter()
        pix = observe_pixels(png, boxes=boxes)
        pixel_ms.append((time.perf_counter() - t0) * 1000)
        obs = Observation(nodes=tree.nodes, package=tree.package, screen_width=width, screen_height=height)
        for key, value in pixels_score(obs.elements, pix).items():
            pixels[key] = pixels.get(key, 0) + value
        row = {"screen": name, "ms": round(statistics.median(ms), 1), "texts": len(want), "recovered": sum(got),
               "lines": len(boxes), "elements_pixels_only": len(pix.elements)}
        screens.append(row)
        if progress is not None:
            progress(name, row)
    t0 = time.perf_counter()
    engine.read(png)  # the same screenshot again
    same_ms = (time.perf_counter() - t0) * 1000
    return {
        "size": f"{width}x{height}", "screens": n, "screenshots": len(times),
        "median_ms": round(statistics.median(times), 1), "p90_ms": round(_percentile(times, 0.9), 1),
        "max_ms": round(max(times), 1), "stages": _stage_medians(stages),
        "next_screen_median_ms": round(statistics.median(next_ms), 1),
        "same_screen_ms": round(same_ms, 2),
        **counts, "recovery": _rate(counts["recovered"], counts["texts"]),
        "exact_rate": _rate(counts["exact"], counts["texts"]),
        "pixels_only": {**pixels, "median_ms_after_ocr": round(statistics.median(pixel_ms), 1),
                        "reachable_rate": _rate(pixels["reachable"], pixels["interactive"])},
        "per_screen": screens, "missed": missed,
    }


def _desktop(engine: OcrEngine, repeats: int) -> dict[str, Any]:
    png, truth = desktop_screenshot()
    engine.read(png)
    stages: list[dict[str, float]] = []
    boxes, ms = _timed_read(engine, png, max(3, repeats), stages)
    got = [matches(s, text_in(b, boxes)) for s, b in truth]
    return {"size": "1280x800", "source": "drawn with Pillow (bench/ocr.py: desktop_screenshot)",
            "median_ms": round(statistics.median(ms), 1), "stages": _stage_medians(stages),
            "lines": len(boxes), "texts": len(truth),
            "recovered": sum(got), "exact": sum(exact(s, text_in(b, boxes)) for s, b in truth),
            "recovery": _rate(sum(got), len(truth)),
            "missed": [s for (s, _), ok in zip(truth, got, strict=True) if not ok]}


def ocr_bench(n: int = 23, *, settings: OcrSettings | None = None, repeats: int = 1,
              progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Time OCR on ``n`` virtual-phone screens and one desktop-like image; score text recovery and pixels-only.

    Args:
        n: phone screens to read (the walk of :data:`SCREENS`, 23 screens, repeated if ``n`` is larger).
        settings: OCR settings (default: :class:`OcrSettings`'s defaults).
        repeats: reads per screenshot; every read is timed cold (line cache cleared).
        progress: called with each screen's name and figures.

    Returns:
        A JSON-able report (fields in docs/perception.md).
    """
    engine = OcrEngine(settings)
    t0 = time.perf_counter()
    engine.warm_up()
    load_ms = (time.perf_counter() - t0) * 1000
    phone = _phone(engine, n, repeats, progress)
    desktop = _desktop(engine, repeats)
    s = engine.settings
    return {
        "benchmark": "ocr", "edgepilot": __version__,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None},
        "providers": engine.providers, "model_load_ms": round(load_ms, 1),
        "settings": {"det_max_side": s.det_max_side, "det_min_scale": s.det_min_scale,
                     "rec_width_scale": s.rec_width_scale, "use_classifier": s.use_classifier,
                     "threads": s.threads, "min_confidence": s.min_confidence},
        "phone": {k: v for k, v in phone.items() if k not in ("per_screen", "missed")},
        "desktop": desktop,
        "screens": phone["per_screen"],
        "missed": phone["missed"],
    }


def _stages(part: dict[str, Any]) -> str:
    st = part.get("stages") or {}
    return (f"decode {st.get('decode_ms', 0):.0f} + detect {st.get('detect_ms', 0):.0f} + "
            f"recognize {st.get('recognize_ms', 0):.0f} ms of {st.get('lines', 0):.0f} lines")


def format_ocr(report: dict[str, Any]) -> str:
    """The OCR benchmark as plain text."""
    p, d, x = report["phone"], report["desktop"], report["phone"]["pixels_only"]
    load = report["machine"].get("load_average")
    lines = [f"OCR on {', '.join(report['providers'])} ({report['machine']['cpus']} CPUs"
             + (f", load average {load[0]:.2f} at the end" if load else "") + "), "
             f"models loaded in {report['model_load_ms']:.0f} ms",
             "",
             f"{'screen':28} {'ms':>6} {'texts':>6} {'read':>5} {'lines':>6}"]
    for row in report["screens"]:
        lines.append(f"{row['screen']:28} {row['ms']:>6.0f} {row['texts']:>6} {row['recovered']:>5} {row['lines']:>6}")
    lines += ["",
              f"phone {p['size']}: {p['screenshots']} screenshots, median {p['median_ms']:.0f} ms, "
              f"p90 {p['p90_ms']:.0f} ms, max {p['max_ms']:.0f} ms (cold: no cache; {_stages(p)}); "
              f"with the previous screen's "
              f"lines cached {p['next_screen_median_ms']:.0f} ms; "
              f"the same screenshot again {p['same_screen_ms']:.1f} ms",
              f"text recovery: {p['recovered']}/{p['texts']} = {p['recovery']:.1%} of the tree's visible text "
              f"(character for character, ignoring spaces: {p['exact']} = {p['exact_rate']:.1%})",
              f"desktop {d['size']} ({d['source']}): median {d['median_ms']:.0f} ms ({_stages(d)}), "
              f"{d['lines']} lines, "
              f"recovered {d['recovered']}/{d['texts']} = {d['recovery']:.1%} (exact {d['exact']})",
              f"pixels only (no tree): {x['reachable']}/{x['interactive']} interactive elements reachable, "
              f"{x['fields_found']}/{x['fields']} fields found, {x['states_right']}/{x['checkables']} on/off states "
              f"right; {x['median_ms_after_ocr']:.0f} ms after OCR"]
    for m in report["missed"][:15]:
        lines.append(f"MISSED {m['screen']}: {m['text']!r} (OCR read {m['ocr']!r})"[:160])
    for s in d["missed"][:10]:
        lines.append(f"MISSED desktop: {s!r}")
    return "\n".join(lines)
