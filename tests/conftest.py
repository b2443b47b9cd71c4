"""Shared fixtures: a virtual phone behind its real adb endpoint."""

import pytest

from edgepilot.controllers.android import AndroidDevice
from edgepilot.sim.adb.server import AdbServer
from edgepilot.sim.phone import VirtualPhone


@pytest.fixture
def phone():
    return VirtualPhone(serial="virtual-test")


@pytest.fixture
def served(phone):
    """The phone, its adb server, and an AndroidDevice talking to it through adbutils."""
    server = AdbServer(phone, port=0).start()
    try:
        yield phone, server, AndroidDevice.connect(phone.serial, port=server.port)
    finally:
        server.stop()


@pytest.fixture
def bank_login(served):
    """The virtual bank's login screen on the served phone: (device, its observation, the index of "Log in", the
    index of the PIN field)."""
    from edgepilot.actions import OpenApp

    _, _, device = served
    device.act(OpenApp(app="Bank"))
    obs = device.observe()
    return device, obs, obs.find(text="Log in")[0], next(i for i, n in enumerate(obs.elements) if n.editable)


@pytest.fixture(autouse=True)
def _own_audit_log(tmp_path_factory, monkeypatch):
    """Runs started by tests write their policy decisions to a scratch log, not the user's."""
    monkeypatch.setenv("EDGEPILOT_AUDIT", str(tmp_path_factory.mktemp("audit") / "audit.jsonl"))


@pytest.fixture(scope="session", autouse=True)
def _own_audit_key(tmp_path_factory):
    """One audit key for the session, never the user's: set before any fixture (daemons started by module-scoped
    fixtures sign with it; tests verify with it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEPILOT_AUDIT_KEY", str(tmp_path_factory.mktemp("audit-key") / "audit.key"))
        yield


@pytest.fixture(scope="session", autouse=True)
def _own_base_cache(tmp_path_factory):
    """Training tests share one dequantized base model in a scratch folder, not the user's cache: the first
    load reads the GGUF (about 28 s on 2 cores), the others the copy (under 1 s)."""
    import shutil

    from edgepilot.distill.train import BASE_CACHE_ENV

    folder = tmp_path_factory.mktemp("hf-base")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(BASE_CACHE_ENV, str(folder))
        yield
    shutil.rmtree(folder, ignore_errors=True)  # 514 MB; pytest keeps its last three temporary folders
