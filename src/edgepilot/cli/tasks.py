"""``edgepilot tasks``: list, show and check the task suite's templates."""

from __future__ import annotations

import sys

import click


@click.group()
def tasks() -> None:
    """The task suite (format: docs/tasks.md)."""


@tasks.command("list")
@click.option("--split", type=click.Choice(["train", "test", "all"]), default="all", show_default=True)
def tasks_list(split: str) -> None:
    """List task templates with their split, apps and sensitive steps."""
    from edgepilot.sim.tasks.suite import load_templates

    for t in load_templates().values():
        if split in ("all", t.split):
            sens = ",".join(t.sensitive) or "-"
            click.echo(f"{t.id:32} {t.split:6} {t.steps:3d} steps  {','.join(t.apps):24} sensitive: {sens}")


@tasks.command("show")
@click.argument("template_id")
@click.option("--seeds", default=3, show_default=True, help="How many instances to show.")
def tasks_show(template_id: str, seeds: int) -> None:
    """Show a template's instances (goal and parameters)."""
    from edgepilot.sim.tasks.suite import load_templates

    templates = load_templates()
    if template_id not in templates:
        raise click.BadParameter(f"no template {template_id!r}", param_hint="TEMPLATE_ID")
    for seed in range(seeds):
        inst = templates[template_id].instance(seed)
        click.echo(f"#{seed}: {inst.goal}   {inst.params}")


@tasks.command("check")
@click.option("--template", "templates", multiple=True, help="Only these templates (repeatable).")
@click.option("--seeds", default=3, show_default=True, help="Instances per template and split.")
@click.option("--adb", "over_adb", is_flag=True, help="Go through the adb endpoint instead of in-process.")
def tasks_check(templates: tuple[str, ...], seeds: int, over_adb: bool) -> None:
    """Run the oracle on every split's instances; any failure is a bug in a task or the phone."""
    from edgepilot.bench.tasks import check_tasks

    def failed(split, instance, result) -> None:
        click.echo(f"FAIL {instance.id} ({split}): {instance.goal}\n     "
                   f"{result.error or 'failed: ' + ', '.join(result.failed_checks)}")

    total, failures = check_tasks(templates, seeds, device="virtual" if over_adb else "virtual-local",
                                  on_failure=failed)
    click.echo(f"{total - failures}/{total} oracle episodes succeeded")
    if failures:
        sys.exit(1)
