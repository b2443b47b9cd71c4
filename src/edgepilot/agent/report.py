"""Reading a trajectory back: a plain-text replay and a self-contained HTML report.

    format_replay(traj)     the run step by step, for the terminal (``edgepilot replay DIR``)
    write_report(traj)      one HTML file with the screenshots inlined and each action's
                            target marked on them (``edgepilot report DIR``): a strip of
                            thumbnails at the top, each step's action in words, the
                            confirmations asked and how they were answered
    describe_step(step)     a step's action in words: ``tap "Send" (element 12)``

Both take a :class:`~edgepilot.agent.trajectory.Trajectory` from
:func:`~edgepilot.agent.trajectory.read_trajectory`, whose typed records
(:mod:`edgepilot.agent.records`) already hold only fields of their declared
types (a damaged field is dropped there, with a warning). What is free-form
inside them is still trusted to have no shape: an action's, a plan's and a
chat message's values, the bounds' length, extra meta fields such as
``screen``, a screenshot's file name. Everything a trajectory says is
untrusted text too (the screen text comes from whatever app or web page was
on screen): the HTML escapes all of it and forbids scripts, and both show control and
invisible characters (escape sequences, bidi overrides, zero-width
characters) as visible escapes (:func:`edgepilot.safetext.for_terminal`).

Screenshots in the report are scaled down to :data:`THUMB_WIDTH` pixels wide
and re-encoded as PNG (exact colours for the red marks, and UI screens
compress well), embedded as ``data:image/png;base64`` URLs. The strip at the
top repeats them at :data:`STRIP_WIDTH` pixels as JPEG: at that size the
strip is for finding a step, not for reading the marks, and JPEG keeps a long
run's page light.

:func:`page_html`, :func:`escape` and :func:`write_page` are shared with the
benchmark's page (:mod:`edgepilot.bench.report`): one look, one content
security policy (no script, nothing fetched).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

from edgepilot.actions import Click, DoubleClick, Drag, LongPress, Point, RightClick, Scroll, Swipe, Tap, Type
from edgepilot.agent.records import CallRecord, GateRecord, OutcomeRecord, ResultRecord, RunMeta, RunRecord, StepRecord
from edgepilot.agent.trajectory import Trajectory
from edgepilot.errors import ConfigError
from edgepilot.perception.describe import describe_action
from edgepilot.safetext import for_terminal

THUMB_WIDTH = 360
STRIP_WIDTH = 96
NO_MODEL_AGENTS = frozenset({"oracle", "reference", "human", "attacker", "adaptive"})
"""Agents that are scripts or people: a run of theirs has no model, and the report names the agent instead."""
MARK = (255, 0, 0)
SWIPE_DISTANCE = 0.6  # the Swipe action's default share of the span


# ---------------------------------------------------------------- shape helpers (for the free-form parts)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _text(value: Any) -> str:
    """Any JSON value as text: strings as they are, the rest as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def _action_text(action: dict[str, Any] | None) -> str:
    return "(no action)" if action is None else _text(action)


def _content_text(content: Any) -> str:
    """A chat message's content: a string, or a list of parts (images shown as a placeholder)."""
    if isinstance(content, list):
        parts = []
        for part in content:
            p = _dict(part)
            if p.get("type") == "text":
                parts.append(_text(p.get("text")))
            elif p.get("type") in ("image_url", "image"):
                parts.append("[image]")
            else:
                parts.append(_text(part))
        return "\n".join(parts)
    return _text(content)


def _timing(ms: dict[str, float]) -> str:
    """``1610 ms (perceive 58, plan 812, ...)`` from a step's ``ms``; empty when there are none."""
    roles = [f"{k} {v:.0f}" for k, v in ms.items() if k != "total"]
    total = ms.get("total")
    if total is None and not roles:
        return ""
    head = f"{total:.0f} ms" if total is not None else "? ms"
    return f"{head} ({', '.join(roles)})" if roles else head


def _token_text(calls: list[CallRecord]) -> str:
    """``800 in / 60 out over 2 calls`` over a step's model calls; empty when there were none."""
    if not calls:
        return ""
    tin = sum(c.tokens_in or 0 for c in calls)
    tout = sum(c.tokens_out or 0 for c in calls)
    return f"{tin} in / {tout} out over {len(calls)} call{'s' if len(calls) != 1 else ''}"


