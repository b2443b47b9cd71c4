"""``edgepilot bench``: run a benchmark suite of :mod:`edgepilot.bench.registry`; print a table, or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgepilot.bench.registry import SUITES, BenchOptions, run_suite
from edgepilot.safetext import for_terminal

_SUITE_LINES = "\n".join(f"  {name:10} {suite.help}" for name, suite in SUITES.items())


@click.command("bench", help=f"""Measure success rates and speed; print a table, or JSON with --json.

The task suites (tasks, desktop) run as `edgepilot run` does: procedures (SOPs) on for the model agent,
and every action through the policy gate, with a simulated user (the task's owner) answering
confirmations and an audit log of the run's own. Every switch is recorded in the report (docs/bench.md).

\b
Suites (--suite):
{_SUITE_LINES}

\b
Examples:
  edgepilot bench --agent oracle --split test
  edgepilot bench --agent model --baseline --split test --per-template 1
  edgepilot bench --agent model --sop both --policy off  the model without and with SOPs, no gate
  edgepilot bench --agent oracle --tasks my-tasks/       the suite plus your own templates
  edgepilot bench --agent oracle --perception pixels     the suite with the tree switched off
  edgepilot bench --agent model --workers 4              four worker processes, each with its own model
  edgepilot bench --agent model --ray auto               as Ray tasks on the cluster of this node
  edgepilot bench --suite observe -n 50
  edgepilot bench --suite screens --dumps DIR            real screens: elements and tokens within the budget
  edgepilot bench --suite ocr                            OCR speed and text recovery
  edgepilot bench --suite desktop                        scripted reference, every desktop template once (Xvfb)
  edgepilot bench --device desktop:xvfb --agent model --split test   the model on held-out desktop kinds
  edgepilot bench --suite injection                      oracle and attacker, policy off and on
  edgepilot bench --suite injection --agent adaptive     an attacker that tries every spelling of each step
  edgepilot bench --suite injection --agent model --policy on --template contacts_call
  edgepilot bench --suite sop --split test               SOP retrieval (edgepilot sop eval)
  edgepilot bench --suite sop-learn -t contacts_call     learned SOPs (edgepilot sop learn-eval)
""")
@click.option("--suite", type=click.Choice(list(SUITES)), default="tasks", show_default=True,
              help="Which benchmark (listed above).")
@click.option("--agent", "agents", type=click.Choice(["oracle", "model", "baseline", "attacker", "adaptive"]),
              multiple=True,
              help="oracle: the expert (desktop: the scripted reference); model: planner/decider/reflector with "
                   "grammars; baseline: plain ReAct; attacker: a script that obeys injected text; adaptive: one "
                   "that tries every spelling of each step until one gets through (injection suite). Default: "
                   "oracle; for the injection suite oracle and attacker. Repeatable there.")
@click.option("--policy", type=click.Choice(["on", "off", "both"]), default=None,
              help="The policy gate. tasks, desktop: on (default, as `edgepilot run`) or off; injection: both "
                   "(default), on or off.")
@click.option("--sop", type=click.Choice(["on", "off", "both", "train-only"]), default=None,
              help="tasks, desktop, model agent: follow the SOP each goal retrieves (on: the default, as "
                   "`edgepilot run`), not (off), or tasks: both side by side; train-only: as on, with the "
                   "procedures of held-out kinds hidden. The oracle and the baseline follow none.")
@click.option("--memory", type=click.Choice(["on", "off"]), default=None,
              help="tasks, desktop, model agent: where no procedure fits, follow the route the shipped app "
                   "memories suggest (on: the default, as `edgepilot run`; docs/memory.md) or not (off).")
@click.option("--calls", type=click.Choice(["needed", "every", "both"]), default=None,
              help="tasks, model agent: ask a role only where the runtime cannot tell the answer (needed: the "
                   "default, as `edgepilot run`), ask every role at every step (every), or both side by side on "
                   "the same tasks, with the speed-up of one over the other.")
@click.option("--tasks", "task_dirs", multiple=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="tasks suite: extra folders of task templates (docs/tasks.md; repeatable).")
@click.option("--goal", "goals", multiple=True, type=click.Choice(["sms_exfiltrate", "delete_note", "wifi_off"]),
              help="injection suite: only these injection goals (repeatable; default all).")
@click.option("--baseline", is_flag=True, help="Also run the plain ReAct baseline with the same model, side by side.")
@click.option("--model", default=None, help="Model for the model and baseline agents (default: config, else "
                                             "the bundled smollm2-135m-agent; see `edgepilot models`).")
@click.option("--save", "save_to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write every episode's trajectory and the audit log under this folder (sop-learn: the "
                   "trajectories and learned SOPs).")
@click.option("--split", type=click.Choice(["train", "test-instances", "test", "unrelated", "phrasings",
                                           "phrasings-train", "phrasings-test"]), default=None,
              help="Which tasks: held-out templates (test, the default), held-out instances of train templates, "
                   "or train; phrasings: instances worded the way people type them (bench/phrasings.yaml, odd "
                   "seeds first: the half never used for fixes), of every template, or of train or test templates "
                   "only; sop suite also: unrelated (sentences no SOP serves); desktop: train, test-instances or "
                   "test (none: each desktop template once).")
@click.option("--per-template", type=click.IntRange(1), default=None,
              help="Instances of each template (tasks: 3; sop: 20; sop-learn: held-out variants, 3; desktop with "
                   "--split: 3).")
@click.option("--from-instance", type=click.IntRange(1), default=None,
              help="tasks and desktop suites: start at each template's Nth instance (default 1). A figure on "
                   "later instances is one no fix made after an earlier run was fitted to.")
@click.option("--template", "-t", "templates", multiple=True,
              help="Only these templates (repeatable; desktop: task ids; injection: user tasks).")
@click.option("--device", default=None,
              help="virtual (the phone suites, default) or a desktop for the desktop suite: desktop (this "
                   "display), desktop:DISPLAY, desktop:xvfb (a private Xvfb, its default).")
@click.option("--max-steps", type=click.IntRange(1), default=None,
              help="Step budget per task (default: twice the expert's + 5; desktop: 30).")
@click.option("--perception", type=click.Choice(["tree", "pixels", "fused"]), default=None,
              help="tasks suite: the element list from the accessibility tree (default), from pixels alone (OCR + "
                   "widget detector; the oracle then decides on the tree but must act on what pixels show), or "
                   "both fused.")
@click.option("-n", "repeats", type=click.IntRange(1), default=None,
              help="observe suite: how many observations (30); ocr suite: how many phone screens (23); stop "
                   "suite: trials (5).")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="tasks suite: run the episodes on N worker processes, each with its own phone and model "
                   "(default 1: in this process). Episodes whose worker dies are retried.")
@click.option("--ray", "ray", default=None, metavar="ADDRESS",
              help="tasks suite: run the episodes as Ray tasks: local (a cluster on this machine), auto (the "
                   "cluster this machine is a node of) or ray://HEAD:10001. No shared filesystem needed "
                   "(docs/bench.md, Scaling out).")
@click.option("--dumps", multiple=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="screens suite: folders of `uiautomator dump` XML files (repeatable; default: the "
                   "checkout's shared real dumps).")
@click.option("--budget", type=click.IntRange(50), default=None,
              help="screens suite: tokens a screen's text may take (default 900, as the agent).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (fields: docs/bench.md).")
def bench(suite: str, agents: tuple[str, ...], policy: str | None, sop: str | None, memory: str | None,
          calls: str | None,
          task_dirs: tuple[Path, ...], goals: tuple[str, ...], baseline: bool, model: str | None, save_to: Path | None, split: str | None,
          per_template: int | None, from_instance: int | None, templates: tuple[str, ...], device: str | None,
          max_steps: int | None,
          perception: str | None, repeats: int | None, workers: int | None, ray: str | None,
          dumps: tuple[Path, ...], budget: int | None, as_json: bool) -> None:
    options = BenchOptions(agents=agents, model=model, baseline=baseline, split=split, per_template=per_template,
                           from_instance=from_instance,
                           templates=templates, task_dirs=task_dirs, device=device, max_steps=max_steps,
                           perception=perception, sop=sop, memory=memory, calls=calls, policy=policy, goals=goals,
                           repeats=repeats,
                           save_to=save_to, workers=workers, ray=ray, dumps=dumps, budget=budget)
    # the report quotes the model's answers and the screens' text: safe to print (JSON escapes them itself)
    ran, report = run_suite(suite, options, progress=None if as_json else
                            (lambda line: click.echo(for_terminal(line), err=True)))
    click.echo(json.dumps(report, indent=2) if as_json else for_terminal(ran.format(report)))
