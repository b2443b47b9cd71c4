"""A desktop application started afresh in a sandbox folder, for exploring it (``edgepilot explore --device
desktop...``, docs/memory.md).

The phone's explorer (:class:`edgepilot.memory.explore.Explorer`) walks a desktop application as it walks a
phone's app; only its ``restart`` differs. Here a restart stops the application, rewrites a sandbox folder
(``Documents`` in the user's cache folder, the same path every time, so window titles stay the same: a text
file, a table, a picture, a subfolder),
gives the application its own settings folder inside it (XDG_CONFIG_HOME...) and xfconf channel reset, starts
it on the sandbox (the text file in an editor, the picture in a viewer, the folder in a file manager) and waits
for its window. Whatever a press does, it does inside the sandbox, and the next try starts clean.

Nothing the policy would ask about (delete, send...) is pressed, on a private Xvfb or not: a file manager's
menus reach beyond its sandbox (Home, File System).
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from edgepilot.errors import AppMemoryError, EdgepilotError
from edgepilot.paths import cache_dir
from edgepilot.sim.desktop.tasks import TaskContext
from edgepilot.sim.desktop.templates import APP_COMMANDS, XFCONF_CHANNELS, reset_xfconf

SAMPLE_TEXT = "Shopping list\nMilk\nBread\n"
SAMPLE_TABLE = "item,price\nMilk,2\nBread,3\n"
OPENS: dict[str, list[str]] = {
    "mousepad": ["notes.txt"],
    "ristretto": ["picture.png"],
    "gnumeric": ["table.csv"],
    "thunar": ["."],
    "lxterminal": ["--working-directory=."],
}
"""What each known application is started on, relative to the sandbox (others start on nothing)."""


def app_version(app: str) -> str:
    """The installed Debian package's version of ``app`` ('' where dpkg does not know it)."""
    if shutil.which("dpkg-query") is None:
        return ""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", app], capture_output=True, text=True,  # noqa: S603,S607
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


class DesktopSandbox:
    """Starts ``app`` afresh on ``device`` for each try of the explorer (:meth:`restart`); :meth:`close` stops it
    and removes the sandbox."""

    def __init__(self, device: Any, app: str, timeout: float = 30.0) -> None:
        self.device = device
        self.app = app
        self.timeout = timeout
        # this user's cache, not /tmp (where another user could put a link in its place); the same path for every
        # try and every run, so window titles, and the states they mark, stay the same (a walk resumes)
        self._private = cache_dir() / "explore" / app
        self._private.mkdir(parents=True, exist_ok=True)
        self._private.chmod(0o700)
        self.root = self._private / "Documents"
        self._ctx: Any = None

    def restart(self) -> None:
        """Raises: AppMemoryError: the application does not start, or its window never shows."""
        self._stop()
        self._write_samples()
        ctx = self._ctx = TaskContext(self.device, workdir=self.root)
        if self.app in XFCONF_CHANNELS:
            reset_xfconf(ctx, XFCONF_CHANNELS[self.app])
        argv = [*APP_COMMANDS.get(self.app, [self.app]), *OPENS.get(self.app, [])]
        try:
            ctx.launch(argv, cwd=self.root)
            ctx.wait_for(lambda obs: bool(obs.elements) and obs.elements[0].package == self.app,
                         f"{self.app}'s window", timeout=self.timeout)
        except EdgepilotError as exc:
            raise AppMemoryError(f"{self.app} did not start for exploring: {exc}") from exc

    def plain_text(self, text: str) -> str:
        """A text of the explored screens without the sandbox's path (``~/.cache/edgepilot/explore/mousepad/
        Documents/notes.txt - Mousepad`` → ``notes.txt - Mousepad``, in a state's lower-cased key too) and without
        this machine's user, host and home folder (a terminal's ``me@mybox:~$``): what a person's own file would
        show in its place, and nothing of the machine that explored."""
        root, home = str(self.root), str(Path.home())
        swaps = [(f"{root}/", ""), (root, self.root.name),
                 (str(self._private), "~"),  # the folder above, as a person's home
                 *([(home, "~")] if len(home) > 1 else []),
                 (f"{getpass.getuser()}@{socket.gethostname()}", "user@host")]
        for old, new in swaps:  # as shown, and in a state's lower-cased key
            text = text.replace(old, new).replace(old.casefold(), new.casefold())
        return text

    def _stop(self) -> None:
        if self._ctx is not None:
            self._ctx.close()  # stops what it started, removes the sandbox folder
            self._ctx = None
        shutil.rmtree(self.root, ignore_errors=True)

    def close(self) -> None:
        """Stop the application and remove everything the sandbox wrote."""
        self._stop()
        shutil.rmtree(self._private, ignore_errors=True)

    def _write_samples(self) -> None:
        from PIL import Image

        self.root.mkdir(mode=0o700)
        (self.root / "notes.txt").write_text(SAMPLE_TEXT, encoding="utf-8")
        (self.root / "table.csv").write_text(SAMPLE_TABLE, encoding="utf-8")
        Image.new("RGB", (64, 48), "steelblue").save(self.root / "picture.png")
        (self.root / "folder").mkdir(exist_ok=True)
