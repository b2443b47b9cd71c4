"""``edgepilot distill export``: the trained adapter as a GGUF LoRA for llama.cpp's ``lora_path``.

The converters live in the llama-cpp-python sdist's vendored llama.cpp
(``vendor/llama.cpp/convert_lora_to_gguf.py``) and need that tree's own
``gguf-py`` and ``conversion`` package, not the PyPI ``gguf``. The sdist of the
installed llama-cpp-python version is fetched once with ``pip download`` and
the converter files are unpacked into edgepilot's cache
(``~/.cache/edgepilot/llama.cpp-VERSION``); ``--llama-cpp DIR`` points at an
unpacked tree instead (offline machines).

A merged and quantized model (the adapter folded into the base weights,
``convert_hf_to_gguf.py``, the original GGUF's ``tokenizer.*`` fields copied
back, ``llama_model_quantize``) is not built yet: the adapter is what ships.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from edgepilot.errors import ConfigError, ModelError

_WANTED = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "gguf-py/", "conversion/")


def _llama_cpp_version() -> str:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelError("export needs llama-cpp-python; `make install-llm` builds it") from exc
    return str(llama_cpp.__version__)


def converter_dir(explicit: Path | None = None) -> Path:
    """The vendored llama.cpp tree holding the converters (fetched and cached on first use).

    Raises:
        ConfigError: ``explicit`` is not such a tree, or the sdist cannot be fetched.
    """
    if explicit is not None:
        tree = Path(explicit)
        if not (tree / "convert_lora_to_gguf.py").is_file() or not (tree / "gguf-py").is_dir():
            raise ConfigError(f"{tree} is not llama.cpp's source tree (no convert_lora_to_gguf.py and gguf-py/)")
        return tree
    from platformdirs import user_cache_dir

    version = _llama_cpp_version()
    tree = Path(os.environ.get("EDGEPILOT_LLAMA_CPP_SRC") or
                Path(user_cache_dir("edgepilot")) / f"llama.cpp-{version}")
    if (tree / "convert_lora_to_gguf.py").is_file():
        return tree
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps",
               "--no-binary", ":all:", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise ConfigError(f"could not fetch the llama-cpp-python {version} sdist for its converters "
                              f"({done.stderr.strip()[-300:]}); pass --llama-cpp DIR with an unpacked "
                              "vendor/llama.cpp tree")
        _unpack(archives[0], tree)
    return tree


def _unpack(archive: Path, tree: Path) -> None:
    staging = tree.with_name(tree.name + ".part")
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            parts = member.name.split("/", 3)
            if len(parts) == 4 and parts[1:3] == ["vendor", "llama.cpp"] and parts[3].startswith(_WANTED):
                member.name = parts[3]
                members.append(member)
        tar.extractall(staging, members=members, filter="data")
    staging.replace(tree) if not tree.exists() else None


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree / "gguf-py"), str(tree), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _base_config_dir(adapter: Path) -> Path:
    base = adapter / "base"
    config = base / "config.json"
    if not config.is_file():
        raise ConfigError(f"{adapter} has no base/config.json; it was not written by `edgepilot distill train`")
    data = json.loads(config.read_text(encoding="utf-8"))
    if not data.get("architectures"):  # the converter picks its model class by this name
        arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM"}
        data["architectures"] = [arch.get(data.get("model_type", ""), "LlamaForCausalLM")]
        config.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return base


def export_lora(adapter: Path, out: Path, *, outtype: str = "f16", llama_cpp: Path | None = None) -> dict[str, Any]:
    """Convert a peft adapter folder to a GGUF LoRA at ``out``.

    Raises:
        ConfigError: the adapter folder is incomplete or the converter cannot be had.
        ModelError: the converter failed (its output is in the message).
    """
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"{adapter} is not a peft adapter folder (no adapter_config.json)")
    tree = converter_dir(llama_cpp)
    base = _base_config_dir(adapter)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cmd = [sys.executable, str(tree / "convert_lora_to_gguf.py"), "--base", str(base), "--outfile", str(out),
           "--outtype", outtype, str(adapter)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(tree))
    if done.returncode != 0 or not out.is_file():
        raise ModelError(f"convert_lora_to_gguf.py failed ({done.returncode}):\n{(done.stderr or done.stdout)[-2000:]}")
    return {"lora_gguf": str(out), "bytes": out.stat().st_size, "outtype": outtype,
            "seconds": round(time.perf_counter() - start, 2), "converter": str(tree)}


def check_loads(base_gguf: Path, lora: Path, prompt: str = "Say OK.") -> dict[str, Any]:
    """Load the base model with the adapter in llama.cpp (the runtime's backend) and answer one prompt.

    Raises:
        ModelError: llama.cpp rejects the adapter.
    """
    from edgepilot.runtime.models.base import Message
    from edgepilot.runtime.models.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend(base_gguf, lora_path=lora, n_ctx=512)
    answer = backend.complete([Message(role="user", content=prompt)], max_tokens=8)
    return {"loaded": True, "load_ms": round(backend.load_ms, 1), "answer": answer.text}
