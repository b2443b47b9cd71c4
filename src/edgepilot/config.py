"""User configuration: one TOML file, every key checked.

The file is ``$EDGEPILOT_CONFIG`` or ``config.toml`` in the platform's user
config directory (``~/.config/edgepilot/`` on Linux). A missing file means
the defaults; an unknown key or a wrong type is an error that names the key,
the file, and the closest known key.

    model = "smollm2-135m-agent"    # default model: a built-in name, a name below, a GGUF path or a URL
    threads = 4                     # CPU threads for llama.cpp (default: all cores, at most 8)
    gpu_layers = -1                 # layers to offload to the GPU (-1: all; needs a CUDA build)
    max_steps = 20                  # step budget of `edgepilot run`
    calls = "needed"                # model calls: only where the runtime cannot tell ("needed"), or "every" step
    screen_budget = 900             # tokens the screen may take in a prompt; what the task names is kept first
    server_schema_format = "json_object"   # for servers that refuse OpenAI's json_schema (llama-cpp-python's)
    policy = "~/my-policy.yaml"     # policy file (default: policy.yaml beside this file, else the bundled one)
    audit = "~/edgepilot-audit.jsonl"   # audit log (default: audit.jsonl in the user data directory)
    confirm_timeout = 60            # seconds to answer a confirmation; no answer is a refusal
    recheck_screen = true           # look at the screen again just before a tap (overlay guard)

    [models]                        # your own models, by name
    qwen = "~/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"
    server = "http://127.0.0.1:8080/v1"

    [daemon]                        # `edgepilot daemon` (docs/daemon.md)
    hotkey = "<ctrl>+<alt>+<space>"     # opens the task prompt on this desktop
    stop_hotkey = "<ctrl>+<alt>+<esc>"  # safety stop: ends the running task at once, drops the queue
    hotkeys = true                  # false: no global hotkeys (the control socket still works)
    device = "desktop"              # device of tasks typed at the prompt or sent without --device (default:
                                    # this desktop where there is a display, else the virtual phone)
    model = "smollm2-135m-agent"    # model the daemon keeps loaded (default: `model` above)
    notify = true                   # desktop notifications for confirmations and results (notify-send)
    windows = true                  # small windows on this desktop: the task prompt, questions, results (tkinter)
    announce = "hotkey"             # which runs' results are shown on the desktop: hotkey (typed at the prompt),
                                    # all, off
    announce_seconds = 10           # how long a result stays on the screen
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgepilot import paths
from edgepilot.errors import ConfigError

_HOTKEY_PART = re.compile(r"<[a-z][a-z0-9_]*>|[^<>+\s]")


def check_hotkey(text: str) -> str:
    """A pynput hotkey: keys joined by ``+``, special keys in angle brackets (``<ctrl>+<alt>+<space>``).

    Raises:
        ValueError: the text is not of that form (the message shows the form).
    """
    parts = text.strip().lower().split("+")
    if not text.strip() or not all(_HOTKEY_PART.fullmatch(p) for p in parts):
        raise ValueError(f"{text!r} is not a hotkey; write keys joined by '+', special keys in angle brackets, "
                         "e.g. '<ctrl>+<alt>+<space>' or '<ctrl>+<shift>+k'")
    return text.strip().lower()


class DaemonConfig(BaseModel):
    """The ``[daemon]`` table: hotkeys, the default device and model of the background daemon."""

    model_config = ConfigDict(extra="forbid")

    hotkey: str = "<ctrl>+<alt>+<space>"
    stop_hotkey: str = "<ctrl>+<alt>+<esc>"
    hotkeys: bool = True
    device: str | None = None
    """None: this desktop where a display is set, else the virtual phone (:func:`edgepilot.devices.default_device`)."""
    model: str | None = None
    notify: bool = True
    windows: bool = True
    announce: Literal["hotkey", "all", "off"] = "hotkey"
    announce_seconds: float = Field(default=10.0, ge=1, le=600)

    @field_validator("hotkey", "stop_hotkey")
    @classmethod
    def _hotkey(cls, value: str) -> str:
        return check_hotkey(value)


class Config(BaseModel):
    """Everything a user can set in config.toml."""

    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m-agent"
    models: dict[str, str] = Field(default_factory=dict)
    threads: int | None = Field(default=None, ge=1, le=256)
    gpu_layers: int = Field(default=0, ge=-1)
    context: int = Field(default=4096, ge=512, le=131072)
    max_steps: int = Field(default=20, ge=1, le=500)
    calls: Literal["needed", "every"] = "needed"
    screen_budget: int = Field(default=900, ge=150, le=8000)
    """Tokens the screen's element list may take in a role's prompt (``perception.render.render_screen``)."""
    trajectories: Path | None = None
    server_schema_format: Literal["json_schema", "json_object"] = "json_schema"
    policy: Path | None = None
    audit: Path | None = None
    confirm_timeout: float = Field(default=60.0, gt=0, le=3600)
    recheck_screen: bool = True
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)


def load_config(path: Path | None = None) -> Config:
    """Read the config file (defaults when there is none).

    Raises:
        ConfigError: the file is not TOML, has an unknown key, or a value of the wrong type.
    """
    path = Path(path) if path else paths.config_file()
    if not path.is_file():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"{path} is not valid TOML: it nests too deep") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                fields = list(DaemonConfig.model_fields if err["loc"][0] == "daemon" and len(err["loc"]) == 2
                              else Config.model_fields)
                close = difflib.get_close_matches(str(err["loc"][-1]), fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(fields)})"
                problems.append(f"unknown key {key!r}{hint}")
            else:
                problems.append(f"{key}: {err['msg']}")
        raise ConfigError(f"{path}: " + "; ".join(problems)) from exc
