"""GGUF LoRAs read and merged into their base; the shipped LoRA merged once, so llama.cpp runs one plain GGUF.

:func:`read_lora` and :func:`merge_lora` work on the GGUF files themselves (the PyPI ``gguf`` package reads and
writes them), for ``edgepilot distill export --merged`` (f16) and for runs (Q8_0, :func:`merged_model`).

llama.cpp applies a LoRA at run time as extra matrix products in every layer,
and the bundled base is quantized as Q4_1, which llama.cpp's fast CPU matrix
kernels (llamafile's tinyBLAS, the repacked Q4_0/Q8_0 paths) do not cover.
On this 2-core CPU the two cost about a third of each prompt's reading time
(docs/models.md, "The merged model"). The adapter was trained against the
dequantized Q4_1 base, so the merged weights are ``dequantize(base) +
alpha / rank * B @ A``, stored as Q8_0: 8-bit blocks that hold the Q4_1
values to within 1/16 of their own step.

The merged file lives in the user cache folder under a name keyed on the
content of the base and the adapter, so a new adapter or base makes a new file
(and the older merges of that adapter are removed). Every merge is written to
a temporary file and renamed, so a crash leaves no half-written model behind.
``edgepilot setup`` writes it; a run that finds it missing writes it first (a
few seconds) and says so.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepilot import paths
from edgepilot.errors import ConfigError
from edgepilot.extras import install_command

MERGE_VERSION = 1
"""Bumped when the merge itself changes, so older merged files are not reused."""
MERGE_TYPES = {"f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0"}
"""How :func:`merge_lora` stores the matrices, and the ``gguf.LlamaFileType`` each file then says it is."""
QUANT = "q8_0"
"""What a run loads (:func:`merged_model`)."""


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def merged_path(base: Path, adapter: Path, folder: Path | None = None) -> Path:
    """Where the merge of ``adapter`` into ``base`` is kept (whether or not it exists yet): a name keyed on
    both files' content (sha256: 0.08 s for the two), the merge's version and its quantization."""
    key = hashlib.sha256(f"{MERGE_VERSION}:{QUANT}:{_digest(base)}:{_digest(adapter)}".encode()).hexdigest()[:16]
    return (folder or paths.cache_dir() / "models") / f"{_stem(adapter)}.merged-{QUANT}-{key}.gguf"


def _stem(adapter: Path) -> str:
    return adapter.name.removesuffix(".gguf").removesuffix(".lora")


def read_gguf(path: Path) -> Any:
    """A GGUF file opened by the PyPI ``gguf`` package's reader.

    Raises:
        ConfigError: the package is missing, or the file is not a readable GGUF.
    """
    try:
        import gguf
    except ImportError as exc:
        raise ConfigError(f"reading GGUF needs the gguf package: {install_command('llm')}") from exc
    try:
        return gguf.GGUFReader(str(path))
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
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
    lora = read_gguf(lora_gguf)  # first: its error says what to install
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


def merge_lora(base_gguf: Path, lora_gguf: Path, out: Path, *, quant: str = "f16") -> dict[str, Any]:
    """Write ``out`` (atomically): the base GGUF with the GGUF LoRA folded into its weights.

    The merged weight is what llama.cpp computes with the adapter, ``W + alpha / rank * B @ A``. Every metadata
    field of the base, the tokenizer's included, is copied as it is. ``quant`` is how the matrices are stored:
    ``f16`` (for ``distill export --merged``, which quantizes with llama.cpp afterwards), or ``q8_0`` (what a
    run loads); with ``q8_0`` the base's F32 norms and Q8_0 tensors are copied unchanged.

    Raises:
        ConfigError: the ``gguf`` package is missing, a file is not a readable GGUF, or the adapter does not
            fit the base (a tensor it adapts is not in the base, half of a pair is missing, or shapes differ).
    """
    if quant not in MERGE_TYPES:
        raise ConfigError(f"a merge is stored as {' or '.join(MERGE_TYPES)}, not {quant!r}")
    start = time.perf_counter()
    base = read_gguf(base_gguf)  # first: its error says what to install
    lora = read_lora(lora_gguf)
    import gguf
    import numpy as np

    Q = gguf.GGMLQuantizationType
    alpha, pairs = lora.alpha, lora.pairs
    names = {t.name for t in base.tensors}
    if missing := sorted(set(pairs) - names):
        raise ConfigError(f"{lora_gguf} adapts tensors that {base_gguf.name} does not have: {missing[:3]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(str(tmp), base.fields["general.architecture"].contents())
        for field in base.fields.values():
            if field.name == "general.architecture" or field.name.startswith("GGUF."):
                continue
            value = field.contents()
            if field.name == "general.file_type":
                value = int(getattr(gguf.LlamaFileType, MERGE_TYPES[quant]))
            kind = field.types[0]
            sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, value, kind, sub_type=sub)
        merged = 0
        for tensor in base.tensors:
            if quant == "q8_0" and tensor.name not in pairs and tensor.tensor_type in (Q.F32, Q.Q8_0):
                writer.add_tensor(tensor.name, np.asarray(tensor.data), raw_shape=tensor.data.shape,
                                  raw_dtype=tensor.tensor_type)  # norms and the Q8_0 embedding, as they are
                continue
            weights = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
            if tensor.name in pairs:
                a, b = pairs[tensor.name]
                if (b.shape[0], a.shape[1]) != weights.shape:
                    raise ConfigError(f"{tensor.name}: the adapter's {b.shape[0]}x{a.shape[1]} does not fit the "
                                      f"base's {weights.shape[0]}x{weights.shape[1]}")
                weights += (alpha / a.shape[0]) * (b @ a)
                merged += 1
            if weights.ndim < 2:
                writer.add_tensor(tensor.name, weights)
            elif quant == "q8_0" and weights.shape[-1] % 32 == 0:
                data = gguf.quants.quantize(weights, Q.Q8_0)
                writer.add_tensor(tensor.name, data, raw_shape=data.shape, raw_dtype=Q.Q8_0)
            else:
                writer.add_tensor(tensor.name, weights.astype(np.float16))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.chmod(0o644)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"gguf": str(out), "quant": quant, "bytes": out.stat().st_size, "tensors_merged": merged,
            "seconds": round(time.perf_counter() - start, 2)}


def merged_model(base: Path, adapter: Path, *, say: Callable[[str], None] | None = None,
                 folder: Path | None = None) -> Path:
    """The Q8_0 merge of ``adapter`` on ``base`` that a run loads, written first when it is not there yet (and
    the older merges of that adapter removed).

    Raises:
        ConfigError: the merge cannot be made (see :func:`merge_lora`).
        OSError: the cache folder cannot be written.
    """
    out = merged_path(base, adapter, folder)
    if out.is_file():
        return out
    if say is None:
        def say(line: str) -> None:
            print(line, file=sys.stderr)
    say(f"edgepilot: merging the adapter {adapter.name} into its base model once (a few seconds; kept in "
        f"{out.parent})")
    done = merge_lora(base, adapter, out, quant=QUANT)
    for older in out.parent.glob(f"{_stem(adapter)}.merged-*.gguf"):
        if older != out:
            older.unlink(missing_ok=True)
    say(f"edgepilot: merged in {done['seconds']:.1f} s: {out}")
    return out
