"""``edgepilot distill export``: the trained adapter as a GGUF LoRA for llama.cpp's ``lora_path``.

:func:`export_lora` writes the GGUF itself with the PyPI ``gguf`` package (the distill extra): it reads the
peft adapter's A and B matrices, names each pair as llama.cpp names the weight it adapts (``blk.N.attn_q.weight``
-> ``blk.N.attn_q.weight.lora_a`` / ``.lora_b``), reorders the rows of a llama model's q and k B matrices as
llama.cpp's converter reorders those weights (its ``permute``), and stores them in the asked type. The file
holds what llama.cpp's own ``convert_lora_to_gguf.py`` writes for such an adapter (the same tensors, types and
values; tests/test_distill.py loads it in llama.cpp), and nothing is downloaded: no llama.cpp source tree, no
Hugging Face hub. ``--llama-cpp DIR`` runs that converter from an unpacked llama.cpp tree instead, for an
architecture edgepilot's writer does not map (:data:`ARCHITECTURES`).

:func:`edgepilot.models.merge.merge_lora` folds a GGUF LoRA into the base GGUF's
weights and writes an f16 GGUF; ``quantize`` turns that into Q8_0 or Q4_K_M with llama.cpp's own
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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgepilot.errors import ConfigError, ModelError
from edgepilot.extras import install_command
from edgepilot.models.base import Message
from edgepilot.models.llama_cpp import LlamaCppBackend

ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "gemma3_text": "gemma3", "gemma3": "gemma3"}
"""transformers' ``model_type`` of a base model -> the GGUF architecture its LoRA is written for."""
PERMUTED = {"llama"}
"""GGUF architectures whose q and k rows llama.cpp's converter reorders (``LlamaModel.permute``)."""
OUTTYPES = ("f32", "f16", "bf16", "q8_0")


def _distill_libraries() -> tuple[Any, Any, Any]:
    """``(gguf, numpy, torch)``, or a ConfigError naming the extra."""
    try:
        import gguf
        import numpy as np
        import torch
    except ImportError as exc:
        raise ConfigError(f"exporting an adapter needs the distill extra ({exc.name} is missing): "
                          f"{install_command('distill')}") from exc
    return gguf, np, torch


def _base_config_dir(adapter: Path) -> Path:
    base = adapter / "base"
    config = base / "config.json"
    if not config.is_file():
        raise ConfigError(f"{adapter} has no base/config.json; it was not written by `edgepilot distill train`")
    data = json.loads(config.read_text(encoding="utf-8"))
    if not data.get("architectures"):  # llama.cpp's converter picks its model class by this name
        arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM"}
        data["architectures"] = [arch.get(data.get("model_type", ""), "LlamaForCausalLM")]
        config.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return base


def export_lora(adapter: Path, out: Path, *, outtype: str = "f16", llama_cpp: Path | None = None) -> dict[str, Any]:
    """Convert a peft adapter folder (``edgepilot distill train``'s) to a GGUF LoRA at ``out``.

    Args:
        adapter: the folder with ``adapter_config.json``, the adapter's weights and ``base/config.json``.
        out: the GGUF file to write.
        outtype: ``f32``, ``f16``, ``bf16`` or ``q8_0`` (a matrix whose rows do not split into Q8_0 blocks of
            32 is written in f16, as llama.cpp's converter does).
        llama_cpp: an unpacked llama.cpp source tree whose ``convert_lora_to_gguf.py`` to run instead.

    Raises:
        ConfigError: the adapter folder is incomplete, holds more than LoRA pairs, is for an architecture the
            writer does not map, or the distill extra is missing.
        ModelError: llama.cpp's converter (``llama_cpp``) failed (its output is in the message).
    """
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"{adapter} is not a peft adapter folder (no adapter_config.json)")
    if outtype not in OUTTYPES:
        raise ConfigError(f"unknown outtype {outtype!r}; choose from {', '.join(OUTTYPES)}")
    base = _base_config_dir(adapter)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if llama_cpp is not None:
        converter = _run_converter(Path(llama_cpp), adapter, base, out, outtype)
    else:
        _write_lora_gguf(adapter, json.loads((base / "config.json").read_text(encoding="utf-8")), out, outtype)
        converter = "edgepilot"
    return {"lora_gguf": str(out), "bytes": out.stat().st_size, "outtype": outtype,
            "seconds": round(time.perf_counter() - start, 2), "converter": converter}


def _adapter_tensors(adapter: Path, torch: Any) -> dict[str, Any]:
    """The adapter's tensors by name, as float32 numpy arrays (safetensors, else peft's older .bin)."""
    file = adapter / "adapter_model.safetensors"
    if file.is_file():
        from safetensors.torch import load_file

        tensors = load_file(str(file), device="cpu")
    elif (file := adapter / "adapter_model.bin").is_file():
        tensors = torch.load(str(file), map_location="cpu", weights_only=True)
    else:
        raise ConfigError(f"{adapter} has no adapter_model.safetensors (nor adapter_model.bin)")
    return {name: t.to(torch.float32).numpy() for name, t in tensors.items()}


