"""Turn a model spec (built-in name, configured name, GGUF path, server URL) into a backend.

    smollm2-135m                      a built-in model (shipped inside a PyPI package)
    smollm2-135m-agent                a built-in base + a LoRA shipped in models/adapters/ (the default)
    qwen                              a name from [models] in config.toml
    ~/models/some-model.gguf          any GGUF file, run in-process by llama.cpp
    http://127.0.0.1:8080/v1          an OpenAI-compatible server (llama.cpp server, vLLM, Ollama)
    http://127.0.0.1:8080/v1#qwen     ... asking it for the model named after '#'
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgepilot.config import Config
from edgepilot.errors import ConfigError, ModelError
from edgepilot.extras import install_command
from edgepilot.models.base import ModelBackend
from edgepilot.models.builtin import ADAPTERS, BUILTIN, adapter_of, builtin_path, setup_command
from edgepilot.models.llama_cpp import LlamaCppBackend, token_count


@dataclass(frozen=True)
class ModelSpec:
    """Where a model lives: ``kind`` is builtin, gguf or url."""

    name: str
    kind: str
    location: str


def resolve(spec: str | None, config: Config | None = None) -> ModelSpec:
    """What ``spec`` (default: the configured model) names.

    Raises:
        ConfigError: it names nothing known.
    """
    config = config or Config()
    spec = (spec or config.model).strip()
    if spec in config.models:
        target = config.models[spec]
        inner = resolve(target, Config(models={}))
        return ModelSpec(spec, inner.kind, inner.location)
    if spec in BUILTIN or spec in ADAPTERS:
        return ModelSpec(spec, "builtin", spec)
    if spec.startswith(("http://", "https://")):
        if spec.split("#")[0].endswith(".gguf"):
            raise ConfigError(f"{spec} is a file to download, not a server; download it and pass its path")
        return ModelSpec(spec, "url", spec)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" or path.exists():
        return ModelSpec(path.stem, "gguf", str(path))
    builtin = [*BUILTIN, *ADAPTERS]
    raise ConfigError(f"unknown model {spec!r}; use a built-in name ({', '.join(builtin)}), a name from "
                      f"[models] in config.toml ({', '.join(config.models) or 'none set'}), a .gguf path or "
                      f"an http(s) URL of an OpenAI-compatible server. Known: {', '.join([*builtin, *config.models])}")


def open_model(spec: str | None = None, config: Config | None = None, *, lora_path: str | None = None,
               vision: int = 0) -> ModelBackend:
    """A ready backend for ``spec`` with the threads, GPU layers and context of ``config``; ``vision`` (the
    longest side of the screenshot sent with each question, 0 for none) needs a vision model behind a server.

    Raises:
        ConfigError: unknown spec.
        ModelError: the model cannot be loaded or reached.
    """
    config = config or Config()
    found = resolve(spec, config)
    if found.kind == "url":
        if lora_path:
            raise ConfigError("a LoRA adapter applies to an in-process GGUF model, not to a server; "
                              "load the adapter in the server instead")
        from edgepilot.models.openai_compat import OpenAICompatBackend

        url, _, name = found.location.partition("#")
        return OpenAICompatBackend(url, model=name or None, schema_format=config.server_schema_format,
                                   vision=vision)
    if vision:
        raise ConfigError(f"{found.name} runs in-process as a text model; serve a vision model (e.g. llama.cpp's "
                          "server with --mmproj) and pass its URL to --model")

    path = builtin_path(found.location) if found.kind == "builtin" else Path(found.location)
    shipped = adapter_of(found.location) if found.kind == "builtin" else None
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    if shipped is not None and not lora_path:  # an explicit adapter replaces the built-in one (distill eval)
        path, lora_path = shipped_model(path, shipped[1])
    return LlamaCppBackend(path, n_threads=config.threads, n_gpu_layers=config.gpu_layers, n_ctx=config.context,
                           lora_path=lora_path, name=found.name)


def shipped_model(base: Path, adapter: Path, say: Callable[[str], None] | None = None) -> tuple[Path, str | None]:
    """What llama.cpp loads for a built-in base + LoRA: ``(the merged GGUF, None)``, written once into the
    cache (:mod:`edgepilot.models.merge`), or ``(base, adapter)`` applied at run time where the merge cannot
    be written (no gguf package, a read-only cache), which works and reads prompts about a third slower.
    """
    from edgepilot.models.merge import merged_model

    try:
        return merged_model(base, adapter, say=say), None
    except (ConfigError, OSError) as exc:
        print(f"edgepilot: running the adapter unmerged ({exc}); prompts read about a third slower",
              file=sys.stderr)
        return base, str(adapter)


def token_counter(spec: str | None = None, config: Config | None = None) -> Callable[[str], int] | None:
    """The token count of an in-process model's tokenizer (its vocabulary alone is loaded: a tenth of a
    second), or None for a model behind a server (its tokenizer is not ours to call).

    Raises:
        ConfigError: unknown spec.
        ModelError: the GGUF file is missing or llama-cpp-python is not installed.
    """
    found = resolve(spec, config)
    if found.kind == "url":
        return None
    path = builtin_path(found.location) if found.kind == "builtin" else Path(found.location)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelError(f"llama-cpp-python is not installed; {install_command('llm')} installs it") from exc
    try:
        vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"llama.cpp could not read the tokenizer of {path}: {exc}") from exc
    return lambda text: token_count(vocab, text)


def base_of(spec: str | None, config: Config | None = None) -> str | None:
    """The model ``spec`` runs without an adapter: a base + LoRA built-in's base name, else ``spec`` itself."""
    found = resolve(spec, config)
    if found.kind == "builtin" and found.location in ADAPTERS:
        return ADAPTERS[found.location][0]
    return spec


def list_models(config: Config | None = None) -> list[dict[str, object]]:
    """Built-in and configured models, whether each is there, and which is the default."""
    config = config or Config()
    rows: list[dict[str, object]] = []
    for name, (_, _dist, note) in BUILTIN.items():
        try:
            location, available = str(builtin_path(name, assemble=False)), True
        except ModelError:
            location, available, note = f"({setup_command(name)})", False, note
        rows.append({"name": name, "kind": "builtin", "location": location, "available": available, "note": note})
    for name, (base, file, note) in ADAPTERS.items():
        try:
            adapter_of(name)
            location, available = f"{builtin_path(base, assemble=False)} + adapters/{file}", True
        except ModelError as exc:
            location, available, note = "-", False, str(exc)
        rows.append({"name": name, "kind": "builtin", "location": location, "available": available, "note": note})
    for name, target in config.models.items():
        try:
            found = resolve(target, Config(models={}))
        except ConfigError as exc:
            rows.append({"name": name, "kind": "?", "location": target, "available": False, "note": str(exc)})
            continue
        available = found.kind == "url" or Path(found.location).is_file()
        rows.append({"name": name, "kind": found.kind, "location": found.location, "available": available,
                     "note": "" if available else "file not found"})
    default = resolve(None, config).name
    for row in rows:
        row["default"] = row["name"] == default
    return rows
