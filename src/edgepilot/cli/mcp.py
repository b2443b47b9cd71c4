"""``edgepilot mcp``: edgepilot's tools for MCP clients (:mod:`edgepilot.mcp`), on stdio or HTTP."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import click


@click.command("mcp")
@click.option("--http", "port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve streamable HTTP on 127.0.0.1:PORT (0: any free port) instead of stdio.")
@click.option("--token", envvar="EDGEPILOT_MCP_TOKEN", default=None,
              help="Bearer token HTTP clients must send (default: $EDGEPILOT_MCP_TOKEN, else the one kept in "
                   "mcp.token, created on first use).")
@click.option("--model", default=None, help="Model run_task uses when the client names none: built-in name, name "
                                             "from config.toml, .gguf path or server URL (default: config).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Policy file every action is checked against (default: `edgepilot policy show`).")
@click.option("--adb-port", default=5037, show_default=True, help="Port of the adb server asked for serials.")
def mcp(port: int | None, token: str | None, model: str | None, policy_file: Path | None, adb_port: int) -> None:
    """Serve edgepilot to MCP clients (Claude Desktop, VS Code, Cursor): on stdio, or on HTTP with --http.

    \b
    Tools: list_devices, observe, act, run_task, read_trajectory.
    Every act (and every step of run_task) passes the least-privilege
    policy, scoped to the goal the client states; sensitive steps are put
    to the user as questions (MCP elicitation). A client that cannot ask
    gets them refused. Devices opened stay open until the server ends;
    the virtual phone starts on first use. Setup: docs/mcp.md.

    \b
    Example (Claude Desktop, claude_desktop_config.json):
      {"mcpServers": {"edgepilot": {"command": "edgepilot", "args": ["mcp"]}}}
    """
    from edgepilot.agent.session import load_run_policy
    from edgepilot.config import load_config
    from edgepilot.mcp.devices import DeviceHub
    from edgepilot.mcp.server import build_server, serve_stdio
    from edgepilot.mcp.tools import Toolbox
    from edgepilot.models.registry import resolve

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="edgepilot mcp: %(message)s")
    config = load_config()
    policy = load_run_policy(config, policy_file)  # a broken policy stops the server here: fail closed
    resolve(model, config)  # an unknown model is said now; it is loaded when a run first needs it
    toolbox = Toolbox(config, policy, devices=DeviceHub(adb_port=adb_port), model=model)
    server = build_server(toolbox)
    signal.signal(signal.SIGTERM, _interrupt)  # uvicorn, too, hands a SIGTERM on to this handler when it has stopped
    try:
        if port is None:
            click.echo(f"edgepilot mcp: serving on stdio; policy {policy.source}", err=True)
            serve_stdio(server)
        else:
            _serve_http(server, port, token)
    except KeyboardInterrupt:
        pass
    finally:
        toolbox.close()


def _serve_http(server, port: int, token: str | None) -> None:
    from edgepilot.mcp.http import bind, ensure_token, serve_http, token_path

    shown = "the one given"
    if not token:
        token = ensure_token(token_path())
        shown = f"{token} (kept in {token_path()})"
    sock = bind(port)
    click.echo(f"edgepilot mcp: http://127.0.0.1:{sock.getsockname()[1]}/mcp\n"
               f"token: {shown}; clients send the header  Authorization: Bearer TOKEN")
    sys.stdout.flush()
    serve_http(server, sock, token)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends the server as Ctrl-C does, so the devices are closed (the virtual phone stops)."""
    raise KeyboardInterrupt
