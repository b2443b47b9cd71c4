"""The append-only audit log: one JSON line per policy decision, chained, and signed with a key kept elsewhere.

Every entry carries ``prev`` (the hash of the entry before it; 64 zeros for the first), ``hash`` (SHA-256 of
the entry's canonical JSON without ``hash`` and ``mac``) and ``mac`` (HMAC-SHA256 of the entry without ``mac``,
under the audit key). The key, 32 random bytes in a file of mode 0600 outside the log's folder
(:func:`default_key_path`), is the anchor: whoever can rewrite the log but not read the key cannot forge a
consistent chain. The head file beside the log (``audit.jsonl.head``) is a signed checkpoint: the number of
entries and the last entry's hash and MAC, MACed with the key, so entries cut off the end show too.

An append, under an exclusive lock on the log, writes in this order, and the log verifies after a crash at
any point of it:

1. a torn last line (an append killed mid-write: no newline) is cut off;
2. a log without a signed head (a new log, or one from before the key) gets one for the entries it has;
3. the entry is appended and the log fsynced;
4. the head is written to a temporary file, fsynced, renamed over the old head, and the folder fsynced.

So the head either matches the log or is one entry behind it (that entry continues the chain with a valid
MAC), and a head never exists for entries the log lacks. Typed text never reaches the log: it is replaced by
its length.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepilot import paths
from edgepilot.errors import PolicyError

GENESIS = "0" * 64
MAX_LINE = 1 << 20
KEY_SIZE = 32
KEY_ENV = "EDGEPILOT_AUDIT_KEY"
HEAD_VERSION = 2
_ENTRY_DOMAIN = b"edgepilot-audit-entry\0"
_HEAD_DOMAIN = b"edgepilot-audit-head\0"
_KEY_ID_DOMAIN = b"edgepilot-audit-key-id"


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of the entry without ``hash`` and ``mac``: the plain chain, which anyone can recompute."""
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k not in ("hash", "mac")})).hexdigest()


def _mac(key: bytes, domain: bytes, body: dict[str, Any]) -> str:
    return hmac.new(key, domain + _canonical({k: v for k, v in body.items() if k != "mac"}),
                    hashlib.sha256).hexdigest()


def entry_mac(key: bytes, entry: dict[str, Any]) -> str:
    """HMAC-SHA256 of the entry without ``mac`` (so it covers ``hash`` and ``prev``: the whole chain before)."""
    return _mac(key, _ENTRY_DOMAIN, entry)


def key_id(key: bytes) -> str:
    """A short name for a key, recorded in the head so that a wrong key file can be told from a forgery."""
    return hmac.new(key, _KEY_ID_DOMAIN, hashlib.sha256).hexdigest()[:16]


def _signed(body: dict[str, Any], key: bytes, domain: bytes) -> bool:
    return isinstance(body.get("mac"), str) and hmac.compare_digest(body["mac"], _mac(key, domain, body))


def default_key_path() -> Path:
    """The audit key: ``$EDGEPILOT_AUDIT_KEY``, else ``keys/audit.key`` in the user config folder
    (``$EDGEPILOT_HOME/keys/audit.key``): not the data folder the log is in."""
    env = os.environ.get(KEY_ENV)
    return Path(env).expanduser() if env else paths.secrets_dir() / "keys" / "audit.key"


def load_key(path: Path) -> bytes:
    """The audit key in ``path``.

    Raises:
        FileNotFoundError: there is no key file.
        PolicyError: it cannot be read, belongs to another user, others can read or change it, or it is not
            32 bytes.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise PolicyError(f"cannot read the audit key {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid():
            raise PolicyError(f"the audit key {path} belongs to another user; use a key of your own "
                              f"(`key_path`, ${KEY_ENV})")
        if info.st_mode & 0o077:
            raise PolicyError(f"other users can read or change the audit key {path} (mode "
                              f"{info.st_mode & 0o777:o}): run `chmod 600 {path}` (whoever read it can forge "
                              "entries: if that may have happened, start a new log with a new key)")
        key = os.read(fd, KEY_SIZE + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_SIZE:
        raise PolicyError(f"the audit key {path} is {len(key)} bytes, not {KEY_SIZE}: it is not an audit key or "
                          "was damaged; restore it from a backup (a new key cannot check entries signed with "
                          "the old one)")
    return key


def _create_key(path: Path) -> bytes:
    """A new key in ``path`` (mode 0600, its folder 0700), or the one another process created meanwhile."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_SIZE)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # whole or absent, and never over a key that exists
    except FileExistsError:
        return load_key(path)
    finally:
        os.unlink(tmp)
    _fsync_dir(path.parent)
    return key


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def _parse_head(text: str | None) -> dict[str, Any] | None:
    """The head as written (None: there is none); ValueError when it is not a head."""
    if text is None:
        return None
    head = json.loads(text)
    if not isinstance(head, dict) or not isinstance(head.get("seq"), int) or not isinstance(head.get("hash"), str):
        raise ValueError("not a head")
    return head


