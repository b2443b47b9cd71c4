"""The CLI's one way of showing edgepilot's own errors: one clear line and exit code 1, not a traceback."""

from __future__ import annotations

import sys
from typing import Any

import click

from edgepilot.errors import EdgepilotError
from edgepilot.safetext import for_terminal


class ErrorsAsLines(click.Group):
    """A click group whose commands' :class:`EdgepilotError` become ``error: ...`` and exit code 1
    (also for a group run on its own, as ``python -m edgepilot.daemon`` does)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgepilotError as exc:
            click.secho(f"error: {for_terminal(exc)}", fg="red", err=True)  # it may quote a task or a file
            sys.exit(1)
