"""config.toml checking and model specs: every mistake a user can make gets a clear error."""

import pytest

from edgepilot.config import Config, load_config
from edgepilot.errors import ConfigError, ModelError
from edgepilot.models.registry import list_models, open_model, resolve


def test_no_file_means_defaults(tmp_path):
    assert load_config(tmp_path / "missing.toml") == Config()


def test_a_typo_names_the_closest_key(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('modle = "x"\nmax_step = 3\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "did you mean 'model'" in str(err.value) and "did you mean 'max_steps'" in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("text, words", [
    ("threads = 'many'\n", "threads"),
    ("gpu_layers = -5\n", "gpu_layers"),
    ("model = [\n", "not valid TOML"),
    ("[models]\nqwen = 3\n", "models.qwen"),
])
def test_bad_values_are_named(tmp_path, text, words):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        load_config(path)


def test_the_env_var_points_at_the_file(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text('max_steps = 7\n[models]\nmine = "/nowhere/m.gguf"\n')
    monkeypatch.setenv("EDGEPILOT_CONFIG", str(path))
    config = load_config()
    assert config.max_steps == 7 and config.models == {"mine": "/nowhere/m.gguf"}


def test_specs_resolve(tmp_path):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    config = Config(models={"mine": str(gguf), "srv": "http://127.0.0.1:9/v1#qwen"})
    assert resolve(None, config).kind == "builtin"
    assert resolve("mine", config).location == str(gguf) and resolve("mine", config).kind == "gguf"
    assert resolve("srv", config).kind == "url"
    assert resolve(str(gguf)).name == "tiny"
    with pytest.raises(ConfigError, match="download it"):
        resolve("https://example.com/model.gguf")
    with pytest.raises(ConfigError, match="unknown model 'gpt-5'.*mine, srv"):
        resolve("gpt-5", config)


def test_models_are_listed_with_what_is_missing(tmp_path):
    rows = {r["name"]: r for r in list_models(Config(models={"gone": str(tmp_path / "gone.gguf"),
                                                             "srv": "http://127.0.0.1:9/v1"}))}
    assert rows["smollm2-135m-agent"]["default"] and rows["smollm2-135m-agent"]["kind"] == "builtin"
    assert rows["smollm2-135m-agent"]["available"] and not rows["smollm2-135m"]["default"]
    assert rows["gone"]["available"] is False and rows["gone"]["note"] == "file not found"
    assert rows["srv"]["kind"] == "url" and rows["srv"]["available"]


def test_opening_a_missing_file_or_a_lora_on_a_server_fails_clearly(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        open_model(str(tmp_path / "absent.gguf"))
    with pytest.raises(ConfigError, match="LoRA"):
        open_model("http://127.0.0.1:9/v1", lora_path="x.gguf")
    backend = open_model("http://127.0.0.1:9/v1#qwen")  # nothing listens: the first call fails, not this
    assert backend.name == "qwen"


def test_a_builtin_base_with_its_adapter_resolves_to_the_base_file_and_the_adapter(tmp_path, monkeypatch):
    from edgepilot.models import builtin
    from edgepilot.models.registry import base_of

    name, base, file = "tiny-agent", "smollm2-135m", "tiny-agent.lora.gguf"
    monkeypatch.setitem(builtin.ADAPTERS, name, (base, file, "a test adapter"))
    assert resolve(name).kind == "builtin" and base_of(name) == base and base_of(base) == base
    assert base_of("http://127.0.0.1:9/v1") == "http://127.0.0.1:9/v1"
    assert builtin.builtin_path(name) == builtin.builtin_path(base)  # what distill trains on
    monkeypatch.setattr(builtin, "ADAPTER_DIR", tmp_path)  # an installation that lost the file
    with pytest.raises(ModelError, match=f"reinstall edgepilot, or use '{base}'"):
        open_model(name)
    rows = {r["name"]: r for r in list_models()}
    assert rows[name]["available"] is False and "missing" in rows[name]["note"]
    (tmp_path / file).write_bytes(b"GGUF")
    assert builtin.adapter_of(name) == (base, tmp_path / file)
    assert rows[base]["available"]


def test_each_shipped_adapter_is_the_one_its_recipe_and_eval_table_describe():
    import hashlib
    import json

    from edgepilot.models import builtin

    assert builtin.DEFAULT_MODEL in builtin.ADAPTERS and Config().model == builtin.DEFAULT_MODEL
    for name, (base, file, _) in builtin.ADAPTERS.items():
        adapter = builtin.ADAPTER_DIR / file
        table = json.loads((builtin.ADAPTER_DIR / f"{name}.eval.json").read_text())
        recipe = json.loads((builtin.ADAPTER_DIR / f"{name}.recipe.json").read_text())
        assert hashlib.sha256(adapter.read_bytes()).hexdigest() == table["lora_sha256"]  # measured: this file
        base_sha = hashlib.sha256(builtin.builtin_path(base).read_bytes()).hexdigest()
        assert recipe["base_model"]["sha256"] == base_sha  # trained on the base it is applied to
        assert {"student", "student+sop"} <= {row["arm"] for row in table["table"]}
