"""``edgepilot distill export``: the trained adapter as a GGUF LoRA for llama.cpp's ``lora_path``.

The converters live in the llama-cpp-python sdist's vendored llama.cpp
(``vendor/llama.cpp/convert_lora_to_gguf.py``) and need that tree's own
``gguf-py`` and ``conversion`` package, not the PyPI ``gguf``. The sdist of the
installed llama-cpp-python version is fetched once with ``pip download`` and
the converter files are unpacked into edgepilot's cache
(``~/.cache/edgepilot/llama.cpp-VERSION``); ``--llama-cpp DIR`` points at an
unpacked tree instead (offline machines).

``merge_lora`` folds a GGUF LoRA into the base GGUF's weights and writes an
f16 GGUF; ``quantize`` turns that into Q8_0 or Q4_K_M with llama.cpp's own
``llama_model_quantize`` (through llama-cpp-python). The merge works on the
GGUF files themselves (the PyPI ``gguf`` package reads and writes them): every
metadata field of the base, the tokenizer's included, is copied as it is, so
the merged model tokenizes and chats exactly as the base does, with no
GGUF → transformers → GGUF round trip (that round trip loses the tokenizer).
The merged weight is what llama.cpp computes with the adapter:
``W + alpha / rank * B @ A``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepilot import paths
from edgepilot.errors import ConfigError, ModelError
from edgepilot.models.base import Message
from edgepilot.models.llama_cpp import LlamaCppBackend

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

    version = _llama_cpp_version()
    tree = Path(os.environ.get("EDGEPILOT_LLAMA_CPP_SRC") or
                paths.cache_dir() / f"llama.cpp-{version}")
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


def check_loads(base_gguf: Path, lora: Path | None, prompt: str = "Say OK.") -> dict[str, Any]:
    """Load the model (with the adapter, when given) in llama.cpp (the runtime's backend) and answer one prompt.

    Raises:
        ModelError: llama.cpp rejects the adapter.
    """

    backend = LlamaCppBackend(base_gguf, lora_path=lora, n_ctx=512)
    answer = backend.complete([Message(role="user", content=prompt)], max_tokens=8)
    return {"loaded": True, "load_ms": round(backend.load_ms, 1), "answer": answer.text}


@contextlib.contextmanager
def _c_output_to(path: Path) -> Iterator[None]:
    """Send what C code writes to stdout and stderr (file descriptors 1 and 2) to ``path`` meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "wb") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


QUANT_TYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
"""``--quant`` names and the ``llama_ftype`` constants of llama-cpp-python they stand for."""


def _read_gguf(path: Path) -> Any:
    try:
        import gguf
    except ImportError as exc:
        raise ConfigError("reading GGUF needs the distill extra: pip install 'edgepilot[distill]' (gguf)") from exc
    try:
        return gguf.GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} as GGUF ({exc})") from exc


@dataclass
class GgufLora:
    """A GGUF LoRA read back (:func:`read_lora`)."""

    alpha: float
    """As llama.cpp applies it: a file's alpha of 0 means the rank (a scale of 1)."""
    pairs: dict[str, tuple[Any, Any]]
    """The adapted tensor's GGUF name -> (A (rank, in), B (out, rank)), float32."""
    architecture: str
    """The base model's architecture (``general.architecture``), e.g. ``llama``."""

    @property
    def blocks(self) -> list[int]:
        """The transformer blocks it adapts (its tensors are named ``blk.N.NAME.weight``)."""
        parts = (name.split(".") for name in self.pairs)
        return sorted({int(p[1]) for p in parts if len(p) > 1 and p[1].isdigit()})


