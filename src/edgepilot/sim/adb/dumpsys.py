"""System state in the device shell: ``dumpsys`` and ``getprop``.

The ``dumpsys`` texts are cut down to the lines agents and adb libraries
parse: focused window, resumed activity, display size, wakefulness.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from edgepilot.sim.adb.protocol import PhoneBackend
from edgepilot.sim.adb.shell_io import CommandIO
from edgepilot.sim.adb.ui import density

SIM_APP_VERSION = "1.0-virtual"
"""The version every virtual app reports; bump it when an app's screens change, so old memories say so."""


def _short_activity(package: str, activity: str) -> str:
    if activity.startswith(package + "."):
        return activity[len(package) :]
    return activity


def _full_activity(package: str, activity: str) -> str:
    return package + activity if activity.startswith(".") else activity


def _fake_hash(text: str, salt: str = "") -> str:
    # Stable across runs, so the same app always gets the same window and record ids.
    return format(zlib.crc32((salt + text).encode("utf-8")) & 0xFFFFFFF, "x")


class DumpsysService:
    """``dumpsys window|activity|display|power|SurfaceFlinger`` and ``getprop``.

    Args:
        phone: The phone whose state is printed.
    """

    def __init__(self, phone: PhoneBackend) -> None:
        self.phone = phone

    def dumpsys(self, args: list[str], cio: CommandIO) -> int:
        """``dumpsys SERVICE [ARGS]``."""
        if not args:
            return cio.fail("dumpsys: a service name is required (window, activity, display, power)")
        writers: dict[str, Callable[[list[str]], str]] = {
            "window": self._window, "activity": self._activity,
            "display": self._display, "power": self._power,
            "SurfaceFlinger": self._surfaceflinger, "package": self._package,
        }  # fmt: skip
        writer = writers.get(args[0])
        if writer is None:
            return cio.fail(f"Can't find service: {args[0]}")
        cio.out(writer(args[1:]))
        return 0

    def getprop(self, args: list[str], cio: CommandIO) -> int:
        """``getprop`` (all, as ``[key]: [value]``) or ``getprop KEY [DEFAULT]``."""
        props = self.phone.props()
        if not args:
            cio.out("".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items())))
        else:
            cio.out(props.get(args[0], args[1] if len(args) > 1 else "") + "\n")
        return 0

    def _package(self, args: list[str]) -> str:
        """``dumpsys package [PKG]``: each app's version, the lines app memories read."""
        wanted = [a for a in args if not a.startswith("-")]
        packages = [p for p in self.phone.packages() if not wanted or p in wanted]
        return "Packages:\n" + "".join(
            f"  Package [{p}] ({_fake_hash(p)}):\n    versionCode=1 minSdk=26 targetSdk=34\n"
            f"    versionName={SIM_APP_VERSION}\n" for p in packages)

    def _focus(self) -> tuple[str, str, str]:
        package, activity = self.phone.focused_window()
        return package, _full_activity(package, activity), _short_activity(package, activity)

    def _window(self, args: list[str]) -> str:
        package, full, short = self._focus()
        width, height = self.phone.screen_size
        window = f"Window{{{_fake_hash(package, 'w')} u0 {package}/{full}}}"
        record = f"ActivityRecord{{{_fake_hash(package, 'a')} u0 {package}/{short} t12}}"
        return (
            "WINDOW MANAGER DISPLAY CONTENTS (dumpsys window displays)\n"
            "  Display: mDisplayId=0 rootTasks=1\n"
            f"    init={width}x{height} {density(self.phone)}dpi cur={width}x{height} app={width}x{height}\n"
            "\nWINDOW MANAGER WINDOWS (dumpsys window windows)\n"
            f"  Window #0 {window}:\n"
            f"    mDisplayId=0 rootTaskId=12 package={package} appop=NONE\n"
            "    mHasSurface=true isReadyForDisplay()=true\n"
            "\n"
            f"  mCurrentFocus={window}\n"
            f"  mFocusedApp={record}\n"
            "  mInTouchMode=true\n"
        )

    def _activity(self, args: list[str]) -> str:
        package, _full, short = self._focus()
        record = f"ActivityRecord{{{_fake_hash(package, 'a')} u0 {package}/{short} t12}}"
        activities = (
            "ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)\n"
            "Display #0 (activities from top to bottom):\n"
            "  * Task{12 #12 type=standard A=10100:" + package + " U=0 visible=true}\n"
            f"  mResumedActivity: {record}\n"
            f"  topResumedActivity={record}\n"
        )
        top = (
            "TASK 10100:" + package + " id=12 userId=0\n"
            f"  ACTIVITY {package}/{short} {_fake_hash(package, 'a')} pid=4242\n"
        )
        if args[:1] in (["activities"], ["a"]):
            return activities
        if args[:1] == ["top"]:
            return top
        return activities + "\n" + top

    def _display(self, args: list[str]) -> str:
        width, height = self.phone.screen_size
        return (
            "DISPLAY MANAGER (dumpsys display)\n"
            "  mDefaultViewport=DisplayViewport{type=INTERNAL, valid=true, isActive=true, displayId=0, "
            f"orientation=0, logicalFrame=Rect(0, 0 - {width}, {height}), "
            f"physicalFrame=Rect(0, 0 - {width}, {height}), deviceWidth={width}, deviceHeight={height}}}\n"
            f'  mBaseDisplayInfo=DisplayInfo{{"Built-in Screen", displayId 0, real {width} x {height}, '
            f"rotation 0, density {density(self.phone)}, state ON}}\n"
        )

    def _power(self, args: list[str]) -> str:
        return (
            "POWER MANAGER (dumpsys power)\n  mWakefulness=Awake\n"
            "  mHoldingDisplaySuspendBlocker=true\nDisplay Power: state=ON\n"
        )

    def _surfaceflinger(self, args: list[str]) -> str:
        return 'Display 4619827259835644672 (HWC display 0): port=0 pnpId=GGL displayName="Virtual_Phone"\n'
