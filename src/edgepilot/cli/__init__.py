"""The command line: one click group per area; parsing and printing only.

``edgepilot`` (the console script) and ``python -m edgepilot`` both run :func:`main`.
"""

from edgepilot.cli.main import main

__all__ = ["main"]
