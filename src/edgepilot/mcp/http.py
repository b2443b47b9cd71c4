"""Streamable HTTP on 127.0.0.1, behind a bearer token.

Every HTTP request must carry ``Authorization: Bearer TOKEN``; any other gets 401 before the MCP layer sees it.
Without ``--token`` the server uses the token kept in ``mcp.token`` (beside the daemon's token: ``$EDGEPILOT_HOME``,
else the user config folder), created with 32 random bytes and mode 0600 the first time. The SDK's own checks of
the ``Host`` and ``Origin`` headers (against DNS rebinding) stay on.
"""

from __future__ import annotations

import hmac
import json
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from edgepilot import paths
from edgepilot.errors import ConfigError

HOST = "127.0.0.1"
TOKEN_NAME = "mcp.token"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def token_path() -> Path:
    """Where the generated token is kept."""
    return paths.secrets_dir() / TOKEN_NAME


def ensure_token(path: Path) -> str:
    """The token in ``path``, created (32 random bytes, hex, mode 0600) when there is none, or when the file is
    readable by others.

    Raises:
        ConfigError: the file cannot be written.
    """
    return paths.private_token(path, "the MCP token", "; pass one with --token")


class BearerToken:
    """ASGI middleware: HTTP requests without ``Authorization: Bearer <token>`` get 401 (compared in constant
    time); the lifespan passes through."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = next((v for k, v in scope.get("headers", []) if k.lower() == b"authorization"), b"")
            if not hmac.compare_digest(given, self._expected):
                await _unauthorized(send)
                return
        await self.app(scope, receive, send)


async def _unauthorized(send: Send) -> None:
    body = json.dumps({"error": "unauthorized", "error_description": "send Authorization: Bearer TOKEN (the token "
                                                                    "`edgepilot mcp --http` printed)"}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b'Bearer realm="edgepilot"')]})
    await send({"type": "http.response.body", "body": body})


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` (0: any free port).

    Raises:
        ConfigError: the port is taken or not ours to bind.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {HOST}:{port}: {exc}; pick another port") from exc
    sock.listen(64)
    return sock


def serve_http(server: Any, sock: socket.socket, token: str) -> None:
    """Serve ``server`` (an ``MCPServer``) at ``http://127.0.0.1:PORT/mcp`` on ``sock`` until SIGINT or SIGTERM."""
    import uvicorn

    app = BearerToken(server.streamable_http_app(host=HOST), token)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
