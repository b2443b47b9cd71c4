"""Chat examples → token ids and loss labels, with llama.cpp's own chat template and tokenizer.

Training must see the tokens that llama.cpp evaluates at run time. A
tokenizer rebuilt by transformers from a GGUF can disagree with llama.cpp's
(seen with Gemma 3), so the ids here come from llama.cpp itself: the GGUF is
opened vocabulary-only, the conversation is rendered with the GGUF's chat
template by llama-cpp-python's own formatter (what ``create_chat_completion``
does), and tokenized with ``special=True`` and no added BOS (what it does for
a template that emits its own special tokens).

An assistant turn's labels are its content's tokens plus the end-of-turn
token (the model must learn to stop); everything else is masked with -100,
and so is an assistant turn whose ``train`` flag is false.

Of an answer's tokens, a few decide the step: the planner's ``subgoal``,
every value of the decider's action (``type``, ``target``, ``text``,
``app``...), the reflector's ``outcome``. :attr:`Encoded.deciding` marks
them (:func:`deciding_spans`), so training can weigh them (``--decision-weight``)
and report their loss apart: the mean over all answer tokens is mostly JSON
keys and copied progress, and hides whether the decisions are learned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepilot.distill.dataset import file_sha256, read_jsonl
from edgepilot.errors import ModelError
from edgepilot.extras import install_command

IGNORE = -100
_MARK = "\x00EDGEPILOT-ANSWER-{}\x00"


@dataclass(frozen=True)
class Encoded:
    """One example as model input: token ids, labels (-100 where no loss), and its id."""

    id: str
    input_ids: list[int]
    labels: list[int]
    deciding: list[bool] = field(default_factory=list)
    """Per position: a trained token of a value that decides the step (empty: none marked)."""

    @property
    def trained_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


DECIDING_FIELDS = ("subgoal", "outcome")
"""The fields that decide a planner's (``subgoal``) or a reflector's (``outcome``) answer; of an action
(an answer with a ``type``) every field decides."""


def deciding_spans(content: str) -> list[tuple[int, int]]:
    """Byte spans of ``content`` (a JSON object answer) that hold deciding values; [] for anything else."""
    decoder = json.JSONDecoder()
    fields: list[tuple[str, int, int]] = []
    try:
        pos = content.index("{") + 1
        while True:
            while pos < len(content) and content[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(content) or content[pos] == "}":
                break
            key, pos = decoder.raw_decode(content, pos)
            pos = content.index(":", pos) + 1
            while content[pos] in " \t\r\n":
                pos += 1
            start = pos
            _, pos = decoder.raw_decode(content, pos)
            fields.append((str(key), start, pos))
    except (ValueError, IndexError):
        return []
    action = any(key == "type" for key, _, _ in fields)
    return [(len(content[:a].encode("utf-8")), len(content[:b].encode("utf-8")))
            for key, a, b in fields if action or key in DECIDING_FIELDS]


class ChatEncoder:
    """Renders and tokenizes conversations exactly as llama-cpp-python does for one GGUF.

    Raises:
        ModelError: llama-cpp-python is missing, the file does not load, or it has no chat template.
    """

    def __init__(self, gguf: str | Path) -> None:
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise ModelError(f"distillation tokenizes with llama-cpp-python: {install_command('llm')}") from exc
        try:
            self.llm = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp could not read the vocabulary of {gguf}: {exc}") from exc
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(f"{gguf} has no chat template; distillation needs a chat model (e.g. smollm2-135m)")
        eos = self.llm.token_eos()
        bos = self.llm.token_bos()
        model = self.llm._model
        self.eos_id = eos
        self.eos_text = model.token_get_text(eos) if eos != -1 else ""
        self.formatter = Jinja2ChatFormatter(template=template, eos_token=self.eos_text,
                                             bos_token=model.token_get_text(bos) if bos != -1 else "",
                                             stop_token_ids=[eos])

    def render(self, messages: list[dict[str, Any]], *, generation_prompt: bool) -> str:
        """The prompt text for ``messages`` (with the assistant's opening when ``generation_prompt``)."""
        self.formatter.add_generation_prompt = generation_prompt
        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        return self.formatter(messages=plain).prompt

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else []

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """The ids llama-cpp-python evaluates when asked to answer ``messages``."""
        return self.tokenize(self.render(messages, generation_prompt=True))

    def encode(self, example: dict[str, Any]) -> Encoded:
        """Token ids and labels of one example (see the module's docstring).

        Raises:
            ModelError: the template does not render an assistant turn as its content followed by
                the end-of-turn token (a template this encoder does not understand).
        """
        messages = example["messages"]
        marked = [{**m, "content": _MARK.format(i)} if m["role"] == "assistant" else m
                  for i, m in enumerate(messages)]
        text = self.render(marked, generation_prompt=False)
        ids: list[int] = []
        labels: list[int] = []
        deciding: list[bool] = []
        rest = text
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before, found, rest = rest.partition(_MARK.format(i))
            if not found:
                raise ModelError(f"{example.get('id')}: the chat template dropped an assistant turn")
            if not rest.startswith(self.eos_text):
                raise ModelError(f"{example.get('id')}: the chat template does not end an assistant turn "
                                 f"with {self.eos_text!r}; this encoder cannot place the loss")
            rest = rest[len(self.eos_text):]
            head = self.tokenize(before)
            answer = self.tokenize(m["content"]) + [self.eos_id]
            ids += head + answer
            train = bool(m.get("train", True))
            labels += [IGNORE] * len(head) + (answer if train else [IGNORE] * len(answer))
            marks = self.deciding_marks(m["content"], answer[:-1]) + [False] if train else [False] * len(answer)
            deciding += [False] * len(head) + marks
        return Encoded(str(example.get("id", "")), ids, labels, deciding)

    def deciding_marks(self, content: str, tokens: list[int]) -> list[bool]:
        """For each token of ``content``, whether it overlaps a deciding value (:func:`deciding_spans`)."""
        spans = deciding_spans(content)
        pieces = [self.llm.detokenize([t]) for t in tokens]
        if not spans or b"".join(pieces) != content.encode("utf-8"):
            return [False] * len(tokens)  # (not an answer of ours, or pieces that do not add up: no marks)
        marks, at = [], 0
        for piece in pieces:
            end = at + len(piece)
            marks.append(any(a < end and at < b for a, b in spans))
            at = end
        return marks


ENCODED = "encoded.jsonl.gz"
"""The encoded copy of a run's dataset, beside it (:func:`encode_dataset_file`)."""
_ENCODED_FORMAT = 1


@dataclass(frozen=True)
class EncodedDataset:
    """A dataset's examples as token ids (every kind), and what they were made from."""

    examples: list[tuple[str, Encoded]]
    """(kind, example) in the dataset's order."""
    rows: int
    dataset_sha256: str
    base_sha256: str


def encoded_path(dataset: Path) -> Path:
    return Path(dataset).parent / ENCODED


def read_encoded(dataset: Path, base_gguf: Path) -> EncodedDataset | None:
    """The encoded copy beside ``dataset``, if it was made from this dataset with this model's tokenizer;
    None when it is missing, stale (the dataset or the model changed) or unreadable."""
    import gzip


    path = encoded_path(dataset)
    if not path.is_file():
        return None
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            head = json.loads(f.readline())
            if (head.get("format") != _ENCODED_FORMAT or head.get("dataset_sha256") != file_sha256(dataset)
                    or head.get("base_sha256") != file_sha256(base_gguf)):
                return None
            examples = []
            for line in f:
                row = json.loads(line)
                marks = [False] * len(row["input_ids"])
                for at in row["deciding"]:
                    marks[at] = True
                examples.append((row["kind"], Encoded(row["id"], row["input_ids"], row["labels"], marks)))
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError):
        return None
    if len(examples) != head.get("examples"):
        return None  # cut short
    return EncodedDataset(examples, head["rows"], head["dataset_sha256"], head["base_sha256"])