def read_lora(lora_gguf: Path) -> GgufLora:
    """A GGUF LoRA's alpha, pairs and architecture.

    The matrices are in llama.cpp's layout: for a llama model the rows of ``attn_q``'s and ``attn_k``'s B are
    in the order the converter permutes them to (:func:`edgepilot.distill.base.lora_from_gguf` undoes it).

    Raises:
        ConfigError: not a readable GGUF LoRA, or half of a pair is missing.
    """
    lora = _read_gguf(lora_gguf)  # first: its error says what to install
    import gguf
    import numpy as np

    alpha_field = lora.fields.get("adapter.lora.alpha")
    if alpha_field is None:
        raise ConfigError(f"{lora_gguf} is not a GGUF LoRA (no adapter.lora.alpha)")
    halves: dict[str, dict[str, Any]] = {}
    for t in lora.tensors:
        stem, _, half = t.name.rpartition(".")
        if half in ("lora_a", "lora_b"):
            halves.setdefault(stem, {})[half] = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
    if unpaired := sorted(stem for stem, h in halves.items() if len(h) != 2):
        raise ConfigError(f"{lora_gguf} has lora_a without lora_b or the other way round: {unpaired[:3]}")
    if not halves:
        raise ConfigError(f"{lora_gguf} holds no LoRA tensors")
    pairs = {stem: (h["lora_a"], h["lora_b"]) for stem, h in halves.items()}
    arch = lora.fields.get("general.architecture")
    return GgufLora(alpha=float(alpha_field.contents()) or float(next(iter(pairs.values()))[0].shape[0]),
                    pairs=pairs, architecture=str(arch.contents()) if arch is not None else "")


def merge_lora(base_gguf: Path, lora_gguf: Path, out: Path) -> dict[str, Any]:
    """Write ``out``: the base GGUF with the GGUF LoRA folded into its weights, matrices in f16.

    Raises:
        ConfigError: the ``gguf`` package is missing, a file is not a readable GGUF, or the adapter does not
            fit the base (a tensor it adapts is not in the base, half of a pair is missing, or shapes differ).
    """
    start = time.perf_counter()
    base = _read_gguf(base_gguf)  # first: its error says what to install
    lora = read_lora(lora_gguf)
    import gguf
    import numpy as np

    alpha, pairs = lora.alpha, lora.pairs
    names = {t.name for t in base.tensors}
    if missing := sorted(set(pairs) - names):
        raise ConfigError(f"{lora_gguf} adapts tensors that {base_gguf.name} does not have: {missing[:3]}")
    arch = base.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(out), arch)
    for field in base.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        value = field.contents()
        if field.name == "general.file_type":
            value = int(gguf.LlamaFileType.MOSTLY_F16)
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, kind, sub_type=sub)
    merged = 0
    for tensor in base.tensors:
        weights = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        if tensor.name in pairs:
            a, b = pairs[tensor.name]
            if (b.shape[0], a.shape[1]) != weights.shape:
                raise ConfigError(f"{tensor.name}: the adapter's {b.shape[0]}x{a.shape[1]} does not fit the base's "
                                  f"{weights.shape[0]}x{weights.shape[1]}")
            weights += (alpha / a.shape[0]) * (b @ a)
            merged += 1
        writer.add_tensor(tensor.name, weights.astype(np.float16) if weights.ndim > 1 else weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"gguf": str(out), "quant": "f16", "bytes": out.stat().st_size, "tensors_merged": merged,
            "seconds": round(time.perf_counter() - start, 2)}


def quantize(f16_gguf: Path, out: Path, kind: str, *, threads: int | None = None) -> dict[str, Any]:
    """Quantize a GGUF with llama.cpp's ``llama_model_quantize`` (``kind``: a ``QUANT_TYPES`` name).

    Raises:
        ConfigError: an unknown kind.
        ModelError: llama.cpp failed.
    """
    if kind not in QUANT_TYPES:
        raise ConfigError(f"unknown quantization {kind!r}; choose from {', '.join(QUANT_TYPES)}")
    import llama_cpp

    start = time.perf_counter()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[kind])
    params.nthread = threads or os.cpu_count() or 1
    log = out.with_name(out.name + ".log")
    with _c_output_to(log):  # llama.cpp prints a line per tensor
        status = llama_cpp.llama_model_quantize(str(f16_gguf).encode(), str(out).encode(), params)
    if status != 0 or not out.is_file():
        raise ModelError(f"llama_model_quantize({f16_gguf.name} → {kind}) failed with status {status}; "
                         f"its output: {log}")
    return {"gguf": str(out), "quant": kind, "bytes": out.stat().st_size,
            "seconds": round(time.perf_counter() - start, 2)}
