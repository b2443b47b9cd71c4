"""``edgepilot mcp`` driven as an MCP client drives it: the SDK's own client, over stdio (and HTTP), against the
real server process, the real virtual phone behind adb and the real policy gate. The model of ``run_task`` is an
OpenAI-compatible server answering from a script (these tests are about the server, not the model)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import stat
import subprocess
import sys
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

pytest.importorskip("mcp", reason="pip install 'edgepilot[mcp]'")

from mcp import Client as McpClient  # noqa: E402
from mcp import ClientSession, StdioServerParameters, stdio_client, types  # noqa: E402
from scripted import FakeModel  # noqa: E402

EDGEPILOT = str(Path(sys.executable).with_name("edgepilot"))
TOOLS = {"list_devices", "observe", "act", "run_task", "read_trajectory"}
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\u202e"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The server's environment: its own home, runtime folder and a config file that asks the (scripted) model at
    every step; the audit log of conftest."""
    (tmp_path / "config.toml").write_text('calls = "every"\n')
    return {**os.environ, "EDGEPILOT_HOME": str(tmp_path / "home"), "EDGEPILOT_RUNTIME_DIR": str(tmp_path / "run"),
            "EDGEPILOT_CONFIG": str(tmp_path / "config.toml")}


@dataclass
class Client:
    """One MCP session with the server; ``asked`` holds the elicitation messages it received."""

    session: ClientSession | McpClient
    answers: list[str]
    asked: list[str] = field(default_factory=list)

    async def call(self, tool: str, **arguments) -> types.CallToolResult:
        return await self.session.call_tool(tool, arguments)

    async def observe(self, **arguments) -> str:
        result = await self.call("observe", **arguments)
        assert not result.is_error, result.content
        return result.content[0].text

    async def act(self, goal: str, **action) -> tuple[bool, str]:
        result = await self.call("act", goal=goal, action=action)
        return not result.is_error, result.content[0].text


def element(screen: str, label: str) -> int:
    """The number of the first element of ``screen`` whose text (or an empty field's hint) starts with ``label``."""
    found = re.search(rf'^\[(\d+)\] \S+ (?:hint=)?"{re.escape(label)}', screen, re.MULTILINE)
    assert found, f"no {label!r} on\n{screen}"
    return int(found.group(1))


@asynccontextmanager
async def connected(env: dict[str, str], errlog: Path, *, answers: list[str] | None = None,
                    elicitation: bool = True, mode: str = "legacy") -> AsyncIterator[Client]:
    """``edgepilot mcp`` started over stdio; the client answers elicitations from ``answers`` (yes, no, always,
    decline), or declares no elicitation support at all. ``legacy``: the SDK's ``ClientSession`` and the
    initialize handshake (MCP 2025-11-25, what desktop clients speak); ``auto``: the SDK's ``Client``, which
    settles on 2026-07-28. Anything on stdout that is not protocol fails the test."""
    client: Client | None = None
    problems: list[Exception] = []

    async def elicit(context, params: types.ElicitRequestParams) -> types.ElicitResult:
        client.asked.append(params.message)
        answer = client.answers.pop(0)
        if answer == "decline":
            return types.ElicitResult(action="decline")
        if "value" in params.requested_schema.get("properties", {}):  # a value the goal left out
            return types.ElicitResult(action="accept", content={"value": answer})
        return types.ElicitResult(action="accept", content={"allow": answer in ("yes", "always"),
                                                            "always": answer == "always"})

    async def on_message(message) -> None:
        if isinstance(message, Exception):
            problems.append(message)

    callbacks = {"elicitation_callback": elicit if elicitation else None, "message_handler": on_message,
                 "read_timeout_seconds": 120}
    server = StdioServerParameters(command=EDGEPILOT, args=["mcp"], env=env)
    with errlog.open("a") as err:
        if mode == "legacy":
            async with stdio_client(server, errlog=err) as (read, write):
                async with ClientSession(read, write, **callbacks) as session:
                    await session.initialize()
                    client = Client(session, list(answers or []))
                    yield client
        else:
            async with McpClient(stdio_client(server, errlog=err), mode=mode, **callbacks) as session:
                client = Client(session, list(answers or []))
                yield client
    assert not problems, f"the server wrote something other than protocol to stdout: {problems}"


