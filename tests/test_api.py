"""The one-call Python API: ``Agent(device=..., model=...).run(task)``."""

from __future__ import annotations

import json
import os

import pytest
from scripted import ScriptedBackend

import edgepilot
from edgepilot.api import Agent, AgentResult
from edgepilot.config import Config
from edgepilot.errors import PolicyError


def test_agent_runs_a_task_with_a_given_backend_and_keeps_the_trajectory(tmp_path):
    backend = ScriptedBackend(decider=['{"type": "finish", "status": "success", "answer": "done"}'])
    with Agent(device="virtual", model=backend, sop="off") as agent:
        result = agent.run("open the settings", out=tmp_path / "run")
        # no procedure (sop off): the app memory's route opens Settings (the runtime's step, no model call), the
        # model finishes; the run ends, but nothing checked it, and the result says so
        assert isinstance(result, AgentResult) and result.status == "unverified" and not result.finished
        assert "memory" in result.reason
        assert result.steps == 2 and result.answer == "done" and result.trajectory == tmp_path / "run"
        assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "unverified"
        assert agent._device().phone.foreground == agent._device().phone.app("settings").package
        again = agent.run("open the settings", out=tmp_path / "again")  # the device stays open between runs
        assert again.trajectory == tmp_path / "again"


def test_sensitive_steps_go_to_the_callback_and_are_refused_without_one(tmp_path):
    answers = []

    def confirm(request):
        answers.append(request)
        return False

    send_note = ['{"type": "open_app", "app": "Bank"}', '{"type": "finish", "status": "failure"}']
    every = Config(calls="every")  # the scripted decider is asked each step (the memory's route would open Settings)
    with Agent(model=ScriptedBackend(decider=list(send_note)), confirm=confirm, sop="off", config=every) as agent:
        result = agent.run("turn on wifi", out=tmp_path / "asked")  # the bank is not this task's app
        assert answers and answers[0].opens == "Bank" and result.confirmations == 1
        assert agent._device().phone.foreground != agent._device().phone.app("bank").package
    with Agent(model=ScriptedBackend(decider=list(send_note)), sop="off", config=every) as agent:
        result = agent.run("turn on wifi", out=tmp_path / "refused")
        step = json.loads((tmp_path / "refused" / "steps.jsonl").read_text().splitlines()[0])
        assert step["gate"]["allowed"] is False and "confirm=" in step["gate"]["reason"]


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="task is empty"):
        Agent(model=ScriptedBackend()).run("  ")
    bad = tmp_path / "p.yaml"
    bad.write_text("rules:\n  - {id: x, effect: allow, actionz: [tap]}\n")
    with pytest.raises(PolicyError, match="p.yaml:2"):
        Agent(model=ScriptedBackend(), policy=bad)


def test_the_package_exports_the_agent_lazily():
    assert edgepilot.Agent is Agent and edgepilot.AgentResult is AgentResult
    with pytest.raises(AttributeError):
        edgepilot.NoSuchThing  # noqa: B018


@pytest.mark.slow
def test_the_bundled_model_turns_on_wifi_through_the_api(tmp_path):
    if not os.environ.get("CI"):  # in CI a missing llama-cpp-python is a failure, never a skip
        pytest.importorskip("llama_cpp", reason="`make install-llm` installs llama-cpp-python")
    with Agent(device="virtual") as agent:
        settings = agent._device().phone.app("settings")
        settings.load({**settings.snapshot(), "wifi": False})
        result = agent.run("turn on wifi", out=tmp_path / "wifi")
        assert settings.snapshot()["wifi"] is True, result
        assert result.status == "finished" and result.trajectory == tmp_path / "wifi"