def _is_v2(head: dict[str, Any] | None) -> bool:
    return head is not None and head.get("version") == HEAD_VERSION


class AuditLog:
    """Appends decisions to one log file, signed with the audit key.

    Args:
        path: the log (default: :func:`edgepilot.paths.audit_file`).
        key_path: the key (default: :func:`default_key_path`); created on the first append when the log has
            nothing signed yet. It must not be in the log's folder.

    Raises (on :meth:`append`):
        PolicyError: the log or the key cannot be read or written, the key is unsafe, or the log was tampered
            with (edited, cut, its head deleted): a log is never continued past damage
            (``edgepilot audit verify`` says what is wrong).
    """

    def __init__(self, path: str | Path | None = None, key_path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else paths.audit_file()
        self.head_path = _head_path(self.path)
        self.key_path = Path(key_path) if key_path is not None else default_key_path()

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add one decision; returns the entry as written."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    return self._append_locked(f.fileno(), record)
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        except OSError as exc:
            raise PolicyError(f"cannot write the audit log {self.path} (or its key {self.key_path}): "
                              f"{exc.strerror or exc}") from None

    def check(self) -> None:
        """Raise now what the next append would (a log this key cannot continue), so a run that could not audit
        its decisions does not start. Reads only; a missing key is created as the first append would.

        Raises:
            PolicyError: the log was cut or edited, its head is missing or signed with another key, or the
                files cannot be read.
        """
        try:
            with open(self.path, "rb") as f:
                fcntl.flock(f, fcntl.LOCK_SH)
                try:
                    last, _ = self._last(f.fileno())
                    head = self._head()
                    self._check_state(self._key(needed=self._signed_before(last, head)), last, head)
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise PolicyError(f"cannot read the audit log {self.path}: {exc.strerror or exc}") from None

    @staticmethod
    def _signed_before(last: dict[str, Any] | None, head: dict[str, Any] | None) -> bool:
        return bool(last and "mac" in last) or (_is_v2(head) and head["seq"] > 0)

    def _append_locked(self, fd: int, record: dict[str, Any]) -> dict[str, Any]:
        last, torn_at = self._last(fd)
        head = self._head()
        key = self._key(needed=self._signed_before(last, head))
        self._check_state(key, last, head)
        if torn_at is not None:
            os.ftruncate(fd, torn_at)
            os.fsync(fd)
        if not _is_v2(head) or not _signed(head, key, _HEAD_DOMAIN):  # a new log, or one from before the key
            self._write_head(key, last)
        entry = {"seq": (last["seq"] if last else 0) + 1, "time": round(time.time(), 3), **record,
                 "prev": last["hash"] if last else GENESIS}
        entry["hash"] = entry_hash(entry)
        entry["mac"] = entry_mac(key, entry)
        _write_all(fd, json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        os.fsync(fd)
        self._write_head(key, entry)
        return entry

    def _key(self, needed: bool) -> bytes:
        if self.key_path.resolve().parent == self.path.resolve().parent:
            raise PolicyError(f"the audit key {self.key_path} is in the log's own folder, where whoever can rewrite "
                              f"the log may take it too; keep it elsewhere (`key_path`, ${KEY_ENV})")
        try:
            return load_key(self.key_path)
        except FileNotFoundError:
            if needed:
                raise PolicyError(f"the audit key {self.key_path} is missing, and the log {self.path} was signed "
                                  "with it: restore the key file, or move the log aside to start a new one") from None
        return _create_key(self.key_path)

    def _head(self) -> dict[str, Any] | None:
        try:
            return _parse_head(self.head_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            raise self._refuse(f"its head file {self.head_path} is damaged") from None

    def _refuse(self, why: str) -> PolicyError:
        return PolicyError(f"will not add to the audit log {self.path}: {why}; run `edgepilot audit verify "
                           f"{self.path}` to see what is wrong, and move the log aside to start a new one")

    def _check_state(self, key: bytes, last: dict[str, Any] | None, head: dict[str, Any] | None) -> None:
        """Refuse to continue a log that was cut, edited or unhooked from its head (cheap checks: the last
        entry and the head; ``verify`` reads everything)."""
        if last is None:
            if head is not None and head["seq"] > 0:
                raise self._refuse(f"it has no entries but its head says {head['seq']} were written")
            return
        if not _is_v2(head):
            if "mac" in last:
                raise self._refuse("its signed head file is missing or was replaced")
            self._check_legacy(head)
            return
        if not _signed(head, key, _HEAD_DOMAIN):
            raise self._refuse(f"its head is not signed with the key {self.key_path}")
        seq = last["seq"]
        if "mac" in last and not _signed(last, key, _ENTRY_DOMAIN):
            raise self._refuse(f"its last entry does not carry a valid MAC under the key {self.key_path}")
        if head["seq"] > seq:
            raise self._refuse(f"it ends at entry {seq} but its head says {head['seq']} were written")
        if head["seq"] == seq and (head["hash"], head.get("last_mac")) != (last["hash"], last.get("mac", "")):
            raise self._refuse(f"its entry {seq} is not the one the head signed")
        if head["seq"] == seq - 1 and ("mac" not in last or last.get("prev") != head["hash"]):
            raise self._refuse(f"its entry {seq} does not continue the entry the head signed")
        if head["seq"] < seq - 1:
            raise self._refuse(f"its head is {seq - head['seq']} entries behind the log")

    def _check_legacy(self, head: dict[str, Any] | None) -> None:
        """A log from before the key is signed as it stands only if its plain chain and old head hold."""
        scan = _scan(self.path.read_bytes(), None)
        problems = scan.problems + _legacy_head_problems(head, self.head_path, scan, [])
        if problems:
            raise self._refuse(f"it predates the audit key and does not verify ({problems[0]})")

    def _last(self, fd: int) -> tuple[dict[str, Any] | None, int | None]:
        """The last whole entry (None: none) and where a torn last line starts (None: no torn line)."""
        size = os.fstat(fd).st_size
        chunk = 4096  # an entry is a few hundred bytes: read back from the end until a whole line is in
        while True:
            chunk = min(size, chunk)
            start = size - chunk
            data = os.pread(fd, chunk, start)
            end = data.rfind(b"\n") + 1  # the end of the last whole line in data
            begin = data.rfind(b"\n", 0, max(end - 1, 0)) + 1
            if start == 0 or (end and begin) or chunk > 2 * MAX_LINE:
                break
            chunk *= 4
        torn_at = start + end if end < len(data) else None
        if end == 0:
            if start:
                raise self._refuse(f"its last {len(data)} bytes hold no whole line")
            return None, torn_at
        try:
            last = json.loads(data[begin:end - 1])
            if isinstance(last["seq"], int) and isinstance(last["hash"], str):
                return last, torn_at
        except (ValueError, KeyError, TypeError):
            pass
        raise self._refuse("it ends in a damaged entry") from None

    def _write_head(self, key: bytes, last: dict[str, Any] | None) -> None:
        head = {"version": HEAD_VERSION, "seq": last["seq"] if last else 0, "hash": last["hash"] if last else GENESIS,
                "last_mac": last.get("mac", "") if last else "", "key_id": key_id(key)}
        head["mac"] = _mac(key, _HEAD_DOMAIN, head)
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, json.dumps(head).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.head_path)
        _fsync_dir(self.head_path.parent)


@dataclass
class VerifyReport:
    """What :func:`verify` found.

    ``problems`` make the log fail: tampering, or a missing or wrong key. ``notes`` do not: a crash's traces
    (a torn last line, a head one entry behind) and entries from before the key.
    """

    path: str
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    legacy: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Scan:
    """The log read line by line."""

    entries: int = 0
    last_seq: int = 0
    by_seq: dict[int, tuple[str, str]] = field(default_factory=dict)  # seq -> (hash, mac or "")
    legacy: int = 0  # entries before the first signed one
    legacy_last: int = 0  # the seq of the last of them
    signed: int = 0
    first_signed_time: float | None = None  # when the first signed entry was written
    bad_macs: list[str] = field(default_factory=list)
    torn: int = 0  # bytes of a last line without a newline
    problems: list[str] = field(default_factory=list)


def verify(path: str | Path, key_path: str | Path | None = None) -> VerifyReport:
    """Check a log: every line parses, hashes and MACs match, sequence numbers and links are unbroken, the
    signed head vouches for the entries, and the key is there and right.

    Args:
        path: the log.
        key_path: the audit key (default: :func:`default_key_path`).

    Raises:
        PolicyError: the log cannot be read.
    """
    path = Path(path)
    head_path = _head_path(path)
    key_path = Path(key_path) if key_path is not None else default_key_path()
    data, head_text = _snapshot(path, head_path)
    key, key_trouble = _key_for_verify(key_path)
    scan = _scan(data, key)
    report = VerifyReport(str(path), entries=scan.entries, legacy=scan.legacy, problems=list(scan.problems))
    report.problems += _mac_problems(scan, key_path)
    try:
        head = _parse_head(head_text)
    except (ValueError, UnicodeDecodeError):
        report.problems.append(f"{head_path}: damaged head file (not a head edgepilot writes)")
        return report
    if _is_v2(head):
        report.problems += _head_problems(head, scan, key, key_path, report.notes)
    else:
        report.problems += _legacy_head_problems(head, head_path, scan, report.notes)
    if key is None and (scan.signed or _is_v2(head)):
        report.problems.append(key_trouble)
    _note_legacy(scan, head, report)
    return report


def _snapshot(path: Path, head_path: Path) -> tuple[bytes, str | None]:
    """The log and its head as of one moment (under a shared lock: no append is half done)."""
    try:
        with open(path, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            try:
                head_text = head_path.read_text(encoding="utf-8", errors="replace") if head_path.exists() else None
                return f.read(), head_text
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    except OSError as exc:
        raise PolicyError(f"cannot read the audit log {path}: {exc.strerror or exc}") from None


def _key_for_verify(key_path: Path) -> tuple[bytes | None, str]:
    """The key, or None and why there is none (a problem only where the log was signed)."""
    try:
        return load_key(key_path), ""
    except FileNotFoundError:
        return None, (f"the audit key {key_path} (the log's anchor) is missing: without it the log cannot be "
                      "vouched for, since anyone can recompute a plain hash chain; restore the key file, or "
                      "point to it (--key, $EDGEPILOT_AUDIT_KEY)")
    except PolicyError as exc:
        return None, str(exc)


def _scan(data: bytes, key: bytes | None) -> _Scan:
    scan = _Scan()
    lines = data.split(b"\n")
    scan.torn = len(lines.pop())  # after the last newline: empty, or a torn write
    prev: str | None = GENESIS
    seq: int | None = 0
    for number, raw in enumerate(lines, start=1):
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            scan.problems.append(f"line {number}: not a JSON object (damaged or edited by hand)")
            prev, seq = None, None
            continue
        _check_entry(scan, number, entry, key, prev, seq)
        prev = entry.get("hash")
        seq = entry["seq"] if isinstance(entry.get("seq"), int) else None
        if seq is not None:
            scan.last_seq = seq
            scan.by_seq[seq] = (str(entry.get("hash")), str(entry.get("mac", "")))
    return scan


def _check_entry(scan: _Scan, number: int, entry: dict[str, Any], key: bytes | None, prev: str | None,
                 seq: int | None) -> None:
    scan.entries += 1
    name = f"line {number}: entry {entry.get('seq')}"
    if entry.get("hash") != entry_hash(entry):
        scan.problems.append(f"{name} was edited (its hash does not match)")
    if "mac" in entry:
        scan.signed += 1
        if scan.first_signed_time is None and isinstance(entry.get("time"), int | float):
            scan.first_signed_time = entry["time"]
        if key is not None and not _signed(entry, key, _ENTRY_DOMAIN):
            scan.bad_macs.append(name)
    elif scan.signed:
        scan.problems.append(f"{name} has no MAC though entries before it have one: it was added or rewritten "
                             "without the key")
    else:
        scan.legacy += 1
        scan.legacy_last = entry["seq"] if isinstance(entry.get("seq"), int) else scan.legacy_last
    if seq is not None and entry.get("seq") != seq + 1:
        gap = isinstance(entry.get("seq"), int) and entry["seq"] > seq + 1
        scan.problems.append(f"{name} follows entry {seq}: {'entries are missing' if gap else 'out of order'}")
    elif prev is not None and entry.get("prev") != prev:
        scan.problems.append(f"{name} does not link to the entry before it (an entry was removed or replaced)")


def _mac_problems(scan: _Scan, key_path: Path) -> list[str]:
    if scan.signed > 1 and len(scan.bad_macs) == scan.signed:
        return [f"none of the {scan.signed} signed entries matches the key {key_path}: it is not the key this log "
                "was written with, or the whole log was rewritten"]
    return [f"{name} does not carry a valid MAC: it was edited or forged" for name in scan.bad_macs]


def _head_problems(head: dict[str, Any], scan: _Scan, key: bytes | None, key_path: Path,
                   notes: list[str]) -> list[str]:
    """A signed head against the log: it must vouch for the log's entries, or all but the last one."""
    if key is not None and not _signed(head, key, _HEAD_DOMAIN):
        if head.get("key_id") != key_id(key):
            return [f"the head was signed with another key (id {head.get('key_id')}; the key {key_path} is "
                    f"id {key_id(key)}): the key file is not the one this log was written with, or the head "
                    "was replaced"]
        return ["the head file's signature does not match: it was edited or forged"]
    seq, last = head["seq"], scan.last_seq
    if seq > last:
        cut = " (and the last line is cut off)" if scan.torn else ""
        return [f"the log ends at entry {last} but the signed head says {seq} were written: entries were removed "
                f"from the end{cut}"]
    problems = []
    if seq and scan.by_seq.get(seq) != (head["hash"], head.get("last_mac", "")):
        problems.append(f"entry {seq} is not the one the head signed: the log was rewritten from there on")
    if scan.legacy_last > seq:
        problems.append(f"entries {seq + 1}–{scan.legacy_last} have no MAC though the log was signed before "
                        "them: they were added without the key")
    if seq < last - 1:
        problems.append(f"the head is {last - seq} entries behind the log, and a crash leaves it one behind at "
                        "most: the head file was replaced by an older copy")
    elif seq == last - 1:
        notes.append(f"the head is one entry behind the log: an append was stopped before it updated the head "
                     f"(entry {last} is chained and signed; the next append updates the head)")
    _note_torn(scan, notes)
    return problems


def _legacy_head_problems(head: dict[str, Any] | None, head_path: Path, scan: _Scan,
                          notes: list[str]) -> list[str]:
    """No head, or an unsigned one from before the key."""
    if scan.signed:
        return [f"the head file {head_path} is missing or unsigned while the log has signed entries: it was "
                "deleted or replaced, so entries cut off the end could not be told; restore it, or move the log "
                "aside to start a new one"]
    if head is None:
        _note_torn(scan, notes)
        return [] if scan.entries == 0 else [
            f"the head file {head_path} is missing while the log has {scan.entries} entries: it was deleted, so "
            "entries cut off the end could not be told; restore it, or move the log aside to start a new one"]
    seq, last = head["seq"], scan.last_seq
    if seq in (last, last - 1) and scan.by_seq.get(seq, ("",))[0] == head["hash"]:  # the old head could lag one
        _note_torn(scan, notes)
        return []
    return [f"the log ends at entry {last} but entry {seq} was written last: entries were removed from the end "
            "(or the head file was edited)"]


def _note_torn(scan: _Scan, notes: list[str]) -> None:
    if scan.torn:
        notes.append(f"the last line is incomplete ({scan.torn} bytes, no newline): a write torn by a crash, not "
                     "tampering; the next append removes it")


def _note_legacy(scan: _Scan, head: dict[str, Any] | None, report: VerifyReport) -> None:
    if not scan.legacy:
        return
    if scan.signed or _is_v2(head):
        when = time.strftime(" (%Y-%m-%d %H:%M)", time.localtime(scan.first_signed_time)) \
            if scan.first_signed_time is not None else ""
        report.notes.append(f"entries 1–{scan.legacy_last} predate the audit key (legacy): the key vouches for "
                            f"them as they stood when this log was first signed{when}, not for what happened "
                            "to them before")
    else:
        report.problems.append(f"the log predates the audit key (legacy): its {scan.legacy} entries have a plain "
                               "hash chain only, which anyone who can write the file can recompute, so it cannot "
                               "be vouched for; the next decision appended signs it as it stands")


def redact_action(action: dict[str, Any]) -> dict[str, Any]:
    """The action as logged: typed text replaced by its length (a PIN must not sit in a log)."""
    out = dict(action)
    if isinstance(out.get("text"), str):
        out["text"] = f"<{len(out['text'])} characters>"
    if isinstance(out.get("answer"), str) and len(out["answer"]) > 200:
        out["answer"] = out["answer"][:200] + "..."
    return out
