"""``edgepilot sim``: run the virtual phone for any adb client, and show its state."""

from __future__ import annotations

import json
import signal
import sys

import click


@click.group()
def sim() -> None:
    """The virtual phone."""


@sim.command("serve")
@click.option("--port", default=5038, show_default=True, help="Loopback port for its adb endpoint (0: any free one).")
@click.option("--serial", default="virtual-1", show_default=True, help="Serial the phone reports.")
@click.option("--template", "template_id", default=None, help="Set up this task template first.")
@click.option("--seed", default=0, show_default=True, help="Instance of --template.")
def sim_serve(port: int, serial: str, template_id: str | None, seed: int) -> None:
    """Run a virtual phone in the foreground; adb clients reach it on 127.0.0.1:PORT.

    \b
    Then, in another terminal:
      ANDROID_ADB_SERVER_PORT=5038 adb devices
      ANDROID_ADB_SERVER_PORT=5038 adb shell input tap 540 1200
      ANDROID_ADB_SERVER_PORT=5038 adb exec-out screencap -p > screen.png
    or python: adbutils.AdbClient(port=5038).device("virtual-1")
    """
    from edgepilot.devices import announce_sim
    from edgepilot.sim.adb.server import AdbServer
    from edgepilot.sim.phone import VirtualPhone

    phone = VirtualPhone(serial=serial)
    if template_id:
        from edgepilot.sim.tasks.model import apply_setup
        from edgepilot.sim.tasks.suite import load_templates

        templates = load_templates()
        if template_id not in templates:
            raise click.BadParameter(f"no template {template_id!r}", param_hint="--template")
        instance = templates[template_id].instance(seed)
        apply_setup(phone, instance)
        click.echo(f"task set up: {instance.goal}")
    try:
        server = AdbServer(phone, port=port).start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port} ({exc}); pick another --port") from exc
    click.echo(f"virtual phone {serial} listening on 127.0.0.1:{server.port} (Ctrl-C to stop)")
    click.echo(f"  ANDROID_ADB_SERVER_PORT={server.port} adb devices")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        with announce_sim(serial, server.port):
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@sim.command("state")
@click.option("--template", "template_id", default=None, help="Show the state after this template's set-up.")
@click.option("--seed", default=0, show_default=True)
def sim_state(template_id: str | None, seed: int) -> None:
    """Print the virtual phone's state (the JSON that task checks read)."""
    from edgepilot.sim.phone import VirtualPhone

    phone = VirtualPhone()
    if template_id:
        from edgepilot.sim.tasks.model import apply_setup
        from edgepilot.sim.tasks.suite import load_templates

        apply_setup(phone, load_templates()[template_id].instance(seed))
    click.echo(json.dumps(phone.snapshot(), indent=2))