def _outcome_text(outcome: OutcomeRecord | None) -> str:
    if outcome is None:
        return ""
    text = outcome.kind
    if outcome.by:
        text += f" (by {outcome.by})"
    if outcome.note:
        text += f": {outcome.note}"
    return text


def _result_text(result: ResultRecord | None) -> str:
    if result is None:
        return ""
    head = "ok" if result.ok else "failed"
    return f"{head}: {result.message}" if result.message else head


def _refusal(gate: GateRecord | None) -> str | None:
    if gate is not None and not gate.allowed:
        return gate.reason or "(no reason given)"
    return None


def _result_summary(result: RunRecord | None) -> list[tuple[str, str]]:
    """(label, value) pairs describing how the run ended."""
    if result is None:
        return [("status", "interrupted (no result.json)")]
    rows = [("status", result.status)]
    if result.reason:
        rows.append(("reason", result.reason))
    if result.answer:
        rows.append(("answer", result.answer))
    if result.success is not None:
        rows.append(("success", "yes" if result.success else "no"))
        if result.failed_checks:
            rows.append(("failed checks", "; ".join(result.failed_checks)))
    if result.steps is not None:
        rows.append(("steps", str(result.steps)))
    if result.seconds is not None:
        rows.append(("seconds", f"{result.seconds:.1f}"))
    if result.finished_at:
        rows.append(("finished", result.finished_at))
    return rows


def model_name(meta: RunMeta) -> str:
    """The model that ran: the meta's, else the agent's own name where it needs none (``oracle``); else empty."""
    if meta.model:
        return meta.model
    return meta.agent if meta.agent in NO_MODEL_AGENTS else ""


def _meta_fields(meta: RunMeta) -> list[tuple[str, str]]:
    """What ran, as (name, value) pairs: goal, agent, model, device, start time; a value missing is empty."""
    return [("goal", meta.goal), ("agent", meta.agent or ""), ("model", model_name(meta)),
            ("device", meta.device or ""), ("started", meta.started or "")]


# ---------------------------------------------------------------- actions in words

# ``[12] Button "Send" desc="..." id=send (clickable)``: a line of Observation.to_text, which quotes with
# no inner double quote (perception.types._quote turns them into single ones)
_ELEMENT_LINE = re.compile(r'^\[(\d+)\] \S+(?: "([^"]*)")?(?: desc="([^"]*)")?', re.MULTILINE)
_TARGETED = (Tap, LongPress, Click, DoubleClick, RightClick)


def _element_labels(screen: str) -> dict[int, str]:
    """Each element's label (its text, else its description) from a step's screen text."""
    labels = {}
    for m in _ELEMENT_LINE.finditer(screen):
        label = " ".join((m.group(2) or m.group(3) or "").split())
        labels[int(m.group(1))] = label if len(label) <= 40 else label[:39].rstrip(" ·") + "…"
    return labels


def _target_words(target: int | Point | None, labels: dict[int, str]) -> str:
    if isinstance(target, Point):
        return f"at ({target.x}, {target.y})"
    if target is None:
        return ""
    label = labels.get(target)
    return f'"{label}" (element {target})' if label else f"element {target}"


def describe_step(step: StepRecord) -> str:
    """The step's action in words, naming the element by the label its screen showed: ``tap "Send" (element
    12)``, ``type "hello" into element 4``, ``swipe up``; the raw JSON where it no longer parses, and
    ``(no valid action)`` where there was none."""
    if step.action is None:
        return "(no valid action)"
    action = step.parsed_action()
    if action is None:
        return _text(step.action)
    labels = _element_labels(step.screen)
    if isinstance(action, _TARGETED):
        return f"{action.type.replace('_', ' ')} {_target_words(action.target, labels)}"
    if isinstance(action, Drag):
        return f"drag {_target_words(action.target, labels)} to {_target_words(action.to, labels)}"
    if isinstance(action, (Swipe, Scroll)):
        on = f" on {_target_words(action.target, labels)}" if action.target is not None else ""
        return f"{action.type} {action.direction}{on}"
    if isinstance(action, Type):
        into = f" into {_target_words(action.target, labels)}" if action.target is not None else ""
        return f'type "{action.text[:60]}"{into}'
    return describe_action(action)


