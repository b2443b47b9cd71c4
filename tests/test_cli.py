"""The edgepilot command line, run as a user runs it: real processes, real adb."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

EDGEPILOT = str(Path(sys.executable).with_name("edgepilot"))


def run(*args, timeout=300, env=None):
    return subprocess.run([EDGEPILOT, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_help_lists_the_commands():
    out = run("--help")
    assert out.returncode == 0
    for command in ("run", "replay", "report", "models", "demo", "bench", "devices", "sim", "tasks"):
        assert command in out.stdout


def test_demo_runs_a_task_over_adb():
    out = run("demo", "--template", "settings_wifi_connect")
    assert out.returncode == 0, out.stderr
    assert "adb on 127.0.0.1:" in out.stdout and "SUCCESS" in out.stdout


def test_bench_oracle_test_split_is_perfect_and_json():
    out = run("bench", "--agent", "oracle", "--split", "test", "--per-template", "2", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["success_rate"] == 1.0
    assert report["episodes"] == 2 * len(report["templates"]) >= 8
    assert {"step", "perceive", "model", "act"} <= set(report["median_ms"]) and report["median_ms"]["model"] == 0
    assert report["model"] is None and report["valid_action_rate"] == 1.0
    assert all(r["split"] == "test" for r in report["results"])


def test_bench_sop_both_runs_the_model_without_and_with_the_retrieved_sop():
    out = run("bench", "--agent", "model", "--sop", "both", "--split", "test", "--template", "settings_dark_theme",
              "--per-template", "1", "--max-steps", "1", "--json", timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["agent"] == "model" and report["episodes"] == 1 and "sops" not in report
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
