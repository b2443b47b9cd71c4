"""Replaying trajectories as text and as a self-contained HTML report."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image

from edgepilot.agent.report import THUMB_WIDTH, format_replay, write_report
from edgepilot.agent.trajectory import TrajectoryWriter, read_trajectory
from edgepilot.errors import ConfigError
from edgepilot.sim.phone import VirtualPhone

XSS = "<script>alert(1)</script>"
SCALE = THUMB_WIDTH / 1080


@pytest.fixture(scope="module")
def png() -> bytes:
    return VirtualPhone().screencap_png()


def _call(role: str, prompt: str, output: str) -> dict:
    return {"role": role, "messages": [{"role": "system", "content": "You operate a phone."},
                                       {"role": "user", "content": prompt}],
            "output": output, "ms": 412.5, "tokens_in": 400, "tokens_out": 30, "constrained": True, "error": None}


STEPS = [
    {"index": 0, "app": "com.android.launcher3", "screen": f"App: launcher\n[3] Settings {XSS}",
     "plan": {"progress": "nothing yet", "subgoal": "open Settings", "memory": ""}, "thought": f"open it {XSS}",
     "action": {"type": "tap", "target": 3}, "target_bounds": [40, 300, 280, 540],
     "gate": {"allowed": True, "reason": ""}, "result": {"ok": True, "message": "tapped [3] Settings at 160,420"},
     "outcome": {"kind": "worked", "note": "Settings opened", "by": "model"},
     "calls": [_call("planner", "PROMPT-PLAN goal: open wifi", '{"subgoal": "open Settings"}'),
               _call("decider", "PROMPT-DECIDE pick an action", '{"type": "tap", "target": 3}')],
     "ms": {"perceive": 58.1, "plan": 812.4, "decide": 402.0, "act": 21.3, "total": 1293.8}, "error": None},
    {"index": 1, "app": "com.android.settings", "screen": "App: settings", "plan": None, "thought": "tap the point",
     "action": {"type": "tap", "target": {"x": 900, "y": 2000}}, "target_bounds": None,
     "gate": {"allowed": True, "reason": ""}, "result": {"ok": True, "message": "tapped at 900,2000"},
     "outcome": {"kind": "no_change", "note": "", "by": "check"}, "calls": [], "ms": {"total": 40.0}, "error": None},
    {"index": 2, "app": "com.android.settings", "screen": "App: settings", "thought": "scroll down the list",
     "action": {"type": "swipe", "direction": "up"}, "target_bounds": None,
     "gate": {"allowed": True, "reason": ""}, "result": {"ok": True, "message": "swiped up"},
     "outcome": {"kind": "worked", "note": "list moved", "by": "check"}, "ms": {"total": 30.0}, "error": None},
    {"index": 3, "app": "com.android.settings", "screen": "App: settings", "thought": "factory reset",
     "action": {"type": "tap", "target": 9}, "target_bounds": [0, 1000, 1080, 1100],
     "gate": {"allowed": False, "reason": "factory reset is forbidden by policy"},
     "outcome": {"kind": "refused", "note": "", "by": "check"}, "ms": {"total": 5.0}, "error": None},
    {"index": 4, "app": "com.android.settings", "screen": "App: settings", "thought": None, "action": None,
     "calls": [_call("baseline", "PROMPT-BASELINE", "I think I should tap it")],
     "outcome": {"kind": "invalid", "note": "", "by": "check"}, "ms": {"total": 700.0},
     "error": "the answer is not JSON: I think I should tap it"},
]


def _write(folder, png, *, finish=True):
    w = TrajectoryWriter(folder, {"goal": "turn on wifi", "agent": "edge", "model": "tiny-q4",
                                  "device": "virtual", "screen": [1080, 2400], "max_steps": 10})
    for step in STEPS:
        w.write_step(step, png)
    if finish:
        w.finish({"status": "finished", "answer": None, "reason": "the agent finished", "steps": 5,
                  "seconds": 9.8, "success": True, "failed_checks": []}, png)
    else:
        w.close()
    return folder


def _image(page: str, index: int) -> Image.Image:
    section = page.split(f'id="step-{index}"', 1)[1].split("</section>", 1)[0]
    m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', section)
    assert m, f"no image in step {index}"
    return Image.open(io.BytesIO(base64.b64decode(m.group(1)))).convert("RGB")


def _red_near(img: Image.Image, x: float, y: float, r: int = 2) -> bool:
    x, y = round(x), round(y)
    return any(img.getpixel((i, j)) == (255, 0, 0)
               for i in range(x - r, x + r + 1) for j in range(y - r, y + r + 1))


def test_replay_lists_steps_and_result(tmp_path, png):
    traj = read_trajectory(_write(tmp_path / "run", png))
    assert traj.warnings == []
    text = format_replay(traj)
    assert "turn on wifi" in text and "tiny-q4" in text
    assert 'step 0  com.android.launcher3  {"type":"tap","target":3}' in text
    assert '{"type":"tap","target":{"x":900,"y":2000}}' in text
    assert '"direction":"up"' in text
    assert "refused by policy: factory reset is forbidden by policy" in text
    assert "(no action)" in text and "error: the answer is not JSON" in text
    assert "subgoal: open Settings" in text
    assert "outcome: worked (by model): Settings opened" in text
    assert "1294 ms (perceive 58, plan 812, decide 402, act 21)" in text
    assert "tokens 800 in / 60 out over 2 calls" in text
    assert "finished" in text and "the agent finished" in text and "success: yes" in text
    assert "PROMPT-PLAN" not in text and "App: launcher" not in text


def test_replay_verbose_shows_prompts_outputs_and_screen(tmp_path, png):
    text = format_replay(read_trajectory(_write(tmp_path / "run", png)), verbose=True)
    for needle in ("PROMPT-PLAN goal: open wifi", "PROMPT-DECIDE", "PROMPT-BASELINE", "You operate a phone.",
                   "I think I should tap it", '{"subgoal": "open Settings"}', "App: launcher"):
        assert needle in text


def test_replay_drops_terminal_escapes(tmp_path, png):
    folder = tmp_path / "run"
    w = TrajectoryWriter(folder, {"goal": "x"})
    w.write_step({"index": 0, "screen": "evil \x1b]0;pwned\x07 \x1b[2J", "action": None}, png)
    w.finish({"status": "error"})
    text = format_replay(read_trajectory(folder), verbose=True)
    assert "\x1b" not in text and "\x07" not in text and "evil" in text


def test_report_is_self_contained_and_escaped(tmp_path, png):
    folder = _write(tmp_path / "run", png)
    out = write_report(read_trajectory(folder))
    assert out == folder / "report.html"
    page = out.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(STEPS) + 1  # steps and the final screen
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page
    assert 'class="badge ok">success' in page
    assert "PROMPT-DECIDE" in page and "<details>" in page
    assert "factory reset is forbidden by policy" in page
    # screenshots are scaled down
    assert _image(page, 0).size == (THUMB_WIDTH, round(2400 * SCALE))


def test_report_marks_targets(tmp_path, png):
    page = write_report(read_trajectory(_write(tmp_path / "run", png))).read_text(encoding="utf-8")
    tap, point, swipe = _image(page, 0), _image(page, 1), _image(page, 2)
    left, top, right, bottom = (v * SCALE for v in (40, 300, 280, 540))
    mid_y = (top + bottom) / 2
    # the box around the indexed target: its left and top edges are red, unlike the same pixel elsewhere
    assert _red_near(tap, left + 1, mid_y) and _red_near(tap, (left + right) / 2, top + 1)
    assert not _red_near(point, left + 1, mid_y)
    # a dot on the point target
    assert _red_near(point, 900 * SCALE, 2000 * SCALE, r=0)
    assert not _red_near(tap, 900 * SCALE, 2000 * SCALE)
    # a swipe up across the middle of the screen
    assert _red_near(swipe, 540 * SCALE, 1200 * SCALE, r=0)
    assert not _red_near(tap, 540 * SCALE, 1200 * SCALE)


def test_report_missing_or_broken_screenshot(tmp_path, png):
    folder = _write(tmp_path / "run", png)
    (folder / "step-001.png").unlink()
    (folder / "step-002.png").write_bytes(b"not a png")
    page = write_report(read_trajectory(folder), tmp_path / "out" / "r.html").read_text(encoding="utf-8")
    assert page.count("no screenshot") == 2
    assert page.count("data:image/png;base64,") == len(STEPS) - 2 + 1


def test_interrupted_run_still_replays_and_reports(tmp_path, png):
    folder = _write(tmp_path / "run", png, finish=False)
    with open(folder / "steps.jsonl", "a", encoding="utf-8") as f:
        f.write('{"index": 5, "app": "com.android.sett')  # the process died mid-write
    traj = read_trajectory(folder)
    assert traj.result is None and len(traj.steps) == len(STEPS)
    text = format_replay(traj)
    assert "no result.json: the run was interrupted" in text
    assert "line 6 is torn" in text
    assert "interrupted" in text.split("result", 1)[1]
    page = write_report(traj).read_text(encoding="utf-8")
    assert 'class="badge bad">interrupted' in page and "no result.json: the run was interrupted" in page


def test_partial_and_odd_steps_do_not_crash(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "steps.jsonl").write_text("\n".join(json.dumps(s) for s in [
        {}, {"index": 1, "plan": "a string plan", "ms": None, "calls": "nope", "gate": "x", "outcome": [],
             "target_bounds": [1, 2], "action": {"type": "swipe", "direction": "sideways", "target": {"x": "a"}}},
        7, {"index": 3, "action": {"type": "swipe", "direction": "left", "target": {"x": 10, "y": 10}},
            "screenshot": "../../etc/passwd"},
    ]) + "\n", encoding="utf-8")
    traj = read_trajectory(folder)
    assert any("meta.json" in w for w in traj.warnings)
    assert "step 2" in format_replay(traj, verbose=True)
    page = write_report(traj).read_text(encoding="utf-8")
    assert page.count("no screenshot") == 4


def test_read_trajectory_needs_steps(tmp_path):
    with pytest.raises(ConfigError, match="no steps.jsonl"):
        read_trajectory(tmp_path)


def test_write_report_unwritable(tmp_path, png):
    traj = read_trajectory(_write(tmp_path / "run", png))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write the report"):
        write_report(traj, blocker / "report.html")
