"""The pictures, looked at as a person would: a benchmark's page and its episodes' reports opened in headless
Chromium, and the training loss curve's PNG.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages ended by a
NUL byte on file descriptors 3 and 4), so that nothing but Debian's ``chromium`` package is needed
(scripts/system-deps.sh installs it) and nothing is fetched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from edgepilot.agent.records import GateRecord, RunRecord, StepRecord
from edgepilot.agent.report import describe_step, model_name, render_report
from edgepilot.agent.trajectory import TrajectoryWriter, read_trajectory
from edgepilot.bench.report import is_bench_folder, read_bench, render_bench, step_phases
from edgepilot.distill.train import write_loss_curve
from edgepilot.errors import ConfigError

EDGEPILOT = str(Path(sys.executable).with_name("edgepilot"))
TEMPLATES = ("browser_weather", "messages_reply_latest")
XSS = "<script>alert(1)</script>"


# ---------------------------------------------------------------- Chromium over the DevTools pipe


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    message = "no Chromium to open the reports in: scripts/system-deps.sh installs Debian's chromium"
    if not os.environ.get("CI"):  # in CI a missing Chromium is a failure, never a skip
        pytest.skip(message)
    pytest.fail(message)


class Browser:
    """One headless Chromium tab, driven over the DevTools protocol on a pipe."""

    def __init__(self, exe: str, profile: Path) -> None:
        cmd_r, self._cmd = os.pipe()  # we write commands; Chromium reads them on fd 3
        self._out, out_w = os.pipe()  # Chromium writes answers and events on fd 4

        def pipes_on_3_and_4() -> None:
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_r, out_w)]  # out of the way of 3 and 4
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--window-size=1280,1600", "about:blank"],
            preexec_fn=pipes_on_3_and_4, close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(out_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=True)

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._out, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False,
             timeout: float = 30) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self._session
        os.write(self._cmd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") != self._id:
                self.events.append(reply)
            elif "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            else:
                return reply["result"]

    def goto(self, url: str, timeout: float = 30) -> None:
        """Open ``url`` and wait for its load event; the page's events start afresh."""
        self.events.clear()
        answer = self.send("Page.navigate", {"url": url}, session=True)
        assert not answer.get("errorText"), f"{url}: {answer['errorText']}"
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._message(deadline))

    def js(self, expression: str) -> Any:
        answer = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"].get("value")

    def console_errors(self) -> list[str]:
        """What the page's console showed as errors: script errors, failed loads, blocked content."""
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(str(params.get("exceptionDetails")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(str(params.get("args")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append(str(params["entry"].get("text")))
        return errors

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd)
        os.close(self._out)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Browser]:
    tab = Browser(_chromium(), tmp_path_factory.mktemp("chromium-profile"))
    yield tab
    tab.close()


# ---------------------------------------------------------------- a benchmark saved by the oracle


def _edgepilot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EDGEPILOT, *args], capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    """``edgepilot bench --save`` with the oracle on the virtual phone, two templates, one instance each
    (the reply asks the simulated user to confirm sending), then ``edgepilot report`` on the folder."""
    folder = tmp_path_factory.mktemp("bench") / "saved"
    ran = _edgepilot("bench", "--agent", "oracle", "--split", "test", "--per-template", "1",
                     *(f"--template={t}" for t in TEMPLATES), "--save", str(folder))
    assert ran.returncode == 0, ran.stderr
    made = _edgepilot("report", str(folder))
    assert made.returncode == 0, made.stderr
    assert Path(made.stdout.strip()) == folder / "report.html"
    return folder


def test_bench_page_shows_success_bars_and_step_times(bench_dir, browser):
    browser.goto((bench_dir / "report.html").as_uri())
    text = browser.js("document.body.innerText")
    for template in TEMPLATES:
        assert re.search(rf"{template}\s+100% \(1 of 1\)", text), text
    assert re.search(r"all templates\s+100% \(2 of 2\)", text)
    bars = browser.js("""[...document.querySelectorAll('table.bars tr')].map(row => ({
        label: row.querySelector('th').innerText, pct: row.querySelector('.pct').innerText,
        fill: row.querySelector('rect.fill').getBoundingClientRect().width,
        track: row.querySelector('rect.track').getBoundingClientRect().width}))""")
    assert [b["label"] for b in bars] == [*TEMPLATES, "all templates"]
    assert all(b["track"] > 100 and b["fill"] == pytest.approx(b["track"]) for b in bars)  # 100%: full bars
    # the step-time breakdown: the phases the oracle's steps have, as visible text, and drawn
    assert "time per step: oracle" in text
    for phase in ("perceive", "act", "other"):
        assert re.search(rf"{phase}\s+\d+\.\d ms", text), phase
    widths = browser.js("[...document.querySelectorAll('svg.time rect.phase')]"
                        ".map(r => r.getBoundingClientRect().width)")
    assert sum(widths) == pytest.approx(640, abs=1) and widths[0] > 0
    assert browser.js("document.querySelectorAll('script').length") == 0
    assert browser.console_errors() == []


def test_bench_page_links_each_episode_report(bench_dir, browser):
    browser.goto((bench_dir / "report.html").as_uri())
    links = browser.js("[...document.querySelectorAll('table.episodes a')].map(a => [a.innerText, a.href])")
    assert sorted(name.split("#")[0] for name, _ in links) == sorted(TEMPLATES)
    for name, href in links:
        browser.goto(href)
        steps = len(read_trajectory(Path(href.removeprefix("file://")).parent).steps)
        strip = browser.js("""[...document.querySelectorAll('nav.strip a')].map(a => {
            const img = a.querySelector('img');
            return {text: a.innerText,
                    img: img !== null && img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().width > 0};
        })""")
        assert len(strip) == steps and all(cell["img"] for cell in strip), name
        text = browser.js("document.body.innerText")
        assert re.search(r"model\s+oracle", text) and "model ?" not in text
        assert browser.js("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        if name.startswith("messages_reply_latest"):
            assert 'tap "Send" (element' in text and 'type "Can you call me back?" into' in text
            assert "asked the user (rule send-message): yes; carried out" in text
        else:
            assert strip[0]["text"] == "0. open Chrome" and 'tap "Weather · weather.example" (element' in text
        assert browser.console_errors() == [], name
        back = browser.js("document.querySelector('.back a').href")
        browser.goto(back)
        assert browser.js("document.title") == f"edgepilot benchmark: {bench_dir.name}"


def test_report_on_a_trajectory_folder_still_writes_its_own_page(bench_dir):
    episode = read_bench(bench_dir).episodes[0].traj.folder
    out = bench_dir.parent / "one.html"
    made = _edgepilot("report", str(episode), "--out", str(out))
    assert made.returncode == 0, made.stderr
    page = out.read_text(encoding="utf-8")
    assert 'class="card strip"' in page and "all episodes" not in page  # no bench to go back to


# ---------------------------------------------------------------- without a browser


def _step(index: int, action: dict | None, screen: str = "", **more: Any) -> StepRecord:
    return StepRecord.model_validate({"index": index, "action": action, "screen": screen, **more})


SCREEN = ('App: com.google.android.apps.messaging\n[0] FrameLayout desc="Status bar" id=status_bar\n'
          '[11] EditText "Text message" id=compose (editable, clickable)\n[12] Button "Send" id=send (clickable)\n'
          '[13] ImageButton desc="Attach" id=attach (clickable)\n'
          f'[14] TextView "{XSS}" id=msg\n[15] TextView "{"long " * 20}" id=long')


@pytest.mark.parametrize(("action", "words"), [
    ({"type": "tap", "target": 12}, 'tap "Send" (element 12)'),
    ({"type": "long_press", "target": 13}, 'long press "Attach" (element 13)'),
    ({"type": "tap", "target": 40}, "tap element 40"),
    ({"type": "tap", "target": {"x": 900, "y": 2000}}, "tap at (900, 2000)"),
    ({"type": "type", "text": "hi there", "target": 11}, 'type "hi there" into "Text message" (element 11)'),
    ({"type": "swipe", "direction": "up"}, "swipe up"),
    ({"type": "open_app", "app": "Messages"}, "open Messages"),
    ({"type": "finish", "status": "success", "answer": "72"}, 'finish (success): "72"'),
    ({"type": "tap", "target": 15}, 'tap "long long long long long long long long…" (element 15)'),
    ({"type": "teleport"}, '{"type":"teleport"}'),
    (None, "(no valid action)"),
])
def test_actions_read_as_words(action, words):
    assert describe_step(_step(0, action, SCREEN)) == words


def test_untrusted_labels_and_confirmations_are_escaped(tmp_path):
    folder = tmp_path / "run"
    w = TrajectoryWriter(folder, {"goal": f"reply {XSS}", "agent": "oracle", "model": None})
    w.write_step(_step(0, {"type": "tap", "target": 14}, SCREEN,
                       gate=GateRecord(allowed=False, reason=f"the user said no {XSS}", verdict="ask_user",
                                       rule=f"send-{XSS}", asked=True, answer="no").model_dump()))
    w.finish(RunRecord(status="finished"))
    traj = read_trajectory(folder)
    page = render_report(traj)
    assert "<script" not in page.lower() and page.count("&lt;script&gt;") >= 4
    assert "asked the user (rule send-&lt;script&gt;alert(1)&lt;/script&gt;): no; refused" in page
    assert model_name(traj.meta) == "oracle"
    bench = read_bench(tmp_path)
    assert "<script" not in render_bench(bench).lower()


def test_model_name_names_the_model_or_the_agent_that_needs_none(tmp_path):
    for meta, name in [({"agent": "model", "model": "smollm2"}, "smollm2"), ({"agent": "oracle"}, "oracle"),
                       ({"agent": "human", "model": None}, "human"), ({"agent": "model"}, "")]:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        TrajectoryWriter(folder, {"goal": "x", **meta}).finish(RunRecord(status="finished"))
        assert model_name(read_trajectory(folder).meta) == name


def test_step_phases_add_up_to_the_total():
    model = _step(0, None, ms={"perceive": 50.0, "planner": 700.0, "decider": 300.0, "act": 20.0, "reflect": 260.0,
                               "reflector": 250.0, "total": 1400.0})
    assert step_phases(model) == pytest.approx({"perceive": 50, "planner": 700, "decider": 300, "act": 20,
                                                "reflect": 10, "reflector": 250, "other": 70})
    assert sum(step_phases(model).values()) == pytest.approx(1400)
    assert step_phases(_step(1, None, ms={"decide": 3.0})) == {"decide": 3.0}  # no total: nothing to call "other"


def test_bench_folder_is_told_from_a_trajectory(tmp_path):
    assert not is_bench_folder(tmp_path)
    with pytest.raises(ConfigError, match="no saved episodes"):
        read_bench(tmp_path)
    TrajectoryWriter(tmp_path / "ep", {"goal": "x"}).finish(RunRecord(status="finished"))
    assert is_bench_folder(tmp_path) and not is_bench_folder(tmp_path / "ep")


# ---------------------------------------------------------------- the loss curve


def test_loss_curve_png(tmp_path):
    losses = [2.4, 1.9, 1.5, 1.2, 1.1, 0.95, 0.9, 0.82]
    out = write_loss_curve(tmp_path / "loss.png", losses, [None, 2.0, None, 1.4, 1.2, None, 0.9, 0.8])
    assert out == tmp_path / "loss.png"
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (700, 400)
        raw = img.convert("RGB").tobytes()
    pixels = [tuple(raw[i:i + 3]) for i in range(0, len(raw), 3)]

    def drawn(colour: tuple[int, int, int]) -> int:
        return sum(1 for p in pixels if sum(abs(a - b) for a, b in zip(p, colour, strict=True)) < 40)

    assert drawn((0x4E, 0x79, 0xA7)) > 300 and drawn((0xE1, 0x57, 0x59)) > 200  # both curves (and their legend)
    assert write_loss_curve(tmp_path / "none.png", []) is None and not (tmp_path / "none.png").exists()
