"""The agent's screen with the accessibility tree switched off: OCR and the widget detector on the real adb path."""

import pytest

from edgepilot.actions import Tap
from edgepilot.bench.tasks import ground, run_tasks
from edgepilot.controllers.android import AndroidDevice
from edgepilot.errors import ConfigError
from edgepilot.perception import Bounds, Observation, UINode


def _device(served, perception):
    phone, server, _ = served
    return AndroidDevice.connect(phone.serial, port=server.port, perception=perception)


def test_pixels_mode_never_reads_the_tree_and_its_indices_drive_taps(served):
    device = _device(served, "pixels")
    seen = []
    shell = device.transport.shell
    device.transport.shell = lambda cmd, *a, **k: (seen.append(cmd), shell(cmd, *a, **k))[1]
    obs = device.observe()
    assert not any("uiautomator" in cmd for cmd in seen)
    assert obs.package == "com.android.launcher3" and obs.screenshot_png
    settings = [i for i, e in enumerate(obs.elements) if e.text.strip() == "Settings"]
    assert settings, obs.to_text()
    device.act(Tap(target=settings[0]))
    assert device.observe().package == "com.android.settings"


def test_fused_mode_keeps_the_tree_and_adds_text(served):
    tree = served[2].observe()
    fused = _device(served, "fused").observe()
    assert len(fused.elements) >= len(tree.elements)
    assert {e.text for e in tree.elements if e.text} <= {e.text for e in fused.elements if e.text}


def test_unknown_perception_is_a_config_error(served):
    with pytest.raises(ConfigError, match="tree, pixels or fused"):
        _device(served, "x-ray")


def _node(text, box, **kw):
    return UINode(text=text, bounds=Bounds(left=box[0], top=box[1], right=box[2], bottom=box[3]), clickable=True, **kw)


def test_grounding_prefers_the_element_showing_the_targets_text_over_a_button_drawn_on_it():
    card = _node("To do\nBuy milk", (0, 1800, 1080, 2200))
    tree = Observation(nodes=(card,), screen_width=1080, screen_height=2400)
    fab = _node("", (880, 1950, 1040, 2110))  # a floating button over the card, bigger than the text line
    title = _node("To do", (40, 1820, 200, 1870))
    seen = Observation(nodes=(fab, title), screen_width=1080, screen_height=2400)
    assert ground(Tap(target=0), tree, seen) == Tap(target=1)
    nothing = Observation(nodes=(_node("Far away", (0, 0, 100, 100)),), screen_width=1080, screen_height=2400)
    assert ground(Tap(target=0), tree, nothing) is None


@pytest.mark.slow
def test_the_oracle_acting_on_pixels_completes_held_out_tasks():
    report = run_tasks(agent="oracle", split="test", per_template=1, perception="pixels", device="virtual-local",
                       templates=("settings_dark_theme", "contacts_edit_phone", "notes_append"),
                       policy="off")  # perception alone: the default policy asks before notes_append's "Buy" line
    assert report["perception"] == "pixels"
    assert report["success_rate"] == 1.0, [r for r in report["results"] if not r["success"]]
