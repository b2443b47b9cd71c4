"""Any OpenAI-compatible chat server (llama.cpp ``llama-server``, vLLM, Ollama) over HTTP.

The backend POSTs to ``<base>/chat/completions``. The base is ``base_url`` with
trailing slashes removed, and ``/v1`` appended when the URL has no path at all:

    http://127.0.0.1:8080          -> http://127.0.0.1:8080/v1/chat/completions
    http://127.0.0.1:8080/v1       -> http://127.0.0.1:8080/v1/chat/completions
    http://host/openai/v1/         -> http://host/openai/v1/chat/completions

A URL with a path is used as given, so a server behind a prefix works too.

A schema is sent the OpenAI way, ``response_format={"type": "json_schema",
"json_schema": {"name": "answer", "schema": ..., "strict": true}}``, which
llama.cpp's ``llama-server``, vLLM and Ollama enforce. llama-cpp-python's own
server (``python -m llama_cpp.server``) rejects that form (with HTTP 500) and
wants ``{"type": "json_object", "schema": ...}`` instead: pass
``schema_format="json_object"`` for it (``llama-server`` accepts both). A
server that rejects the schema is a ``ModelError``, never a silent fall-back
to free text.

Connection errors, timeouts, HTTP 429 and 5xx are retried with a short
exponential back-off; other 4xx answers are not. Every failure, whatever
httpx raised, comes out as ``edgepilot.errors.ModelError``.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from typing import Literal

from edgepilot.errors import ModelError
from edgepilot.models.base import Completion, Message, StopCheck

EXCERPT = 200
"""At most this many characters of a server's reply are quoted in an error."""


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "…"


def _content(message: Message):
    """A message's ``content``: a string, or text and image parts when it carries screenshots."""
    if not message.images:
        return message.content
    parts: list[dict] = [{"type": "text", "text": message.content}] if message.content else []
    for png in message.images:
        data = base64.b64encode(png).decode("ascii")
        parts.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}})
    return parts


