"""Applications on a Linux desktop: their .desktop entries, and starting one by name."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgepilot.errors import ActionError

GTK_A11Y_ENV = {"GTK_MODULES": "gail:atk-bridge", "NO_AT_BRIDGE": "0", "QT_ACCESSIBILITY": "1"}
"""Environment that makes GTK 2/3 and Qt applications expose their accessibility tree."""
_FIELD_CODES = re.compile(r"%[fFuUdDnNickvm%]")


@dataclass(frozen=True)
class DesktopEntry:
    """An application as its .desktop file describes it."""

    name: str
    exec: str
    path: Path


def _entry_dirs() -> list[Path]:
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    data_dirs = os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    return [Path(d) / "applications" for d in [data_home, *data_dirs.split(":")] if d]


def desktop_entries(dirs: list[Path] | None = None) -> list[DesktopEntry]:
    """The launchable applications (``Type=Application`` with an ``Exec``), first directory first."""
    out, seen = [], set()
    for folder in dirs if dirs is not None else _entry_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.desktop")):
            if path.name in seen:
                continue
            seen.add(path.name)
            parser = configparser.ConfigParser(interpolation=None, strict=False)
            try:
                parser.read(path, encoding="utf-8")
                section = parser["Desktop Entry"]
            except (configparser.Error, KeyError, UnicodeDecodeError, OSError):
                continue
            if section.get("Type", "Application") != "Application" or not section.get("Exec"):
                continue
            out.append(DesktopEntry(name=section.get("Name", path.stem), exec=section["Exec"], path=path))
    return out


def find_desktop_entry(app: str, dirs: list[Path] | None = None) -> DesktopEntry | None:
    """The application called ``app``: by menu name, else file name (``org.xfce.mousepad``), else command."""
    want = app.strip().casefold()
    entries = desktop_entries(dirs)
    for key in (lambda e: e.name.casefold(), lambda e: e.path.stem.casefold(),
                lambda e: e.path.stem.casefold().rsplit(".", 1)[-1],
                lambda e: Path(shlex.split(e.exec)[0]).name.casefold() if e.exec.strip() else ""):
        for entry in entries:
            try:
                if key(entry) == want:
                    return entry
            except ValueError:  # an Exec line with unbalanced quotes
                continue
    return None


def launch_app(app: str, env: dict[str, str]) -> tuple[subprocess.Popen, DesktopEntry]:
    """Start the application called ``app`` (as :func:`find_desktop_entry` finds it) in a session of its own.

    Args:
        app: the application's name as its menu shows it, its file name or its command.
        env: the environment to start it with.

    Returns:
        The running process and the entry it was started from.

    Raises:
        ActionError: there is no such application, or it cannot be started.
    """
    entry = find_desktop_entry(app)
    if entry is None:
        raise ActionError(f"no application called {app!r}; open_app takes an application's name as its "
                          "menu shows it (e.g. \"Mousepad\"), from the .desktop files in "
                          "/usr/share/applications and ~/.local/share/applications")
    argv = [a for a in (_FIELD_CODES.sub("", part) for part in shlex.split(entry.exec)) if a]
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,  # noqa: S603
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise ActionError(f"cannot start {entry.name} ({' '.join(argv)}): {exc}") from exc
    return proc, entry
