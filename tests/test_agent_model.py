"""The real thing: llama.cpp running the bundled SmolLM2 model drives the virtual phone over adb.

Short runs (a few steps): these check that the model-driven agent works end
to end through the command line — every constrained answer parses, the
trajectory is complete, replay and report read it — not how often it
succeeds (that is `edgepilot bench --agent model`, docs/bench.md).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgepilot.agent.loop import EXIT_STATUS

if not os.environ.get("CI"):  # in CI a missing llama-cpp-python is a failure, never a skip
    pytest.importorskip("llama_cpp", reason="`make install-llm` installs llama-cpp-python")

pytestmark = pytest.mark.slow
EDGEPILOT = str(Path(sys.executable).with_name("edgepilot"))


def run(*args, timeout=300, env=None):
    return subprocess.run([EDGEPILOT, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_run_turn_on_airplane_mode_writes_a_trajectory(tmp_path):
    out = tmp_path / "traj"
    proc = run("run", "turn on airplane mode", "--max-steps", "3", "--out", str(out),
               env={"EDGEPILOT_CONFIG": str(tmp_path / "none.toml")})
    assert "model:  smollm2-135m-agent" in proc.stdout and "step  1" in proc.stdout, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] in ("finished", "gave_up", "budget", "stuck")
    assert proc.returncode == EXIT_STATUS[result["status"]], (result, proc.stderr)  # 3 steps are too few: 5
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert 1 <= len(steps) == result["steps"] <= 3
    for step in steps:
        decider = [c for c in step["calls"] if c["role"] == "decider"]
        assert step["action"] is not None  # the grammar makes every answer an action
        if decider:
            assert decider[0]["constrained"] and decider[0]["error"] is None, step
            assert decider[0]["tokens_in"] > 200 and decider[0]["tokens_out"] > 3
        else:  # the procedure's step left one action: the runtime took it and says why
            assert "leaves one action" in step["without"]["decider"] or "switch" in step["without"]["decider"], step
        assert (out / step["screenshot"]).stat().st_size > 10_000
    assert "tapped" in proc.stdout or "opened" in proc.stdout or "typed" in proc.stdout or "swiped" in proc.stdout \
        or "pressed" in proc.stdout or "finish" in proc.stdout

    replay = run("replay", str(out))
    assert replay.returncode == 0 and "step 0" in replay.stdout and result["status"] in replay.stdout
    report = run("report", str(out))
    assert report.returncode == 0
    html = Path(report.stdout.strip()).read_text()
    assert html.count("data:image/png;base64,") >= len(steps)


@pytest.mark.timeout(900)
def test_the_shipped_model_turns_on_airplane_mode_following_its_sop(tmp_path):
    """The README's main job, checked on the phone: the default model (base + the shipped LoRA), the bundled SOP."""
    proc = run("bench", "--agent", "model", "--sop", "on", "--split", "train", "--template", "settings_airplane_mode",
               "--per-template", "1", "--json", timeout=800, env={"EDGEPILOT_CONFIG": str(tmp_path / "none.toml")})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["model"] == "smollm2-135m-agent" and report["sop_retrieved"] == 1
    episode = report["results"][0]
    assert report["success_rate"] == 1.0, (episode["status"], episode["reason"], episode["failed_checks"])


@pytest.mark.timeout(900)
def test_the_shipped_model_carries_a_value_from_one_app_to_another(tmp_path):
    """A two-app task (read a contact's number, save it in a new note): the procedure's reading step keeps the number
    it reads off the contact's page and the note gets it (sop/carry.py)."""
    out = tmp_path / "runs"
    proc = run("bench", "--agent", "model", "--split", "train", "--template", "contacts_phone_to_note",
               "--per-template", "1", "--json", "--save", str(out), timeout=800,
               env={"EDGEPILOT_CONFIG": str(tmp_path / "none.toml")})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    episode = report["results"][0]
    assert report["success_rate"] == 1.0, (episode["status"], episode["reason"], episode["failed_checks"])
    steps = [json.loads(line) for run_dir in out.iterdir() if run_dir.is_dir()
             for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    assert any("kept '555-5" in step.get("without", {}).get("procedure", "") for step in steps)


def test_bench_model_and_baseline_side_by_side(tmp_path):
    """The model agent both ways (skipping what the runtime can tell, and asking every role) and the baseline, on
    the same episode in one invocation: the report carries all three and the speed-up."""
    proc = run("bench", "--agent", "model", "--baseline", "--sop", "off", "--calls", "both", "--split", "train",
               "--template", "settings_airplane_mode", "--per-template", "1", "--max-steps", "2", "--json",
               env={"EDGEPILOT_CONFIG": str(tmp_path / "none.toml")})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["agent"] == "model" and report["model"] == "smollm2-135m-agent" and report["episodes"] == 1
    assert report["baseline"]["agent"] == "baseline" and report["calls"] == "needed"
    assert report["valid_action_rate"] == 1.0  # grammar-constrained
    every = report["every_call"]
    assert every["calls"] == "every" and every["episodes"] == 1 and every["valid_action_rate"] == 1.0
    assert every["roles"]["decider"]["calls"] >= 1 and every["roles"]["decider"]["parse_failures"] == 0
    assert every["median_ms"]["model"] > 0 and 0 <= every["outside_model_share"] < 1
    assert every["model_calls_per_step"] > report["model_calls_per_step"]  # the memory's route: taps by the runtime
    assert report["without_model"]["decider"] >= 1 and every["without_model"] == {"planner": 0, "decider": 0,
                                                                                  "reflector": 0}
    assert report["calls_speedup"]["model_calls_per_step"] is None or report["calls_speedup"]["model_calls_per_step"] > 1
    assert report["peak_rss_mb"] > 50 and report["first_step_ms"] > 0
    assert report["baseline"]["roles"]["react"]["calls"] >= 1


def test_unknown_model_and_bad_config_are_clear_errors(tmp_path):
    proc = run("run", "x", "--model", "no-such-model")
    assert proc.returncode == 1 and "unknown model 'no-such-model'" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "config.toml"
    bad.write_text('modle = "smollm2-135m"\n')
    proc = run("run", "x", env={"EDGEPILOT_CONFIG": str(bad)})
    assert proc.returncode == 1 and "did you mean 'model'" in proc.stderr
    bad.write_text('model = [\n')
    proc = run("models", env={"EDGEPILOT_CONFIG": str(bad)})
    assert proc.returncode == 1 and "not valid TOML" in proc.stderr
