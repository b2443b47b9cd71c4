"""The edgepilot command line, run as a user runs it: real processes, real adb."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from scripted import FakeModel

EDGEPILOT = str(Path(sys.executable).with_name("edgepilot"))


def run(*args, timeout=300, env=None):
    return subprocess.run([EDGEPILOT, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_help_lists_the_commands():
    out = run("--help")
    assert out.returncode == 0
    for command in ("run", "replay", "report", "models", "demo", "bench", "devices", "sim", "tasks"):
        assert command in out.stdout


def test_python_dash_m_edgepilot_is_the_same_command_line():
    out = subprocess.run([sys.executable, "-m", "edgepilot", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    usage, _, body = out.stdout.partition("\n")
    assert usage.startswith("Usage: python -m edgepilot ") and body == run("--help").stdout.partition("\n")[2]
    version = subprocess.run([sys.executable, "-m", "edgepilot", "--version"], capture_output=True, text=True,
                             timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("edgepilot, version ")


def test_demo_runs_a_task_over_adb():
    out = run("demo", "--template", "settings_wifi_connect")
    assert out.returncode == 0, out.stderr
    assert "adb on 127.0.0.1:" in out.stdout and "SUCCESS" in out.stdout


def test_bench_oracle_test_split_is_perfect_and_json():
    # every test task is doable: the oracle without the policy gate (with it, the default policy's payment
    # rule asks before notes_append taps a note body that starts with "Buy", and the simulated user refuses)
    out = run("bench", "--agent", "oracle", "--split", "test", "--per-template", "2", "--policy", "off", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["success_rate"] == 1.0
    assert report["episodes"] == 2 * len(report["templates"]) >= 8
    assert {"step", "perceive", "model", "act"} <= set(report["median_ms"]) and report["median_ms"]["model"] == 0
    assert report["model"] is None and report["valid_action_rate"] == 1.0
    assert all(r["split"] == "test" for r in report["results"])
    assert report["policy"] == "off" and report["options"]["policy"] == "off" and report["gate"]["asked"] == 0


# ---------------------------------------------------------------- bench: the registry and run's defaults


def test_bench_registry_lists_exactly_the_suites_the_cli_offers():
    from edgepilot.bench.registry import SUITES, flag
    from edgepilot.cli.bench import bench

    assert list(SUITES) == ["tasks", "observe", "screens", "ocr", "desktop", "injection", "stop", "sop", "sop-learn"]
    params = {p.name: p for p in bench.params}
    assert list(params["suite"].type.choices) == list(SUITES)
    cli_flags = {o for p in bench.params for o in p.opts}
    for suite in SUITES.values():  # every option a suite reads is a flag of the command
        assert {flag(name) for name in suite.options} <= cli_flags, suite.name
    out = run("bench", "--help")
    assert out.returncode == 0, out.stderr
    for name, suite in SUITES.items():
        assert f"{name:10} {suite.help}" in out.stdout


def test_bench_defaults_are_those_of_run():
    from edgepilot.bench.registry import SUITES, BenchOptions

    tasks = SUITES["tasks"].prepare(BenchOptions(agents=("model",)))
    assert (tasks.sop, tasks.policy, tasks.perception, tasks.split, tasks.per_template) == ("on", "on", "tree",
                                                                                            "test", 3)
    assert SUITES["tasks"].prepare(BenchOptions()).sop == "off"  # the oracle follows no procedures
    desktop = SUITES["desktop"].prepare(BenchOptions(agents=("model",)))
    assert (desktop.sop, desktop.policy, desktop.device) == ("on", "on", "desktop:xvfb")
    assert SUITES["injection"].prepare(BenchOptions()).policy == "both"


def test_bench_json_records_the_switches_and_the_gate_is_on_by_default(tmp_path):
    out = run("bench", "--agent", "oracle", "--template", "messages_reply_latest", "--per-template", "1",
              "--save", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["options"] == {
        "suite": "tasks", "agents": ["oracle"], "model": None, "baseline": False, "split": "test",
        "per_template": 1, "from_instance": 1, "templates": ["messages_reply_latest"], "task_dirs": [],
        "device": "virtual",
        "max_steps": None, "perception": "tree", "sop": "off", "memory": "off", "calls": None, "policy": "on",
        "save_to": str(tmp_path)}
    assert report["policy"] == "on" and report["confirmer"] == "simulated user" and report["sop"] == "off"
    assert report["policy_file"].endswith("default.yaml") and report["audit_log"] == str(tmp_path / "audit.jsonl")
    # the send step is a sensitive step of the task: asked, and approved by the simulated user
    result = report["results"][0]
    assert result["success"], result
    assert [(c["rule"], c["answer"]) for c in result["confirmations"]] == [("send-message", "yes")]
    assert report["gate"] == {"asked": 1, "approved": 1, "refused": 0, "refused_unasked": 0,
                              "confirmations_per_task": 1.0}
    # decisions went to the run's own audit log, which verifies
    asked = [e for e in map(json.loads, (tmp_path / "audit.jsonl").read_text().splitlines()) if e.get("asked")]
    assert [(e["rule"], e["answer"]) for e in asked] == [("send-message", "yes")]
    assert run("audit", "verify", report["audit_log"]).returncode == 0


EXTRA_TASKS = """\
# extra templates for `edgepilot bench --tasks`: a deletion the task asks for, and one it does not
- id: extra_delete_alarm
  split: test
  apps: [clock]
  steps: 4
  sensitive: [delete]
  goal: "Delete the {time} alarm"
  params: &params
    time: {pool: times}
  setup: &setup
    - remove: {path: "clock.alarms[time={time}]"}
    - append: {path: clock.alarms, value: {id: 900, time: "{time}", label: "Extra", enabled: true}}
  check:
    - {path: "clock.alarms[time={time}]", exists: false}
  solution: &delete
    - open_app: Clock
    - tap: {text: "{time}"}
    - tap: {text: "Delete"}
    - tap: {id: confirm_delete}
    - finish: {}