def _lora_pairs(tensors: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """transformers weight name (``model.layers.0.self_attn.q_proj.weight``) -> {"a": A (rank, in), "b": B (out,
    rank)}.

    Raises:
        ConfigError: a tensor that is not half of a LoRA pair (a trained embedding or norm, DoRA's magnitudes), or
            half a pair.
    """
    pairs: dict[str, dict[str, Any]] = {}
    for name, value in tensors.items():
        stem = name.removeprefix("base_model.model.")
        for half, marker in (("a", ".lora_A.weight"), ("b", ".lora_B.weight")):
            if stem.endswith(marker):
                pairs.setdefault(stem.removesuffix(marker) + ".weight", {})[half] = value
                break
        else:
            raise ConfigError(f"the adapter holds {name}, which is not a LoRA A or B matrix; edgepilot writes LoRA "
                              "pairs only (train without modules_to_save / DoRA, or pass --llama-cpp DIR)")
    if halves := sorted(name for name, pair in pairs.items() if len(pair) != 2):
        raise ConfigError(f"the adapter has half a LoRA pair for {halves[:3]}")
    return pairs


def _permute(rows: Any, heads: int) -> Any:
    """llama.cpp's converter's order of a q or k projection's output rows (within each head, the two rotary
    halves interleaved); :func:`edgepilot.distill.base._unpermute` undoes it."""
    return rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _encoded(gguf: Any, np: Any, matrix: Any, outtype: str) -> tuple[Any, Any]:
    """``(data, GGML type)`` of a matrix stored as ``outtype`` (Q8_0 falls back to f16 where it cannot apply)."""
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[outtype]
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    try:
        return gguf.quants.quantize(matrix, qtype), qtype
    except gguf.QuantError:  # e.g. a B of rank 16: rows shorter than one Q8_0 block
        return gguf.quants.quantize(matrix, gguf.GGMLQuantizationType.F16), gguf.GGMLQuantizationType.F16


def _write_lora_gguf(adapter: Path, config: dict[str, Any], out: Path, outtype: str) -> None:
    """Write the GGUF LoRA of ``adapter`` for a base model of transformers ``config`` (see the module's text)."""
    gguf, np, torch = _distill_libraries()
    model_type = str(config.get("model_type", ""))
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise ConfigError(f"edgepilot writes GGUF LoRAs for {', '.join(sorted(ARCHITECTURES))} models, not "
                          f"{model_type or 'an unnamed'} ones; pass --llama-cpp DIR (an unpacked llama.cpp tree) "
                          "to run llama.cpp's convert_lora_to_gguf.py")
    settings = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    arch_id = next(key for key, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)
    names = gguf.get_tensor_name_map(arch_id, int(config["num_hidden_layers"]))
    heads = {"q_proj": config["num_attention_heads"],
             "k_proj": config.get("num_key_value_heads") or config["num_attention_heads"]}
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_name(adapter.name.title())
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(settings["lora_alpha"]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for weight, pair in _lora_pairs(_adapter_tensors(adapter, torch)).items():
        target = names.get_name(weight, try_suffixes=(".weight",))
        if target is None or target.startswith(("token_embd", "output.")):
            raise ConfigError(f"the adapter adapts {weight}, which has no LoRA place in llama.cpp's {arch} model")
        module = weight.split(".")[-2]
        b = _permute(pair["b"], heads[module]) if arch in PERMUTED and module in heads else pair["b"]
        for half, matrix in (("lora_a", pair["a"]), ("lora_b", b)):
            data, qtype = _encoded(gguf, np, matrix, outtype)
            writer.add_tensor(f"{target}.{half}", data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _run_converter(tree: Path, adapter: Path, base: Path, out: Path, outtype: str) -> str:
    """Run ``convert_lora_to_gguf.py`` of the llama.cpp source tree ``tree`` (with that tree's own gguf-py)."""
    if not (tree / "convert_lora_to_gguf.py").is_file() or not (tree / "gguf-py").is_dir():
        raise ConfigError(f"{tree} is not llama.cpp's source tree (no convert_lora_to_gguf.py and gguf-py/)")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree / "gguf-py"), str(tree), env.get("PYTHONPATH")]))
    env["HF_HUB_OFFLINE"] = "1"  # the base's config is local; nothing is fetched
    cmd = [sys.executable, str(tree / "convert_lora_to_gguf.py"), "--base", str(base), "--outfile", str(out),
           "--outtype", outtype, str(adapter)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not out.is_file():
        raise ModelError(f"convert_lora_to_gguf.py failed ({done.returncode}):\n{(done.stderr or done.stdout)[-2000:]}")
    return str(tree)


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
