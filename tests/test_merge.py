"""The bundled adapter merged into its base once: the weights are the base's plus the scaled LoRA, the model
answers as the base with its adapter does, the file is keyed on what it was made from, and a failed merge
leaves nothing behind and the run goes on with the adapter applied at run time."""

import os

import pytest

from edgepilot.errors import ConfigError
from edgepilot.models import merge
from edgepilot.models.builtin import DEFAULT_MODEL, adapter_of, builtin_path

if not os.environ.get("CI"):  # in CI a missing package is a failure, never a skip
    pytest.importorskip("gguf", reason="`make install-llm` installs gguf")
    pytest.importorskip("llama_cpp", reason="`make install-llm` installs llama-cpp-python")


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """(base, adapter, the merged file) for the bundled model, merged into a scratch folder."""
    base, adapter = builtin_path(), adapter_of(DEFAULT_MODEL)[1]
    out = merge.merged_model(base, adapter, folder=tmp_path_factory.mktemp("merged"), say=lambda line: None)
    return base, adapter, out


def test_the_merged_weights_are_the_base_plus_the_scaled_lora(merged):
    import gguf
    import numpy as np

    base, adapter, out = merged
    tensors = {name: {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
               for name, path in (("base", base), ("lora", adapter), ("merged", out))}
    lora = gguf.GGUFReader(str(adapter))
    alpha = float(lora.fields["adapter.lora.alpha"].contents())
    changed = sorted({name.rpartition(".")[0] for name in tensors["lora"]})
    assert len(changed) >= 10
    for name in (changed[0], changed[-1]):
        a = np.asarray(tensors["lora"][f"{name}.lora_a"].data, dtype=np.float32)
        b = np.asarray(tensors["lora"][f"{name}.lora_b"].data, dtype=np.float32)
        t = tensors["base"][name]
        expected = gguf.quants.dequantize(t.data, t.tensor_type) + alpha / a.shape[0] * (b @ a)
        m = tensors["merged"][name]
        assert m.tensor_type == gguf.GGMLQuantizationType.Q8_0
        got = gguf.quants.dequantize(m.data, m.tensor_type)
        delta = np.abs(b @ a).max()
        assert delta > 0.01  # the adapter does change this weight...
        assert np.abs(got - expected).max() <= np.abs(expected).max() / 250  # ...and Q8_0 keeps it to half a step
    untouched = next(n for n in tensors["base"] if n.endswith("attn_norm.weight"))
    assert (np.asarray(tensors["merged"][untouched].data) == np.asarray(tensors["base"][untouched].data)).all()
    fields = {r: gguf.GGUFReader(str(p)).fields for r, p in (("base", base), ("merged", out))}
    for key in ("tokenizer.chat_template", "tokenizer.ggml.tokens"):
        assert fields["merged"][key].contents() == fields["base"][key].contents()


def test_the_merged_model_answers_as_the_base_with_its_adapter(merged):
    import llama_cpp
    import numpy as np

    base, adapter, out = merged
    prompts = ["<|im_start|>user\nTask: Turn on airplane mode\nScreen:\n[0] Switch \"Airplane mode\" (checkable)\n"
               "You are the decider.<|im_end|>\n<|im_start|>assistant\n",
               "Open the Contacts app and call Ann Lee."]
    last = {}
    for tag, kwargs in (("lora", {"model_path": str(base), "lora_path": str(adapter)}),
                        ("base", {"model_path": str(base)}), ("merged", {"model_path": str(out)})):
        llm = llama_cpp.Llama(n_ctx=256, logits_all=True, verbose=False, **kwargs)  # logits kept in llm.scores
        rows = []
        for prompt in prompts:
            llm.reset()
            tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
            llm.eval(tokens)
            rows.append(np.array(llm.scores[len(tokens) - 1], dtype=np.float64))
        last[tag] = rows
        del llm
    for lora, plain, mine in zip(last["lora"], last["base"], last["merged"], strict=True):
        assert lora.argmax() in np.argsort(-mine)[:2]  # the same next token, or a near tie with it
        # far nearer the adapter's logits than the base's own: the adapter is in, not just the base requantized
        assert np.abs(mine - lora).mean() < np.abs(plain - lora).mean() / 5


def test_the_merge_is_kept_under_a_name_made_from_both_files(merged, tmp_path):
    base, adapter, out = merged
    assert merge.merged_path(base, adapter, out.parent) == out
    other = tmp_path / "other.lora.gguf"
    other.write_bytes(adapter.read_bytes() + b"\0")
    assert merge.merged_path(base, other, out.parent).name != out.name
    assert out.name.startswith("smollm2-135m-agent.merged-q8_0-")


def test_a_failed_merge_leaves_nothing_and_the_run_applies_the_adapter_unmerged(tmp_path, capsys, monkeypatch):
    from edgepilot.models import registry

    broken = tmp_path / "broken.lora.gguf"
    broken.write_bytes(b"GGUF not really")
    folder = tmp_path / "cache"
    with pytest.raises(ConfigError, match="cannot read .* as GGUF"):
        merge.merged_model(builtin_path(), broken, folder=folder, say=lambda line: None)
    assert not list(folder.glob("*"))  # no half-written model
    monkeypatch.setattr(merge.paths, "cache_dir", lambda: tmp_path / "user-cache")
    path, lora = registry.shipped_model(builtin_path(), broken, say=lambda line: None)
    assert (path, lora) == (builtin_path(), str(broken))
    assert "running the adapter unmerged" in capsys.readouterr().err
    assert not list((tmp_path / "user-cache").rglob("*.gguf*"))


def test_a_newer_merge_of_an_adapter_replaces_its_older_one(merged, tmp_path):
    base, adapter, out = merged
    stale = tmp_path / "smollm2-135m-agent.merged-q8_0-0000000000000000.gguf"
    stale.write_bytes(b"an older merge")
    fresh = merge.merged_model(base, adapter, folder=tmp_path, say=lambda line: None)
    assert fresh.is_file() and not stale.exists()
    assert fresh.read_bytes() == out.read_bytes()  # the merge is deterministic