def _forbidden(text: str) -> list[str]:
    """The characters of ``text`` a terminal would act on or hide (newlines and tabs aside)."""
    return sorted({f"U+{ord(c):04X}" for c in text if c not in "\n\t"
                   and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")})


# ---------------------------------------------------------------- tools, observe


def test_the_server_offers_its_tools_and_writes_only_protocol_to_stdout(env, tmp_path):
    async def scenario():
        async with connected(env, tmp_path / "stderr.txt") as client:
            listed = await client.session.list_tools()
            tools = {t.name: t for t in listed.tools}
            assert set(tools) == TOOLS
            assert set(tools["act"].input_schema["required"]) == {"goal", "action"}
            assert "scope derives from it" in tools["act"].input_schema["properties"]["goal"]["description"]
            assert tools["observe"].annotations.read_only_hint and tools["act"].annotations.destructive_hint
            devices = await client.call("list_devices")
            rows = devices.structured_content["result"]
            assert rows[0]["device"] == "virtual" and rows[0]["state"] == "started on first use"

    anyio.run(scenario)
    assert "edgepilot mcp: serving on stdio" in (tmp_path / "stderr.txt").read_text()  # logs go to stderr


def test_observe_the_virtual_phone_with_its_screenshot(env, tmp_path):
    async def scenario():
        async with connected(env, tmp_path / "stderr.txt") as client:
            result = await client.call("observe", device="virtual", screenshot=True)
            assert not result.is_error
            text, image = result.content
            assert text.text.startswith("Screen:\nApp: com.android.launcher3\n")
            assert element(text.text, "Settings") >= 0 and "(clickable)" in text.text
            assert image.mime_type == "image/png" and base64.b64decode(image.data).startswith(b"\x89PNG")
            rows = (await client.call("list_devices")).structured_content["result"]
            assert rows[0]["state"] == "open" and "adb on 127.0.0.1:" in rows[0]["description"]

    anyio.run(scenario)


# ---------------------------------------------------------------- act: a task done step by step


def test_a_task_done_with_act_calls_changes_the_phone(env, tmp_path):
    goal = "turn on Bluetooth"

    async def scenario():
        async with connected(env, tmp_path / "stderr.txt") as client:
            done, text = await client.act(goal, type="tap", target=3)  # numbers before seeing any screen
            assert not done and "element numbers refer to a screen you were shown" in text
            assert "Screen now:\nApp: com.android.launcher3" in text
            done, text = await client.act(goal, type="open_app", app="Settings")
            assert done and text.startswith("done: open Settings") and "App: com.android.settings" in text
            done, text = await client.act(goal, type="tap", target=element(text, "Connected devices"))
            assert done, text
            done, text = await client.act(goal, type="tap", target=element(text, "Bluetooth · Off"))
            assert done, text
            done, text = await client.act(goal, type="tap", target=element(text, "OFF"))
            assert done, text
            screen = await client.observe()
            assert re.search(r'Switch "ON" id=bluetooth_switch \(on\b', screen), screen
            assert client.asked == []  # all of it inside the goal's scope: nothing to confirm

    anyio.run(scenario)


async def _compose_to_alice(client: Client, goal: str) -> str:
    """Open Alice's conversation and type a reply; the screen with the Send button enabled."""
    await client.observe()
    done, text = await client.act(goal, type="open_app", app="Messages")
    assert done, text
    done, text = await client.act(goal, type="tap", target=element(text, "Alice Morgan"))
    assert done, text
    done, text = await client.act(goal, type="type", text="on my way", target=element(text, "Text message"))
    assert done, text
    return text


@pytest.mark.parametrize("answer", ["no", "decline", "yes", "always"])
def test_a_sensitive_step_is_put_to_the_client_first(env, tmp_path, answer):
    """Tapping Send with a goal that does not need it: the client is asked, with what it will do; no or a
    declined question refuses it (the message stays unsent), yes lets it through, always also lets the next one
    through for this goal without asking."""
    goal = "check my messages"

    async def scenario():
        async with connected(env, tmp_path / "stderr.txt", answers=[answer, "no"]) as client:
            screen = await _compose_to_alice(client, goal)
            done, text = await client.act(goal, type="tap", target=element(screen, "Send"))
            assert len(client.asked) == 1
            question = client.asked[0]
            assert 'The agent wants to: tap [' in question and '"Send"' in question
            assert 'effect: this presses "Send" (sends): Alice Morgan; compose: "on my way"' in question
            assert "why it asks: sending a message or sharing content (rule send-message)" in question
            assert "task:   check my messages" in question
            after = await client.observe()
            if answer in ("yes", "always"):
                assert done and text.startswith("done after the user approved it: tap")
                assert re.search(r'TextView "on my way" id=message_text', after), after
                done, text = await client.act(goal, type="type", text="see you", target=element(after, "Text message"))
                done, text = await client.act(goal, type="tap", target=element(text, "Send"))
                assert done == (answer == "always") and len(client.asked) == 1 + (answer == "yes"), text
            else:
                assert not done and text.startswith("not carried out: the user refused"), text
                assert 'EditText "on my way" id=compose' in after and 'TextView "on my way"' not in after
                again, text = await client.act(goal, type="tap", target=element(after, "Send"))
                assert not again and "already refused this here" in text and len(client.asked) == 1

    anyio.run(scenario)


def test_a_client_that_cannot_answer_gets_the_step_refused(env, tmp_path):
    goal = "check my messages"

    async def scenario():
        async with connected(env, tmp_path / "stderr.txt", elicitation=False) as client:
            screen = await _compose_to_alice(client, goal)
            done, text = await client.act(goal, type="tap", target=element(screen, "Send"))
            assert not done and "this MCP client does not support elicitation" in text, text
            assert "not carried out" in text
            assert 'EditText "on my way" id=compose' in await client.observe()

    anyio.run(scenario)


def test_on_mcp_2026_the_question_is_the_calls_result_and_the_answer_a_second_call(env, tmp_path):
    """MCP 2026-07-28 lets no server send a request: act ends with the question (input_required), the SDK's client
    asks its user and calls again with the answer. A run cannot pause that way: its questions are refused."""
    goal = "check my messages"
    model = FakeModel(decider=[json.dumps({"type": "open_app", "app": "Bank"}),
                               json.dumps({"type": "finish", "status": "failure", "answer": "not allowed"})])

    async def scenario():
        async with connected(env, tmp_path / "stderr.txt", answers=["yes"], mode="auto") as client:
            assert client.session.session.protocol_version == "2026-07-28"
            screen = await _compose_to_alice(client, goal)
            done, text = await client.act(goal, type="tap", target=element(screen, "Send"))
            assert done and text.startswith("done after the user approved it: tap"), text
            assert len(client.asked) == 1 and 'effect: this presses "Send" (sends)' in client.asked[0]
            run = await client.call("run_task", goal="open Settings", model=model.url, max_steps=3)
            assert run.structured_content["status"] == "gave_up" and len(client.asked) == 1
            replay = await client.call("read_trajectory", run=run.structured_content["run_id"])
            assert "a question cannot reach the client during a run on MCP 2026-07-28" in replay.content[0].text

    try:
        anyio.run(scenario)
    finally:
        model.shutdown()


def test_a_bad_action_or_goal_is_an_error_not_an_action(env, tmp_path):
    async def scenario():
        async with connected(env, tmp_path / "stderr.txt") as client:
            result = await client.call("act", goal="turn on Bluetooth", action={"type": "fly"})
            assert result.is_error
            result = await client.call("act", goal="   ", action={"type": "key", "key": "home"})
            assert result.is_error and "policy's scope derives from it" in result.content[0].text
            result = await client.call("observe", device="desktop:nonsense spec")
            assert result.is_error and "bad device" in result.content[0].text

    anyio.run(scenario)


# ---------------------------------------------------------------- run_task, read_trajectory


def test_run_task_asks_the_client_and_its_trajectory_replays_safely(env, tmp_path):
    """The agent tries an app the goal does not need (the client refuses), then does the task and finishes; the
    run's trajectory reads back through read_trajectory with the model's control characters escaped."""
    model = FakeModel(decider=[json.dumps({"type": "open_app", "app": "Bank"}),
                               json.dumps({"type": "open_app", "app": "Settings"}),
                               json.dumps({"type": "finish", "status": "success", "answer": f"done {HOSTILE}"})],
                      reflector=[json.dumps({"outcome": "worked", "note": ""})])

    async def scenario():
        async with connected(env, tmp_path / "stderr.txt", answers=["no"]) as client:
            result = await client.call("run_task", goal="open Settings", model=model.url, max_steps=6)
            assert not result.is_error, result.content
            summary = result.structured_content
            assert summary["status"] == "finished" and summary["steps"] == 3, summary
            assert summary["answer"] == "done \\x1b[2J\\x1b]0;pwned\\x07\\u202e"
            assert len(client.asked) == 1 and "open Bank" in client.asked[0]
            assert "opening an app the task does not need" in client.asked[0]
            assert Path(summary["trajectory"]).name == summary["run_id"]
            assert Path(summary["trajectory"]).is_relative_to(tmp_path / "home" / "trajectories")
            assert "App: com.android.settings" in await client.observe()  # the same phone act and observe use
            replay = await client.call("read_trajectory", run=summary["run_id"])
            assert not replay.is_error
            text = replay.content[0].text
            assert "open Settings" in text and "done \\x1b[2J" in text and _forbidden(text) == []
            missing = await client.call("read_trajectory", run="no-such-run")
            assert missing.is_error and f"recent runs: {summary['run_id']}" in missing.content[0].text
            outside = await client.call("read_trajectory", run="../../etc")
            assert outside.is_error and "neither an absolute path nor a run id" in outside.content[0].text

    try:
        anyio.run(scenario)
    finally:
        model.shutdown()


def test_run_task_asks_the_client_for_a_value_the_goal_leaves_out_but_never_for_a_secret(env, tmp_path):
    """"set an alarm" says no time: the client is asked (elicitation) and the run follows the procedure with the
    answer. "check my savings balance" says no PIN: MCP forbids asking for a secret in a form, so the call ends
    with an error that says what is missing."""
    model = FakeModel(decider=[json.dumps({"type": "finish", "status": "success"})] * 4,
                      reflector=[json.dumps({"outcome": "worked", "note": ""})])

    async def scenario():
        async with connected(env, tmp_path / "stderr.txt", answers=["7:30"]) as client:
            result = await client.call("run_task", goal="set an alarm", model=model.url, max_steps=8)
            assert not result.is_error, result.content
            assert len(client.asked) == 1 and "(time)" in client.asked[0], client.asked
            meta = json.loads(Path(result.structured_content["trajectory"], "meta.json").read_text())
            assert meta["sop"] == "clock-add-alarm", meta["sop"]
            secret = await client.call("run_task", goal="check my savings balance", model=model.url, max_steps=4)
            assert secret.is_error and "PIN" in secret.content[0].text and "say it in the goal" in \
                secret.content[0].text, secret.content
            assert len(client.asked) == 1  # the PIN was never asked for

    try:
        anyio.run(scenario)
    finally:
        model.shutdown()


def test_cancelling_run_task_stops_the_run(env, tmp_path):
    """The client gives up on a long run: the server stops it (no action after the stop) and its trajectory ends
    with status stopped."""
    waits = [json.dumps({"type": "wait", "seconds": round(0.2 + i / 100, 2)}) for i in range(60)]  # no two alike
    model = FakeModel(decider=waits, reflector=[json.dumps({"outcome": "worked", "note": ""})])
    runs = tmp_path / "home" / "trajectories"

    async def scenario():
        async with connected(env, tmp_path / "stderr.txt") as client:
            with anyio.move_on_after(3):
                await client.call("run_task", goal="wait a long time", model=model.url, max_steps=60)
            with anyio.fail_after(30):
                while not list(runs.glob("*/result.json")):
                    await anyio.sleep(0.1)
            (result,) = runs.glob("*/result.json")
            ended = json.loads(result.read_text())
            assert ended["status"] == "stopped" and ended["reason"] == "the MCP client cancelled the call", ended
            assert 0 < ended["steps"] < 60
            assert "App: com.android.launcher3" in await client.observe()  # the device is free again

    try:
        anyio.run(scenario)
    finally:
        model.shutdown()


@pytest.mark.slow
def test_run_task_with_the_bundled_model(env, tmp_path):
    """The real default model (llama.cpp, loaded on first use) runs a task end to end; whatever it does, the run
    ends with a status and a trajectory."""
    pytest.importorskip("llama_cpp")

    async def scenario():
        async with connected(env, tmp_path / "stderr.txt", answers=["no"] * 20) as client:
            result = await client.call("run_task", goal="open the Settings app", max_steps=1)
            assert not result.is_error, result.content
            assert result.structured_content["status"] in ("finished", "gave_up", "stuck", "budget")
            assert result.structured_content["steps"] == 1
            assert Path(result.structured_content["trajectory"], "result.json").is_file()

    anyio.run(scenario)


# ---------------------------------------------------------------- HTTP with a bearer token


def test_http_needs_the_bearer_token(env, tmp_path):
    import httpx
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    proc = subprocess.Popen([EDGEPILOT, "mcp", "--http", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/mcp)", first)
        assert url, first + proc.stderr.read()
        url = url.group(1)
        token_file = tmp_path / "home" / "mcp.token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and len(token) == 64
        assert token in proc.stdout.readline()
        hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                 "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                            "clientInfo": {"name": "t", "version": "0"}}}
        headers = {"Accept": "application/json, text/event-stream"}
        assert httpx.post(url, json=hello, headers=headers, timeout=30).status_code == 401
        wrong = httpx.post(url, json=hello, headers={**headers, "Authorization": "Bearer " + "0" * 64}, timeout=30)
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")

        asked = []

        async def refuse(context, params: types.ElicitRequestParams) -> types.ElicitResult:
            asked.append(params.message)
            return types.ElicitResult(action="accept", content={"allow": False})

        async def scenario():
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
                async with streamable_http_client(url, http_client=http) as (read, write):
                    async with ClientSession(read, write, elicitation_callback=refuse) as session:
                        await session.initialize()
                        assert {t.name for t in (await session.list_tools()).tools} == TOOLS
                        screen = await session.call_tool("observe", {})
                        assert "App: com.android.launcher3" in screen.content[0].text
                        bank = await session.call_tool("act", {"goal": "open Settings",
                                                               "action": {"type": "open_app", "app": "Bank"}})
                        assert bank.is_error and "not carried out: the user refused" in bank.content[0].text
                        assert len(asked) == 1 and "effect: this opens Bank" in asked[0]

        anyio.run(scenario)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()


# ---------------------------------------------------------------- shutdown


def test_closing_the_server_closes_its_devices():
    """The virtual phone the server started stops with it: its adb endpoint no longer answers."""
    import socket

    from edgepilot.config import Config
    from edgepilot.errors import DeviceError
    from edgepilot.mcp.devices import DeviceHub
    from edgepilot.mcp.tools import Toolbox
    from edgepilot.policy import DEFAULT_POLICY, load_policy

    toolbox = Toolbox(Config(), load_policy(DEFAULT_POLICY), devices=DeviceHub(screenshot=False))
    assert toolbox.observe("virtual").package == "com.android.launcher3"
    assert toolbox.devices.get("virtual") is toolbox.devices.get(" virtual ")  # opened once, kept
    port = int(re.search(r"127\.0\.0\.1:(\d+)", toolbox.devices.open_specs()["virtual"]).group(1))
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    toolbox.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(DeviceError, match="shutting down"):
        toolbox.observe("virtual")


def test_a_model_is_loaded_on_first_use_and_kept():
    from edgepilot.config import Config
    from edgepilot.mcp.devices import DeviceHub
    from edgepilot.mcp.tools import Toolbox
    from edgepilot.policy import DEFAULT_POLICY, load_policy

    loaded = []

    def opener(spec, config):
        loaded.append(spec)
        return object()

    toolbox = Toolbox(Config(), load_policy(DEFAULT_POLICY), devices=DeviceHub(), opener=opener,
                      model="smollm2-135m")
    assert loaded == []  # nothing loads before a run needs it
    first, _ = toolbox.model_for(None)
    assert toolbox.model_for("smollm2-135m")[0] is first and loaded == ["smollm2-135m"]
    assert toolbox.model_for("http://127.0.0.1:1/v1")[0] is not first and len(loaded) == 2
    toolbox.close()