def _confirmation_text(gate: GateRecord | None) -> str:
    """The confirmation a step asked, its answer and what followed; empty when none was asked."""
    if gate is None or not gate.asked:
        return ""
    rule = f" (rule {gate.rule})" if gate.rule else ""
    answer = gate.answer or "no answer"
    consequence = "carried out" if gate.allowed else "refused"
    return f"asked the user{rule}: {answer}; {consequence}" + (f": {gate.reason}" if gate.reason else "")


# ---------------------------------------------------------------- text replay


def format_replay(traj: Trajectory, *, verbose: bool = False) -> str:
    """The trajectory as plain text for the terminal, one block per step.

    Args:
        traj: a trajectory from :func:`~edgepilot.agent.trajectory.read_trajectory`.
        verbose: also print each step's screen text and every model call's prompt and output.

    Missing or malformed fields are skipped, never fatal. Control and invisible
    characters in the trajectory (it holds text from the screen) are shown as escapes.
    """
    lines = [f"trajectory {traj.folder}"]
    for key, value in _meta_fields(traj.meta):
        lines.append(f"  {key + ':':9s}{value or '?'}")
    lines.append(f"  {'steps:':9s}{len(traj.steps)}")
    for step in traj.steps:
        lines.append("")
        lines.append(f"step {step.index}  {step.app or '?'}  {_action_text(step.action)}")
        detail: list[str] = []
        if step.thought:
            detail.append(f"thought: {step.thought}")
        if step.plan and step.plan.get("subgoal"):
            detail.append(f"subgoal: {_text(step.plan.get('subgoal'))}")
        refused = _refusal(step.gate)
        if refused is not None:
            detail.append(f"refused by policy: {refused}")
        if _result_text(step.result):
            detail.append(f"result: {_result_text(step.result)}")
        if _outcome_text(step.outcome):
            detail.append(f"outcome: {_outcome_text(step.outcome)}")
        timing = _timing(step.ms)
        tokens = _token_text(step.calls)
        if timing or tokens:
            detail.append("time: " + "; ".join(t for t in (timing, f"tokens {tokens}" if tokens else "") if t))
        if step.error:
            detail.append(f"error: {step.error}")
        if verbose:
            if step.screen:
                detail.append("screen:")
                detail.append(textwrap.indent(step.screen, "    "))
            for n, call in enumerate(step.calls):
                detail.append(_call_head(n, call))
                for msg in call.messages:
                    detail.append(f"  [{_text(msg.get('role')) or '?'}]")
                    detail.append(textwrap.indent(_content_text(msg.get("content")), "    "))
                detail.append("  [output]")
                detail.append(textwrap.indent(call.output or "", "    "))
                if call.error:
                    detail.append(f"  error: {call.error}")
        lines.extend(textwrap.indent(d, "    ") for d in detail)
    lines.append("")
    lines.append("result")
    for label, value in _result_summary(traj.result):
        lines.append(f"  {label + ':':9s}{value}")
    for warning in traj.warnings:
        lines.append(f"warning: {warning}")
    return for_terminal("\n".join(lines)) + "\n"


# ---------------------------------------------------------------- screenshots


def _screen_size(meta: RunMeta) -> tuple[float, float] | None:
    """The device screen in pixels, from the meta's ``screen`` (an extra field of any shape, or none)."""
    screen = getattr(meta, "screen", None)
    if isinstance(screen, list) and len(screen) == 2:
        w, h = _num(screen[0]), _num(screen[1])
        if w and h and w > 0 and h > 0:
            return w, h
    return None


def _bounds(value: list[int] | None) -> tuple[float, float, float, float] | None:
    if value is not None and len(value) == 4:
        left, top, right, bottom = (float(v) for v in value)
        return left, top, right, bottom
    return None


def _point(target: Any) -> tuple[float, float] | None:
    t = _dict(target)
    x, y = _num(t.get("x")), _num(t.get("y"))
    return (x, y) if x is not None and y is not None else None


