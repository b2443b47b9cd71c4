"""Replaying trajectories as text and as a self-contained HTML report."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image

from edgepilot.agent.records import RunRecord, StepRecord
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
        w.write_step(StepRecord.model_validate(step), png)
    if finish:
        w.finish(RunRecord(status="finished", answer=None, reason="the agent finished", steps=5, seconds=9.8,
                           success=True, failed_checks=[]), png)
    else:
        w.close()
    return folder


# A run as written before the records were typed: plain dicts from the loop and the policy gate, result.json
# with finished_at first and a benchmark's verdict added by amend_result.
OLD_META = {"format": 1, "started": "2024-05-01T10:00:00+00:00", "edgepilot": "0.3.0", "goal": "turn on wifi",
            "agent": "edge", "model": "tiny-q4", "device": "virtual", "screen": [1080, 2400], "max_steps": 10,
            "sop": "wifi"}
OLD_STEPS = [
    {"index": 0, "app": "com.android.launcher3", "screen": "App: launcher\n[3] Settings",
     "plan": {"progress": "nothing yet", "subgoal": "open Settings", "memory": ""}, "thought": "open it",
     "action": {"type": "tap", "target": 3}, "target_bounds": [40, 300, 280, 540],
     "gate": {"allowed": True, "reason": ""}, "result": {"ok": True, "message": "tapped [3] Settings"},
     "outcome": {"kind": "worked", "note": "Settings opened", "by": "model"},
     "calls": [{"role": "decider", "messages": [
         {"role": "user", "content": [{"type": "text", "text": "PROMPT-OLD"}, {"type": "image_url", "image_url": {}}]}],
         "output": '{"type": "tap", "target": 3}', "ms": 400.0, "tokens_in": 300, "tokens_out": 20,
         "constrained": False, "error": None}],
     "ms": {"perceive": 58.1, "decide": 400.0, "total": 470.2}, "error": None},
    {"index": 1, "app": "com.android.settings", "screen": "App: settings", "plan": None, "thought": "reset it",
     "action": {"type": "tap", "target": 9}, "target_bounds": [0, 1000, 1080, 1100],
     "gate": {"allowed": False, "reason": "factory reset is forbidden by policy"}, "result": None,
     "outcome": {"kind": "refused", "note": "", "by": "check"}, "calls": [], "ms": {"total": 5.0}, "error": None},
    {"index": 2, "app": "com.android.settings", "screen": "App: settings", "plan": None, "thought": None,
     "action": {"type": "swipe", "direction": "up"}, "target_bounds": None, "gate": {"allowed": True, "reason": ""},
     "result": {"ok": False, "message": "the screen is locked"},
     "outcome": {"kind": "failed", "note": "nothing moved", "by": "check"}, "calls": [], "ms": {"decide": 3.0},
     "error": "boom"},
]
OLD_RESULT = {"finished_at": "2024-05-01T10:01:00+00:00", "status": "finished", "reason": "the agent finished",
              "answer": None, "steps": 3, "seconds": 12.345, "success": False, "failed_checks": ["wifi is off"]}


# What the replay showed for that run before the change (verbose; {folder} stands for the folder).
OLD_REPLAY = """\
trajectory {folder}
  goal:    turn on wifi
  agent:   edge
  model:   tiny-q4
  device:  virtual
  started: 2024-05-01T10:00:00+00:00
  steps:   3

step 0  com.android.launcher3  {"type":"tap","target":3}
    thought: open it
    subgoal: open Settings
    result: ok: tapped [3] Settings
    outcome: worked (by model): Settings opened
    time: 470 ms (perceive 58, decide 400); tokens 300 in / 20 out over 1 call
    screen:
        App: launcher
        [3] Settings
    call 0: decider, 400 ms, 300 in / 20 out, free
      [user]
        PROMPT-OLD
        [image]
      [output]
        {"type": "tap", "target": 3}

step 1  com.android.settings  {"type":"tap","target":9}
    thought: reset it
    refused by policy: factory reset is forbidden by policy
    outcome: refused (by check)
    time: 5 ms
    screen:
        App: settings

