"""The audit log: hash chain, tamper detection, damaged files, several writers, the CLI."""

from __future__ import annotations

import json
import multiprocessing
import random

import pytest
from click.testing import CliRunner

from edgepilot.cli.main import main
from edgepilot.errors import PolicyError
from edgepilot.policy import AuditLog, verify


def _log(tmp_path, n=5) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.append({"run": "r", "verdict": "allow", "rule": f"rule-{i}", "action": {"type": "tap", "target": i}})
    return log


def _lines(log):
    return log.path.read_text().splitlines(keepends=True)


def test_chain_is_intact_and_linked(tmp_path):
    log = _log(tmp_path)
    report = verify(log.path)
    assert report.ok and report.entries == 5
    entries = [json.loads(line) for line in _lines(log)]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert all(b["prev"] == a["hash"] for a, b in zip(entries, entries[1:], strict=False))


def test_an_edited_entry_is_caught(tmp_path):
    log = _log(tmp_path)
    lines = _lines(log)
    lines[2] = lines[2].replace('"allow"', '"block"')
    log.path.write_text("".join(lines))
    report = verify(log.path)
    assert not report.ok and any("line 3" in p and "edited" in p for p in report.problems)


def test_a_removed_entry_is_caught(tmp_path):
    log = _log(tmp_path)
    lines = _lines(log)
    del lines[1]
    log.path.write_text("".join(lines))
    assert any("missing" in p for p in verify(log.path).problems)


def test_entries_cut_off_the_end_are_caught(tmp_path):
    log = _log(tmp_path)
    log.path.write_text("".join(_lines(log)[:-2]))
    assert any("removed from the end" in p for p in verify(log.path).problems)


def test_a_rehashed_forgery_still_breaks_the_links(tmp_path):
    from edgepilot.policy.audit import entry_hash

    log = _log(tmp_path)
    lines = _lines(log)
    forged = json.loads(lines[1])
    forged["verdict"] = "block"
    forged["hash"] = entry_hash(forged)
    lines[1] = json.dumps(forged) + "\n"
    log.path.write_text("".join(lines))
    assert any("line 3" in p and "link" in p for p in verify(log.path).problems)


def test_damaged_and_garbage_logs_are_reported_not_crashed_on(tmp_path):
    log = _log(tmp_path)
    log.path.write_bytes(log.path.read_bytes()[:-30])  # a crash mid-write
    report = verify(log.path)
    assert any("cut off" in p for p in report.problems)
    with pytest.raises(PolicyError, match="damaged entry"):
        log.append({"verdict": "allow"})  # never chain onto a damaged entry
    garbage = tmp_path / "garbage.jsonl"
    rng = random.Random(3)
    garbage.write_bytes(bytes(rng.randrange(256) for _ in range(5000)))
    assert not verify(garbage).ok
    with pytest.raises(PolicyError, match="cannot read"):
        verify(tmp_path / "missing.jsonl")


def _append_many(path: str, who: str) -> None:
    log = AuditLog(path)
    for i in range(40):
        log.append({"run": who, "verdict": "allow", "i": i})


def test_several_processes_share_one_log(tmp_path):
    path = str(tmp_path / "shared.jsonl")
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_append_many, args=(path, f"w{i}")) for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    report = verify(path)
    assert report.ok, report.problems
    assert report.entries == 120


def test_cli_verify_and_show(tmp_path):
    log = _log(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", str(log.path)])
    assert ok.exit_code == 0 and "chain intact" in ok.output
    shown = runner.invoke(main, ["audit", "show", str(log.path), "-n", "2"])
    assert shown.exit_code == 0 and "rule-4" in shown.output and "rule-2" not in shown.output
    log.path.write_text(log.path.read_text().replace("rule-1", "rule-X"))
    bad = runner.invoke(main, ["audit", "verify", str(log.path)])
    assert bad.exit_code == 1 and "edited" in bad.output
