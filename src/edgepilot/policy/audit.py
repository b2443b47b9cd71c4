"""The append-only audit log: one JSON line per policy decision, each chained to the one before.

Every entry carries ``prev`` (the hash of the entry before it; 64 zeros for
the first) and ``hash`` (SHA-256 of the entry's canonical JSON without
``hash``). A head file beside the log (``audit.jsonl.head``) holds the last
sequence number and hash, so that cutting entries off the end is caught too.
Typed text never reaches the log: it is replaced by its length. Writers take
an exclusive lock, append, flush and fsync, so entries survive a crash and
several processes (the daemon, a CLI run) can share one log.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepilot import paths
from edgepilot.errors import PolicyError

GENESIS = "0" * 64
MAX_LINE = 1 << 20


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


class AuditLog:
    """Appends decisions to one log file.

    Raises (on :meth:`append`):
        PolicyError: the log cannot be written, or its last entry is not valid
            (the log was damaged; ``edgepilot audit verify`` says where).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else paths.audit_file()
        self.head_path = self.path.with_name(self.path.name + ".head")

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    seq, prev = self._last(f)
                    entry = {"seq": seq + 1, "time": round(time.time(), 3), **record, "prev": prev}
                    entry["hash"] = entry_hash(entry)
                    f.seek(0, os.SEEK_END)
                    f.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
                    f.flush()
                    os.fsync(f.fileno())
                    self._write_head(entry)
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        except OSError as exc:
            raise PolicyError(f"cannot write the audit log {self.path}: {exc.strerror or exc}") from None
        return entry

    def _last(self, f) -> tuple[int, str]:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return 0, GENESIS
        chunk = 4096  # an entry is a few hundred bytes: read back from the end until a whole line is in
        while True:
            chunk = min(size, chunk, MAX_LINE + 1)
            f.seek(size - chunk)
            tail = f.read(chunk).rstrip(b"\n")
            if b"\n" in tail or chunk in (size, MAX_LINE + 1):
                break
            chunk *= 4
        try:
            last = json.loads(tail.rsplit(b"\n", 1)[-1])
            return int(last["seq"]), str(last["hash"])
        except (ValueError, KeyError, TypeError):
            raise PolicyError(f"the audit log {self.path} ends in a damaged entry; run `edgepilot audit verify "
                              f"{self.path}` to see where, and move the file aside to start a new log") from None

    def _write_head(self, entry: dict[str, Any]) -> None:
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        tmp.write_text(json.dumps({"seq": entry["seq"], "hash": entry["hash"]}) + "\n")
        os.replace(tmp, self.head_path)


@dataclass
class VerifyReport:
    path: str
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: str | Path) -> VerifyReport:
    """Check a log's chain: every line parses, hashes match, sequence numbers and links are unbroken,
    and the last entry is the one the head file remembers.

    Raises:
        PolicyError: the log cannot be read.
    """
    path = Path(path)
    report = VerifyReport(str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read the audit log {path}: {exc.strerror or exc}") from None
    prev, seq = GENESIS, 0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        report.problems.append(f"line {len(lines)}: the last entry is cut off (no newline): a crash or a truncation")
    for number, raw in enumerate(lines, start=1):
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            report.problems.append(f"line {number}: not a JSON object (damaged or edited by hand)")
            prev, seq = None, None
            continue
        report.entries += 1
        if entry.get("hash") != entry_hash(entry):
            report.problems.append(f"line {number}: entry {entry.get('seq')} was edited (its hash does not match)")
        if seq is not None and entry.get("seq") != seq + 1:
            gap = isinstance(entry.get("seq"), int) and entry["seq"] > seq + 1
            report.problems.append(f"line {number}: entry {entry.get('seq')} follows entry {seq}: "
                                   f"{'entries are missing' if gap else 'out of order'}")
        elif prev is not None and entry.get("prev") != prev:
            report.problems.append(f"line {number}: entry {entry.get('seq')} does not link to the entry before it "
                                   "(an entry was removed or replaced)")
        prev, seq = entry.get("hash"), entry.get("seq") if isinstance(entry.get("seq"), int) else None
    head_path = path.with_name(path.name + ".head")
    if head_path.exists():
        try:
            head = json.loads(head_path.read_text())
            if head.get("hash") != prev or head.get("seq") != seq:
                report.problems.append(f"the log ends at entry {seq} but entry {head.get('seq')} was written last: "
                                       "entries were removed from the end (or the head file was edited)")
        except (ValueError, AttributeError, OSError):
            report.problems.append(f"{head_path}: damaged head file")
    return report


def redact_action(action: dict[str, Any]) -> dict[str, Any]:
    """The action as logged: typed text replaced by its length (a PIN must not sit in a log)."""
    out = dict(action)
    if isinstance(out.get("text"), str):
        out["text"] = f"<{len(out['text'])} characters>"
    if isinstance(out.get("answer"), str) and len(out["answer"]) > 200:
        out["answer"] = out["answer"][:200] + "..."
    return out
