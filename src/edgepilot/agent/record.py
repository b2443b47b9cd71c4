"""Record a person's demonstration as a trajectory, one step at a time (``edgepilot record``).

The recorder shows the numbered elements of the screen, the person answers
with one command, the command is carried out on the device and written as a
step of an ordinary trajectory (docs/trajectories.md: the same ``steps.jsonl``
that ``edgepilot run`` writes, readable by ``edgepilot replay``), and the new
screen is shown. Commands come from any text stream, so a recording can be
scripted (``--script FILE`` or a pipe):

    tap 5                  tap element 5 (or tap "Start chat": the element with that text)
    long 5                 long-press it
    type 3 Ann Lee         tap field 3 and type; type "hello" types into the field that has the focus
    replace 3 07:30        empty field 3, then type
    key back               also: back, home, enter (and the other key names of the action space)
    swipe up [5]           move the finger up (scroll a list down), across element 5 if given
    open Settings          launch an app by label or package
    wait 2                 let the app load
    done [ANSWER]          the task is done (a question's answer after it)
    screen, help, quit     show the screen again, list the commands, stop without finishing

A command that does not fit is explained and asked again; nothing is written
for it. Every step is written (and fsynced) when it is done, so Ctrl-C or the
end of the input keeps what was recorded (status ``interrupted``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import get_args

from edgepilot.actions import Action, Finish, Key, KeyName, LongPress, OpenApp, Swipe, Tap, Type, Wait
from edgepilot.agent.agents import Decision, Reflection
from edgepilot.agent.loop import RunResult, StepReport
from edgepilot.agent.trajectory import TrajectoryWriter
from edgepilot.controllers.base import ActResult, Device
from edgepilot.errors import ActionError, DeviceError, EdgepilotError, PerceptionError
from edgepilot.perception.change import observations_differ
from edgepilot.perception.describe import describe_action
from edgepilot.perception.types import Observation
from edgepilot.sop.screen import Screen, find

AGENT = "human"
KEYS: tuple[str, ...] = get_args(KeyName)
DIRECTIONS = ("up", "down", "left", "right")
HELP = """commands (an element is its number, or its text in double quotes):
  tap N | long N            tap or long-press element N
  type N TEXT               tap field N and type TEXT    (type "TEXT": into the focused field)
  replace N TEXT            empty field N, then type TEXT
  key NAME | back | home | enter
  swipe up|down|left|right [N]   the finger's direction; up scrolls a list down
  open APP                  launch an app by its label or package
  wait [SECONDS]            let the app catch up (default 1)
  done [ANSWER]             the task is done; after a question, give the answer
  screen | help | quit      show the screen again | this list | stop without finishing"""


@dataclass(frozen=True)
class Control:
    """A command that is not an action: ``screen``, ``help`` or ``quit``."""

    name: str


def parse_command(line: str, obs: Observation) -> Action | Control | None:
    """One command line as an action on ``obs`` (or a control word); None for a blank line or a comment.

    Raises:
        ActionError: the command is unknown or does not fit the screen; the message says what would.
    """
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    verb, _, rest = line.partition(" ")
    verb, rest = verb.lower(), rest.strip()
    if verb in ("screen", "help", "?", "quit", "exit"):
        return Control({"?": "help", "exit": "quit"}.get(verb, verb))
    if verb in ("back", "home", "enter") and not rest:
        return Key(key=verb)  # type: ignore[arg-type]
    if verb == "tap":
        return Tap(target=_element(rest, obs, verb))
    if verb in ("long", "long-press", "longpress"):
        return LongPress(target=_element(rest, obs, "long"))
    if verb in ("type", "replace"):
        return _type(verb, rest, obs)
    if verb == "key":
        key = rest.lower()
        if key not in KEYS:
            raise ActionError(f"no key {rest!r}; keys: {', '.join(KEYS)}")
        return Key(key=key)  # type: ignore[arg-type]
    if verb in ("swipe", "scroll"):
        direction, _, where = rest.partition(" ")
        if direction.lower() not in DIRECTIONS:
            raise ActionError(f"swipe which way? write swipe {'|'.join(DIRECTIONS)} [N]")
        target = _element(where, obs, "swipe") if where.strip() else None
        return Swipe(direction=direction.lower(), target=target)  # type: ignore[arg-type]
    if verb == "open":
        if not rest:
            raise ActionError("open which app? write open APP (a label like Settings, or a package name)")
        return OpenApp(app=_unquote(rest))
    if verb == "wait":
        try:
            return Wait(seconds=float(rest or 1))
        except ValueError as exc:
            raise ActionError(f"wait how long? write wait SECONDS (0 to 30), not {rest!r}") from exc
    if verb in ("done", "finish"):
        return Finish(status="success", answer=_unquote(rest) or None)
    raise ActionError(f"unknown command {verb!r}; `help` lists the commands")


def _element(ref: str, obs: Observation, verb: str) -> int:
    """An element by number or by its quoted text."""
    ref = ref.strip()
    if not ref:
        raise ActionError(f"{verb} which element? write {verb} N (a number from the list) or {verb} \"TEXT\"")
    if ref.isdigit():
        index = int(ref)
        if index >= len(obs.elements):
            raise ActionError(f"there is no element {index}; this screen has 0..{len(obs.elements) - 1}")
        return index
    label = _unquote(ref)
    hits = find(Screen.from_observation(obs), label, want="tap")
    if not hits:
        raise ActionError(f"no element shows {label!r}; use its number from the list")
    exact = [h for h in hits if label.casefold() in (line.casefold() for line in h.lines)] or hits
    if len(exact) > 1 and len({h.index for h in exact}) > 1 and not (exact[0].clickable and not exact[1].clickable):
        raise ActionError(f"{len(exact)} elements show {label!r} ({', '.join(str(h.index) for h in exact)}); "
                          "use the number of the one you mean")
    return exact[0].index


def _type(verb: str, rest: str, obs: Observation) -> Type:
    """``type N TEXT``, ``type "label" TEXT``, or ``type TEXT`` into the focused field."""
    ref: str | None = None
    text = rest
    head, _, tail = rest.partition(" ")
    if head.isdigit():
        ref, text = head, tail
    elif rest.startswith('"'):
        end = rest.find('"', 1)
        if end > 0 and rest[end + 1:].strip():
            ref, text = rest[: end + 1], rest[end + 1:]
    if ref is None:
        if verb == "replace":
            raise ActionError("replace which field? write replace N TEXT")
        if not rest:
            raise ActionError('type what? write type N TEXT, or type "TEXT" for the field that has the focus')
        if obs.focused_element is None:
            raise ActionError("no field has the focus; name one: type N TEXT")
        return Type(text=_unquote(rest))
    if not text.strip():
        raise ActionError(f'{verb} what? write {verb} N TEXT (type "TEXT" types into the focused field)')
    return Type(text=_unquote(text), target=_element(ref, obs, verb), clear=verb == "replace")


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


class Recorder:
    """Runs the record-a-step loop on a device, writing the trajectory as it goes.

    Args:
        device: the phone to record on.
        writer: where the trajectory goes (its meta should say ``agent: human`` and the goal).
        say: prints a line for the person (``click.echo``); ``ask`` prints the prompt without a newline.
    """

    def __init__(self, device: Device, writer: TrajectoryWriter, *, say: Callable[[str], None],
                 ask: Callable[[str], None] | None = None) -> None:
        self.device = device
        self.writer = writer
        self.say = say
        self.ask = ask or say

    def run(self, goal: str, lines: Iterator[str]) -> RunResult:
        """Record until ``done``, ``quit``, the end of ``lines``, Ctrl-C or a device error.

        Returns:
            How the recording ended; result.json is written in every case.
        """
        result = RunResult(goal=goal, agent=AGENT, status="interrupted",
                           reason="the input ended before `done`")
        start = time.perf_counter()
        obs: Observation | None = None
        try:
            obs = self.device.observe()
            self.say(f"goal: {goal}\n{obs.to_text()}")
            while True:
                self.ask(f"step {len(result.steps) + 1}> ")
                line = next(lines, None)
                if line is None:
                    break
                try:
                    command = parse_command(line, obs)
                except ActionError as exc:
                    self.say(f"  {exc}")
                    continue
                if command is None:
                    continue
                if isinstance(command, Control):
                    if command.name == "quit":
                        result.reason = "stopped by the person (quit)"
                        break
                    self.say(HELP if command.name == "help" else obs.to_text())
                    continue
                step, after = self._step(len(result.steps), line.strip(), command, obs)
                if step is None:
                    continue
                result.steps.append(step)
                if isinstance(command, Finish):
                    result.status, result.reason, result.answer = "finished", "the person finished", command.answer
                    break
                obs = after
                self.say(obs.to_text())
        except KeyboardInterrupt:
            result.reason = "stopped by the person (Ctrl-C)"
        except (DeviceError, PerceptionError) as exc:
            result.status, result.reason = "error", f"device: {exc}"
        except EdgepilotError as exc:
            result.status, result.reason = "error", f"{type(exc).__name__}: {exc}"
        result.seconds = time.perf_counter() - start
        self.writer.finish(result.to_record(), obs.screenshot_png if obs is not None else None)
        return result

    def _step(self, index: int, line: str, action: Action, obs: Observation) -> tuple[StepReport | None, Observation]:
        """Carry out one action and write it; a refusal by the device is shown and nothing is written."""
        t0 = time.perf_counter()
        try:
            done = self.device.act(action)
        except ActionError as exc:
            self.say(f"  the phone refused: {exc}")
            return None, obs
        act_ms = (time.perf_counter() - t0) * 1000
        step = StepReport(index, obs, Decision(action, thought=line), result=done, ms={"act": act_ms})
        after = obs
        if isinstance(action, Finish):
            step.outcome = Reflection("finished", action.answer or "")
        else:
            after = self.device.observe()
            changed = observations_differ(obs, after)  # a ticking clock or battery is no change
            step.outcome = Reflection("changed" if changed else "no_change")
        step.ms["total"] = (time.perf_counter() - t0) * 1000
        self.writer.write_step(step.to_record(), obs.screenshot_png)
        self.say(f"  {index + 1}. {describe_action(action, obs)}: {_said(done)}")
        return step, after


def _said(result: ActResult) -> str:
    return result.message or ("ok" if result.ok else "failed")
