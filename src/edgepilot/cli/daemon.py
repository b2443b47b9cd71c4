"""``edgepilot daemon ...``: start, stop and talk to the background daemon (docs/daemon.md)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from edgepilot.cli.errors import ErrorsAsLines
from edgepilot.safetext import for_terminal


@click.group(cls=ErrorsAsLines, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def daemon() -> None:
    """A background agent: the model kept warm, tasks from a queue, global hotkeys, a local control socket.

    \b
      edgepilot daemon start                    start it in the background (log: `status` says where)
      edgepilot daemon run "open settings" --wait   queue a task and watch it
      edgepilot daemon status                   what runs, the queue, the model, the hotkeys
      edgepilot daemon answer c1 yes            answer a confirmation (or click the notification)
      edgepilot daemon stop-run                 stop the running task
      edgepilot daemon stop                     stop the daemon
    \b
    Hotkeys on an X desktop ([daemon] in config.toml): <ctrl>+<alt>+<space> opens a
    prompt for a task; <ctrl>+<alt>+<esc> is the safety stop (the running task ends
    at once; queued tasks are dropped).
    """


@daemon.command()
@click.option("--foreground", is_flag=True, help="Run in this terminal (logs to stderr) instead of detaching.")
@click.option("--model", default=None, help="Model to keep loaded (default: [daemon] model, else `model` in "
                                             "config.toml, else the bundled smollm2-135m-agent).")
@click.option("--device", default=None, help="Device of tasks that name none (default: [daemon] device, desktop).")
@click.option("--no-hotkeys", is_flag=True, help="No global hotkeys (the socket still works).")
@click.option("--no-notify", is_flag=True, help="No desktop notifications (confirmations, results).")
@click.option("--no-windows", is_flag=True, help="No windows on this desktop: no task prompt, no question or "
                                                  "result windows (answer in `edgepilot tui --attach`).")
@click.option("--no-policy", is_flag=True, help="Act without the policy: nothing is checked or confirmed "
                                                 "(for experiments on the virtual phone).")
@click.option("--scripted-model", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              hidden=True, help="TESTS ONLY: answer from a script (daemon/testing.py), not a model.")
def start(foreground: bool, model: str | None, device: str | None, no_hotkeys: bool, no_notify: bool,
          no_windows: bool, no_policy: bool, scripted_model: Path | None) -> None:
    """Start the daemon (detached, unless --foreground); it prints where its socket and log are."""
    from edgepilot.config import load_config
    from edgepilot.daemon.paths import DaemonPaths

    config = load_config()  # a broken config.toml stops here, before anything detaches
    paths = DaemonPaths.default()
    if foreground:
        from edgepilot.daemon.daemon import Daemon, DaemonOptions

        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(threadName)s: %(message)s")
        options = DaemonOptions(model=model, device=device, hotkeys=False if no_hotkeys else None,
                                notify=False if no_notify else None, windows=False if no_windows else None,
                                policy_off=no_policy,
                                scripted_model=scripted_model)
        Daemon(config, options, paths).serve()
        return
    from edgepilot.daemon.process import start_background

    args = [*(["--model", model] if model else []), *(["--device", device] if device else []),
            *(["--no-hotkeys"] if no_hotkeys else []), *(["--no-notify"] if no_notify else []),
            *(["--no-windows"] if no_windows else []),
            *(["--no-policy"] if no_policy else []),
            *(["--scripted-model", str(scripted_model)] if scripted_model else [])]
    pid = start_background(args, paths)
    click.echo(f"daemon started (pid {pid})\nsocket: {paths.socket}\nlog:    {paths.log}")
    _print_status(_client().status(), brief=True)


@daemon.command()
def stop() -> None:
    """Stop the daemon (its running task is stopped first)."""
    from edgepilot.daemon.process import stop_daemon

    pid = stop_daemon()
    click.echo(f"daemon stopped (pid {pid})" if pid else "no daemon is running")


@daemon.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """What the daemon is doing; exit code 3 when it is not running."""
    from edgepilot.daemon.client import DaemonNotRunning

    try:
        report = _client().status()
    except DaemonNotRunning as exc:
        click.echo(json.dumps({"running": False, "error": str(exc)}) if as_json else f"daemon: not running ({exc})")
        sys.exit(3)
    if as_json:
        click.echo(json.dumps({"running": True, **report}, indent=2))
    else:
        _print_status(report)


@daemon.command("run")
@click.argument("task")
@click.option("--device", default=None, help="Device spec (default: the daemon's, [daemon] device).")
@click.option("--max-steps", type=click.IntRange(1, 500), default=None, help="Step budget (default: config).")
@click.option("--sop", "sop_name", default="auto", show_default=True, help="SOP: auto, off, or a name.")
@click.option("--wait", is_flag=True, help="Stream the run's steps here until it ends (Ctrl-C stops watching, "
                                           "not the run).")
@click.option("--json", "as_json", is_flag=True, help="With --wait: print each event as a JSON line.")
def run_task(task: str, device: str | None, max_steps: int | None, sop_name: str, wait: bool, as_json: bool) -> None:
    """Queue TASK in the daemon; prints its run id."""
    client = _client()
    run = client.submit(task, device=device, max_steps=max_steps, sop=sop_name)
    if not wait:
        click.echo(_line(run))
        return
    run = _line(run)
    if not as_json:
        click.echo(f"run {run} queued; watching (Ctrl-C stops watching; `edgepilot daemon stop-run {run}` stops it)")
    status_ = "?"
    try:
        for event in client.events(run):
            click.echo(json.dumps(event) if as_json else _describe(event))
            if event["event"] == "finished":
                status_ = event["status"]
    except KeyboardInterrupt:
        click.echo(f"\nstopped watching; run {run} goes on in the daemon", err=True)
        sys.exit(130)
    from edgepilot.agent.loop import exit_status

    sys.exit(exit_status(status_))  # as `edgepilot run`: 0 only for finished


@daemon.command("stop-run")
@click.argument("run", required=False)
@click.option("--all", "stop_all", is_flag=True, help="Also drop every queued task.")
def stop_run(run: str | None, stop_all: bool) -> None:
    """Stop RUN (default: the running task); no action is taken after the stop."""
    reply = _client().stop(run, all=stop_all)
    if stop_all:
        click.echo("stopped: " + (_line(", ".join(reply["stopped"])) or "nothing was running or queued"))
    else:
        click.echo(f"stopping {_line(reply['run'])}")


@daemon.command()
@click.argument("run", required=False)
def pause(run: str | None) -> None:
    """Pause RUN (default: the running task) before its next step."""
    click.echo(f"paused {_line(_client().pause(run)['run'])}")


@daemon.command()
@click.argument("run", required=False)
def resume(run: str | None) -> None:
    """Resume a paused RUN (default: the running task)."""
    click.echo(f"resumed {_line(_client().resume(run)['run'])}")


@daemon.command()
@click.argument("confirm")
@click.argument("answer", type=click.Choice(["yes", "no", "always"]))
def answer(confirm: str, answer: str) -> None:
    """Answer confirmation CONFIRM (its id, e.g. c1, from `status` or the notification): yes, no, or always
    (yes, and do not ask again for this rule during this task)."""
    reply = _client().answer(confirm, answer)  # type: ignore[arg-type]
    click.echo(_line(f"{reply['confirm']} ({reply['run']}): {reply['answer']}"))


@daemon.command()
@click.option("--run", default=None, help="Only this run's events (ends when it finishes).")
@click.option("--json", "as_json", is_flag=True, help="Print each event as a JSON line.")
def events(run: str | None, as_json: bool) -> None:
    """Follow the daemon's events (every run, or --run) until Ctrl-C."""
    try:
        for event in _client().events(run):
            click.echo(json.dumps(event) if as_json else _describe(event))
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------- printing


