"""A shipped LoRA merged into its base model once, so llama.cpp runs one plain GGUF.

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
(and the older merges of that adapter are removed);
it is written to a temporary file and renamed, so a crash leaves no
half-written model behind. ``edgepilot setup`` writes it; a run that finds it
missing writes it first (a few seconds) and says so.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edgepilot import paths
from edgepilot.errors import ModelError

MERGE_VERSION = 1
"""Bumped when the merge itself changes, so older merged files are not reused."""
QUANT = "q8_0"


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


def _lora_pairs(reader) -> tuple[dict[str, tuple], float]:
    """The adapter's ``{base tensor name: (A, B)}`` (float32, as the file's rows) and its alpha."""
    import numpy as np

    alpha = None
    field = reader.fields.get("adapter.lora.alpha")
    if field is not None:
        alpha = float(field.contents())
    kind = reader.fields.get("adapter.type")
    if kind is None or kind.contents() != "lora":
        raise ModelError("the adapter file is not a LoRA adapter (adapter.type is not 'lora')")
    halves: dict[str, dict[str, object]] = {}
    for tensor in reader.tensors:
        name, _, half = tensor.name.rpartition(".")
        if half not in ("lora_a", "lora_b"):
            raise ModelError(f"unexpected tensor {tensor.name!r} in the adapter")
        halves.setdefault(name, {})[half] = np.asarray(tensor.data, dtype=np.float32)
    pairs = {}
    for name, both in halves.items():
        if set(both) != {"lora_a", "lora_b"}:
            raise ModelError(f"the adapter's {name} has only one of its two LoRA matrices")
        pairs[name] = (both["lora_a"], both["lora_b"])
    if alpha is None:
        raise ModelError("the adapter has no adapter.lora.alpha")
    return pairs, alpha


def merge_lora(base: Path, adapter: Path, out: Path, *, say: Callable[[str], None] | None = None) -> Path:
    """Write ``base`` with ``adapter`` folded into its weights to ``out`` (atomically), as Q8_0.

    Raises:
        ModelError: the gguf package is missing, or the files do not fit together.
    """
    try:
        import gguf
        import numpy as np
    except ImportError as exc:
        raise ModelError("merging the adapter needs the gguf package: pip install gguf") from exc
    start = time.perf_counter()
    readers = []
    for path in (base, adapter):
        try:
            readers.append(gguf.GGUFReader(str(path)))
        except (ValueError, KeyError, IndexError, TypeError, OSError) as exc:
            raise ModelError(f"{path} is not a GGUF file gguf can read ({exc})") from exc
    base_reader, adapter_reader = readers
    pairs, alpha = _lora_pairs(adapter_reader)
    arch = base_reader.fields["general.architecture"].contents()
    Q = gguf.GGMLQuantizationType
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(str(tmp), arch)
        for field in base_reader.fields.values():
            if field.name.startswith("GGUF.") or field.name in ("general.architecture", "general.file_type"):
                continue
            vtype = field.types[0]
            sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub_type)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
        used = set()
        for tensor in base_reader.tensors:
            kind = tensor.tensor_type
            if tensor.name in pairs or kind not in (Q.F32, Q.F16, Q.Q8_0):
                weights = gguf.quants.dequantize(tensor.data, kind).astype(np.float32)
                if tensor.name in pairs:
                    a, b = pairs[tensor.name]
                    rank = a.shape[0]
                    if b.shape != (weights.shape[0], rank) or a.shape[1] != weights.shape[1]:
                        raise ModelError(f"the adapter's {tensor.name} ({b.shape} x {a.shape}) does not fit the "
                                         f"base's {weights.shape}")
                    weights += (alpha / rank) * (b @ a)
                    used.add(tensor.name)
                if weights.ndim == 2 and weights.shape[1] % 32 == 0:
                    data = gguf.quants.quantize(weights, Q.Q8_0)
                    writer.add_tensor(tensor.name, data, raw_shape=data.shape, raw_dtype=Q.Q8_0)
                else:
                    writer.add_tensor(tensor.name, weights)
            else:  # norms (F32) and the Q8_0 embedding: as they are
                writer.add_tensor(tensor.name, np.asarray(tensor.data), raw_shape=tensor.data.shape,
                                  raw_dtype=kind)
        missing = set(pairs) - used
        if missing:
            raise ModelError(f"the adapter changes {len(missing)} tensors the base does not have "
                             f"(e.g. {sorted(missing)[0]}); it was trained for another model")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.chmod(0o644)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for older in out.parent.glob(f"{_stem(adapter)}.merged-*.gguf"):
        if older != out:
            older.unlink(missing_ok=True)
    if say is not None:
        say(f"edgepilot: merged {adapter.name} into {base.name} in {time.perf_counter() - start:.1f} s ({out})")
    return out


def merged_model(base: Path, adapter: Path, *, say: Callable[[str], None] | None = None,
                 folder: Path | None = None) -> Path:
    """The merged GGUF of ``adapter`` on ``base``, written first when it is not there yet."""
    out = merged_path(base, adapter, folder)
    if out.is_file():
        return out
    if say is None:
        def say(line: str) -> None:
            print(line, file=sys.stderr)
    say(f"edgepilot: merging the adapter {adapter.name} into its base model once (a few seconds; kept in "
        f"{out.parent})")
    return merge_lora(base, adapter, out, say=say)
