"""The CLI's one way of showing edgepilot's own errors: one clear line and exit code 1, not a traceback.

A module missing because an extra is not installed (``adbutils`` without ``edgepilot[phone]``) is shown the same
way, naming the extra (:mod:`edgepilot.extras`); any other missing module keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from edgepilot.errors import EdgepilotError
from edgepilot.extras import missing_extra_message
from edgepilot.safetext import for_terminal


class ErrorsAsLines(click.Group):
    """A click group whose commands' :class:`EdgepilotError` become ``error: ...`` and exit code 1
    (also for a group run on its own, as ``python -m edgepilot.daemon`` does), and whose missing extras become
    ``error: this needs the "phone" extra: pip install "edgepilot[phone]"``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgepilotError as exc:
            _fail(for_terminal(exc))  # it may quote a task or a file
        except ModuleNotFoundError as exc:
            line = missing_extra_message(exc)
            if line is None:
                raise
            _fail(line)


def _fail(line: str) -> NoReturn:
    click.secho(f"error: {line}", fg="red", err=True)
    sys.exit(1)