def _client():
    from edgepilot.daemon.client import DaemonClient

    return DaemonClient.connect()


def _line(value: object, limit: int | None = None) -> str:
    """Text of an event (the task, the screen, the model's words, all untrusted) as one line safe to print."""
    return for_terminal(value, newlines=False, limit=limit)


def _describe(event: dict[str, Any]) -> str:
    kind, run = _line(event.get("event")), _line(event.get("run"))
    if kind == "queued":
        return f"[{run}] queued: {_line(event['task'])} (on {_line(event['device'])})"
    if kind == "started":
        return f"[{run}] started on {_line(event['device'])}; trajectory {_line(event['trajectory'])}"
    if kind == "step":
        line = f"[{run}] step {event['index'] + 1:2d}  {_line(event['summary'], 300)}"
        gate, outcome = event.get("gate") or {}, event.get("outcome") or {}
        if gate and not gate.get("allowed", True):
            line += click.style(f"\n         refused: {_line(gate.get('reason', ''), 400)}", fg="yellow")
        if outcome:
            line += f"\n         outcome: {_line(outcome.get('kind'), 30)}" + (
                f": {_line(outcome['note'], 100)}" if outcome.get("note") else "")
        return line
    if kind == "confirm":
        return _describe_confirm(run, event)
    if kind == "confirmed":
        return f"[{run}] confirmation {_line(event['id'])}: {_line(event['answer'])} (by {_line(event.get('by', '?'))})"
    if kind in ("paused", "resumed"):
        return f"[{run}] {kind}"
    if kind == "finished":
        status = _line(event["status"], 30)
        color = "green" if status == "finished" else "red"
        return f"[{run}] " + click.style(status.upper(), fg=color) + \
            f": {_line(event['reason'])}; {event['steps']} steps in {event.get('seconds', 0):.1f} s" + \
            (f"; answer: {_line(event['answer'], 400)}" if event.get("answer") else "")
    return json.dumps(event)


def _describe_confirm(run: str, event: dict[str, Any]) -> str:
    """A confirmation: the action, then what it will do (when the policy says), its target, why, how to answer."""
    request, confirm = event["request"], _line(event["id"])
    head = click.style(f"[{run}] confirmation {confirm}: the agent wants to {_line(request['action'], 200)}",
                       fg="cyan") + (f" on {_line(request['target'], 200)}" if request.get("target") else "")
    effect = click.style(f"\n         effect: {_line(request['consequence'], 300)}", bold=True) \
        if request.get("consequence") else ""
    return head + effect + f"\n         why: {_line(request['reason'], 300)} (rule {_line(request['rule'], 80)})" + \
        f"\n         answer within {event['timeout']:g} s: edgepilot daemon answer {confirm} yes|no|always"


def _print_status(report: dict[str, Any], brief: bool = False) -> None:
    model = report["model"]
    loaded = {"ready": f"ready (loaded in {model['load_s']} s)", "loading": "loading...",
              "failed": click.style(f"FAILED: {_line(model['error'])}", fg="red")}[model["state"]]
    hotkeys = report["hotkeys"]
    up = _duration(report["uptime_s"])
    lines = [f"daemon:  running, pid {report['pid']}, up {up} (edgepilot {_line(report['version'])})",
             f"model:   {_line(model['name'] or model['spec'])}: {loaded}",
             f"device:  {_line(report['device'])} (tasks that name none: {_line(report.get('device_reason', ''))})",
             f"policy:  {_line(report['policy'])}",
             "hotkeys: " + (f"{hotkeys['prompt']} opens the task prompt, {hotkeys['stop']} stops the running task"
                            if hotkeys["enabled"] else f"off: {hotkeys['reason']}"),
             f"notify:  {report['notifications']['mode']} ({report['notifications']['reason']})"]
    windows = report.get("windows")
    if windows:
        lines.append("windows: " + (f"on: the task prompt, questions, results ({_line(windows['announce'])} runs)"
                                    if windows["enabled"] else f"off: {_line(windows['reason'])}"))
    if not brief:
        lines += _status_runs(report)
        lines.append(f"socket:  {report['socket']}\nlog:     {report['log']}")
    click.echo("\n".join(lines))


def _status_runs(report: dict[str, Any]) -> list[str]:
    """The running task, the queue, the open confirmations and the recent runs (their text made safe)."""
    lines = []
    current = report["current"]
    if current:
        state = " (paused)" if current.get("paused") else " (stopping)" if current.get("stopping") else ""
        lines.append(f"running: {_line(current['run'])} {_line(repr(current['task']))} on "
                     f"{_line(current['device'])}, {current['steps']} steps{state}")
    else:
        lines.append("running: nothing")
    lines += [f"queued:  {_line(job['run'])} {_line(repr(job['task']))} on {_line(job['device'])}"
              for job in report["queue"]]
    for pending in report["confirmations"]:
        confirm = _line(pending["id"])
        what = "; ".join(_line(v) for v in (pending.get("consequence"), pending["reason"]) if v)
        lines.append(f"confirm: {confirm} ({_line(pending['run'])}): {_line(pending['action'])}; {what}; "
                     f"{pending['seconds_left']:.0f} s left: edgepilot daemon answer {confirm} yes|no|always")
    lines += [f"recent:  {_line(job['run'])} {_line(job.get('status'))}: {_line(repr(job['task']))} "
              f"({_line(job.get('reason'))})" for job in report["recent"][:5]]
    return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s" if minutes else f"{secs}s"
