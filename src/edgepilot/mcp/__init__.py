"""edgepilot as an MCP server: any MCP client (Claude Desktop, VS Code, Cursor) sees the phone and acts on it.

    devices.py   the devices the server opened: kept open for the session, one call at a time each, closed at the end
    consent.py   the policy's questions as elicitations: the client of the call in progress answers them
    tools.py     what the tools do, in plain Python: list, observe, act through the policy gate, run a task, replay
    server.py    the ``MCPServer`` with the five tools, and serving it on stdio
    http.py      streamable HTTP on 127.0.0.1, refused without the bearer token

Every action passes the same policy gate ``edgepilot run`` uses (``edgepilot.policy.gate_for``), its scope
derived from the goal the client states; docs/mcp.md. The MCP SDK is imported by ``consent``, ``server`` and
``http`` alone, so ``devices`` and ``tools`` work without it.
"""
