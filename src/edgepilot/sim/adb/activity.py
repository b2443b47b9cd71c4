"""Apps and intents in the device shell: ``am``, ``monkey`` and ``pm``.

:func:`parse_intent` reads the intent options ``am start`` and
``am broadcast`` take; :class:`ActivityService` runs the commands.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from edgepilot.errors import EdgepilotError
from edgepilot.sim.adb.input import KEYCODES
from edgepilot.sim.adb.protocol import PhoneBackend
from edgepilot.sim.adb.shell_io import CommandIO

log = logging.getLogger(__name__)

THIRD_PARTY_EXCLUDED = ("android", "com.android.", "com.google.android.")
_MONKEY_ABORTED = "** No activities found to run, monkey aborted."


@dataclass
class Intent:
    """The parts of an ``am`` intent the virtual phone cares about."""

    component: str | None = None
    action: str | None = None
    categories: list[str] = field(default_factory=list)
    data: str | None = None
    package: str | None = None
    extras: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)

    def describe(self) -> str:
        """The ``Intent { ... }`` text ``am`` prints."""
        parts = []
        if self.action:
            parts.append(f"act={self.action}")
        if self.categories:
            parts.append(f"cat=[{','.join(self.categories)}]")
        if self.data:
            parts.append(f"dat={self.data}")
        if self.package:
            parts.append(f"pkg={self.package}")
        if self.component:
            parts.append(f"cmp={self.component}")
        if self.extras:
            parts.append("(has extras)")
        return "Intent { " + " ".join(parts) + " }"


_EXTRA_OPTS = frozenset(
    {"--es", "--ez", "--ei", "--el", "--ef", "--ed", "--eu", "--ecn", "--eia", "--eial",
     "--ela", "--elal", "--efa", "--efal", "--esa", "--esal", "--eda"}
)  # fmt: skip
_VALUE_OPTS = frozenset(
    {"-t", "-f", "-e", "--user", "--display", "-R", "-P", "--start-profiler",
     "--sampling", "--windowingMode", "--activityType", "--task"}
)  # fmt: skip
_BARE_OPTS = frozenset(
    {"-W", "-S", "-D", "-N", "--streaming", "--track-allocation",
     "--receiver-foreground", "--receiver-registered-only", "--async"}
)  # fmt: skip


def parse_intent(args: list[str]) -> Intent:
    """Parse ``am start`` / ``am broadcast`` intent arguments.

    Raises:
        ValueError: An option is unknown or misses its value.
    """
    intent, queue = Intent(), list(args)

    def take(opt: str) -> str:
        if not queue:
            raise ValueError(f'Argument expected after "{opt}"')
        return queue.pop(0)

    while queue:
        arg = queue.pop(0)
        if arg == "-n":
            intent.component = take(arg)
        elif arg == "-a":
            intent.action = take(arg)
        elif arg == "-c":
            intent.categories.append(take(arg))
        elif arg == "-d":
            intent.data = take(arg)
        elif arg == "-p":
            intent.package = take(arg)
        elif arg == "--esn":
            intent.extras[take(arg)] = ""
        elif arg in _EXTRA_OPTS:
            key = take(arg)
            intent.extras[key] = take(arg)
        elif arg in _VALUE_OPTS:
            take(arg)
        elif arg in _BARE_OPTS or re.match(r"^--(activity|grant|include|exclude)-", arg):
            intent.flags.add(arg)
        elif arg.startswith("-"):
            raise ValueError(f"Unknown option: {arg}")
        elif "/" in arg and "://" not in arg and not intent.component:
            intent.component = arg
        else:
            intent.data = arg
    return intent


class ActivityService:
    """Starts, stops and lists apps.

    Args:
        phone: The phone whose apps are driven.
    """

    def __init__(self, phone: PhoneBackend) -> None:
        self.phone = phone

    # ---- activity manager

    def am(self, args: list[str], cio: CommandIO) -> int:
        """``am start|start-activity|force-stop|broadcast ...``."""
        if not args:
            return cio.fail("usage: am [start|force-stop|broadcast] ...")
        sub, rest = args[0], args[1:]
        handler = {
            "start": self._am_start, "start-activity": self._am_start,
            "force-stop": self._am_force_stop, "broadcast": self._am_broadcast,
        }.get(sub)  # fmt: skip
        if handler is None:
            return cio.fail(f"Unknown command: {sub}")
        return handler(rest, cio)

    def _am_start(self, args: list[str], cio: CommandIO) -> int:
        intent = parse_intent(args)
        cio.out(f"Starting: {intent.describe()}\n")
        if intent.component:
            return self._start_component(intent, cio)
        if "android.intent.category.HOME" in intent.categories:
            self.phone.keyevent(KEYCODES["HOME"])
            return 0
        return cio.fail(f"Error: Activity not started, unable to resolve {intent.describe()}")

    def _start_component(self, intent: Intent, cio: CommandIO) -> int:
        package, _, activity = intent.component.partition("/")
        try:
            self.phone.start_app(package, activity or None)
        except EdgepilotError as exc:
            log.debug("am start %s failed: %s", intent.component, exc)
            return cio.fail(f"Error type 3\nError: Activity class {{{intent.component}}} does not exist.")
        if "-W" in intent.flags:
            cio.out(f"Status: ok\nLaunchState: COLD\nActivity: {intent.component}\n")
            cio.out("TotalTime: 0\nWaitTime: 0\nComplete\n")
        return 0

    def _am_force_stop(self, args: list[str], cio: CommandIO) -> int:
        packages = [a for a in args if not a.startswith("-") and not a.isdigit()]
        if not packages:
            return cio.fail("Error: no package specified")
        # The virtual phone keeps no app processes; leaving the app is all a stop can show.
        if self.phone.focused_window()[0] == packages[-1]:
            self.phone.keyevent(KEYCODES["HOME"])
        return 0

    def _am_broadcast(self, args: list[str], cio: CommandIO) -> int:
        intent = parse_intent(args)
        if not intent.action:
            return cio.fail("Error: broadcast needs an action (-a ACTION)")
        cio.out(f"Broadcasting: {intent.describe()}\n")
        text = self.phone.broadcast(intent.action, dict(intent.extras))
        cio.out(text if text.endswith("\n") else text + "\n")
        return 0

    # ---- monkey

    def monkey(self, args: list[str], cio: CommandIO) -> int:
        """``monkey -p PKG ...``: agents use it to launch an app, so it starts ``PKG`` and injects nothing else."""
        packages = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-p"]
        known = set(self.phone.packages())
        if not packages or not set(packages) <= known:
            return cio.fail(_MONKEY_ABORTED, 252)
        started = time.perf_counter()
        try:
            self.phone.start_app(packages[0])
        except EdgepilotError as exc:
            log.debug("monkey could not start %s: %s", packages[0], exc)
            return cio.fail(_MONKEY_ABORTED, 252)
        ms = int((time.perf_counter() - started) * 1000)
        cio.out(f"  bash arg: {' '.join(args)}\nEvents injected: 1\n")
        cio.out(f"## Network stats: elapsed time={ms}ms (0ms mobile, 0ms wifi, {ms}ms not connected)\n")
        return 0

    # ---- package manager

    def pm(self, args: list[str], cio: CommandIO) -> int:
        """``pm list packages [-3|-s] [-f] [FILTER]`` / ``pm path PKG``."""
        if args[:2] in (["list", "packages"], ["list", "package"]):
            return self._pm_list(args[2:], cio)
        if len(args) == 2 and args[0] == "path":
            if args[1] not in self.phone.packages():
                return 1
            cio.out(f"package:/data/app/{args[1]}-1/base.apk\n")
            return 0
        return cio.fail(f"Error: pm {' '.join(args[:1])} is not supported by the virtual phone")

    def _pm_list(self, args: list[str], cio: CommandIO) -> int:
        flags = {a for a in args if a.startswith("-")}
        filters = [a for a in args if not a.startswith("-")]
        for name in sorted(self.phone.packages()):
            system = name.startswith(THIRD_PARTY_EXCLUDED)
            if ("-3" in flags and system) or ("-s" in flags and not system):
                continue
            if filters and filters[0] not in name:
                continue
            prefix = f"/data/app/{name}-1/base.apk=" if "-f" in flags else ""
            cio.out(f"package:{prefix}{name}\n")
        return 0