class OpenAICompatBackend:
    """A model served by an OpenAI-compatible chat server.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8080/v1``; ``/v1`` is added
            when the URL has no path (see the module docstring for the rule).
        model: the model name sent with each request. ``None``: ask ``GET /models``
            once, on the first completion, and use the first id (``"default"``
            when the server does not say).
        api_key: sent as ``Authorization: Bearer``; default: the environment
            variable ``EDGEPILOT_API_KEY``, else ``OPENAI_API_KEY``, else none.
        timeout: seconds for each HTTP request (connect, and each read).
        retries: how many more times a request is tried after a connection error,
            a timeout, HTTP 429 or 5xx.
        client: an ``httpx.Client`` to use instead of a new one (it is not closed
            by :meth:`close`).
        schema_format: how a schema is sent: ``"json_schema"`` (the OpenAI form, default)
            or ``"json_object"`` (``{"type": "json_object", "schema": ...}``, for
            llama-cpp-python's server).
        backoff: seconds before the first retry; doubled for each later one.
        sleep: the function that waits between tries (tests pass a no-op).
        vision: for a vision model: the longest side, in pixels, of the screenshot (numbered,
            set-of-mark) the agent sends with each decision; 0 sends text only.

    Raises:
        ModelError: httpx is missing, ``base_url`` is not an http(s) URL, or
            ``schema_format`` is unknown.
    """

    def __init__(self, base_url: str, *, model: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, retries: int = 2, client=None,
                 schema_format: Literal["json_schema", "json_object"] = "json_schema",
                 backoff: float = 0.5, sleep: Callable[[float], None] = time.sleep, vision: int = 0) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise ModelError(
                "httpx is not installed, and the OpenAI-compatible backend needs it: "
                "pip install httpx (or pip install 'edgepilot[llm]')"
            ) from exc
        self._httpx = httpx
        if schema_format not in ("json_schema", "json_object"):
            raise ModelError(f"schema_format must be 'json_schema' or 'json_object', not {schema_format!r}")
        self.schema_format = schema_format
        try:
            url = httpx.URL(base_url.strip())
        except (httpx.InvalidURL, TypeError) as exc:
            raise ModelError(f"{base_url!r} is not a URL ({exc}); expected e.g. http://127.0.0.1:8080/v1") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ModelError(f"{base_url!r} is not an http(s) URL; expected e.g. http://127.0.0.1:8080/v1")
        path = url.path.rstrip("/")
        self.base_url = str(url.copy_with(path=path or "/v1", query=None, fragment=None)).rstrip("/")
        self.host = url.netloc.decode("ascii")
        self.model = model
        self.name = model or self.host
        self.api_key = api_key or os.environ.get("EDGEPILOT_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self._sleep = sleep
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._model_asked = model is not None
        self.vision = vision
        """The longest side of the screenshot the agent sends with each decision (0: text only)."""

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connections (only those of a client this backend made)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> OpenAICompatBackend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAICompatBackend({self.base_url!r}, model={self.model!r})"

    # -- HTTP ------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _request(self, method: str, path: str, payload: dict | None = None):
        """One request, retried on connection errors, timeouts, 429 and 5xx.

        Returns:
            the ``httpx.Response`` of a 2xx answer.

        Raises:
            ModelError: every try failed, or the server refused the request (other 4xx).
        """
        httpx = self._httpx
        url = f"{self.base_url}{path}"
        tries = self.retries + 1
        problem = ""
        for attempt in range(tries):
            if attempt:
                self._sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._client.request(method, url, json=payload, headers=self._headers(),
                                                timeout=self.timeout)
            except httpx.TimeoutException as exc:
                problem = (f"no answer within {self.timeout:g} s ({type(exc).__name__}); the model may be "
                           "too slow for this machine: raise the timeout, or check the server's load")
                continue
            except httpx.HTTPError as exc:
                problem = (f"cannot connect ({type(exc).__name__}: {str(exc) or 'no detail'}); is the server "
                           "running and listening there? Start it, or check the URL given to --model")
                continue
            if response.status_code == 429 or response.status_code >= 500:
                # llama-cpp-python's server answers 500, not 4xx, to a response_format it does not know
                about_schema = bool(payload and "response_format" in payload and "response_format" in response.text)
                problem = (f"HTTP {response.status_code}: {_excerpt(response.text)!r}; "
                           + (self._advice(response.status_code, payload) if about_schema
                              else "the server is overloaded or failing: check its log"))
                continue
            if response.status_code >= 400:
                raise ModelError(f"{method} {url} was refused: HTTP {response.status_code}: "
                                 f"{_excerpt(response.text)!r}; {self._advice(response.status_code, payload)}")
            return response
        raise ModelError(f"{method} {url} failed after {tries} "
                         f"{'try' if tries == 1 else 'tries'}: {problem}")

    @staticmethod
    def _advice(status: int, payload: dict | None) -> str:
        if status in (401, 403):
            return "check the API key (api_key, or EDGEPILOT_API_KEY / OPENAI_API_KEY)"
        if status == 404:
            return ("check the URL given to --model (the OpenAI API usually lives under /v1) "
                    "and the model name")
        if payload and payload.get("response_format", {}).get("type") == "json_schema":
            return ("the server may not take response_format json_schema (llama-cpp-python's server "
                    "wants schema_format='json_object'), or rejected the schema; check the server's log")
        if payload and "response_format" in payload:
            return "the server may not take this schema; check the model name and the server's log"
        return "check the model name and the server's log"

    def _model_name(self) -> str:
        """The model to ask for: the given one, else the first id of ``GET /models``, else ``"default"``."""
        if self.model is not None:
            return self.model
        if self._model_asked:
            return "default"
        httpx = self._httpx
        try:
            response = self._client.get(f"{self.base_url}/models", headers=self._headers(), timeout=self.timeout)
        except httpx.HTTPError:
            return "default"  # the server is not there (yet): ask again next time
        self._model_asked = True
        try:
            self.model = str(response.json()["data"][0]["id"]) if response.is_success else None
        except (ValueError, KeyError, IndexError, TypeError):
            self.model = None
        return self.model or "default"

    # -- ModelBackend ----------------------------------------------------------------------------

    def complete(self, messages: list[Message], *, schema: dict | None = None, max_tokens: int = 256,
                 temperature: float = 0.0, should_stop: StopCheck | None = None) -> Completion:
        """Answer the conversation; with ``schema``, ask the server for JSON valid against it.

        ``ms`` is the wall time of the whole call, retries included. ``should_stop`` is asked before the
        request and before the answer is returned (a request in flight is not cut).

        Raises:
            ModelError: the server cannot be reached, refused the request, or answered
                something that is not a chat completion.
        """
        if should_stop is not None and should_stop():
            raise ModelError(f"{self.name}: not asked (the run was stopped)")
        start = time.perf_counter()
        payload: dict = {
            "model": self._model_name(),
            "messages": [{"role": m.role, "content": _content(m)} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if schema is not None and self.schema_format == "json_object":
            payload["response_format"] = {"type": "json_object", "schema": schema}
        elif schema is not None:
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            }
        response = self._request("POST", "/chat/completions", payload)
        if should_stop is not None and should_stop():
            raise ModelError(f"{self.name}: the answer came after the run was stopped; dropped")
        body = response.text
        try:
            out = json.loads(body)
            text = out["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            text = None
        if not isinstance(text, str):
            raise ModelError(f"{self.base_url}/chat/completions answered something that is not a chat "
                             f"completion (no choices[0].message.content): {_excerpt(body)!r}; "
                             "is this an OpenAI-compatible server?")
        usage = out.get("usage") if isinstance(out, dict) else None
        usage = usage if isinstance(usage, dict) else {}

        def count(key: str) -> int:
            value = usage.get(key)
            return value if isinstance(value, int) and value >= 0 else 0

        return Completion(
            text=text, tokens_in=count("prompt_tokens"), tokens_out=count("completion_tokens"),
            ms=(time.perf_counter() - start) * 1000, constrained=schema is not None,
        )
