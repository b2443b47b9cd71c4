"""llama.cpp in-process (llama-cpp-python), with grammar-constrained JSON answers.

One ``Llama`` instance serves every role. A JSON schema is compiled to a GBNF
grammar once and cached: compiling is slow, and ``response_format`` with
``json_schema`` is silently ignored by llama-cpp-python, so the grammar is
passed explicitly and a schema that cannot be converted is an error, never a
silent fall-back to free text.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgepilot.errors import ModelError, PromptTooLong
from edgepilot.extras import install_command
from edgepilot.models.base import Completion, Message, StopCheck

# chat formats for GGUF files without a chat template (Gemma 3 270M base), by architecture
_FALLBACK_FORMATS = {"gemma": "gemma", "llama": "llama-2", "qwen": "chatml", "phi": "chatml"}


PREFILL_SECONDS = 0.3  # aim: about this long per prompt chunk while a run can be stopped
# chunks of 64 tokens read a prompt 2-5x slower than 512 on this CPU (measured under load); 128 cost little
_CHUNK_MIN, _CHUNK_MAX = 128, 512
MESSAGE_OVERHEAD = 8  # a chat template's tokens around one message's content (ChatML: 5)

GRAMMAR_CACHE = 64  # compiled grammars kept (the decider's is narrowed to each screen)
_SMALL_INTEGER = 'integer ::= ("0" | [1-9] [0-9]{0,4}) space'
_SMALL_NUMBER = 'number ::= ("0" | [1-9] [0-9]{0,4}) ("." [0-9]{1,3})? space'


def _objects(schema: object) -> Iterator[dict]:
    """Every JSON object of a schema, at any depth (the schema itself first)."""
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from _objects(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _objects(value)


_LITERAL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r",
                    **{c: f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}}
"""How a character is written in a GBNF string literal: the grammar's own escapes, and the line separators
Python's ``str.splitlines`` would split a grammar line at (the decider's grammar is edited line by line)."""


def schema_grammar(schema: dict, prop_order: list[str]) -> str:
    """The GBNF grammar of a JSON schema: llama-cpp-python's converter, with its string literals escaped right.

    Its ``_format_literal`` escapes a quote but not a backslash, so a pinned string holding a quote (``\\"`` in
    its JSON form) became a grammar llama.cpp could not parse, and llama.cpp then aborted the process (seen: a
    typed text the planner quoted inside its own quotes). Constants are written as JSON without ASCII escapes,
    as a model writes them (the converter's ``\\u00e9`` read as that character in the grammar, too).
    """
    from llama_cpp.llama_grammar import SchemaConverter

    class Converter(SchemaConverter):
        def _format_literal(self, literal: str) -> str:
            return '"' + "".join(_LITERAL_ESCAPES.get(c, c) for c in literal) + '"'

        def _generate_constant_rule(self, value: object) -> str:
            return self._format_literal(json.dumps(value, ensure_ascii=False))

    converter = Converter(prop_order={name: i for i, name in enumerate(prop_order)}, allow_fetch=False,
                          dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(schema, "stdin"), "")
    return converter.format_grammar()


def _numeric_bounds(schema: object) -> list[tuple[object, object]]:
    return [(node.get("minimum", node.get("exclusiveMinimum")), node.get("maximum", node.get("exclusiveMaximum")))
            for node in _objects(schema) if node.get("type") in ("integer", "number")]


def _bound_numbers(gbnf: str, schema: dict) -> str:
    """Cap the grammar's numbers where the schema allows it.

    llama-cpp-python's converter ignores ``minimum``/``maximum``: every
    integer may run to 16 digits, a decimal part to 16 more, and small models
    do emit ``1000000000000000``. When every number in the schema is bounded
    within 0..99999, integers get at most 5 digits and decimals 3 places, no
    sign, no exponent.
    """
    bounds = _numeric_bounds(schema)
    if not bounds or not all(isinstance(lo, (int, float)) and lo >= 0 and isinstance(hi, (int, float)) and hi <= 99999
                             for lo, hi in bounds):
        return gbnf
    lines = []
    for line in gbnf.split("\n"):
        if line.startswith("integer ::= "):
            line = _SMALL_INTEGER
        elif line.startswith("number ::= "):
            line = _SMALL_NUMBER
        lines.append(line)
    return "\n".join(lines) + "\n"


def token_count(llm: Any, text: str) -> int:
    """What ``text`` costs in the tokens of a ``llama_cpp.Llama`` (a whole model or its vocabulary alone)."""
    return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))


class LlamaCppBackend:
    """A GGUF model run by llama.cpp in this process.

    Args:
        path: the GGUF file.
        n_threads: CPU threads (default: all cores, at most 8).
        n_gpu_layers: layers to offload (-1: all, where a CUDA build and a GPU exist).
        n_ctx: context length in tokens.
        lora_path: a GGUF LoRA adapter to apply.
        seed: sampling seed.
        name: what runs and trajectories call it (default: the file's stem).
        flash_attn: llama.cpp's fused attention: on this 2-core CPU it reads prompts about a quarter faster and
            needs 20 MB less than the unfused graph (docs/models.md, "The merged model").

    Raises:
        ModelError: llama-cpp-python is missing, or the file does not load.
    """

    def __init__(self, path: str | Path, *, n_threads: int | None = None, n_gpu_layers: int = 0,
                 n_ctx: int = 4096, lora_path: str | Path | None = None, seed: int = 0,
                 name: str | None = None, flash_attn: bool = True) -> None:
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelError(
                f"llama-cpp-python is not installed; {install_command('llm')} builds it for the CPU "
                "(docs/install.md, also for a CUDA build)"
            ) from exc
        self._llama_cpp = llama_cpp
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} does not exist")
        self.name = name or self.path.stem
        self.vision = 0  # a text model: llama.cpp in-process takes no images here
        threads = n_threads or min(8, os.cpu_count() or 2)
        start = time.perf_counter()
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(self.path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers, lora_path=str(lora_path) if lora_path else None,
                seed=seed, flash_attn=flash_attn, verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp could not load {self.path}: {exc}") from exc
        self.load_ms = (time.perf_counter() - start) * 1000
        if self.llm.chat_format == "llama-2":  # llama-cpp-python's fallback when the GGUF has no chat template
            arch = str(self.llm.metadata.get("general.architecture", ""))
            self.llm.chat_format = _FALLBACK_FORMATS.get(arch.rstrip("0123456789"), "chatml")
        self._grammars: dict[str, object] = {}
        self._should_stop: StopCheck | None = None  # the current call's stop check (see complete)
        self._hook_stopping()

    def _hook_stopping(self) -> None:
        """Make the current call's stop check end generation between tokens.

        llama-cpp-python's chat handlers drop a caller's ``stopping_criteria``
        (they pass only the chat format's own), and an exception raised in a
        logits processor is swallowed by its ctypes callback; the handler does
        call ``create_completion`` on this instance, so the criterion is added there.
        """
        original = self.llm.create_completion
        stopping_list = self._llama_cpp.StoppingCriteriaList

        def create_completion(*args, stopping_criteria=None, **kwargs):
            check = self._should_stop
            if check is not None:
                extra = [lambda input_ids, logits: check()]
                stopping_criteria = stopping_list([*(stopping_criteria or []), *extra])
            return original(*args, stopping_criteria=stopping_criteria, **kwargs)

        self.llm.create_completion = create_completion
        self._chunk_prefill()

    def _chunk_prefill(self) -> None:
        """While a call has a stop check, read prompts in chunks and check it between them.

        llama.cpp checks the stopping criterion between generated tokens only;
        reading a new screen's prompt (~1000 tokens) is one call that takes
        seconds on a small or busy CPU. Each chunk extends the KV cache (the
        same computation); a stop between two raises, which ``complete`` turns
        into a ModelError. The chunk size adapts (64 to 512 tokens) so one
        chunk takes about ``PREFILL_SECONDS``. Without a stop check (the
        benchmarks) prompts are read as llama.cpp does.
        """
        original = self.llm.eval
        size = [_CHUNK_MIN]  # grows when chunks are quick: a first slow chunk would hold a stop up

        def evaluate(tokens) -> None:
            check = self._should_stop
            if check is None or len(tokens) <= size[0]:
                return original(tokens)
            start = 0
            while start < len(tokens):
                if check():
                    raise RuntimeError("prompt evaluation cut short: the run was stopped")
                chunk = tokens[start:start + size[0]]
                began = time.perf_counter()
                original(chunk)
                took = time.perf_counter() - began
                start += len(chunk)
                if took < PREFILL_SECONDS / 2 and len(chunk) == size[0]:
                    size[0] = min(_CHUNK_MAX, size[0] * 2)
                elif took > PREFILL_SECONDS * 2:
                    size[0] = max(_CHUNK_MIN, size[0] // 2)
            return None

        self.llm.eval = evaluate

    def grammar(self, schema: dict):
        """The compiled grammar of a JSON schema (compiled once, then cached).

        Raises:
            ModelError: the schema cannot be turned into a grammar.
        """
        key = json.dumps(schema, sort_keys=True)
        if key in self._grammars:
            self._grammars[key] = self._grammars.pop(key)  # most recently used last
        else:
            while len(self._grammars) >= GRAMMAR_CACHE:
                self._grammars.pop(next(iter(self._grammars)))
            try:
                # properties keep the schema's order (the converter sorts by position); `type` goes
                # first so that a model says which action it means before its arguments
                gbnf = _bound_numbers(schema_grammar(copy.deepcopy(schema), ["type"]), schema)
                self._grammars[key] = self._llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False)
            except (ValueError, RuntimeError, KeyError, TypeError) as exc:
                raise ModelError(f"cannot build a grammar from the schema ({exc}); simplify the schema") from exc
        return self._grammars[key]

    def count_tokens(self, text: str) -> int:
        """What ``text`` costs in this model's tokens."""
        return token_count(self.llm, text)

    @property
    def context_tokens(self) -> int:
        """The context's length in tokens (prompt and answer together)."""
        return int(self.llm.n_ctx())

    def _check_fits(self, messages: list[Message], max_tokens: int) -> None:
        """Refuse a prompt that leaves less than ``max_tokens`` of the context for the answer.

        llama-cpp-python would silently shrink the answer's room (a grammar-bound answer is then cut and
        does not parse) or fail mid-call; a caller that knows can shorten the prompt instead.
        """
        prompt = sum(self.count_tokens(m.content) + MESSAGE_OVERHEAD for m in messages)
        if prompt + max_tokens > self.context_tokens:
            raise PromptTooLong(f"{self.name}: the prompt takes about {prompt} tokens and the answer needs "
                                f"{max_tokens}, more than the context's {self.context_tokens}; shorten the screen "
                                "or the history, or give the model a longer context (`context = 8192` in config.toml)",
                                tokens=prompt + max_tokens, limit=self.context_tokens)

    def complete(self, messages: list[Message], *, schema: dict | None = None, max_tokens: int = 256,
                 temperature: float = 0.0, should_stop: StopCheck | None = None) -> Completion:
        if should_stop is not None and should_stop():
            raise ModelError(f"{self.name}: not asked (the run was stopped)")
        if any(m.images for m in messages):
            raise ModelError(f"{self.name} is a text model and cannot read screenshots; "
                             "use a vision model behind an OpenAI-compatible server (--model URL)")
        self._check_fits(messages, max_tokens)
        grammar = self.grammar(schema) if schema is not None else None
        before = self._perf()
        start = time.perf_counter()
        self._should_stop = should_stop
        try:
            out = self.llm.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages], grammar=grammar,
                max_tokens=max_tokens,
                temperature=temperature, top_k=1 if temperature == 0 else 40,
            )
        except (ValueError, RuntimeError) as exc:
            if should_stop is not None and should_stop():
                raise ModelError(f"{self.name}: the answer was cut short (the run was stopped)") from None
            raise ModelError(f"{self.name} failed to answer: {exc}") from exc
        finally:
            self._should_stop = None
        if should_stop is not None and should_stop():
            raise ModelError(f"{self.name}: the answer was cut short (the run was stopped)")
        usage = out.get("usage", {})
        after = self._perf()
        perf = {}
        if before is not None and after is not None:
            perf = {"prompt_evaluated": after[2] - before[2], "prefill_ms": after[0] - before[0],
                    "decode_ms": after[1] - before[1]}
        return Completion(
            text=out["choices"][0]["message"]["content"] or "",
            tokens_in=usage.get("prompt_tokens", 0), tokens_out=usage.get("completion_tokens", 0),
            ms=(time.perf_counter() - start) * 1000, constrained=grammar is not None, **perf,
        )

    def _perf(self) -> tuple[float, float, int] | None:
        """llama.cpp's running totals: prompt-eval ms, decode ms, prompt tokens evaluated (None if unavailable)."""
        try:
            data = self._llama_cpp.llama_perf_context(self.llm._ctx.ctx)
            return data.t_p_eval_ms, data.t_eval_ms, data.n_p_eval
        except (AttributeError, TypeError, ValueError, OSError):
            return None
