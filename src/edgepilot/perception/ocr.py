"""Text on a screenshot: OCR with the ONNX models shipped inside ``rapidocr``, run by onnxruntime.

Three models come in the ``rapidocr`` wheel: a DB text detector, a CTC line
recognizer (PP-OCRv6, Latin and CJK), and a 0/180 degree direction classifier.
This module runs them itself around three onnxruntime sessions rather than
through ``rapidocr.RapidOCR``, because a screen is not a photograph:

- detection runs on the screenshot scaled down so its longer side is at most
  ``det_max_side`` (phone text is 32+ pixels tall; the detector needs ~10);
- text on screens is horizontal, so boxes are the axis-aligned extents of the
  detector's connected components (no polygon fitting, no shapely/pyclipper);
- each line's left and right ends are cut to its ink plus 0.3 times the
  ink's height (the detector's box has about half a height of background
  at each end, and the recognizer's cost grows with every column);
- all crops are recognized in batches of similar widths, chosen to waste
  the fewest padded columns, with a minimum of 64 columns (rapidocr pads
  every batch to 320 columns, in batches of 6);
- the direction classifier is off by default (screens are upright);
- recognized lines are cached by crop content, so text that stays on screen
  between two steps of an agent is not read twice, and a screenshot seen
  again (same PNG bytes) costs only its hash.

Nothing here is imported by ``import edgepilot.perception``; onnxruntime,
numpy and OpenCV are loaded when the first engine is built.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import math
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from edgepilot.errors import PerceptionError
from edgepilot.perception.types import Bounds

if TYPE_CHECKING:
    import numpy as np

T = TypeVar("T")
INSTALL_HINT = "pip install 'edgepilot[ocr]'"
MAX_PIXELS = 40_000_000
REC_HEIGHT = 48
REC_MIN_WIDTH = 64  # narrower lines (one letter, an icon) are padded: with fewer columns they are misread
REC_RUN_COLUMNS = 24  # one run of the recognizer costs about as much as this many more columns
MAX_LINE_WIDTH = 3200  # recognizer columns for one line (a 1080-pixel-wide line of 14 px text is ~2600)
# Lone CJK characters that are really the symbols drawn on icon buttons (the model reads multilingual text).
_LOOKALIKES = {"十": "+", "一": "-", "口": "□"}
_MODEL_FILES = {
    "det": ("PP-OCRv6_det_small.onnx", "*det*.onnx"),
    "rec": ("PP-OCRv6_rec_small.onnx", "*rec*.onnx"),
    "cls": ("ch_ppocr_mobile_v2.0_cls_mobile.onnx", "*cls*.onnx"),
}


@dataclass(frozen=True)
class TextBox:
    """One line of text that OCR read, with its extent in screen pixels and its mean character confidence."""

    text: str
    bounds: Bounds
    confidence: float


@dataclass(frozen=True)
class OcrSettings:
    """How an :class:`OcrEngine` reads a screenshot. The defaults are tuned for speed on a 2-core CPU.

    Attributes:
        det_max_side: detection runs on the image scaled so that its longer
            side is at most this many pixels (never scaled up).
        det_min_scale: but never scaled below this factor, so that the text
            of a very large screenshot does not shrink out of the detector's
            reach (a 1080x2400 phone is scaled by 0.31, a 1280x800 desktop
            by 0.58).
        det_threshold: probability above which a detector pixel is text.
        box_threshold: mean probability a detected region needs to be kept.
        unclip_ratio: how far a detected text kernel is grown back to the
            full text box (DB's unclip ratio).
        split_gap: a detected line is cut where its ink has a horizontal gap
            wider than this many times the ink's height (labels side by side
            that the detector joined); word spaces are about 0.3. 0: never.
        line_margin: the left and right ends of a detected line are cut to
            its ink plus this many times the ink's height (the detector's
            box has about half a height of background at each end, and the
            recognizer's cost grows with the width). 0: keep the box.
        min_confidence: recognized lines with a lower mean character
            confidence are dropped.
        use_classifier: run the 0/180 degree direction classifier on each
            line (upside-down text); screens are upright, so it is off.
        threads: onnxruntime intra-op threads; 0 lets onnxruntime choose.
        device: ``auto`` (CUDA when onnxruntime-gpu sees a GPU, else CPU),
            ``cpu`` or ``cuda``.
        rec_width_scale: lines taller than the recognizer's 48 pixels are
            scaled to that height and then narrowed by this factor (smaller
            text never is: it loses thin letters). The recognizer's cost is
            linear in the width; 0.8 saves a fifth of it and still recovers
            every benchmark string at edit similarity 0.8, but misreads some
            character for character ("48,000" as "4,000"), so it is off.
        batch_size: most lines recognized in one run of the recognizer.
        cache_lines: recognized lines remembered by crop content (0: none).
        cache_screens: whole screenshots (PNG bytes) whose lines are
            remembered: the same screen read again costs a hash (0: none).
    """

    det_max_side: int = 736
    det_min_scale: float = 0.3
    det_threshold: float = 0.3
    box_threshold: float = 0.5
    unclip_ratio: float = 1.6
    split_gap: float = 0.8
    line_margin: float = 0.3
    min_confidence: float = 0.5
    use_classifier: bool = False
    threads: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    rec_width_scale: float = 1.0
    batch_size: int = 16
    cache_lines: int = 512
    cache_screens: int = 8


def _need(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PerceptionError(f"OCR needs {module.split('.')[0]}, which is not installed; run: {INSTALL_HINT}") from exc



def model_dir() -> Path:
    """The folder of ONNX models inside the installed ``rapidocr`` package (found without importing it).

    Raises:
        PerceptionError: rapidocr is not installed.
    """
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        raise PerceptionError(f"OCR uses the models inside the rapidocr package, which is not installed; "
                              f"run: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _model_path(folder: Path, kind: str) -> Path:
    name, pattern = _MODEL_FILES[kind]
    if (folder / name).is_file():
        return folder / name
    found = sorted(folder.glob(pattern))
    if not found:
        raise PerceptionError(f"no {kind} model ({name}) in {folder}; reinstall rapidocr: {INSTALL_HINT}")
    return found[0]


def load_image(image: Any) -> np.ndarray:
    """Decode a screenshot into a BGR ``uint8`` array (what the models were trained on).

    Args:
        image: PNG/JPEG/WebP bytes, a file path, a PIL image, or an RGB
            ``numpy`` array of shape (height, width, 3).

    Raises:
        PerceptionError: the bytes are not an image, or the image is empty or absurdly large.
    """
    np = _need("numpy")
    cv2 = _need("cv2")
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.size == 0:
            raise PerceptionError(f"an image array must be (height, width, 3), not {image.shape}")
        return np.ascontiguousarray(image[:, :, 2::-1]).astype(np.uint8, copy=False)
    if isinstance(image, Image.Image):
        _check_size(*image.size)
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    if isinstance(image, (str, Path)):
        try:
            image = Path(image).read_bytes()
        except OSError as exc:
            raise PerceptionError(f"cannot read the image file {image}: {exc.strerror}") from exc
    if not isinstance(image, (bytes, bytearray, memoryview)):
        raise PerceptionError(f"cannot read an image from {type(image).__name__}; "
                              "pass PNG bytes, a path or a PIL image")
    data = bytes(image)
    try:
        with Image.open(io.BytesIO(data)) as probe:  # reads the header only
            _check_size(*probe.size)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PerceptionError(f"the screenshot is not a readable image ({len(data)} bytes starting {data[:8]!r}); "
                              "take it again") from exc
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise PerceptionError(f"the screenshot could not be decoded ({len(data)} bytes); it may be truncated")
    return arr


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise PerceptionError(f"the image is empty ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise PerceptionError(f"the image is {width}x{height} pixels (limit {MAX_PIXELS}); refusing to read it")


class OcrEngine:
    """Reads the text lines of screenshots.

    The models are loaded on first use (about half a second) and the engine is
    safe to share between threads; keep one per process.

    Args:
        settings: see :class:`OcrSettings`.
        models: a folder holding the three ONNX files (default: rapidocr's).
    """

    def __init__(self, settings: OcrSettings | None = None, *, models: Path | None = None) -> None:
        self.settings = settings or OcrSettings()
        self._models = models
        self._sessions: dict[str, Any] = {}
        self._chars: list[str] = []
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._screens: OrderedDict[bytes, tuple[TextBox, ...]] = OrderedDict()
        self.last_timings: dict[str, float] = {}

    # ------------------------------------------------------------ sessions

    @property
    def providers(self) -> list[str]:
        """The onnxruntime execution providers the models run on (loads them)."""
        return list(self._session("det").get_providers())

    def _provider_list(self, ort: Any) -> list[str]:
        available = ort.get_available_providers()
        device = self.settings.device
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise PerceptionError("OCR device 'cuda' needs onnxruntime-gpu and a CUDA GPU; onnxruntime here offers "
                                  f"{', '.join(available)}. Use device 'auto' or 'cpu'")
        if device != "cpu" and "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def _session(self, kind: str) -> Any:
        session = self._sessions.get(kind)
        if session is not None:
            return session
        ort = _need("onnxruntime")
        with self._lock:
            if kind in self._sessions:
                return self._sessions[kind]
            path = _model_path(self._models or model_dir(), kind)
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            threads = self.settings.threads or 0
            if threads > 0:
                options.intra_op_num_threads = min(threads, os.cpu_count() or threads)
            try:
                session = ort.InferenceSession(str(path), sess_options=options,
                                               providers=self._provider_list(ort))
            except PerceptionError:
                raise
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise PerceptionError(f"onnxruntime cannot load {path.name}: {exc}; reinstall: {INSTALL_HINT}") from exc
            if kind == "rec":
                meta = session.get_modelmeta().custom_metadata_map
                if "character" not in meta:
                    raise PerceptionError(f"{path.name} carries no character list; use the models shipped in rapidocr")
                self._chars = ["", *meta["character"].splitlines(), " "]  # CTC blank first, space last
            self._sessions[kind] = session
            return session

    def warm_up(self) -> OcrEngine:
        """Load the models now instead of on the first screenshot."""
        for kind in ("det", "rec") + (("cls",) if self.settings.use_classifier else ()):
            self._session(kind)
        return self

    def clear_cache(self, *, lines: bool = True, screens: bool = True) -> None:
        """Forget recognized lines and whole screens (for timing a cold read)."""
        with self._lock:
            if lines:
                self._cache.clear()
            if screens:
                self._screens.clear()

    # ------------------------------------------------------------ reading

    def read(self, image: Any) -> list[TextBox]:
        """Read every text line of a screenshot.

        Args:
            image: PNG/JPEG bytes, a file path, a PIL image or an RGB array.

        Returns:
            The lines in reading order (top to bottom, then left to right),
            with bounds in the screenshot's pixels.

        Raises:
            PerceptionError: the image is unreadable, or onnxruntime/rapidocr are missing.
        """
        t0 = time.perf_counter()
        key = None
        if isinstance(image, (bytes, bytearray)) and self.settings.cache_screens:
            key = hashlib.blake2b(image, digest_size=16).digest()
            with self._lock:
                hit = self._screens.get(key)
            if hit is not None:
                self.last_timings = {"decode_ms": 0.0, "detect_ms": 0.0, "recognize_ms": 0.0,
                                     "total_ms": (time.perf_counter() - t0) * 1000, "lines": float(len(hit))}
                return list(hit)
        img = load_image(image)
        boxes = self.read_bgr(img)
        self.last_timings["decode_ms"] = (time.perf_counter() - t0) * 1000 - self.last_timings["total_ms"]
        self.last_timings["total_ms"] = (time.perf_counter() - t0) * 1000
        if key is not None:
            with self._lock:
                self._screens[key] = tuple(boxes)
                while len(self._screens) > self.settings.cache_screens:
                    self._screens.popitem(last=False)
        return boxes

    def read_bgr(self, img: np.ndarray) -> list[TextBox]:
        """:meth:`read` for a screenshot already decoded by :func:`load_image` (a BGR array)."""
        t1 = time.perf_counter()
        regions = self._detect(img)
        t2 = time.perf_counter()
        crops = [self._crop(img, b) for b, _ in regions]
        if self.settings.use_classifier and crops:
            crops = self._upright(crops)
        texts = self._recognize(crops)
        t3 = time.perf_counter()
        self.last_timings = {"decode_ms": 0.0, "detect_ms": (t2 - t1) * 1000, "recognize_ms": (t3 - t2) * 1000,
                             "total_ms": (t3 - t1) * 1000, "lines": float(len(regions))}
        out = [TextBox(text=_LOOKALIKES.get(text.strip(), text.strip()), bounds=b, confidence=round(conf, 4))
               for (b, _), (text, conf) in zip(regions, texts, strict=True)
               if text.strip() and conf >= self.settings.min_confidence]
        return reading_order(out)

    def _detect(self, img: np.ndarray) -> list[tuple[Bounds, float]]:
        np = _need("numpy")
        cv2 = _need("cv2")
        s = self.settings
        h, w = img.shape[:2]
        scale = max(min(1.0, s.det_max_side / max(h, w)), min(1.0, s.det_min_scale))
        rh, rw = max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)
        small = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        x = (small.astype(np.float32) * (2 / 255.0) - 1.0).transpose(2, 0, 1)[None]
        session = self._session("det")
        prob = session.run(None, {session.get_inputs()[0].name: x})[0][0, 0]
        mask = cv2.dilate((prob > s.det_threshold).astype(np.uint8), np.ones((2, 2), np.uint8))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        sx, sy = w / rw, h / rh
        regions = []
        for i in range(1, min(count, 1001)):
            x0, y0, bw, bh, _ = (int(v) for v in stats[i])
            if min(bw, bh) < 3:
                continue
            window = labels[y0:y0 + bh, x0:x0 + bw] == i
            score = float(prob[y0:y0 + bh, x0:x0 + bw][window].mean())
            if score < s.box_threshold:
                continue
            d = bw * bh * s.unclip_ratio / (2 * (bw + bh))  # DB's unclip distance for a rectangle
            left, top = max(0, math.floor((x0 - d) * sx)), max(0, math.floor((y0 - d) * sy))
            right, bottom = min(w, math.ceil((x0 + bw + d) * sx)), min(h, math.ceil((y0 + bh + d) * sy))
            if right - left > 3 and bottom - top > 3:
                box = Bounds(left=left, top=top, right=right, bottom=bottom)
                regions += [(part, score) for part in _ink_parts(img, box, s.split_gap, s.line_margin)]
        return regions

    def _crop(self, img: np.ndarray, b: Bounds) -> np.ndarray:
        cv2 = _need("cv2")
        crop = img[b.top:b.bottom, b.left:b.right]
        width = REC_HEIGHT * b.width / b.height
        if b.height > REC_HEIGHT:  # large text only: small text loses thin letters when narrowed
            width *= self.settings.rec_width_scale
        width = max(1, min(MAX_LINE_WIDTH, math.ceil(width)))
        inter = cv2.INTER_AREA if b.height > REC_HEIGHT else cv2.INTER_LINEAR
        return cv2.resize(crop, (width, REC_HEIGHT), interpolation=inter)

    def _upright(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Turn lines the direction classifier finds upside down (batched, 48x192 inputs)."""
        np = _need("numpy")
        cv2 = _need("cv2")
        session = self._session("cls")
        batch = np.zeros((len(crops), 3, 48, 192), np.float32)
        for i, c in enumerate(crops):
            c = c[:, :192] if c.shape[1] > 192 else c
            batch[i, :, :, :c.shape[1]] = c.transpose(2, 0, 1) * (2 / 255.0) - 1.0
        probs = session.run(None, {session.get_inputs()[0].name: batch})[0]
        return [cv2.rotate(c, cv2.ROTATE_180) if p[1] > 0.9 else c for c, p in zip(crops, probs, strict=True)]

    def _recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Recognize crops (48 pixels tall) in batches of similar width; cached lines are not run again."""
        results: list[tuple[str, float] | None] = [None] * len(crops)
        keys: list[bytes] = []
        todo = []
        for i, c in enumerate(crops):
            key = hashlib.blake2b(c.tobytes(), digest_size=16, person=str(c.shape[1]).encode()).digest()
            keys.append(key)
            with self._lock:
                hit = self._cache.get(key) if self.settings.cache_lines else None
            if hit is not None:
                results[i] = hit
            else:
                todo.append(i)
        for batch in _width_batches([crops[i].shape[1] for i in todo], self.settings.batch_size):
            idx = [todo[j] for j in batch]
            for i, res in zip(idx, self._run_rec([crops[i] for i in idx]), strict=True):
                results[i] = res
        if self.settings.cache_lines:
            with self._lock:
                for i in todo:
                    self._cache[keys[i]] = results[i]  # type: ignore[assignment]
                    self._cache.move_to_end(keys[i])
                while len(self._cache) > self.settings.cache_lines:
                    self._cache.popitem(last=False)
        return results  # type: ignore[return-value]

    def _run_rec(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        np = _need("numpy")
        session = self._session("rec")
        width = _padded_width(max(c.shape[1] for c in crops))
        batch = np.zeros((len(crops), 3, REC_HEIGHT, width), np.float32)
        for i, c in enumerate(crops):
            batch[i, :, :, :c.shape[1]] = c.transpose(2, 0, 1) * (2 / 255.0) - 1.0
        logits = session.run(None, {session.get_inputs()[0].name: batch})[0]
        ids, probs = logits.argmax(axis=2), logits.max(axis=2)
        out = []
        for seq, p in zip(ids, probs, strict=True):
            keep = np.ones(len(seq), bool)
            keep[1:] = seq[1:] != seq[:-1]
            keep &= seq != 0
            text = "".join(self._chars[k] for k in seq[keep] if k < len(self._chars))
            out.append((text, float(p[keep].mean()) if keep.any() else 0.0))
        return out


def _ink_parts(img: np.ndarray, box: Bounds, gap: float, margin: float = 0.0) -> list[Bounds]:
    """Cut a detected line where its ink has a gap wider than ``gap`` times the ink's height; trim its ends.

    On a downscaled screenshot the detector joins labels that sit close side
    by side ("Delete  Save" in a toolbar, two tabs) into one line; a tap on the
    middle of such a line hits neither. Word spaces are about a quarter of the
    text height, gaps between separate labels a whole height or more.

    With ``margin`` > 0 the left and right ends of each part are also cut to
    the ink plus ``margin`` times the ink's height (at least 2 pixels): DB's
    unclip distance leaves about half a height of background at each end,
    which the recognizer would pay for column by column. Anything that
    differs from the box's border colour by more than a faint 24 grey levels
    counts as ink for this, so light text is never cut off; a box without
    such ink is kept as it is.
    """
    np = _need("numpy")
    split = gap > 0 and box.width >= 2 * box.height
    min_width = math.ceil(box.height * REC_MIN_WIDTH / REC_HEIGHT)  # what the recognizer pads a line to anyway
    if not split and (margin <= 0 or box.width <= min_width):
        return [box]
    crop = img[box.top:box.bottom, box.left:box.right]
    gray = crop.sum(axis=2, dtype=np.int16) * 2  # 6 times the mean of the channels, in integers
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    diff = np.abs(gray - int(np.median(border)))  # the median of even numbers is a whole number
    ink = diff > 6 * 48
    rows = np.flatnonzero(ink.any(axis=1))
    parts = [box]
    if rows.size and split:
        filled = np.flatnonzero(ink.any(axis=0))
        min_gap = max(4, int(gap * (rows[-1] - rows[0] + 1)))
        jumps = np.flatnonzero(np.diff(filled) > min_gap)
        if jumps.size:
            pad = max(2, (box.height - (rows[-1] - rows[0] + 1)) // 2)
            parts, start = [], 0
            for j in [*jumps, filled.size - 1]:
                left, right = filled[start], filled[j]
                parts.append(Bounds(left=max(box.left, box.left + int(left) - pad), top=box.top,
                                    right=min(box.right, box.left + int(right) + 1 + pad), bottom=box.bottom))
                start = j + 1
    if margin <= 0 or rows.size == 0:
        return parts
    faint = (diff > 6 * 24).any(axis=0)
    pad = max(2, math.ceil(margin * (rows[-1] - rows[0] + 1)))
    trimmed = []
    for part in parts:
        cols = np.flatnonzero(faint[part.left - box.left:part.right - box.left])
        if cols.size == 0:
            trimmed.append(part)
            continue
        left = max(part.left, part.left + int(cols[0]) - pad)
        right = min(part.right, part.left + int(cols[-1]) + 1 + pad)
        width = min(part.width, max(right - left, min_width))  # short lines keep their width: it costs nothing
        left = max(part.left, min((left + right - width) // 2, part.right - width))
        right = left + width
        trimmed.append(Bounds(left=left, top=part.top, right=right, bottom=part.bottom))
    return trimmed


def _padded_width(width: int) -> int:
    """The columns a line takes in a batch of the recognizer: at least REC_MIN_WIDTH, a multiple of 8."""
    return max(REC_MIN_WIDTH, math.ceil(width / 8) * 8)


def _width_batches(widths: list[int], size: int, overhead: int = REC_RUN_COLUMNS) -> list[list[int]]:
    """Group items into batches of at most ``size`` that cost the recognizer the fewest columns.

    A batch runs as ``len(batch)`` lines padded to its widest (rounded up to
    8), and each run costs about ``overhead`` columns more. Over the items
    sorted by width the best batches are runs of neighbours, found exactly
    by dynamic programming (n x size steps).
    """
    order = sorted(range(len(widths)), key=widths.__getitem__)
    padded = [_padded_width(widths[i]) for i in order]
    best = [0] * (len(order) + 1)  # best[j]: least cost of the first j items
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        best[j], cut[j] = min((best[i] + (j - i) * padded[j - 1] + overhead, i)
                              for i in range(max(0, j - max(1, size)), j))
    batches: list[list[int]] = []
    j = len(order)
    while j:
        batches.append(order[cut[j]:j])
        j = cut[j]
    return batches[::-1]


def reading_order(boxes: list[T]) -> list[T]:
    """Top to bottom, then left to right within a line (items whose vertical centres are close).

    Works for anything with ``bounds``: text boxes, UI nodes, widgets.
    """
    rows: list[list[T]] = []
    for box in sorted(boxes, key=lambda b: (b.bounds.top + b.bounds.bottom) / 2):
        cy = (box.bounds.top + box.bounds.bottom) / 2
        if rows:
            last = rows[-1][0].bounds
            if abs(cy - (last.top + last.bottom) / 2) < max(8, min(box.bounds.height, last.height) / 2):
                rows[-1].append(box)
                continue
        rows.append([box])
    return [b for row in rows for b in sorted(row, key=lambda b: b.bounds.left)]


_default: OcrEngine | None = None
_default_lock = threading.Lock()


def default_engine() -> OcrEngine:
    """One engine with default settings, shared by this process (the models load once)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = OcrEngine()
        return _default


def read_text(image: Any, engine: OcrEngine | None = None) -> list[TextBox]:
    """Read a screenshot's text lines with ``engine`` (default: :func:`default_engine`)."""
    return (engine or default_engine()).read(image)
