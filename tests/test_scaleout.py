"""Scale-out: the task suite, collection and evaluation on a worker pool (local processes or Ray tasks).

Results stream back to the driver, which writes every file under its own folder; a unit whose worker dies
is retried, and the retry is in the report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from edgepilot.bench.pool import Unit, run_units
from edgepilot.bench.registry import BenchOptions, run_suite
from edgepilot.errors import ConfigError
from edgepilot.policy import verify

TEMPLATES = ("messages_reply_latest", "browser_weather", "clock_disable_alarm")
"""Three held-out templates the oracle passes with the policy on; the first asks a confirmation (its send)."""


def _outcomes(report: dict[str, Any]) -> list[tuple[str, bool, list[tuple[str, str]]]]:
    return [(r["instance"], r["success"], [(c["rule"], c["answer"]) for c in r["confirmations"]])
            for r in report["results"]]


def _written_by_a_worker(trajectory: str, driver: Path) -> bool:
    folder = Path(trajectory)
    meta = json.loads((folder / "meta.json").read_text())
    return (folder.parent == driver and (folder / "steps.jsonl").is_file() and (folder / "result.json").is_file()
            and int(meta["worker"].rsplit(":", 1)[1]) != os.getpid())


def test_two_worker_processes_give_the_oracle_suite_the_results_of_one(tmp_path: Path) -> None:
    options = BenchOptions(agents=("oracle",), per_template=1, templates=TEMPLATES)
    _, here = run_suite("tasks", options.filled(save_to=tmp_path / "one"))
    lines: list[str] = []
    _, pooled = run_suite("tasks", options.filled(save_to=tmp_path / "two", workers=2), progress=lines.append)

    assert _outcomes(pooled) == _outcomes(here)  # same order: the plan's, not the order episodes finished in
    assert [r["success"] for r in pooled["results"]] == [True, True, True]
    assert "attempts" not in here["results"][0] and "scale_out" not in here and "workers" not in here["options"]
    assert all(r["attempts"] == 1 for r in pooled["results"])
    assert pooled["scale_out"] == {"workers": 2, "ray": None, "worker_processes": 2, "retried": []}
    assert pooled["options"]["workers"] == 2 and pooled["options"]["ray"] is None
    assert len(lines) == 3 and all(" ok " in line for line in lines)  # one progress line per finished episode
    # the workers' trajectories and gate decisions came back: the driver wrote them under its own folder
    assert all(_written_by_a_worker(r["trajectory"], tmp_path / "two") for r in pooled["results"])
    log = tmp_path / "two" / "audit.jsonl"
    assert pooled["audit_log"] == str(log) and verify(log).ok
    assert len(log.read_text().splitlines()) == len((tmp_path / "one" / "audit.jsonl").read_text().splitlines())
    assert not list((tmp_path / "two").glob(".incoming-*"))


def test_workers_are_an_option_of_the_task_suite_only() -> None:
    with pytest.raises(ConfigError, match="--workers: not an option of the observe suite"):
        run_suite("observe", BenchOptions(workers=2))
    with pytest.raises(ConfigError, match="at least 1"):
        run_suite("tasks", BenchOptions(workers=0))


# ---------------------------------------------------------------- a worker that dies

DIE_ON = "EDGEPILOT_TEST_DIE_ON"
"""The episode (``agent/instance``) whose worker process dies on its first attempt."""
DIED = "EDGEPILOT_TEST_DIED"
"""A file the dying worker leaves, so that the retry (in a new process) lives."""


def _dies_once(context: Any, job: Any, scratch: Path) -> dict[str, Any]:
    """:func:`edgepilot.bench.tasks.play_episode`, except that the worker process dies without a word (as when
    it is killed for memory) on the first attempt at the episode named by $EDGEPILOT_TEST_DIE_ON."""
    from edgepilot.bench.tasks import play_episode

    marker = Path(os.environ[DIED])
    if f"{job.agent}/{job.instance.id}" == os.environ[DIE_ON] and not marker.exists():
        marker.touch()
        os._exit(9)
    return play_episode(context, job, scratch)


def test_an_episode_whose_worker_dies_is_retried_on_a_new_worker(tmp_path: Path, monkeypatch) -> None:
    import edgepilot.bench.tasks as tasks

    monkeypatch.setattr(tasks, "play_episode", _dies_once)  # the workers import it from this module
    monkeypatch.setenv(DIE_ON, "oracle/browser_weather#0")
    monkeypatch.setenv(DIED, str(tmp_path / "died"))
    _, report = run_suite("tasks", BenchOptions(agents=("oracle",), per_template=1, templates=TEMPLATES,
                                                policy="off", workers=2, save_to=tmp_path / "run"))

    assert (tmp_path / "died").exists()
    assert [(r["instance"], r["success"], r["attempts"]) for r in report["results"]] == [
        ("browser_weather#0", True, 2), ("clock_disable_alarm#0", True, 1), ("messages_reply_latest#0", True, 1)]
    assert report["scale_out"]["retried"] == [{"unit": "oracle/browser_weather#0", "attempts": 2, "failed": False,
                                               "errors": ["attempt 1: the worker process died (exit code 9)"]}]
    assert all(_written_by_a_worker(r["trajectory"], tmp_path / "run") for r in report["results"])
    assert len(list((tmp_path / "run").iterdir())) == 3  # the dead worker's attempt left nothing behind
    from edgepilot.bench.tasks import format_tasks

    assert "RETRIED oracle/browser_weather#0: 2 attempts: attempt 1: the worker process died" in format_tasks(report)


# ---------------------------------------------------------------- the pool itself


def _work(context: Path, job: str, scratch: Path) -> str:
    """A unit of the pool test: ``flaky`` fails on its first try, ``broken`` always, ``wrong`` with a setting
    error; each writes ``out/job.txt`` into its scratch folder."""
    (scratch / "out").mkdir()
    (scratch / "out" / "job.txt").write_text(job)
    if job == "flaky" and not (context / "tried").exists():
        (context / "tried").touch()
        raise OSError("the phone's socket went away")
    if job == "broken":
        raise RuntimeError("always")
    if job == "wrong":
        raise ConfigError("no such model")
    return job.upper()


def test_the_pool_retries_infrastructure_errors_but_not_settings(tmp_path: Path) -> None:
    units = [Unit("a", "flaky"), Unit("b", "broken"), Unit("c", "fine")]
    done = {d.key: d for d in run_units(_work, units, context=tmp_path, workers=2, retries=1)}

    assert (done["a"].value, done["a"].attempts, done["a"].failed) == ("FLAKY", 2, False)
    assert done["a"].errors[0].startswith("attempt 1: OSError: the phone's socket went away (at test_scaleout.py:")
    assert (done["b"].value, done["b"].attempts, done["b"].failed, len(done["b"].errors)) == (None, 2, True, 2)
    assert (done["c"].attempts, done["c"].errors, done["c"].index) == (1, [], 2)
    # files come back as an archive; a name already taken in the driver's folder gets a suffix
    first, second = done["a"].unpack(tmp_path / "dest"), done["c"].unpack(tmp_path / "dest")
    assert first == {"out": tmp_path / "dest" / "out"} and second == {"out": tmp_path / "dest" / "out-2"}
    assert (tmp_path / "dest" / "out-2" / "job.txt").read_text() == "fine"

    with pytest.raises(ConfigError, match="^d: no such model$"):  # the same on every try: not retried
        list(run_units(_work, [Unit("d", "wrong")], context=tmp_path, workers=2))


def test_distill_eval_on_workers_writes_the_trajectories_where_the_driver_keeps_them(tmp_path: Path) -> None:
    from edgepilot.distill.evaluate import evaluate

    shown: list[tuple[str, str, int, int]] = []
    summary = evaluate(lora=None, arms=("teacher",), splits=("test",), per_template=1, templates=TEMPLATES[1:],
                       out=tmp_path, save_trajectories=True, workers=2,
                       progress=lambda arm, split, result, done, total: shown.append((arm, split, done, total)))
    report = summary["reports"]["teacher/test"]
    assert [(r["instance"], r["success"]) for r in report["results"]] == [("browser_weather#0", True),
                                                                           ("clock_disable_alarm#0", True)]
    assert sorted(shown) == [("teacher", "test", 1, 2), ("teacher", "test", 2, 2)]
    assert summary["scale_out"]["retried"] == [] and json.loads((tmp_path / "eval.json").read_text())["scale_out"]
    driver = tmp_path / "trajectories" / "teacher" / "test"
    assert all(_written_by_a_worker(r["trajectory"], driver) for r in report["results"])


# ---------------------------------------------------------------- Ray


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_and_collect_stream_back_from_ray_tasks(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from edgepilot.distill.collect import collect, done_rows

    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        address = context.address_info["address"]
        _, report = run_suite("tasks", BenchOptions(agents=("oracle",), per_template=1, templates=TEMPLATES[:2],
                                                    ray=address, save_to=tmp_path / "bench"))
        summary = collect(tmp_path / "collect", per_template=1, templates=["settings_wifi_toggle"],
                          ray_address=address)
    finally:
        ray.shutdown()

    assert [r["success"] for r in report["results"]] == [True, True] and report["scale_out"]["ray"] == address
    assert all(_written_by_a_worker(r["trajectory"], tmp_path / "bench") for r in report["results"])
    assert verify(tmp_path / "bench" / "audit.jsonl").ok
    assert summary["kept"] == 1 and summary["examples"] > 0 and summary["retried"] == []
    (row,) = done_rows(tmp_path / "collect").values()
    assert row["attempts"] == 1 and _written_by_a_worker(row["trajectory"], tmp_path / "collect" / "trajectories")