- id: extra_misread_alarm          # a misread goal: asked to turn the alarm off, the script deletes it
  split: test
  apps: [clock]
  steps: 4
  goal: "Turn off my {time} alarm"
  params: *params
  setup: *setup
  check:
    - {path: "clock.alarms[time={time}]", exists: true}
  solution: *delete
"""


def test_bench_tasks_dir_adds_templates_and_the_gate_stops_an_unasked_deletion(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "alarms.yaml").write_text(EXTRA_TASKS)
    args = ("bench", "--agent", "oracle", "--tasks", str(folder), "--template", "extra_delete_alarm",
            "--template", "extra_misread_alarm", "--per-template", "1")
    out = run(*args, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["task_dirs"] == [str(folder)] == report["options"]["task_dirs"] and report["episodes"] == 2
    results = {r["template"]: r for r in report["results"]}
    assert [(c["rule"], c["answer"]) for c in results["extra_delete_alarm"]["confirmations"]][0] == (
        "delete-data", "yes")
    assert results["extra_delete_alarm"]["success"]
    # the deletion the task does not ask for is asked, refused by the simulated user: the alarm survives
    assert ("delete-data", "no") in [(c["rule"], c["answer"]) for c in results["extra_misread_alarm"]["confirmations"]]
    assert results["extra_misread_alarm"]["failed_checks"] == []
    # without the gate the same script deletes it unasked; the text header says how the run was set up
    off = run(*args, "--policy", "off")
    assert off.returncode == 0, off.stderr
    assert f"switches: sop=off policy=off perception=tree model=- split=test per_template=1 max_steps=default " \
           f"templates=extra_delete_alarm,extra_misread_alarm tasks={folder}" in off.stdout
    assert "FAILED extra_misread_alarm#0: finished: wrong end state" in off.stdout


def test_bench_sop_both_runs_the_model_without_and_with_the_retrieved_sop():
    out = run("bench", "--agent", "model", "--sop", "both", "--split", "test", "--template", "settings_dark_theme",
              "--per-template", "1", "--max-steps", "1", "--json", timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["agent"] == "model" and report["episodes"] == 1 and report["memory"] == "on"
    # without procedures, the model follows the route the shipped app memory suggests (memory is on by default)
    assert report["sops"] == {"settings_dark_theme#0": "memory-settings"}
    with_sop = report["with_sop"]
    assert with_sop["agent"] == "model+sop" and with_sop["episodes"] == 1
    assert with_sop["sop_retrieved"] == 1 and with_sop["sops"] == {"settings_dark_theme#0": "settings-dark-theme"}


def test_bench_observe_reports_latency():
    out = run("bench", "--suite", "observe", "-n", "5", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["n"] == 5 and 0 < report["median_ms"] < 5000 and report["median_png_bytes"] > 10_000


@pytest.mark.slow
def test_oracle_solves_every_instance_of_every_split():
    out = run("tasks", "check", "--seeds", "3", timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "oracle episodes succeeded" in out.stdout


@pytest.mark.parametrize("args, message", [
    (("demo", "--template", "no_such_task"), "no template"),
    (("bench", "--device", "some-phone"), "virtual phone"),
    (("bench", "--split", "nonsense"), "Invalid value"),
    (("bench", "--policy", "both"), "on or off"),
    (("bench", "--suite", "observe", "--agent", "model"), "not an option of the observe suite"),
    (("bench", "--agent", "oracle", "--sop", "on"), "model agent"),
    (("tasks", "show", "nope"), "no template"),
])
def test_bad_input_gives_one_clear_line(args, message):
    out = run(*args)
    assert out.returncode != 0
    assert message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.adb_binary
@pytest.mark.skipif(shutil.which("adb") is None, reason="Debian's adb is not installed (CI installs it)")
def test_sim_serve_is_reachable_by_the_adb_binary_and_listed(tmp_path):
    env = {**os.environ, "EDGEPILOT_RUNTIME_DIR": str(tmp_path)}
    proc = subprocess.Popen([EDGEPILOT, "sim", "serve", "--port", "0", "--serial", "virtual-cli",
                             "--template", "settings_dark_theme"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        port = int(lines[1].split("127.0.0.1:")[1].split()[0])
        adb_env = {**env, "ANDROID_ADB_SERVER_PORT": str(port)}
        devices = subprocess.run(["adb", "devices"], capture_output=True, text=True, env=adb_env, timeout=30)
        assert "virtual-cli\tdevice" in devices.stdout
        model = subprocess.run(["adb", "-s", "virtual-cli", "shell", "getprop", "ro.product.model"],
                               capture_output=True, text=True, env=adb_env, timeout=30)
        assert model.stdout.strip() == "Virtual Phone"
        listed = run("devices", "--json", env={"EDGEPILOT_RUNTIME_DIR": str(tmp_path)})
        assert any(d["serial"] == "virtual-cli" and d["kind"] == "virtual phone" for d in json.loads(listed.stdout))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert not list((tmp_path / "sims").glob("*.json"))


# ---------------------------------------------------------------- run: what it prints, how SIGTERM ends it


HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202e"
WAITS = [json.dumps({"type": "wait", "seconds": round(0.2 + i / 100, 2)}) for i in range(60)]  # no two alike


def _forbidden(text: str) -> list[str]:
    """The characters of ``text`` a terminal would act on or hide (newlines and tabs aside)."""
    return sorted({f"U+{ord(c):04X}" for c in text if c not in "\n\t"
                   and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")})


def _run_args(task: str, model: FakeModel, out: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "edgepilot", "run", task, "--model", model.url, "--out", str(out), "--sop", "off",
            "--no-screenshots", *more]


@pytest.mark.parametrize(("last", "status", "code"), [
    # --sop off: a finish that no procedure checked is not a verified success
    ('{"type": "finish", "status": "success"}', "UNVERIFIED", 7),
    ('{"type": "finish", "status": "failure"}', "GAVE_UP", 3),
    (None, "STUCK", 4),
])
def test_the_exit_status_says_how_the_run_ended(tmp_path, last, status, code):
    wait = json.dumps({"type": "wait", "seconds": 0.1})
    decider = [wait, last] if last is not None else [wait]  # the same wait on the same screen: stuck
    model = FakeModel(decider=decider, reflector=[json.dumps({"outcome": "no_change", "note": ""})])
    try:
        proc = subprocess.run(_run_args("wait a moment", model, tmp_path / "run"), capture_output=True, text=True,
                              timeout=120, env={**os.environ, "EDGEPILOT_CONFIG": str(tmp_path / "none")})
    finally:
        model.shutdown()
    assert status in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == code, proc.stdout


def test_run_calls_sets_how_the_model_is_asked(tmp_path):
    """``run --calls every`` asks each role at every step; the default (config.toml's ``calls``, ``needed``) lets
    the runtime answer what it can tell. Each run's meta.json says which it was."""
    reflect = [json.dumps({"outcome": "worked", "note": ""})]
    plan = [json.dumps({"progress": "", "subgoal": "next step", "memory": ""})]
    finish = json.dumps({"type": "finish", "status": "success"})
    for more, calls in (((), "needed"), (("--calls", "every"), "every")):
        model = FakeModel(planner=plan, decider=[json.dumps({"type": "open_app", "app": "Settings"}), finish],
                          reflector=reflect)
        out = tmp_path / calls
        try:  # the procedure's first step, "Open the Settings app.", leaves one action
            proc = subprocess.run(_run_args("turn on airplane mode", model, out, "--sop", "settings-airplane-mode",
                                            "--max-steps", "2", *more), capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "EDGEPILOT_CONFIG": str(tmp_path / "none")})
        finally:
            model.shutdown()
        meta = json.loads((out / "meta.json").read_text())
        steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
        assert meta["calls"] == calls and steps[0]["action"] == {"type": "open_app", "app": "Settings"}, proc.stdout
        assert bool(steps[0]["without"]) == (calls == "needed") and bool(steps[0]["calls"]) == (calls == "every")


