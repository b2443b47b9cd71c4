"""OpenAICompatBackend against real sockets: a scripted stdlib HTTP server, and (slow) llama-cpp-python's server."""

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgepilot.errors import ModelError
from edgepilot.models.base import Message, ModelBackend

httpx = pytest.importorskip("httpx", reason="pip install 'edgepilot[llm]' installs httpx")

from edgepilot.models.openai_compat import OpenAICompatBackend  # noqa: E402


def chat(text="hi", usage=True):
    body = {"id": "x", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    if usage:
        body["usage"] = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    return body


class Scripted(ThreadingHTTPServer):
    """Answers each path from a script of (status, body, delay); the last entry repeats. Records every request."""

    daemon_threads = True
    block_on_close = False

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: dict[str, list[tuple[int, object, float]]] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def answer(self, path, *replies):
        """Script the replies to ``path``: each is a body (200), or (status, body) or (status, body, delay)."""
        self.script[path] = [r if isinstance(r, tuple) and len(r) == 3 else
                             (*r, 0.0) if isinstance(r, tuple) else (200, r, 0.0) for r in replies]

    def posts(self, path="/v1/chat/completions"):
        return [r for r in self.requests if r["path"] == path]

    def handle_error(self, request, client_address):
        pass  # a client that timed out and hung up is expected here


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self):
        server: Scripted = self.server
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with server.lock:
            server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                    "json": json.loads(raw) if raw else None})
            queue = server.script.get(self.path) or [(404, {"error": "not found"}, 0.0)]
            status, body, delay = queue.pop(0) if len(queue) > 1 else queue[0]
        if delay:
            time.sleep(delay)
        data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = reply


