"""The ``edgepilot`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgepilot import __version__
from edgepilot.cli.errors import ErrorsAsLines
from edgepilot.safetext import for_terminal


def _line(value: object, limit: int | None = None) -> str:
    """Untrusted text (the task, the screen, the model's words) as one safe line."""
    return for_terminal(value, newlines=False, limit=limit)


def _show_step(step) -> None:
    """Stream one step of a run: thought, action, outcome, time (every text from the screen or model made safe)."""
    from edgepilot.perception.describe import describe_action

    action = _line(describe_action(step.action, step.obs), 300) if step.action is not None else click.style(
        "(no valid action)", fg="red")
    click.echo(f"step {step.index + 1:2d}  {action}")
    if step.decision.thought:
        click.echo(f"         thought: {_line(step.decision.thought, 400)}")
    if step.gate is not None and step.gate.asked:
        click.echo(f"         asked:   {_line(step.gate.rule, 80)} → {_line(step.gate.answer, 20)}")
    if step.gate is not None and not step.gate.allowed:
        click.echo(click.style(f"         refused: {_line(step.gate.reason, 400)}", fg="yellow"))
    if step.result is not None and step.result.message:
        click.echo(f"         phone:   {_line(step.result.message, 120)}")
    if step.outcome is not None:
        color = {"worked": "green", "finished": "green", "changed": None}.get(step.outcome.kind, "yellow")
        note = f": {_line(step.outcome.note, 118)}" if step.outcome.note else ""
        click.echo("         outcome: " + click.style(_line(step.outcome.kind, 30), fg=color) + note)
    roles = ", ".join(f"{r} {ms / 1000:.1f} s" for r, ms in step.role_ms().items())
    click.echo(f"         time:    {step.ms.get('total', 0) / 1000:.1f} s" + (f" ({roles})" if roles else ""))


@click.group(cls=ErrorsAsLines, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgepilot")
def main() -> None:
    """edgepilot: an on-device GUI agent runtime.

    Small local models operate Android phones (over adb) and desktops. A
    virtual phone is built in, so everything runs on a machine with no phone.

    \b
    Start here:
      edgepilot setup                        install the bundled model (once, after pip install)
      edgepilot run "turn on airplane mode"  the bundled model operates the virtual phone
      edgepilot demo                         watch the expert complete a suite task over adb
      edgepilot replay DIR / report DIR      look at a saved run (text / HTML)
      edgepilot models                       list the models edgepilot can use
      edgepilot devices                      list the phones edgepilot can reach
      edgepilot sim serve                    run a virtual phone that any adb client can drive
      edgepilot bench --agent model --baseline   task success and speed on held-out tasks
      edgepilot tasks list                   list the task templates
    """


# ---------------------------------------------------------------- demo


@main.command()
@click.option("--template", "template_id", default="messages_send_new", show_default=True,
              help="Task template to run (`edgepilot tasks list`).")
@click.option("--seed", default=0, show_default=True, help="Which instance of the template.")
@click.option("--agent", type=click.Choice(["oracle", "model", "baseline"]), default="oracle", show_default=True,
              help="oracle: the task suite's expert (reads the phone's state); model: the three-role agent.")
@click.option("--model", default=None, help="Model for --agent model (see `edgepilot models`).")
def demo(template_id: str, seed: int, agent: str, model: str | None) -> None:
    """Run one task of the suite on the virtual phone over adb, show every step, and check the result."""
    from edgepilot.bench.episode import run_episode
    from edgepilot.bench.tasks import agent_factory
    from edgepilot.config import load_config
    from edgepilot.devices import open_device
    from edgepilot.sim.tasks.suite import load_templates

    templates = load_templates()
    if template_id not in templates:
        raise click.BadParameter(f"no template {template_id!r}; see `edgepilot tasks list`", param_hint="--template")
    instance = templates[template_id].instance(seed)
    with open_device("virtual") as opened:
        click.echo(f"device: {_line(opened.description)}")
        click.echo(f"task:   {_line(instance.goal)}")
        click.echo(f"agent:  {agent}\n")

        backend = None
        if agent != "oracle":
            from edgepilot.models.registry import open_model

            backend = open_model(model, load_config())
        result = run_episode(opened.device, opened.phone, instance, agent_factory(agent, opened.phone, backend),
                             on_step=_show_step)
    verdict = click.style("SUCCESS", fg="green") if result.success else click.style("FAILED", fg="red")
    click.echo(f"\n{verdict}: {len(result.steps)} steps in {result.seconds:.2f} s"
               + (f"; answer: {_line(result.answer, 400)}" if result.answer else ""))
    if not result.success:
        click.echo("failed checks: " + _line(", ".join(result.failed_checks))
                   + (f"\nerror: {_line(result.error)}" if result.error else ""))
        sys.exit(1)


# ---------------------------------------------------------------- run, replay, report, models


@main.command()
@click.argument("task")
@click.option("--device", default="virtual", show_default=True,
              help="virtual (a fresh built-in virtual phone), an adb serial, or SERIAL@HOST:PORT.")
@click.option("--model", default=None, help="Built-in name, name from config.toml, .gguf path, or server URL "
                                             "(default: config, else the bundled smollm2-135m-agent).")
@click.option("--max-steps", type=click.IntRange(1, 500), default=None, help="Step budget (default: config, 20).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Trajectory folder (default: a new folder under the user data dir).")
@click.option("--baseline", is_flag=True, help="Use the plain ReAct baseline instead of the three roles.")
@click.option("--lora", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A GGUF LoRA adapter to apply to an in-process model.")
@click.option("--no-screenshots", is_flag=True, help="Read only the accessibility tree (faster; no PNGs saved).")
@click.option("--perception", type=click.Choice(["tree", "pixels", "fused"]), default="tree", show_default=True,
              help="Where the element list comes from: the accessibility tree, the screenshot alone (OCR and a "
                   "widget detector, for apps whose tree is empty), or the tree with OCR added.")
@click.option("--vision", type=click.IntRange(0, 4096), default=0, metavar="PIXELS",
              help="For a vision model behind an OpenAI-compatible server: send the screenshot, numbered "
                   "(set-of-mark) and downscaled to this longest side (e.g. 1024), with each decision.")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Policy file every action is checked against (default: `edgepilot policy show`).")
@click.option("--sop", "sop_name", default="auto", show_default=True,
              help="Standard Operating Procedure to follow: auto (the best match for TASK, if any is close enough), "
                   "off, or a name from `edgepilot sop list`.")
@click.option("--memory", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="Where no procedure fits, follow the route the app memories suggest (`edgepilot explore`, "
                   "`edgepilot memory list`).")
@click.option("--calls", type=click.Choice(["needed", "every"]), default=None,
              help="Model calls: only where the runtime cannot tell the answer itself (needed: no planner while a "
                   "procedure is on track, no decider where one action fits, no reflector where the screen shows "
                   "the step worked), or every role at every step. Default: config.toml's calls (needed).")
@click.option("--no-policy", is_flag=True,
              help="Act without the policy: nothing is checked or confirmed (for experiments on the virtual phone).")
def run(task: str, device: str, model: str | None, max_steps: int | None, out: Path | None, baseline: bool,
        lora: Path | None, no_screenshots: bool, perception: str, vision: int, sop_name: str, memory: str,
        calls: str | None, no_policy: bool, policy_file: Path | None) -> None:
    """Let the agent do TASK on a device, streaming each step; the trajectory is saved as it goes.

    \b
    Every action passes the least-privilege policy first; sensitive steps
    (passwords, payments, sending, deleting, apps the task does not need) are
    shown here for you to approve (y / n / a = always for this task); no
    answer within confirm_timeout (60 s) is a refusal. Decisions are appended
    to the audit log (`edgepilot audit show`).

    \b
    Ctrl-C or SIGTERM ends the run; its trajectory is kept, with how it
    ended (SIGTERM: status stopped, exit status 143).

    \b
    Exit status: 0 finished (the agent says the task is done, and what it
    did was checked against the goal's values along its procedure), 1
    error, 3 gave up, 4 stuck (the same action on the same screen again),
    5 step budget spent, 6 stopped (the policy refused a step), 7
    unverified (finished, but the check failed, or no procedure fitted
    the goal, so nothing checked it), 8 impossible here,
    9 needs input (the goal leaves out a value, like a PIN, and no one
    at the terminal gave it), 130 Ctrl-C.

    \b
    Example:
      edgepilot run "turn on airplane mode"
      edgepilot run "send hello to Alice" --device emulator-5554 --model ~/models/qwen.gguf
    """
    import time

    from edgepilot.agent.loop import exit_status
    from edgepilot.agent.session import execute, is_secret, load_run_policy, prepare_run
    from edgepilot.cli.signals import EXIT_CODE, REASON, sigterm_like_ctrl_c
    from edgepilot.config import load_config
    from edgepilot.devices import open_device, parse_desktop_spec
    from edgepilot.errors import MissingInput
    from edgepilot.models.registry import open_model

    if not task.strip():
        raise click.BadParameter("say what to do, e.g. \"turn on airplane mode\"", param_hint="TASK")
    if vision and no_screenshots:
        raise click.BadParameter("a vision model needs the screenshots; drop --no-screenshots", param_hint="--vision")
    if no_screenshots and perception != "tree":
        raise click.BadParameter("OCR reads the screenshots; drop --no-screenshots", param_hint="--perception")
    if perception != "tree" and parse_desktop_spec(device) is not None:
        raise click.BadParameter("the desktop reads its accessibility tree; --perception is for phones",
                                 param_hint="--perception")
    config = load_config()
    if calls is not None:
        config = config.model_copy(update={"calls": calls})
    policy = load_run_policy(config, policy_file, off=no_policy)  # a broken policy stops the run here
    with sigterm_like_ctrl_c() as termination:
        start = time.perf_counter()
        backend = open_model(model, config, lora_path=str(lora) if lora else None, vision=vision)
        click.echo(f"model:  {_line(backend.name, 120)} (loaded in {time.perf_counter() - start:.1f} s)")
        with open_device(device, screenshot=not no_screenshots, perception=perception) as opened:
            try:
                prepared = prepare_run(task, opened, backend, config=config, policy=policy, baseline=baseline,
                                       sop=sop_name, out=out, max_steps=max_steps, memory=memory == "on",
                                       ask_value=_ask_value if sys.stdin.isatty() else None)
            except MissingInput as exc:
                click.echo(click.style("NEEDS_INPUT", fg="red") + f": {_line(str(exc), 600)}")
                sys.exit(exit_status("needs_input"))
            recalled = prepared.meta.get("memory")
            if recalled and recalled.get("route"):
                click.echo(f"sop:    none fits; memory: {_line(recalled['candidates'][0]['target'], 160)}")
                for note in recalled.get("notes", []):
                    click.secho(f"        {_line(note, 300)}", fg="yellow")
            elif prepared.sop is not None:
                shown = ", ".join(f"{k}={'***' if is_secret(k) else v}" for k, v in prepared.sop.params.items())
                click.echo(f"sop:    {_line(prepared.sop.sop.name, 120)} (score {prepared.sop.score:.2f})"
                           + (f"; {_line(shown, 300)}" if shown else ""))
            elif "understanding" in prepared.meta:
                click.echo(f"sop:    none ({_line(prepared.meta['understanding']['reason'], 200)})")
            if policy is not None:
                click.echo(f"policy: {_line(policy.source)}; audit log: {_line(prepared.audit_path)}")
            else:
                click.secho("policy: OFF (--no-policy): actions are neither checked nor confirmed", fg="yellow")
            click.echo(f"device: {_line(opened.description)}\ntask:   {_line(task)}\n"
                       f"trajectory: {_line(prepared.writer.folder)}\n")
            with termination.stopping(prepared.control):
                result = execute(prepared, on_step=_show_step)
            writer = prepared.writer
    if termination.received and result.status == "interrupted":  # the grace period ran out: cut short, not Ctrl-C
        result.reason = f"{REASON}; the step in progress was cut short"
        writer.amend_result({"reason": result.reason})
    color = "green" if result.status == "finished" else "yellow" if result.status == "unverified" else "red"
    click.echo("\n" + click.style(result.status.upper(), fg=color) + f": {_line(result.reason)}; "
               f"{len(result.steps)} steps in {result.seconds:.1f} s"
               + (f"; answer: {_line(result.answer, 400)}" if result.answer else ""))
    click.echo(f"trajectory: {_line(writer.folder)}  (edgepilot replay / edgepilot report)")
    if termination.received:
        sys.exit(EXIT_CODE)
    if exit_status(result.status):
        sys.exit(exit_status(result.status))


def _ask_value(name: str, description: str, secret: bool) -> str | None:
    """Ask the person at the terminal for a value the goal left out (hidden when it is a secret)."""
    try:
        value = click.prompt(f"The goal does not say {description} ({name}); type it (empty: stop)",
                             default="", show_default=False, hide_input=secret)
    except click.Abort:
        return None
    return value or None


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="Also show each screen and every model prompt and answer.")
def replay(folder: Path, verbose: bool) -> None:
    """Print a saved trajectory step by step."""
    from edgepilot.agent.report import format_replay
    from edgepilot.agent.trajectory import read_trajectory

    click.echo(format_replay(read_trajectory(folder), verbose=verbose))  # made safe for the terminal there


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write (default: FOLDER/report.html).")
def report(folder: Path, out: Path | None) -> None:
    """Write a self-contained HTML page of a trajectory, with annotated screenshots.

    FOLDER is a trajectory, or what `edgepilot bench --save DIR` wrote: then the page charts success per
    template and where a step's time went, and links each episode's own report (written beside it).
    """
    from edgepilot.agent.report import write_report
    from edgepilot.agent.trajectory import read_trajectory
    from edgepilot.bench.report import is_bench_folder, write_bench_report

    if is_bench_folder(folder):
        click.echo(write_bench_report(folder, out))
        return
    click.echo(write_report(read_trajectory(folder), out))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(as_json: bool) -> None:
    """List built-in models and the ones set in config.toml ([models] name = "path or URL")."""
    from edgepilot import paths
    from edgepilot.config import load_config
    from edgepilot.models.registry import list_models

    rows = list_models(load_config())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        mark = "*" if r["default"] else " "
        state = "ready" if r["available"] else "missing"
        click.echo(f"{mark} {_line(r['name']):16} {r['kind']:8} {state:8} {_line(r['location'])}")
        if r["note"]:
            click.echo(f"  {'':16} {_line(r['note'])}")
    click.echo(f"\n* default. Add your own in {paths.config_file()} under [models]; "
               "any .gguf path or http(s) server URL also works as --model.")


# ---------------------------------------------------------------- devices


@main.command()
@click.option("--adb-port", default=5037, show_default=True, help="Port of the adb server to ask.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def devices(adb_port: int, as_json: bool) -> None:
    """List the devices edgepilot can reach: running virtual phones and adb devices."""
    from edgepilot.devices import list_devices

    rows = list_devices(adb_port)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no devices. Plug in a phone with USB debugging on, or run `edgepilot sim serve`.\n"
                   "The built-in virtual phone is always available as --device virtual.")
        return
    for r in rows:
        click.echo(f"{_line(r['serial'], 80):24} {_line(r['state'], 30):10} {r['kind']:14} {_line(r['address'], 80)}")


# ---------------------------------------------------------------- the other groups

from edgepilot.cli.bench import bench  # noqa: E402
from edgepilot.cli.daemon import daemon  # noqa: E402
from edgepilot.cli.distill import distill  # noqa: E402
from edgepilot.cli.mcp import mcp  # noqa: E402
from edgepilot.cli.memory import explore, memory  # noqa: E402
from edgepilot.cli.policy import audit, policy  # noqa: E402
from edgepilot.cli.record import record  # noqa: E402
from edgepilot.cli.setup import setup  # noqa: E402
from edgepilot.cli.sim import sim  # noqa: E402
from edgepilot.cli.sop import sop  # noqa: E402
from edgepilot.cli.tasks import tasks  # noqa: E402
from edgepilot.cli.tui import tui  # noqa: E402

for _group in (setup, sim, tasks, bench, policy, audit, sop, explore, memory, record, tui, daemon, distill, mcp):
    main.add_command(_group)