def encode_dataset_file(dataset: Path, base_gguf: Path) -> EncodedDataset:
    """Every example of ``dataset`` (a run's ``dataset.jsonl``) as token ids, for ``base_gguf``.

    Read from the encoded copy beside it (:data:`ENCODED`) when that copy matches the dataset's and the
    model's sha256; else encoded with llama.cpp (:class:`ChatEncoder`) and the copy (re)written. A run folder
    with its copy can be trained on a machine without llama-cpp-python (a GPU box): ``edgepilot distill
    encode`` writes it ahead.

    Raises:
        ConfigError: the dataset is missing or not JSON lines.
        ModelError: llama-cpp-python is needed (no matching copy) and missing, or the model does not load.
    """
    import gzip
    import os


    found = read_encoded(dataset, base_gguf)
    if found is not None:
        return found
    rows = read_jsonl(dataset)
    encoder = ChatEncoder(base_gguf)
    examples = [(str(row.get("kind", "")), encoder.encode(row)) for row in rows]
    out = EncodedDataset(examples, len(rows), file_sha256(dataset), file_sha256(base_gguf))
    path = encoded_path(dataset)
    partial = path.with_name(path.name + ".partial")
    try:
        with gzip.open(partial, "wt", encoding="utf-8") as f:
            f.write(json.dumps({"format": _ENCODED_FORMAT, "dataset_sha256": out.dataset_sha256,
                                "base_sha256": out.base_sha256, "base": Path(base_gguf).name,
                                "rows": out.rows, "examples": len(examples)}) + "\n")
            for kind, enc in examples:
                f.write(json.dumps({"id": enc.id, "kind": kind, "input_ids": enc.input_ids, "labels": enc.labels,
                                    "deciding": [i for i, d in enumerate(enc.deciding) if d]},
                                   separators=(",", ":")) + "\n")
        os.replace(partial, path)
    except OSError as exc:  # a read-only run folder: train all the same, without the copy
        import sys

        print(f"edgepilot: could not keep the encoded examples in {path} ({exc})", file=sys.stderr)
        partial.unlink(missing_ok=True)
    return out