def _swipe_line(action: dict[str, Any], bounds: tuple[float, float, float, float] | None,
                point: tuple[float, float] | None, screen: tuple[float, float]) -> tuple[tuple[float, float],
                                                                                    tuple[float, float]] | None:
    """Where a swipe's finger went, in screen pixels (as the Android controller computes it)."""
    direction = action.get("direction")
    if direction not in ("up", "down", "left", "right"):
        return None
    distance = _num(action.get("distance"))
    distance = distance if distance and 0 < distance <= 1 else SWIPE_DISTANCE
    w, h = screen
    vertical = direction in ("up", "down")
    if bounds is None and point is None:  # across the middle of the screen
        span = h if vertical else w
        a, z = span / 2 + span * distance / 2, span / 2 - span * distance / 2
        if direction in ("down", "right"):
            a, z = z, a
        return ((w / 2, a), (w / 2, z)) if vertical else ((a, h / 2), (z, h / 2))
    if bounds is not None:
        left, top, right, bottom = bounds
        cx, cy = (left + right) / 2, (top + bottom) / 2
        extent = max(bottom - top if vertical else right - left, (h if vertical else w) / 2)
    else:
        cx, cy = point  # type: ignore[misc]
        extent = (h if vertical else w) / 2
    length = extent * distance
    dx, dy = {"up": (0, -length), "down": (0, length), "left": (-length, 0), "right": (length, 0)}[direction]
    return (cx, cy), (min(max(cx + dx, 0), w - 1), min(max(cy + dy, 0), h - 1))


def _annotate(img: Any, step: StepRecord, scale: float, screen: tuple[float, float]) -> None:
    """Mark the step's target on a (scaled) screenshot: a box, a dot, and an arrow for a swipe."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    action = step.action or {}
    bounds = _bounds(step.target_bounds)
    point = _point(action.get("target"))
    if bounds is not None:
        left, top, right, bottom = (v * scale for v in bounds)
        if right > left and bottom > top:
            draw.rectangle((round(left), round(top), round(right), round(bottom)), outline=MARK, width=3)
    elif point is not None:
        x, y = point[0] * scale, point[1] * scale
        r = 7
        draw.ellipse((x - r, y - r, x + r, y + r), fill=MARK, outline=(255, 255, 255), width=2)
    if action.get("type") == "swipe":
        line = _swipe_line(action, bounds, point, screen)
        if line is not None:
            (x1, y1), (x2, y2) = ((x * scale, y * scale) for x, y in line)
            draw.line((x1, y1, x2, y2), fill=MARK, width=4)
            length = max(((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5, 1e-6)
            ux, uy = (x2 - x1) / length, (y2 - y1) / length
            head = 14
            bx, by = x2 - ux * head, y2 - uy * head
            draw.polygon([(x2, y2), (bx - uy * head / 2, by + ux * head / 2), (bx + uy * head / 2, by - ux * head / 2)],
                         fill=MARK)


def _open_screenshot(path: Path) -> Any:
    """The image at ``path`` as RGB; None if it is missing, unreadable or empty."""
    from PIL import Image

    try:
        with Image.open(path) as src:
            src.load()
            img = src.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return img if img.width > 0 and img.height > 0 else None


def _scaled(img: Any, step: StepRecord | None, screen: tuple[float, float] | None, width: int,
            fmt: str = "PNG") -> str:
    """A data URL of ``img`` scaled to ``width`` (never up) and annotated with the step's target."""
    from PIL import Image

    orig_w, orig_h = img.size
    width = min(width, img.width)
    height = max(1, round(img.height * width / img.width))
    img = img.resize((width, height), Image.Resampling.LANCZOS)
    if step is not None:
        size = screen or (float(orig_w), float(orig_h))
        _annotate(img, step, width / size[0], size)
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=80, optimize=True)
    else:
        img.save(buf, format="PNG", optimize=True)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumbnail(path: Path, step: StepRecord | None, screen: tuple[float, float] | None) -> str | None:
    """A data URL of the screenshot at ``path`` scaled to THUMB_WIDTH and annotated; None if unreadable."""
    img = _open_screenshot(path)
    return None if img is None else _scaled(img, step, screen, THUMB_WIDTH)


