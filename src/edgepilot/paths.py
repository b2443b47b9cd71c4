"""Every folder and file edgepilot keeps for the user, resolved in one place.

An environment variable wins; ``$EDGEPILOT_HOME`` puts a whole installation's state in one folder (tests, a
second profile); otherwise the platform's user folders (platformdirs: XDG on Linux).

    what                    variable                  else with $EDGEPILOT_HOME      else
    config file             $EDGEPILOT_CONFIG         -                              user config dir/config.toml
    trajectories            -                         $EDGEPILOT_HOME/trajectories   user data dir/trajectories
    audit log               $EDGEPILOT_AUDIT          $EDGEPILOT_HOME/audit.jsonl    user data dir/audit.jsonl
    user SOPs               $EDGEPILOT_SOPS           -                              user data dir/sops
    daemon token            -                         $EDGEPILOT_HOME                user config dir
    daemon pid and log      -                         $EDGEPILOT_HOME                user state dir
    daemon socket, sims     $EDGEPILOT_RUNTIME_DIR    -                              user runtime dir
    model cache             -                         -                              user cache dir
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path

from edgepilot.errors import ConfigError

APP = "edgepilot"


def _home() -> Path | None:
    home = os.environ.get("EDGEPILOT_HOME")
    return Path(home) if home else None


def config_file() -> Path:
    """The config file: ``$EDGEPILOT_CONFIG``, else ``config.toml`` in the user config folder."""
    from platformdirs import user_config_dir

    return Path(os.environ.get("EDGEPILOT_CONFIG") or Path(user_config_dir(APP)) / "config.toml")


def data_dir() -> Path:
    """``$EDGEPILOT_HOME``, else the user data folder: trajectories and the audit log live here."""
    from platformdirs import user_data_dir

    return _home() or Path(user_data_dir(APP))


def trajectories_dir() -> Path:
    """Where runs are written unless told otherwise."""
    return data_dir() / "trajectories"


def audit_file() -> Path:
    """The audit log: ``$EDGEPILOT_AUDIT``, else ``audit.jsonl`` in :func:`data_dir`."""
    return Path(os.environ.get("EDGEPILOT_AUDIT") or data_dir() / "audit.jsonl")


def user_sops_dir() -> Path:
    """The user's SOP folder: ``$EDGEPILOT_SOPS``, else ``sops`` in the user data folder."""
    from platformdirs import user_data_dir

    env = os.environ.get("EDGEPILOT_SOPS")
    return Path(env).expanduser() if env else Path(user_data_dir(APP)) / "sops"


def memory_dir() -> Path:
    """Where app memories from exploration are kept: ``$EDGEPILOT_MEMORY``, else ``memory`` in :func:`data_dir`."""
    env = os.environ.get("EDGEPILOT_MEMORY")
    return Path(env).expanduser() if env else data_dir() / "memory"


def secrets_dir() -> Path:
    """Where the daemon's token is kept: ``$EDGEPILOT_HOME``, else the user config folder."""
    from platformdirs import user_config_dir

    return _home() or Path(user_config_dir(APP))


def state_dir() -> Path:
    """Where the daemon's pid file and log are kept: ``$EDGEPILOT_HOME``, else the user state folder."""
    from platformdirs import user_state_dir

    return _home() or Path(user_state_dir(APP))


def runtime_dir() -> Path:
    """Sockets and announcements of running processes: ``$EDGEPILOT_RUNTIME_DIR``, else the user runtime folder."""
    runtime = os.environ.get("EDGEPILOT_RUNTIME_DIR")
    if runtime:
        return Path(runtime)
    from platformdirs import user_runtime_dir

    with warnings.catch_warnings():  # no XDG_RUNTIME_DIR: platformdirs falls back to /tmp/runtime-UID
        warnings.simplefilter("ignore")
        return Path(user_runtime_dir(APP))


def sims_dir() -> Path:
    """Where running ``edgepilot sim serve`` phones announce themselves."""
    return runtime_dir() / "sims"


def cache_dir() -> Path:
    """Things edgepilot can make again: assembled models, dequantized bases."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP))


def private_token(path: Path, what: str = "token", hint: str = "") -> str:
    """The secret in ``path``, created (32 random bytes, hex, mode 0600, in a 0700 folder) when there is none, or
    when the file is readable by others (then it is replaced). ``what`` names it in errors; ``hint`` says what to
    do instead.

    Raises:
        ConfigError: the file cannot be written.
    """
    try:
        if path.is_file() and not path.stat().st_mode & 0o077:
            token = path.read_text(encoding="ascii").strip()
            if len(token) >= 32:
                return token
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = secrets.token_hex(32)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(token + "\n")
        os.replace(tmp, path)
        return token
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot write {what} {path}: {exc}{hint}") from exc
