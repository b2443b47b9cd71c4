"""Where app memories live: the user's folder first, then the ones shipped for the virtual phone's apps."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from edgepilot import paths
from edgepilot.errors import AppMemoryError
from edgepilot.memory.model import AppMemory, load

BUNDLED = Path(__file__).parent / "bundled"
"""The virtual phone's apps, explored by ``scripts/explore-virtual.sh`` (``edgepilot explore`` itself)."""


@dataclass(frozen=True)
class Stored:
    """One memory file: where it is, and the memory or why it cannot be read."""

    path: Path
    memory: AppMemory | None
    error: str = ""

    @property
    def bundled(self) -> bool:
        return self.path.parent == BUNDLED


def folders(folder: Path | None = None) -> list[Path]:
    """The folders searched, the user's first: a memory the user explored wins over a shipped one."""
    return [folder or paths.memory_dir(), BUNDLED]


def stored(folder: Path | None = None) -> list[Stored]:
    """Every memory file, readable or not (a corrupt one is listed with its error, never half-read)."""
    out = []
    for where in folders(folder):
        if not where.is_dir():
            continue
        for path in sorted(where.glob("*.json")):
            try:
                out.append(Stored(path, _cached(path, path.stat().st_mtime_ns)))
            except AppMemoryError as exc:
                out.append(Stored(path, None, str(exc)))
    return out


@functools.lru_cache(maxsize=64)
def _cached(path: Path, _mtime: int) -> AppMemory:
    return load(path)


def shipped(kind: str | None = None) -> list[AppMemory]:
    """The memories shipped with edgepilot (what benchmarks use, whatever the user explored): the virtual phone's
    apps and the desktop suite's applications; ``kind`` (``android``, ``desktop``) keeps those of one kind."""
    found = [_cached(p, p.stat().st_mtime_ns) for p in sorted(BUNDLED.glob("*.json"))]
    return [m for m in found if kind is None or m.kind == kind]


def _matches(memory: AppMemory, app: str) -> bool:
    app = app.strip().casefold()
    return app in (memory.app.casefold(), memory.package.casefold())


def find(app: str, folder: Path | None = None) -> list[Stored]:
    """The memories of ``app`` (its label or package), the user's first."""
    return [s for s in stored(folder) if s.memory is not None and _matches(s.memory, app)]


def memories(folder: Path | None = None) -> dict[str, AppMemory]:
    """One memory per package (the user's over a shipped one); unreadable files are left out (``memory list``
    names them)."""
    out: dict[str, AppMemory] = {}
    for s in stored(folder):
        if s.memory is not None and s.memory.package not in out:
            out[s.memory.package] = s.memory
    return out


def forget(app: str, folder: Path | None = None) -> list[Path]:
    """Delete the user's memories of ``app`` (label or package; a corrupt file by its file name too).

    Raises:
        AppMemoryError: only a shipped memory matches (it cannot be forgotten, only overridden by exploring).
    """
    gone = []
    for s in stored(folder):
        hit = (s.memory is not None and _matches(s.memory, app)) or s.path.stem.split("@")[0] == app
        if hit and not s.bundled:
            s.path.unlink(missing_ok=True)
            gone.append(s.path)
    if not gone and find(app, folder):
        raise AppMemoryError(f"the memory of {app} ships with edgepilot and cannot be forgotten; explore the app "
                             "to write your own, which is used instead")
    return gone


def for_device(device, folder: Path | None = None) -> tuple[list[AppMemory], list[str]]:
    """The memories that fit the apps on ``device``, one per package, and notes on any that do not quite fit.

    A memory of the installed version wins; a memory of another version is still used, with a note saying
    so (screens may have moved); an app the device does not have is left out. A device that cannot say its
    apps' versions (a desktop) gets every memory of its kind. Memories of another kind of device never fit
    (a phone's Contacts are no route for a desktop's goal).
    """
    by_package: dict[str, list[AppMemory]] = {}
    kind = getattr(getattr(device, "info", None), "kind", None)
    for s in stored(folder):
        if s.memory is not None and (kind is None or s.memory.kind == kind):
            by_package.setdefault(s.memory.package, []).append(s.memory)
    version_of = getattr(device, "app_version", None)
    out: list[AppMemory] = []
    notes: list[str] = []
    for package, found in by_package.items():
        if version_of is None:
            out.append(found[0])
            continue
        version = version_of(package)
        if not version:
            continue  # not installed here
        same = next((m for m in found if m.app_version == version), None)
        if same is None:
            same = found[0]
            notes.append(f"the memory of {same.app} was explored on version {same.app_version or '?'}; this device "
                         f"has {version}: screens may have changed (`edgepilot explore --app {same.app}`)")
        out.append(same)
    return out, notes