def _screenshot_path(folder: Path, step: StepRecord) -> Path | None:
    if step.screenshot:
        return folder / Path(step.screenshot).name  # never outside the trajectory folder
    if step.index >= 0:
        guess = folder / f"step-{step.index:03d}.png"
        return guess if guess.is_file() else None
    return None


# ---------------------------------------------------------------- HTML report

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:16px;
color:#1d1d1f;background:#f6f6f8}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:0 0 .4em}
table{border-collapse:collapse}td,th{text-align:left;vertical-align:top;padding:2px 8px 2px 0}
th{color:#666;font-weight:500;white-space:nowrap}
.card{background:#fff;border-radius:8px;padding:12px 16px;margin:12px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.step{display:flex;gap:16px;align-items:flex-start}.shot{flex:0 0 auto;width:360px}
.shot img{width:100%;border:1px solid #ddd;border-radius:4px;display:block}
.noshot{width:360px;height:120px;display:flex;align-items:center;justify-content:center;background:#eee;color:#777;
border-radius:4px}
.info{flex:1 1 auto;min-width:0}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600;font-size:.9em}
.ok{background:#2e7d32}.bad{background:#c62828}.neutral{background:#6d6d6d}
.refused{color:#c62828;font-weight:600}.error{color:#c62828}.asked{color:#8a5a00;font-weight:600}
pre{white-space:pre-wrap;word-break:break-word;background:#f3f3f5;padding:6px 8px;border-radius:4px;margin:4px 0;
font-size:.85em;max-height:400px;overflow:auto}
code{font-size:.9em;word-break:break-word}details{margin:6px 0}summary{cursor:pointer;color:#444}
.warn{background:#fff4e5;border-left:4px solid #f0a030}
.strip{display:flex;gap:8px;overflow-x:auto;padding-bottom:4px}
.strip a{flex:0 0 auto;width:96px;color:inherit;text-decoration:none;font-size:.75em;line-height:1.25}
.strip img,.strip .nothumb{width:96px;display:block;border:2px solid #ddd;border-radius:4px;box-sizing:border-box}
.strip .nothumb{height:60px;background:#eee}
.strip .st-asked img,.strip .st-asked .nothumb{border-color:#f0a030}
.strip .st-refused img,.strip .st-refused .nothumb,.strip .st-error img,.strip .st-error .nothumb{border-color:#c62828}
.strip span{display:block;margin-top:2px;overflow-wrap:anywhere}
.back{font-size:.9em}
"""

# No script, no external fetch: only inline styles and data: images, even if escaping ever failed.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def escape(value: Any) -> str:
    """Untrusted text (any JSON value) as HTML: control and invisible characters shown as escapes, then escaped."""
    return html.escape(for_terminal(_text(value)), quote=True)  # a bidi override would reorder the page too


_e = escape


def page_html(title: str, body: str, css: str = "") -> str:
    """A whole page: the report's style (plus ``css``), its content security policy, ``title`` (plain text,
    escaped here) and ``body`` (HTML, already escaped)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_CSS}{css}</style></head><body>{body}</body></html>\n")


def _row(label: str, value_html: str) -> str:
    return f"<tr><th>{html.escape(label)}</th><td>{value_html}</td></tr>"


def _badge(result: RunRecord | None) -> str:
    if result is None:
        return '<span class="badge bad">interrupted</span>'
    if result.success is not None:
        return ('<span class="badge ok">success</span>' if result.success
                else '<span class="badge bad">failure</span>')
    status = result.status if result.status not in ("", "?") else "unknown"  # "?": result.json said none
    cls = "ok" if status == "finished" else "neutral" if status == "unknown" else "bad"
    return f'<span class="badge {cls}">{html.escape(status)}</span>'


def _call_head(n: int, call: CallRecord) -> str:
    """One line about a model call: role, time, tokens, constrained or free (plain text, not escaped)."""
    head = f"call {n}: {call.role or '?'}"
    if call.ms is not None:
        head += f", {call.ms:.0f} ms"
    if call.tokens_in is not None or call.tokens_out is not None:
        head += f", {_text(call.tokens_in)} in / {_text(call.tokens_out)} out"
    if call.constrained is not None:
        head += ", constrained" if call.constrained else ", free"
    return head


def _calls_html(calls: list[CallRecord]) -> str:
    parts = []
    for n, call in enumerate(calls):
        head = _call_head(n, call)
        body = []
        for msg in call.messages:
            body.append(f"<div><b>{_e(msg.get('role') or '?')}</b><pre>{_e(_content_text(msg.get('content')))}</pre>"
                        "</div>")
        body.append(f"<div><b>output</b><pre>{_e(call.output)}</pre></div>")
        if call.error:
            body.append(f'<div class="error">error: {_e(call.error)}</div>')
        parts.append(f"<details><summary>{html.escape(head)}</summary>{''.join(body)}</details>")
    return "".join(parts)


def _step_rows(step: StepRecord) -> list[str]:
    rows = [_row("app", _e(step.app or "?")),
            _row("action", f"<code>{_e(_action_text(step.action))}</code>")]
    if step.thought:
        rows.append(_row("thought", _e(step.thought)))
    for key in ("progress", "subgoal", "memory"):
        if step.plan and step.plan.get(key):
            rows.append(_row(key, _e(step.plan.get(key))))
    if _confirmation_text(step.gate):
        rows.append(_row("confirmation", f'<span class="asked">{_e(_confirmation_text(step.gate))}</span>'))
    refused = _refusal(step.gate)
    if refused is not None:
        rows.append(_row("policy", f'<span class="refused">refused: {_e(refused)}</span>'))
    if _result_text(step.result):
        rows.append(_row("result", _e(_result_text(step.result))))
    if _outcome_text(step.outcome):
        rows.append(_row("outcome", _e(_outcome_text(step.outcome))))
    if _timing(step.ms):
        rows.append(_row("time", _e(_timing(step.ms))))
    if _token_text(step.calls):
        rows.append(_row("tokens", _e(_token_text(step.calls))))
    if step.error:
        rows.append(_row("error", f'<span class="error">{_e(step.error)}</span>'))
    return rows


def _shots(folder: Path, step: StepRecord, screen: tuple[float, float] | None) -> tuple[str | None, str | None]:
    """The step's screenshot as data URLs: for its card (PNG) and for the strip (JPEG); None where there is none.
    The screenshot is read once for both, and not kept (a long run's full-size screens would add up)."""
    path = _screenshot_path(folder, step)
    img = _open_screenshot(path) if path is not None else None
    if img is None:
        return None, None
    return _scaled(img, step, screen, THUMB_WIDTH), _scaled(img, step, screen, STRIP_WIDTH, "JPEG")


def _step_html(step: StepRecord, url: str | None) -> str:
    idx = str(step.index)
    shot = (f'<img alt="screenshot of step {html.escape(idx)}" src="{url}">' if url
            else '<div class="noshot">no screenshot</div>')
    more = []
    if step.screen:
        more.append(f"<details><summary>screen text</summary><pre>{_e(step.screen)}</pre></details>")
    if step.calls:
        more.append(f"<details><summary>model calls ({len(step.calls)})</summary>{_calls_html(step.calls)}</details>")
    return (f'<section class="card" id="step-{html.escape(idx)}"><h2>step {html.escape(idx)}: '
            f'{_e(describe_step(step))}</h2>'
            f'<div class="step"><div class="shot">{shot}</div><div class="info"><table>{"".join(_step_rows(step))}'
            f'</table>{"".join(more)}</div></div></section>')


def _strip_html(steps: list[tuple[StepRecord, str | None]]) -> str:
    """The thumbnails of every step, in a row at the top, each a link to its step (a border says how it went)."""
    cells = []
    for step, url in steps:
        idx = html.escape(str(step.index))
        words = _e(describe_step(step))
        state = ("error" if step.error or step.action is None else "refused" if _refusal(step.gate) is not None
                 else "asked" if step.gate is not None and step.gate.asked else "ok")
        thumb = f'<img alt="step {idx}" src="{url}">' if url else '<div class="nothumb"></div>'
        cells.append(f'<a class="st-{state}" href="#step-{idx}" title="{words}">{thumb}<span>{idx}. {words}</span></a>')
    return f'<nav class="card strip" aria-label="steps">{"".join(cells)}</nav>'


def _confirmations_html(steps: list[StepRecord]) -> str:
    asked = [(step.index, _confirmation_text(step.gate)) for step in steps if _confirmation_text(step.gate)]
    if not asked:
        return ""
    items = "".join(f'<li><a href="#step-{html.escape(str(i))}">step {html.escape(str(i))}</a>: {_e(text)}</li>'
                    for i, text in asked)
    return f"<h2>confirmations</h2><ul>{items}</ul>"


def render_report(traj: Trajectory, *, back: tuple[str, str] | None = None) -> str:
    """The HTML of :func:`write_report`, as a string; ``back`` is a link (href, text) shown above the title."""
    meta = traj.meta
    folder = Path(traj.folder)
    screen = _screen_size(meta)
    goal = meta.goal or "(no goal)"
    head_rows = [_row(key, _e(value or "?")) for key, value in _meta_fields(meta)[1:]]
    if screen:
        head_rows.append(_row("screen", f"{screen[0]:.0f} × {screen[1]:.0f}"))
    if meta.max_steps is not None:
        head_rows.append(_row("max steps", _e(meta.max_steps)))
    head_rows.append(_row("folder", _e(str(traj.folder))))
    result_rows = [_row(label, _e(value)) for label, value in _result_summary(traj.result)]
    final = ""
    final_name = (traj.result.final_screenshot if traj.result is not None else None) or "final.png"
    final_path = folder / Path(final_name).name  # never outside the trajectory folder
    if final_path.is_file():
        url = _thumbnail(final_path, None, screen)
        final = (f'<details><summary>final screen</summary><img alt="final screen" src="{url}" '
                 f'width="{THUMB_WIDTH}"></details>' if url else "")
    warn_html = ("" if not traj.warnings else '<section class="card warn"><h2>warnings</h2><ul>'
                 + "".join(f"<li>{_e(w)}</li>" for w in traj.warnings) + "</ul></section>")
    cards, strip = [], []
    for step in traj.steps:
        card_url, strip_url = _shots(folder, step, screen)
        cards.append(_step_html(step, card_url))
        strip.append((step, strip_url))
    body = "".join(cards)
    if not traj.steps:
        body = '<section class="card">no steps were recorded</section>'
    link = f'<div class="back"><a href="{escape(back[0])}">{escape(back[1])}</a></div>' if back else ""
    return page_html(f"edgepilot: {goal}",
                     f'<header class="card">{link}<h1>{_e(goal)} {_badge(traj.result)}</h1>'
                     f"<table>{''.join(head_rows)}</table></header>{_strip_html(strip) if strip else ''}"
                     f'<section class="card"><h2>result</h2><table>{"".join(result_rows)}</table>{final}'
                     f"{_confirmations_html(traj.steps)}</section>{warn_html}{body}")


def write_page(out: Path, page: str) -> Path:
    """Write ``page`` to ``out`` whole (a temporary file renamed over it), creating its folder.

    Raises:
        ConfigError: the file cannot be written.
    """
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise ConfigError(f"cannot write the report to {out}: {exc}; pick a writable path (--out FILE)") from exc
    return out


def write_report(traj: Trajectory, out: Path | None = None, *, back: Path | None = None) -> Path:
    """Write a self-contained HTML report of a trajectory.

    One file, no external resources: inline CSS, screenshots scaled to
    :data:`THUMB_WIDTH` px wide and embedded as PNG data URLs with each
    action's target marked in red, and a strip of them at the top. A step
    whose screenshot is missing or unreadable shows "no screenshot".

    Args:
        traj: a trajectory from :func:`~edgepilot.agent.trajectory.read_trajectory`.
        out: the file to write; default ``<trajectory folder>/report.html``.
        back: a page to link back to (a benchmark's), linked relative to ``out``.

    Returns:
        The path written.

    Raises:
        ConfigError: the file cannot be written.
    """
    out = Path(out) if out is not None else Path(traj.folder) / "report.html"
    link = None
    if back is not None:
        link = (Path(os.path.relpath(back, out.parent)).as_posix(), "← all episodes")
    return write_page(out, render_report(traj, back=link))
