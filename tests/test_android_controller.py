"""AndroidDevice through the real adbutils client against the virtual phone's adb endpoint."""

import pytest

from edgepilot.actions import Finish, Key, LongPress, OpenApp, Point, Swipe, Tap, Type, Wait
from edgepilot.controllers.android import AndroidDevice
from edgepilot.errors import ActionError, DeviceError
from edgepilot.sim.adb.server import AdbServer
from edgepilot.sim.phone import VirtualPhone


def _index(obs, **attrs):
    hits = obs.find(**attrs)
    assert hits, f"no element with {attrs} in\n{obs.to_text()}"
    return hits[0]


def test_info_and_observe(served):
    phone, _, device = served
    assert device.info.serial == "virtual-test"
    assert (device.info.screen_width, device.info.screen_height) == (1080, 2400)
    obs = device.observe()
    assert obs.package == "com.android.launcher3"
    assert obs.screenshot_png.startswith(b"\x89PNG") and not obs.secure
    assert "Settings" in obs.to_text()


def test_open_app_tap_toggle_and_back(served):
    phone, _, device = served
    device.act(OpenApp(app="Settings"))
    obs = device.observe()
    assert obs.package == "com.android.settings"
    device.act(Tap(target=_index(obs, resource_id="com.android.settings:id/network")))
    device.act(Tap(target=_index(device.observe(), resource_id="com.android.settings:id/airplane")))
    device.act(Tap(target=_index(device.observe(), resource_id="com.android.settings:id/airplane_switch")))
    assert phone.snapshot()["settings"]["airplane_mode"] is True
    device.act(Key(key="back"))
    assert phone.snapshot()["settings"]["screen"] == "network"
    device.act(Key(key="home"))
    assert phone.foreground == "com.android.launcher3"


def test_typing_ascii_non_ascii_and_clear(served):
    phone, _, device = served
    device.act(OpenApp(app="Settings"))
    for rid in ("network", "wifi"):
        device.act(Tap(target=_index(device.observe(), resource_id=f"com.android.settings:id/{rid}")))
    device.act(Tap(target=_index(device.observe(), text="CoffeeShop\nSecured")))
    field = _index(device.observe(), resource_id="com.android.settings:id/password")
    device.act(Type(text="it's a \"test\" & more", target=field))
    assert phone.app("settings").form.get("password") == "it's a \"test\" & more"
    device.observe()
    device.act(Type(text="Grüße 東京", target=field, clear=True))
    assert phone.app("settings").form.get("password") == "Grüße 東京"


def test_non_ascii_without_adb_keyboard_is_a_clear_error():
    phone = VirtualPhone(adb_keyboard=False)
    with AdbServer(phone, port=0).start() as server:
        device = AndroidDevice.connect(phone.serial, port=server.port)
        device.observe()
        with pytest.raises(ActionError, match="ADB Keyboard"):
            device.act(Type(text="café"))


def test_swipe_opens_the_shade_and_long_press_and_wait(served):
    phone, _, device = served
    obs = device.observe()
    device.act(Swipe(direction="down", target=_index(obs, resource_id="com.android.systemui:id/status_bar")))
    assert phone.shade_open
    device.act(Swipe(direction="up"))
    assert not phone.shade_open
    device.act(LongPress(target=Point(x=10, y=1000)))
    assert device.act(Wait(seconds=0)).ok
    assert device.act(Finish(answer="x")).finished


def test_bad_targets_are_action_errors(served):
    _, _, device = served
    with pytest.raises(ActionError, match="observation first"):
        device.act(Tap(target=1))
    device.observe()
    with pytest.raises(ActionError, match="does not exist"):
        device.act(Tap(target=999))
    with pytest.raises(ActionError, match="off the"):
        device.act(Tap(target=Point(x=5000, y=10)))
    with pytest.raises(ActionError, match="no app called"):
        device.act(OpenApp(app="Flux Capacitor"))


def test_secure_screen_screencaps_black(served):
    phone, _, device = served
    secure = [app for app in phone.apps.values() if app.launchable and app.page(app.route).secure]
    assert secure, "some app (the bank) starts on a FLAG_SECURE screen"
    phone.start_app(secure[0].package)
    assert device.observe().secure


def test_device_that_disconnects_mid_task_raises_device_error(phone):
    server = AdbServer(phone, port=0).start()
    device = AndroidDevice.connect(phone.serial, port=server.port)
    device.observe()
    server.stop()
    with pytest.raises(DeviceError, match="stopped answering"):
        device.act(Tap(target=0))


def test_unknown_serial_and_missing_server():
    phone = VirtualPhone()
    with AdbServer(phone, port=0).start() as server:
        with pytest.raises(DeviceError, match="not found"):
            AndroidDevice.connect("nope", port=server.port)