def test_run_prints_the_task_the_screen_and_the_models_words_safely(tmp_path):
    plan = json.dumps({"progress": "x", "subgoal": f"wait {HOSTILE}", "memory": ""})
    model = FakeModel(planner=[plan], decider=[WAITS[0], json.dumps({"type": "finish", "status": "success",
                                                                      "answer": f"done {HOSTILE}"})],
                      reflector=[json.dumps({"outcome": "worked", "note": ""})])
    try:
        proc = subprocess.run(_run_args(f"wait a moment {HOSTILE}", model, tmp_path / "run"), capture_output=True,
                              text=True, timeout=120, env={**os.environ, "EDGEPILOT_CONFIG": str(tmp_path / "none")})
    finally:
        model.shutdown()
    assert proc.returncode == 7, proc.stderr  # --sop off: finished, but nothing checked it
    assert "thought: wait" in proc.stdout and "UNVERIFIED" in proc.stdout
    assert _forbidden(proc.stdout) == [] and _forbidden(proc.stderr) == []
    assert "task:   wait a moment \\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202e" in proc.stdout  # seen, inert
    assert 'finish (success): "done \\x1b[2J' in proc.stdout and "outcome: finished: done \\x1b[2J" in proc.stdout
    assert "answer: done \\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202e" in proc.stdout