step 2  com.android.settings  {"type":"swipe","direction":"up"}
    result: failed: the screen is locked
    outcome: failed (by check): nothing moved
    time: ? ms (decide 3)
    error: boom
    screen:
        App: settings

result
  status:  finished
  reason:  the agent finished
  success: no
  failed checks:wifi is off
  steps:   3
  seconds: 12.3
  finished:2024-05-01T10:01:00+00:00
"""
# And rows of its HTML report.
OLD_REPORT_ROWS = [
    '<h1>turn on wifi <span class="badge bad">failure</span></h1>',
    "<tr><th>agent</th><td>edge</td></tr>", "<tr><th>started</th><td>2024-05-01T10:00:00+00:00</td></tr>",
    "<tr><th>screen</th><td>1080 × 2400</td></tr>", "<tr><th>max steps</th><td>10</td></tr>",
    "<tr><th>status</th><td>finished</td></tr>", "<tr><th>success</th><td>no</td></tr>",
    "<tr><th>failed checks</th><td>wifi is off</td></tr>", "<tr><th>seconds</th><td>12.3</td></tr>",
    "<tr><th>finished</th><td>2024-05-01T10:01:00+00:00</td></tr>",
    "<tr><th>action</th><td><code>{&quot;type&quot;:&quot;tap&quot;,&quot;target&quot;:3}</code></td></tr>",
    "<tr><th>progress</th><td>nothing yet</td></tr>", "<tr><th>subgoal</th><td>open Settings</td></tr>",
    "<tr><th>result</th><td>ok: tapped [3] Settings</td></tr>",
    "<tr><th>outcome</th><td>worked (by model): Settings opened</td></tr>",
    "<tr><th>time</th><td>470 ms (perceive 58, decide 400)</td></tr>",
    "<tr><th>tokens</th><td>300 in / 20 out over 1 call</td></tr>",
    '<tr><th>policy</th><td><span class="refused">refused: factory reset is forbidden by policy</span></td></tr>',
    "<tr><th>outcome</th><td>refused (by check)</td></tr>",
    "<tr><th>result</th><td>failed: the screen is locked</td></tr>",
    "<tr><th>outcome</th><td>failed (by check): nothing moved</td></tr>",
    "<tr><th>time</th><td>? ms (decide 3)</td></tr>", '<tr><th>error</th><td><span class="error">boom</span></td></tr>',
]


def _write_old(folder):
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps(OLD_META), encoding="utf-8")
    (folder / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in OLD_STEPS), encoding="utf-8")
    (folder / "result.json").write_text(json.dumps(OLD_RESULT), encoding="utf-8")
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
    w.write_step(StepRecord(index=0, screen="evil \x1b]0;pwned\x07 \x1b[2J"), png)
    w.finish(RunRecord(status="error"))
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
    text = format_replay(traj, verbose=True)
    assert "step 2" in text
    assert len(traj.warnings) > 1 and all(w in text for w in traj.warnings)  # what was left out is said
    page = write_report(traj).read_text(encoding="utf-8")
    assert page.count("no screenshot") == 4


def test_trajectory_written_before_the_records_reads_the_same(tmp_path):
    folder = _write_old(tmp_path / "old")
    traj = read_trajectory(folder)
    assert traj.warnings == []
    assert format_replay(traj, verbose=True) == OLD_REPLAY.replace("{folder}", str(folder))
    page = write_report(traj).read_text(encoding="utf-8")
    for row in OLD_REPORT_ROWS:
        assert row in page
    assert page.count("no screenshot") == len(OLD_STEPS)
    assert "PROMPT-OLD" in page and "[image]" in page


def test_read_trajectory_needs_steps(tmp_path):
    with pytest.raises(ConfigError, match="no steps.jsonl"):
        read_trajectory(tmp_path)


def test_write_report_unwritable(tmp_path, png):
    traj = read_trajectory(_write(tmp_path / "run", png))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write the report"):
        write_report(traj, blocker / "report.html")