@pytest.fixture
def server():
    srv = Scripted()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def backend(server, sleeps, monkeypatch):
    monkeypatch.delenv("EDGEPILOT_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAICompatBackend(server.url, model="m", timeout=5, sleep=sleeps.append) as b:
        yield b


USER = [Message(role="system", content="be brief"), Message(role="user", content="hello")]


def test_plain_completion_and_usage(server, backend):
    server.answer("/v1/chat/completions", chat("hi there"))
    out = backend.complete(USER, max_tokens=17, temperature=0.3)
    assert isinstance(backend, ModelBackend) and backend.name == "m"
    assert out.text == "hi there" and (out.tokens_in, out.tokens_out) == (12, 3)
    assert out.ms > 0 and not out.constrained
    (req,) = server.posts()
    assert req["method"] == "POST"
    assert req["json"] == {"model": "m", "max_tokens": 17, "temperature": 0.3,
                           "messages": [{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "hello"}]}
    assert "authorization" not in {k.lower() for k in req["headers"]}


def test_missing_usage_counts_zero(server, backend):
    server.answer("/v1/chat/completions", chat("ok", usage=False))
    out = backend.complete(USER)
    assert (out.text, out.tokens_in, out.tokens_out) == ("ok", 0, 0)


def test_schema_is_sent_as_response_format(server, backend):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    server.answer("/v1/chat/completions", chat('{"n": 3}'))
    out = backend.complete(USER, schema=schema)
    assert out.constrained and json.loads(out.text) == {"n": 3}
    assert server.posts()[0]["json"]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


def test_schema_as_json_object_for_llama_cpp_python(server, sleeps):
    schema = {"type": "object"}
    server.answer("/v1/chat/completions", chat("{}"))
    with OpenAICompatBackend(server.url, model="m", schema_format="json_object") as b:
        b.complete(USER, schema=schema)
    assert server.posts()[0]["json"]["response_format"] == {"type": "json_object", "schema": schema}
    with pytest.raises(ModelError, match="schema_format"):
        OpenAICompatBackend(server.url, schema_format="grammar")


def test_images_become_data_urls(server, backend):
    png = b"\x89PNG\r\n\x1a\nfake"
    server.answer("/v1/chat/completions", chat())
    backend.complete([Message(role="user", content="what is on screen?", images=(png, png[:4]))])
    (message,) = server.posts()[0]["json"]["messages"]
    assert message["content"] == [
        {"type": "text", "text": "what is on screen?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png[:4]).decode()}},
    ]


def test_model_is_discovered_once_from_models(server, monkeypatch):
    server.answer("/v1/models", {"object": "list", "data": [{"id": "qwen2.5-0.5b"}, {"id": "other"}]})
    server.answer("/v1/chat/completions", chat())
    # base URL without /v1 and with a trailing slash: /v1 is added
    with OpenAICompatBackend(server.url.removesuffix("/v1") + "/") as b:
        assert b.name == f"127.0.0.1:{server.server_address[1]}"
        assert not server.requests  # lazily: nothing asked before the first completion
        b.complete(USER)
        b.complete(USER)
    assert [r["path"] for r in server.requests] == ["/v1/models", "/v1/chat/completions", "/v1/chat/completions"]
    assert {r["json"]["model"] for r in server.posts()} == {"qwen2.5-0.5b"}


def test_model_defaults_when_discovery_fails(server):
    server.answer("/v1/chat/completions", chat())  # /v1/models answers 404
    with OpenAICompatBackend(server.url) as b:
        b.complete(USER)
        b.complete(USER)
    assert len(server.posts("/v1/models")) == 1
    assert {r["json"]["model"] for r in server.posts()} == {"default"}


def test_api_key_is_a_bearer_token(server, monkeypatch):
    server.answer("/v1/chat/completions", chat())
    monkeypatch.delenv("EDGEPILOT_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "from-openai-env")
    with OpenAICompatBackend(server.url, model="m") as b:
        b.complete(USER)
    monkeypatch.setenv("EDGEPILOT_API_KEY", "from-edgepilot-env")
    with OpenAICompatBackend(server.url, model="m") as b:
        b.complete(USER)
    with OpenAICompatBackend(server.url, model="m", api_key="given") as b:
        b.complete(USER)
    assert [r["headers"]["Authorization"] for r in server.posts()] == [
        "Bearer from-openai-env", "Bearer from-edgepilot-env", "Bearer given"]


def test_500_then_200_is_retried(server, backend, sleeps):
    server.answer("/v1/chat/completions", (500, "boom"), (429, "slow down"), chat("recovered"))
    assert backend.complete(USER).text == "recovered"
    assert len(server.posts()) == 3 and sleeps == [0.5, 1.0]


def test_503_forever_fails_after_the_retries(server, backend, sleeps):
    server.answer("/v1/chat/completions", (503, {"error": "loading model"}))
    with pytest.raises(ModelError) as err:
        backend.complete(USER)
    message = str(err.value)
    assert f"{server.url}/chat/completions" in message and "3 tries" in message
    assert "HTTP 503" in message and "loading model" in message and "log" in message
    assert len(server.posts()) == 3 and sleeps == [0.5, 1.0]


def test_400_is_not_retried(server, backend, sleeps):
    server.answer("/v1/chat/completions", (400, {"error": {"message": "unknown field response_format"}}))
    with pytest.raises(ModelError, match=r"HTTP 400.*unknown field response_format.*json_object"):
        backend.complete(USER, schema={"type": "object"})
    assert len(server.posts()) == 1 and sleeps == []


def test_a_5xx_about_response_format_points_to_schema_format(server, backend, sleeps):
    # what llama-cpp-python's server answers to {"type": "json_schema", ...}
    server.answer("/v1/chat/completions", (500, {"error": {"message": "('body', 'response_format', 'type'): "
                                                           "Input should be 'text' or 'json_object'"}}))
    with pytest.raises(ModelError, match=r"HTTP 500.*schema_format='json_object'"):
        backend.complete(USER, schema={"type": "object"})


def test_401_says_to_check_the_key(server, backend):
    server.answer("/v1/chat/completions", (401, "no key"))
    with pytest.raises(ModelError, match="EDGEPILOT_API_KEY"):
        backend.complete(USER)


@pytest.mark.parametrize("body", ["<html>" + "garbage " * 100 + "</html>", {"object": "list", "data": []},
                                  {"choices": [{"message": {"content": None}}]}, {"choices": []}, "[1, 2]"])
def test_a_reply_that_is_no_chat_completion_is_a_model_error(server, backend, body):
    server.answer("/v1/chat/completions", body)
    with pytest.raises(ModelError, match="not a chat completion") as err:
        backend.complete(USER)
    assert len(str(err.value)) < 450  # at most ~200 characters of the body are quoted
    if isinstance(body, str):
        assert body[:50] in str(err.value)


def test_connection_refused_is_a_helpful_model_error(sleeps):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with OpenAICompatBackend(f"http://127.0.0.1:{port}/v1", model="m", sleep=sleeps.append) as b:
        with pytest.raises(ModelError) as err:
            b.complete(USER)
    message = str(err.value)
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in message
    assert "cannot connect" in message and "is the server running" in message and "--model" in message
    assert sleeps == [0.5, 1.0]


def test_timeout_is_a_model_error(server, sleeps):
    server.answer("/v1/chat/completions", (200, chat(), 1.0))
    start = time.perf_counter()
    with OpenAICompatBackend(server.url, model="m", timeout=0.1, retries=1, sleep=sleeps.append) as b:
        with pytest.raises(ModelError, match=r"no answer within 0.1 s.*raise the timeout"):
            b.complete(USER)
    assert time.perf_counter() - start < 1.0
    assert len(server.posts()) == 2 and sleeps == [0.5]


def test_bad_urls_are_model_errors():
    for url in ("localhost:8080", "ftp://host/v1", "http://"):
        with pytest.raises(ModelError, match="http"):
            OpenAICompatBackend(url)


def test_close_leaves_a_given_client_open(server):
    server.answer("/v1/chat/completions", chat("shared"))
    client = httpx.Client()
    with OpenAICompatBackend(server.url, model="m", client=client) as b:
        assert b.complete(USER).text == "shared"
    assert not client.is_closed
    client.close()
    own = OpenAICompatBackend(server.url, model="m")
    own.close()
    assert own._client.is_closed


def test_missing_httpx_is_a_model_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ModelError, match=r"pip install httpx.*edgepilot\[llm\]"):
        OpenAICompatBackend("http://127.0.0.1:1/v1")


@pytest.mark.slow
def test_llama_cpp_python_server_answers_a_constrained_completion(tmp_path):
    pytest.importorskip("llama_cpp.server.app", reason="pip install 'llama-cpp-python[server]' (fastapi, uvicorn, "
                                                       "sse-starlette, starlette-context, pydantic-settings)")
    from edgepilot.models.builtin import builtin_path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "server.log"  # a file, not a pipe: llama.cpp's chatter would fill a pipe and stall the server
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(builtin_path()), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--n_threads", str(min(8, os.cpu_count() or 2))],
            stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"llama_cpp.server did not come up: {log.read_text()[-2000:]}"
            time.sleep(0.2)
        schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
                                                   "count": {"type": "integer"}},
                  "required": ["answer", "count"]}
        messages = [Message(role="system", content="Answer with JSON."),
                    Message(role="user", content="Is the sky blue? How many words are in this question?")]
        with OpenAICompatBackend(f"http://127.0.0.1:{port}", schema_format="json_object", timeout=60) as b:
            out = b.complete(messages, schema=schema, max_tokens=40)
            assert b.model and b.model != "default"  # discovered from /v1/models
        # the OpenAI form of the schema: refused by llama-cpp-python's server, with an error that says what to do
        with OpenAICompatBackend(f"http://127.0.0.1:{port}/v1", retries=0, timeout=60) as b:
            try:
                json.loads(b.complete(messages, schema=schema, max_tokens=40).text)  # a later version may take it
            except ModelError as exc:
                assert "schema_format='json_object'" in str(exc)
        value = json.loads(out.text)
        assert value["answer"] in ("yes", "no") and isinstance(value["count"], int)
        assert out.constrained and out.tokens_in > 10 and 0 < out.tokens_out <= 40
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_vision_backend_gets_the_numbered_screenshot_downscaled_with_each_decision(server, served):
    """The VLM plumbing end to end: the virtual phone's screenshot, marked and downscaled, reaches the server."""
    import io

    from PIL import Image

    from edgepilot.agent.agents import RoleAgent
    from edgepilot.agent.loop import run_agent

    _, _, device = served
    settings = device.observe().find(text="Settings")[0]
    server.answer("/v1/chat/completions", chat(json.dumps({"type": "tap", "target": settings})),
                  chat('{"outcome": "worked", "note": "opened"}'))
    with OpenAICompatBackend(server.url, model="vlm", timeout=5, vision=768) as vlm:
        result = run_agent(device, RoleAgent("open settings", vlm), "open settings", max_steps=1)
    assert result.steps[0].action.target == settings
    decider = server.posts()[0]["json"]["messages"][-1]["content"]
    assert [p["type"] for p in decider] == ["text", "image_url"]
    url = decider[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert max(image.size) == 768 and image.size[0] < image.size[1]  # 1080x2400, downscaled
    assert result.steps[0].decision.calls[0].messages[-1]["images"] == 1  # the trajectory counts images, not bytes
    reflector = server.posts()[1]["json"]["messages"]
    assert all(isinstance(m["content"], str) for m in reflector)  # only the decision carries the screenshot


def test_a_text_backend_gets_no_screenshot(server, served, backend):
    from edgepilot.agent.agents import RoleAgent
    from edgepilot.agent.loop import run_agent

    server.answer("/v1/chat/completions", chat('{"type": "swipe", "direction": "up"}'))
    run_agent(served[2], RoleAgent("scroll", backend), "scroll", max_steps=1)
    assert isinstance(server.posts()[0]["json"]["messages"][-1]["content"], str)
