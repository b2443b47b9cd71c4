"""What a confirmation tells the user: the consequence of the action, read from the screen.

"tap [6] "Delete"" does not say which note goes; the dialog on the screen
does ("“Packing list” will be deleted"). :func:`consequence` names the effect,
what the screen says about it (a dialog's message, the values in the form,
the screen's title) and, when the task names something the screen does not,
both ("the task names "groceries"; the screen names "Packing list"").
"""

from __future__ import annotations

import re

from edgepilot.perception.types import Observation, UINode
from edgepilot.policy.effects import DeviceEffect, one_line
from edgepilot.policy.labels import resource_words

VERBS = {"delete": "deletes", "send_message": "sends", "payment": "pays", "call": "places a call",
         "install": "installs an app", "permission": "grants a permission", "password": "types a secret",
         "secure_screen": "types on a secure screen", "close": "closes a window"}
_MESSAGE_IDS = ("message", "alert title", "toolbar title", "title template", "dialog message")
_QUOTED = re.compile(r"[\"“”„«»‘’']([^\"“”„«»‘’']{2,60})[\"“”„«»‘’']")
LIMIT = 300


def screen_says(obs: Observation, effect: DeviceEffect) -> list[str]:
    """What the screen says about an effect: a dialog's title and message, the form's filled fields.

    Text the action itself would type is never repeated (it may be a secret; the prompt shows the action).
    """
    said: list[str] = []
    for n in obs.nodes:
        if n.package != obs.package or not n.text.strip():
            continue
        if resource_words(n.resource_id) in _MESSAGE_IDS:
            said.append(one_line(n.text, 80))
    fields = [n for n in obs.elements if n.editable and not n.password and n.text.strip() and n is not effect.node]
    for n in fields[:3]:
        name = resource_words(n.resource_id) or "field"
        said.append(f'{name}: "{one_line(n.text, 60)}"')
    return said


def _names(lines: list[str]) -> list[str]:
    """Things the screen names: quoted phrases in its messages, and the values of its fields."""
    out: list[str] = []
    for line in lines:
        out.extend(m.strip() for m in _QUOTED.findall(line))
    return [n for n in dict.fromkeys(out) if n]


def consequence(effect: DeviceEffect | None, category: str, obs: Observation, task: str) -> str:
    """One plain sentence: what the action does, what the screen says about it, and any clash with the task."""
    if effect is None:
        return ""
    node: UINode | None = effect.node
    verb = VERBS.get(category)
    pressed = f'presses "{one_line(node.label, 40)}"' if node is not None and node.label and effect.kind == "activate" \
        else effect.describe()
    head = f"this {pressed}" + (f" ({verb})" if verb and verb not in pressed else "")
    if effect.detail and effect.kind != "unknown":
        head += f"; {effect.detail}"
    said = screen_says(obs, effect)
    text = head + (": " + "; ".join(said) if said else "")
    task_names = [n.casefold() for n in _QUOTED.findall(task)]
    screen_names = _names(said)
    folded = task.casefold()
    if task_names and screen_names and not any(t in " ".join(said).casefold() for t in task_names):
        text += f'. The task names "{task_names[0]}"; the screen names "{screen_names[0]}"'
    elif not task_names and screen_names and not any(n.casefold() in folded for n in screen_names):
        text += f'. The task does not mention "{screen_names[0]}"'
    return text if len(text) <= LIMIT else text[: LIMIT - 1] + "…"
