"""The audit log: chain and MACs, the signed head, the key, crashes at every point of an append, the CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import stat

import pytest
from click.testing import CliRunner

from edgepilot.cli.main import main
from edgepilot.errors import PolicyError
from edgepilot.policy import AuditLog, audit, verify
from edgepilot.policy.audit import GENESIS, entry_hash


@pytest.fixture(autouse=True)
def _own_key(tmp_path, monkeypatch):
    """Every log here is signed with a scratch key beside (never inside) the test's folder, not the user's."""
    monkeypatch.setenv("EDGEPILOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(audit.KEY_ENV, str(tmp_path / "keys" / "audit.key"))


def _log(tmp_path, n=5, name="audit.jsonl") -> AuditLog:
    log = AuditLog(tmp_path / name)
    for i in range(n):
        log.append({"run": "r", "verdict": "allow", "rule": f"rule-{i}", "action": {"type": "tap", "target": i}})
    return log


def _lines(log):
    return log.path.read_text().splitlines(keepends=True)


def _write_legacy(path, n):
    """A log as edgepilot wrote it before the key: plain hash chain, unsigned head."""
    prev, lines = GENESIS, []
    for i in range(1, n + 1):
        entry = {"seq": i, "time": 1.0, "run": "old", "verdict": "allow", "rule": f"old-{i}", "prev": prev}
        entry["hash"] = prev = entry_hash(entry)
        lines.append(json.dumps(entry) + "\n")
    path.write_text("".join(lines))
    path.with_name(path.name + ".head").write_text(json.dumps({"seq": n, "hash": prev}) + "\n")


def _rechain(entries, drop_macs=False):
    """Entries made consistent again the way anyone can: fresh plain hashes and links (no key needed)."""
    prev, out = GENESIS, []
    for entry in entries:
        entry = {k: v for k, v in entry.items() if not (drop_macs and k == "mac")}
        entry["prev"] = prev
        entry["hash"] = prev = entry_hash(entry)
        out.append(json.dumps(entry) + "\n")
    return out, prev


def test_chain_is_intact_linked_and_signed(tmp_path):
    log = _log(tmp_path)
    report = verify(log.path)
    assert report.ok and report.entries == 5 and not report.notes
    entries = [json.loads(line) for line in _lines(log)]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert all(b["prev"] == a["hash"] for a, b in zip(entries, entries[1:], strict=False))
    key = audit.load_key(log.key_path)
    assert all(e["mac"] == audit.entry_mac(key, e) for e in entries)
    head = json.loads(log.head_path.read_text())
    assert head["seq"] == 5 and head["last_mac"] == entries[-1]["mac"] and head["key_id"] == audit.key_id(key)


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


def test_reordered_and_inserted_entries_are_caught(tmp_path):
    log = _log(tmp_path)
    lines = _lines(log)
    log.path.write_text("".join([lines[0], lines[2], lines[1], *lines[3:]]))
    assert any("out of order" in p for p in verify(log.path).problems)
    log.path.write_text("".join([*lines[:3], lines[1], *lines[3:]]))  # an old entry replayed in the middle
    assert not verify(log.path).ok


def test_entries_cut_off_the_end_are_caught(tmp_path):
    log = _log(tmp_path)
    log.path.write_text("".join(_lines(log)[:-2]))
    assert any("removed from the end" in p for p in verify(log.path).problems)
    with pytest.raises(PolicyError, match="ends at entry 3 but its head says 5"):
        log.append({"verdict": "allow"})  # never continue a cut log


def test_a_rehashed_forgery_still_breaks_the_links(tmp_path):
    log = _log(tmp_path)
    lines = _lines(log)
    forged = json.loads(lines[1])
    forged["verdict"] = "block"
    forged["hash"] = entry_hash(forged)
    lines[1] = json.dumps(forged) + "\n"
    log.path.write_text("".join(lines))
    problems = verify(log.path).problems
    assert any("line 3" in p and "link" in p for p in problems)
    assert any("line 2" in p and "valid MAC" in p for p in problems)


def test_a_consistent_rewrite_with_recomputed_hashes_is_caught(tmp_path):
    """Finding 1: the plain chain had no anchor. A whole-file rewrite with fresh hashes and links passes every
    plain-chain check (no entry reads as edited or unlinked), and still fails: MACs need the key."""
    log = _log(tmp_path)
    entries = [json.loads(line) for line in _lines(log)]
    entries[2]["verdict"] = "block"

    rewritten, _ = _rechain(entries)  # MACs kept as they were
    log.path.write_text("".join(rewritten))
    problems = verify(log.path).problems
    assert not any("hash does not match" in p or "link" in p for p in problems)  # all the old verify checked
    assert any("line 3" in p and "valid MAC" in p for p in problems)
    assert any("not the one the head signed" in p for p in problems)

    rewritten, last = _rechain(entries, drop_macs=True)  # passed off as a log from before the key
    log.path.write_text("".join(rewritten))
    assert any("not the one the head signed" in p for p in verify(log.path).problems)  # the signed head stays
    log.head_path.write_text(json.dumps({"seq": 5, "hash": last}) + "\n")  # or gives way to an unsigned one
    problems = verify(log.path).problems
    assert problems and all("hash does not match" not in p and "link" not in p for p in problems)
    assert any("predates the audit key" in p and "cannot be vouched for" in p for p in problems)


def test_a_whole_log_signed_with_another_key_is_caught(tmp_path):
    log = _log(tmp_path)
    other = tmp_path / "other" / "audit.key"
    other.parent.mkdir()
    other.write_bytes(os.urandom(32))
    other.chmod(0o600)
    problems = verify(log.path, key_path=other).problems
    assert any("none of the 5 signed entries matches the key" in p for p in problems)
    assert any("signed with another key" in p for p in problems)


def test_a_deleted_head_is_caught(tmp_path):
    """Finding 2: deleting the head used to turn the end-of-log check off without a word."""
    log = _log(tmp_path)
    log.head_path.unlink()
    problems = verify(log.path).problems
    assert any("head file" in p and "missing" in p for p in problems)
    with pytest.raises(PolicyError, match="head file .* missing"):
        log.append({"verdict": "allow"})


def test_entries_cut_with_the_head_deleted_are_caught(tmp_path):
    """Finding 2: cut the last entries and delete the head: the old verify said ok."""
    log = _log(tmp_path)
    log.path.write_text("".join(_lines(log)[:-2]))
    log.head_path.unlink()
    report = verify(log.path)
    assert not report.ok and any("missing" in p for p in report.problems)
    empty = _log(tmp_path, n=1, name="emptied.jsonl")  # even down to nothing: a signed head says what was
    empty.path.write_text("")
    assert any("removed from the end" in p for p in verify(empty.path).problems)


def test_a_torn_last_line_is_a_recoverable_crash_not_tampering(tmp_path):
    log = _log(tmp_path)
    whole = log.path.read_bytes()
    log.path.write_bytes(whole + b'{"seq":6,"time":1.0,"run":"r","verd')  # an append killed mid-write
    report = verify(log.path)
    assert report.ok, report.problems
    assert any("torn by a crash" in n for n in report.notes)
    log.append({"verdict": "allow", "rule": "after"})  # repairs: the torn bytes go, the entry follows
    assert log.path.read_bytes().startswith(whole)
    report = verify(log.path)
    assert report.ok and report.entries == 6 and not report.notes


def test_a_cut_into_the_last_entry_is_not_taken_for_a_torn_write(tmp_path):
    log = _log(tmp_path)
    log.path.write_bytes(log.path.read_bytes()[:-30])
    report = verify(log.path)
    assert any("removed from the end" in p and "cut off" in p for p in report.problems)
    with pytest.raises(PolicyError, match="ends at entry 4"):
        log.append({"verdict": "allow"})


class _CrashingOs:
    """``os`` as the audit module sees it in a child process: counts the calls that change files, and at call
    number ``crash_at`` kills the process with SIGKILL (``torn``: after writing half of what it was given)."""

    CHANGES = frozenset({"open", "write", "fsync", "ftruncate", "replace", "link", "unlink"})

    def __init__(self, crash_at: int | None = None, torn: bool = False) -> None:
        self.crash_at, self.torn, self.calls = crash_at, torn, []

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in self.CHANGES:
            return real

        def call(*args, **kwargs):
            if len(self.calls) == self.crash_at:
                if self.torn:
                    real(args[0], bytes(args[1][: max(len(args[1]) // 2, 1)]))
                os.kill(os.getpid(), signal.SIGKILL)
            self.calls.append(name)
            return real(*args, **kwargs)

        return call


def _killed_while_appending(log_path, key_path, crash_at, torn) -> bool:
    pid = os.fork()
    if pid == 0:  # the child: append with the crash planted; never returns into pytest
        try:
            audit.os = _CrashingOs(crash_at, torn)
            AuditLog(log_path, key_path=key_path).append({"verdict": "allow", "rule": "crashed"})
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _scenario(folder, name):
    """A log as an append finds it: (log, key, entries in it)."""
    folder.mkdir()
    log_path, key_path = folder / "logs" / "audit.jsonl", folder / "keys" / "audit.key"
    log_path.parent.mkdir()
    if name == "new log":
        return log_path, key_path, 0
    if name == "legacy log":
        _write_legacy(log_path, 3)
        return log_path, key_path, 3
    log = AuditLog(log_path, key_path=key_path)
    for i in range(3):
        log.append({"verdict": "allow", "rule": f"rule-{i}"})
    if name == "after a torn write":
        with open(log_path, "ab") as f:
            f.write(b'{"seq":4,"time":1.0,"verdict":"al')
    return log_path, key_path, 3


@pytest.mark.parametrize("scenario", ["new log", "log with entries", "after a torn write", "legacy log"])
def test_a_crash_at_any_point_of_an_append_is_no_false_alarm(tmp_path, monkeypatch, scenario):
    """Finding 3: a child process appending is killed (SIGKILL) before each call that changes a file (and in
    the middle of each write); the log then verifies, and the next append works."""
    log_path, key_path, before = _scenario(tmp_path / "trace", scenario)
    tracer = _CrashingOs()
    monkeypatch.setattr(audit, "os", tracer)
    AuditLog(log_path, key_path=key_path).append({"verdict": "allow"})
    monkeypatch.undo()
    assert {"write", "fsync", "replace"} <= set(tracer.calls)
    points = [(i, False) for i in range(len(tracer.calls))]
    points += [(i, True) for i, name in enumerate(tracer.calls) if name == "write"]
    for n, (crash_at, torn) in enumerate(points):
        where = f"{scenario}: killed at {tracer.calls[crash_at]} #{crash_at}{' (half written)' if torn else ''}"
        log_path, key_path, before = _scenario(tmp_path / f"crash-{n}", scenario)
        was = verify(log_path, key_path=key_path).problems if log_path.exists() else []  # legacy: not vouched for
        assert _killed_while_appending(log_path, key_path, crash_at, torn), where
        report = verify(log_path, key_path=key_path)
        assert report.ok or report.problems == was, (where, report.problems)
        AuditLog(log_path, key_path=key_path).append({"verdict": "allow", "rule": "after"})
        report = verify(log_path, key_path=key_path)
        assert report.ok and report.entries in (before + 1, before + 2) and not report.problems, (where, report)
        assert not any("torn" in note or "behind" in note for note in report.notes), where


def test_the_key_is_made_private_and_outside_the_logs_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(audit.KEY_ENV)
    home = tmp_path / "home"
    log = AuditLog(home / "audit.jsonl")  # the layout of $EDGEPILOT_HOME: log and key in one installation
    assert log.key_path == home / "keys" / "audit.key"
    log.append({"verdict": "allow"})
    assert stat.S_IMODE(log.key_path.stat().st_mode) == 0o600 and log.key_path.stat().st_size == 32
    assert stat.S_IMODE(log.key_path.parent.stat().st_mode) == 0o700
    assert verify(log.path).ok
    with pytest.raises(PolicyError, match="in the log's own folder"):
        AuditLog(tmp_path / "next.jsonl", key_path=tmp_path / "next.key").append({"verdict": "allow"})


def test_an_unsafe_or_wrong_sized_key_is_refused(tmp_path):
    log = _log(tmp_path, n=2)
    log.key_path.chmod(0o644)
    with pytest.raises(PolicyError, match=r"other users can read .* \(mode 644\): run `chmod 600 "):
        log.append({"verdict": "allow"})
    assert any("chmod 600" in p for p in verify(log.path).problems)
    log.key_path.chmod(0o600)
    log.key_path.write_bytes(log.key_path.read_bytes()[:16])
    with pytest.raises(PolicyError, match="16 bytes, not 32"):
        log.append({"verdict": "allow"})
    assert any("16 bytes, not 32" in p for p in verify(log.path).problems)


def test_a_missing_key_fails_and_is_not_replaced(tmp_path):
    log = _log(tmp_path, n=2)
    log.key_path.unlink()
    report = verify(log.path)
    assert not report.ok and any("audit key" in p and "missing" in p for p in report.problems)
    with pytest.raises(PolicyError, match="missing.*signed with it"):
        log.append({"verdict": "allow"})
    assert not log.key_path.exists()  # a new key would only make every entry look forged


def test_a_legacy_log_is_reported_then_signed_as_it_stands(tmp_path):
    path = tmp_path / "old.jsonl"
    _write_legacy(path, 3)
    report = verify(path)
    assert not report.ok and report.legacy == 3
    assert [p for p in report.problems if "predates the audit key (legacy)" in p]
    AuditLog(path).append({"verdict": "allow", "rule": "new"})
    report = verify(path)
    assert report.ok and report.entries == 4, report.problems
    assert any("1–3 predate the audit key" in n for n in report.notes)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines).replace("old-2", "old-X"))  # the old entries are covered from now on
    assert not verify(path).ok


def test_a_damaged_legacy_log_is_not_signed(tmp_path):
    path = tmp_path / "old.jsonl"
    _write_legacy(path, 3)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    with pytest.raises(PolicyError, match="predates the audit key and does not verify"):
        AuditLog(path).append({"verdict": "allow"})


def test_garbage_logs_are_reported_not_crashed_on(tmp_path):
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


def test_cli_verify_fails_without_the_head_or_with_another_key(tmp_path):
    log = _log(tmp_path, n=3)
    runner = CliRunner()
    moved = tmp_path / "elsewhere" / "audit.key"
    moved.parent.mkdir()
    log.key_path.rename(moved)
    missing = runner.invoke(main, ["audit", "verify", str(log.path)])
    assert missing.exit_code == 1 and "missing" in missing.output
    assert runner.invoke(main, ["audit", "verify", str(log.path), "--key", str(moved)]).exit_code == 0
    log.head_path.unlink()
    headless = runner.invoke(main, ["audit", "verify", str(log.path), "--key", str(moved)])
    assert headless.exit_code == 1 and "head file" in headless.output


def test_a_log_the_run_cannot_continue_stops_it_before_its_first_step(tmp_path):
    """A key that lost its log (or a log that lost its key) is found when the gate is built, not mid-run."""
    from edgepilot.config import Config
    from edgepilot.policy import gate_for

    log = _log(tmp_path, n=2)
    AuditLog(log.path, key_path=log.key_path).check()  # its own key: fine, and nothing written
    assert verify(log.path).entries == 2
    with pytest.raises(PolicyError, match="missing, and the log .* was signed with it"):
        AuditLog(log.path, key_path=tmp_path / "keys" / "lost.key").check()
    AuditLog(tmp_path / "elsewhere.jsonl", key_path=tmp_path / "keys" / "other.key").append({"verdict": "allow"})
    other = AuditLog(log.path, key_path=tmp_path / "keys" / "other.key")  # a key, but not this log's
    with pytest.raises(PolicyError, match="head is not signed with the key"):
        other.check()
    with pytest.raises(PolicyError, match="head is not signed with the key"):
        gate_for("turn on wifi", config=Config(), audit=other)
    AuditLog(tmp_path / "new" / "audit.jsonl", key_path=tmp_path / "keys" / "new.key").check()  # no log yet: fine
