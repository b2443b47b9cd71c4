"""``edgepilot record``: a person's demonstration of a task, recorded as a trajectory."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import click

from edgepilot.safetext import for_terminal


def _lines(stream: TextIO) -> Iterator[str]:
    """Lines as they come (a terminal, a pipe, a file), without reading ahead."""
    while True:
        line = stream.readline()
        if not line:
            return
        yield line


@click.command("record")
@click.option("--goal", default=None, help='The task being demonstrated, in words ("Turn off Wi-Fi"). Required, '
                                           "unless --task gives it.")
@click.option("--device", default="virtual", show_default=True,
              help="virtual (a fresh virtual phone behind its adb endpoint), virtual-local, the serial of a "
                   "running `edgepilot sim serve` phone or of a real phone, or SERIAL@HOST:PORT.")
@click.option("--task", "task_spec", default=None, metavar="TEMPLATE[#SEED]",
              help="Virtual phone only: set the phone up for this suite task first, judge its checks at the "
                   "end (result.json gets success), and take its goal unless --goal is given.")
@click.option("--script", type=click.File("r", encoding="utf-8"), default=None,
              help="Read the commands from this file instead of the keyboard (or pipe them in).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the trajectory under this folder (default: the trajectories folder).")
@click.option("--no-screenshots", is_flag=True, help="Do not capture a screenshot with each step.")
@click.option("--adb-port", default=5037, show_default=True, help="Port of the adb server for real phones.")
def record(goal: str | None, device: str, task_spec: str | None, script: TextIO | None, out: Path | None,
           no_screenshots: bool, adb_port: int) -> None:
    """Record a demonstration: you do the task on the phone one command at a time, every step is saved.

    The numbered elements of the screen are shown; answer with a command (`tap 5`, `type 3 Ann Lee`,
    `key back`, `swipe up`, `open Settings`, `done`; `help` lists them all). Each one is carried out on
    the device and written to a trajectory (meta agent "human"), which `edgepilot replay` shows and
    `edgepilot sop learn` drafts an SOP from. End with `done` (and the answer, for a question);
    Ctrl-C or the end of the input stops and keeps the steps recorded so far.

    \b
      edgepilot record --goal "Turn off Wi-Fi"
      edgepilot record --task messages_send_new#3 --script demo.txt --out demos/
    """
    from edgepilot.agent.record import AGENT, Recorder
    from edgepilot.agent.trajectory import TrajectoryWriter
    from edgepilot.devices import open_device
    from edgepilot.errors import ConfigError
    from edgepilot.sim.tasks.model import apply_setup
    from edgepilot.sim.tasks.suite import task_instance

    instance = task_instance(task_spec) if task_spec else None
    goal = (goal or (instance.goal if instance is not None else "")).strip()
    if not goal:
        raise ConfigError('say what the demonstration does: --goal "TASK" (or --task TEMPLATE#SEED)')
    stream = script if script is not None else sys.stdin
    interactive = script is None and sys.stdin.isatty()
    with open_device(device, screenshot=not no_screenshots, adb_port=adb_port) as opened:
        if instance is not None:
            if opened.phone is None:
                raise ConfigError("--task sets the task up on the virtual phone; use --device virtual")
            apply_setup(opened.phone, instance)
        info = opened.device.info
        meta = {"agent": AGENT, "model": None, "device": info.serial, "screen": [info.screen_width,
                info.screen_height], "max_steps": None, "recorder": "step-by-step"}
        if instance is not None:
            meta.update(task=instance.id, template=instance.template.id)
        writer = TrajectoryWriter.new(goal, meta, root=out)
        click.echo(f"recording on {opened.description} into {writer.folder}")
        # what the recorder says shows the screen's elements: text from the device, made safe to print
        recorder = Recorder(opened.device, writer, say=lambda text: click.echo(for_terminal(text)),
                            ask=(lambda text: click.echo(for_terminal(text), nl=False)) if interactive
                            else (lambda text: None))
        run = recorder.run(goal, _lines(stream))
        verdict = ""
        if instance is not None:
            success, failed = instance.evaluate(opened.phone.snapshot(), run.answer)
            writer.amend_result({"success": success, "failed_checks": failed})
            verdict = "; the task's checks " + ("passed" if success else "failed: " + ", ".join(failed))
    color = "green" if run.status == "finished" else "yellow"
    click.echo(click.style(for_terminal(f"{run.status}: {run.reason}, {len(run.steps)} steps{verdict}",
                                        newlines=False), fg=color))
    click.echo(f"trajectory: {writer.folder}\n  edgepilot replay {writer.folder}\n"
               f"  edgepilot sop learn {writer.folder} --out my-sop.md")