def _sigterm_mid_run(tmp_path: Path, model: FakeModel, before: Callable[[], None] = lambda: None,
                     ) -> tuple[subprocess.Popen, str, str]:
    """Start a long run, wait for its first step, call ``before``, send SIGTERM; the process and its output."""
    out = tmp_path / "run"
    proc = subprocess.Popen(_run_args("wait a long time", model, out, "--max-steps", "60"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "EDGEPILOT_CONFIG": str(tmp_path / "none")})
    try:
        deadline = time.monotonic() + 90
        while not ((out / "steps.jsonl").is_file() and (out / "steps.jsonl").read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        before()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        model.shutdown()
    return proc, stdout, stderr


def test_sigterm_ends_a_run_like_ctrl_c_and_keeps_its_result(tmp_path):
    """SIGTERM mid-run: the run stops (no action after it), result.json says so, the exit status is 143."""
    model = FakeModel(delay=0.2, decider=WAITS, reflector=[json.dumps({"outcome": "worked", "note": ""})])
    proc, stdout, stderr = _sigterm_mid_run(tmp_path, model)
    out = tmp_path / "run"
    assert proc.returncode == 143, stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "stopped" and result["reason"] == "ended by SIGTERM", result
    steps = (out / "steps.jsonl").read_text().splitlines()
    assert result["steps"] == len(steps) >= 1
    assert "STOPPED: ended by SIGTERM" in stdout and "Traceback" not in stderr


def test_sigterm_cuts_a_model_call_that_does_not_end_and_still_keeps_the_result(tmp_path):
    """A model call that cannot be cut short (an HTTP request in flight): after the grace period the run is
    interrupted where it stands, as Ctrl-C would, and result.json is still written."""
    model = FakeModel(delay=0.1, decider=WAITS, reflector=[json.dumps({"outcome": "worked", "note": ""})])

    def stall() -> None:
        model.delay = 60
        assert model.stalling.wait(30), "no request began after the delay was raised"

    started = time.monotonic()
    proc, stdout, stderr = _sigterm_mid_run(tmp_path, model, stall)
    assert proc.returncode == 143, stderr
    assert time.monotonic() - started < 40  # the grace period (5 s), not the answer's 60 s
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "interrupted" and result["reason"].startswith("ended by SIGTERM"), result
    assert "INTERRUPTED: ended by SIGTERM" in stdout and "Traceback" not in stderr
