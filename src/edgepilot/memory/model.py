"""What an app memory holds, and how it is kept on disk (docs/memory.md).

An app memory is what ``edgepilot explore`` learned about one app: its screens grouped into states by
structure (the same screen for every contact is one state), each state's elements with what pressing
them does (the state it leads to, a switch it flips, a field it focuses, that it leaves the app), and the
way to reach each state from the app's launch screen. One JSON file per app and app version; written whole
to a temporary file and renamed, so a crash never leaves half a memory; read whole and validated, so a
corrupt file is an error and never half-used.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgepilot.errors import AppMemoryError

FORMAT = 1
"""The file format this edgepilot writes and reads; a file of another format is refused with what to do."""

MAX_BYTES = 8 * 1024 * 1024

Effect = Literal["opens", "toggles", "focuses", "leaves_app", "nothing", "unexplored"]
"""What pressing an element did: ``opens`` another state of the app, ``toggles`` a switch or box, ``focuses``
a field (the keyboard comes up), ``leaves_app`` (another app in front), ``nothing`` seen, or ``unexplored``
(the policy would ask first, or the budget ran out)."""

Role = Literal["button", "switch", "field", "item", "tab", "scroll"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ElementMemo(_Model):
    """One element of a state, and what pressing it does."""

    label: str = Field(max_length=200)
    role: Role
    cls: str = Field(default="", max_length=200)
    rid: str = Field(default="", max_length=200)
    collection: bool = False
    """One of a list of like items (contacts, alarms, notes): its label is data, ``examples`` lists some."""
    examples: list[str] = Field(default_factory=list, max_length=12)
    scrolls: int = Field(default=0, ge=0, le=20)
    """How many swipes up from the state's arrival bring it on screen."""
    effect: Effect = "unexplored"
    leads_to: str | None = None
    needs: list[str] = Field(default_factory=list, max_length=10)
    """The fields of the state that were filled before pressing it (a PIN before "Log in")."""
    sensitive: str = ""
    """Why exploration left it unpressed: what the policy would ask about (send, pay, delete...)."""


class StateMemo(_Model):
    """A screen of the app, by structure."""

    id: str = Field(pattern=r"^s\d+$")
    signature: list[str] = Field(default_factory=list, max_length=400)
    """What makes the screen this state: its interactive elements as ``class/id/label`` (``*`` for data)."""
    title: str = Field(default="", max_length=200)
    texts: list[str] = Field(default_factory=list, max_length=60)
    """Static text seen on the screen (headings, captions, values): what a goal may ask to read."""
    elements: list[ElementMemo] = Field(default_factory=list, max_length=200)
    explored: bool = False
    """Whether every element was tried (False: found, not yet walked; an interrupted walk resumes here)."""
    parent: str | None = None
    via: int | None = None
    """The element of ``parent`` whose press first led here (the way from the launch screen)."""


class AppMemory(_Model):
    """Everything explored in one app."""

    format: int = FORMAT
    app: str = Field(min_length=1, max_length=100)
    package: str = Field(min_length=1, max_length=200)
    app_version: str = Field(default="", max_length=100)
    device: str = Field(default="", max_length=200)
    kind: Literal["android", "desktop"] = "android"
    """The kind of device it was explored on: a run is offered only the memories of its own kind."""
    explored_at: str = ""
    complete: bool = False
    """Whether exploration finished within its budget (False: an interrupted or cut-short walk)."""
    actions: int = 0
    seconds: float = 0.0
    states: list[StateMemo] = Field(default_factory=list, max_length=500)

    def state(self, sid: str) -> StateMemo:
        for s in self.states:
            if s.id == sid:
                return s
        raise AppMemoryError(f"{self.app}'s memory has no state {sid!r}: the file is inconsistent")

    @property
    def launch(self) -> StateMemo | None:
        return self.states[0] if self.states else None

    def route(self, sid: str) -> list[tuple[StateMemo, ElementMemo]]:
        """The presses that lead from the launch screen to state ``sid``, in order."""
        out: list[tuple[StateMemo, ElementMemo]] = []
        seen: set[str] = set()
        state = self.state(sid)
        while state.parent is not None and state.via is not None:
            if state.id in seen:
                raise AppMemoryError(f"{self.app}'s memory has a loop in its routes at {state.id}")
            seen.add(state.id)
            parent = self.state(state.parent)
            if not 0 <= state.via < len(parent.elements):
                raise AppMemoryError(f"{self.app}'s memory names element {state.via} of {parent.id}, which has "
                                     f"{len(parent.elements)}")
            out.append((parent, parent.elements[state.via]))
            state = parent
        return out[::-1]

    def summary(self) -> dict[str, object]:
        elements = [e for s in self.states for e in s.elements]
        return {"app": self.app, "package": self.package, "version": self.app_version, "states": len(self.states),
                "elements": len(elements), "unexplored": sum(e.effect == "unexplored" for e in elements),
                "complete": self.complete, "explored_at": self.explored_at}


# ---------------------------------------------------------------- files

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_name(package: str, version: str = "") -> str:
    """``com.android.settings@14.json``: one file per app and app version."""
    stem = _UNSAFE.sub("_", package) + (f"@{_UNSAFE.sub('_', version)}" if version else "")
    return stem + ".json"


def save(memory: AppMemory, folder: Path) -> Path:
    """Write ``memory`` whole (a temporary file renamed over the old one): a crash leaves the old file or the
    new one, never half of either."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name(memory.package, memory.app_version)
    text = json.dumps(memory.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".memory-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: Path) -> AppMemory:
    """Read one memory file, whole and checked.

    Raises:
        AppMemoryError: unreadable, too large, not JSON, another format, or not a memory (says which field).
    """
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise AppMemoryError(f"{path}: {size} bytes is more than an app memory can be ({MAX_BYTES}); "
                                 "forget it and explore the app again")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AppMemoryError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AppMemoryError(f"{path}: not a memory file (broken JSON: {exc}); forget it with "
                             "`edgepilot memory forget` and explore the app again") from exc
    if not isinstance(data, dict):
        raise AppMemoryError(f"{path}: not a memory file (a JSON object was expected)")
    if data.get("format") != FORMAT:
        raise AppMemoryError(f"{path}: written in memory format {data.get('format')!r}; this edgepilot reads "
                             f"format {FORMAT}; explore the app again to rewrite it")
    try:
        memory = AppMemory.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise AppMemoryError(f"{path}: not a valid memory ({where}: {first['msg']}); forget it and explore "
                             "the app again") from exc
    ids = [s.id for s in memory.states]
    if len(set(ids)) != len(ids):
        raise AppMemoryError(f"{path}: two states share an id")
    for s in memory.states:
        for e in s.elements:
            if e.leads_to is not None and e.leads_to not in ids:
                raise AppMemoryError(f"{path}: {s.id} leads to {e.leads_to}, which the file does not hold")
        if s.parent is not None:
            memory.route(s.id)  # checks the way back to the launch screen
    return memory
