"""Scripted models for tests about the agent loop and the front ends (never evidence that the agent works)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from edgepilot.models.base import Completion


class ScriptedBackend:
    """Answers each role from its own queue; records every prompt it was sent."""

    name = "scripted"
    vision = 0

    def __init__(self, **answers: list[str]) -> None:
        self.answers = {role: list(a) for role, a in answers.items()}
        self.prompts: list[tuple[str, list]] = []
        self.schemas: list[tuple[str, dict | None]] = []
        self.stop_checks: list = []  # the stop check each call was given

    def complete(self, messages, *, schema=None, max_tokens=256, temperature=0.0, should_stop=None):
        self.stop_checks.append(should_stop)
        last = messages[-1].content
        role = next(r for r in ("planner", "decider", "reflector") if f"You are the {r}" in last) \
            if "You are the" in last else "react"
        self.prompts.append((role, messages))
        self.schemas.append((role, schema))
        queue = self.answers.get(role) or ['{"progress": "", "subgoal": "", "memory": ""}']
        text = queue.pop(0) if len(queue) > 1 else queue[0]
        return Completion(text=text, tokens_in=len(last) // 4, tokens_out=len(text) // 4, ms=1.0,
                          constrained=schema is not None)


class FakeModel(ThreadingHTTPServer):
    """An OpenAI-compatible server answering each role of the agent from a script (the last answer repeats),
    ``delay`` seconds per answer: ``edgepilot run --model URL`` drives the virtual phone with no model loaded.
    These tests are about the command line, not the model."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, delay: float = 0.0, **answers: list[str]) -> None:
        super().__init__(("127.0.0.1", 0), _FakeModelHandler)
        self.delay = delay  # may be changed while a run goes
        self.answers = {role: list(texts) for role, texts in answers.items()}
        self.lock = threading.Lock()
        self.stalling = threading.Event()  # set when an answer of more than 5 s has begun
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1#fake"

    def answer(self, prompt: str) -> str:
        role = next((r for r in ("planner", "decider", "reflector") if f"You are the {r}" in prompt), "react")
        with self.lock:
            queue = self.answers.get(role) or ['{"progress": "", "subgoal": "", "memory": ""}']
            return queue.pop(0) if len(queue) > 1 else queue[0]


class _FakeModelHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        last = body["messages"][-1]["content"]
        text = self.server.answer(last if isinstance(last, str) else json.dumps(last))
        delay = self.server.delay
        if delay > 5:
            self.server.stalling.set()
        time.sleep(delay)
        data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass
