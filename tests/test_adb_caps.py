"""A device that sends too much: the real adb client against the virtual phone stops reading at the cap, while
the output streams, and says so."""

import pytest

from edgepilot.controllers.android import MAX_TEXT_BYTES, READ_CHUNK
from edgepilot.errors import DeviceError, OutputTooLarge

NODE = '<node index="0" text="flood" resource-id="" class="android.widget.TextView" package="com.example.flood" ' \
       'clickable="false" enabled="true" bounds="[0,0][1080,100]" />'


def _flood(megabytes: int) -> str:
    """A well-formed dump of about ``megabytes`` MiB (the size a hostile app's screen reached in issue 35)."""
    count = (megabytes << 20) // len(NODE)
    return '<?xml version="1.0" encoding="UTF-8"?><hierarchy rotation="0">' + NODE * count + "</hierarchy>"


def test_a_64_mib_dump_is_refused_at_the_text_cap(served, monkeypatch):
    phone, _, device = served
    device.info  # noqa: B018 - the screen size is read before the flood starts
    monkeypatch.setattr(phone, "dump_xml", lambda: _flood(64))
    with pytest.raises(OutputTooLarge) as refused:
        device.observe()
    err = refused.value
    assert isinstance(err, DeviceError) and err.limit == MAX_TEXT_BYTES
    assert MAX_TEXT_BYTES < err.received <= MAX_TEXT_BYTES + READ_CHUNK  # 48 MiB were never read
    message = str(err)
    assert "uiautomator dump" in message and "virtual-test" in message and "16.0 MiB" in message
    assert "closed the connection" in message and "--perception pixels" in message
    monkeypatch.undo()
    assert "Settings" in device.observe().to_text()  # the phone and the adb server are none the worse


def test_a_screenshot_past_the_image_cap_is_refused(served):
    phone, _, device = served
    png = phone.screencap_png()
    device.transport.image_limit = len(png) // 4
    with pytest.raises(OutputTooLarge) as refused:
        device.observe()
    err = refused.value
    assert err.limit == len(png) // 4 < err.received <= err.limit + READ_CHUNK
    assert "screencap -p" in str(err) and "screenshot" in str(err)
    device.transport.image_limit = len(png)  # exactly at the cap is not past it
    assert device.observe().screenshot_png == png


def test_output_under_the_caps_is_read_whole(served):
    phone, _, device = served
    dump = phone.dump_xml()
    assert device.transport.shell("uiautomator dump /sdcard/d.xml >/dev/null && cat /sdcard/d.xml") == dump
    assert device.transport.exec_out("screencap -p") == phone.screencap_png()
