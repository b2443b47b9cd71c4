"""``edgepilot tui``: the terminal assistant (the Textual app of :mod:`edgepilot.tui`)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("tui")
@click.option("--device", default="virtual", show_default=True,
              help="Device picked at start: virtual (a new built-in virtual phone), an adb serial, "
                   "SERIAL@HOST:PORT, or desktop. The picker in the app changes it.")
@click.option("--model", default=None, help="Built-in name, name from config.toml, .gguf path, or server URL "
                                             "(default: config, else the bundled smollm2-135m-agent).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Policy file every action is checked against (default: `edgepilot policy show`).")
@click.option("--attach", is_flag=True,
              help="Run tasks in the background daemon (`edgepilot daemon start`) instead of in this process.")
def tui(device: str, model: str | None, policy_file: Path | None, attach: bool) -> None:
    """The terminal assistant: give a task, watch each step and the screen, approve sensitive steps.

    \b
    Keys: Enter runs the task; ctrl+p pauses or resumes, ctrl+s stops;
    F2 past runs, F3 SOPs, F4 the policy for the task, F5 looks for devices again;
    in a confirmation: y approve, n or Escape refuse, a always for this task.
    The model loads in the background when the app starts.
    """
    try:
        from edgepilot.tui.app import EdgepilotApp
    except ImportError as exc:
        raise click.ClickException(f"the terminal assistant needs Textual ({exc}); "
                                   "install it with: pip install 'edgepilot[tui]'") from exc
    from edgepilot.config import load_config

    config = load_config()
    if attach:
        from edgepilot.tui.attached import attached_runner

        if model or policy_file:
            raise click.UsageError("--model and --policy apply to runs in this process; the daemon keeps its own "
                                   "(edgepilot daemon start --model, `policy` in config.toml)")
        EdgepilotApp(attached_runner(config), config=config, device=device, mode="attached to the daemon").run()
        return
    EdgepilotApp(config=config, model=model, policy_file=policy_file, device=device).run()
