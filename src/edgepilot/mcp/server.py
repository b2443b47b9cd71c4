"""The MCP server: five tools over the official SDK's ``MCPServer``, served on stdio (or HTTP, :mod:`.http`).

    list_devices                       what can be driven
    observe(device, screenshot)        the numbered elements (and the screenshot)
    act(goal, action, device)          one action, through the policy gate; questions go to the client
    run_task(goal, device, model)      the whole task with the local agent; questions go to the client
    read_trajectory(run)               a saved run, step by step

The tools' work is in :class:`~edgepilot.mcp.tools.Toolbox` and runs in worker threads (devices and models
block); a question of the policy gate comes back to the event loop as an elicitation to the client whose call
asked, or, on MCP 2026-07-28, ends an ``act`` call with the question (:mod:`.consent`). On stdio the SDK
points file descriptor 1 at stderr while it serves, so nothing but the protocol reaches stdout; logs go to
stderr.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.elicitation import render_elicitation_schema
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import (
    CallToolResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    ImageContent,
    InputRequiredResult,
    TextContent,
    ToolAnnotations,
)
from mcp.types.version import is_version_at_least
from pydantic import Field, ValidationError

from edgepilot import __version__
from edgepilot.actions import Action
from edgepilot.agent.loop import RunControl, StepReport
from edgepilot.errors import EdgepilotError
from edgepilot.mcp.consent import (
    Asker,
    Consent,
    GivenValue,
    QuestionPending,
    answer_of,
    asking,
    digest,
    question,
    value_question,
    why_not,
)
from edgepilot.mcp.tools import ActOutcome, TaskSummary, Toolbox
from edgepilot.perception.describe import describe_action
from edgepilot.perception.types import Observation
from edgepilot.policy.confirm import ConfirmRequest, ConfirmResult
from edgepilot.safetext import for_terminal

if TYPE_CHECKING:
    from edgepilot.agent.session import AskValue

T = TypeVar("T")

QUESTION_AS_RESULT = "2026-07-28"
"""The first MCP version where a server asks only by ending the call with the question (``input_required``)."""
CONSENT_KEY = "consent"

INSTRUCTIONS = """\
edgepilot operates Android phones (a built-in virtual phone, real phones over adb) and desktops.
Look with observe: it numbers the screen's elements; act takes one action on those numbers. Every action
passes edgepilot's least-privilege policy for the goal you state: steps the goal needs go ahead, sensitive
ones (sending, paying, deleting, passwords, apps the goal does not name) are put to the user as a question
(elicitation), and a refusal is final for that goal on that screen. run_task lets edgepilot's own on-device
agent do a whole task; read_trajectory replays a saved run."""

DeviceSpec = Annotated[str, Field(description="virtual (the built-in virtual phone, started on first use and kept "
                                              "for the session), an adb serial, SERIAL@HOST:PORT, or "
                                              "desktop[:DISPLAY]; see list_devices")]
Goal = Annotated[str, Field(min_length=1, max_length=500,
                            description="The task, in one sentence (\"turn on Bluetooth\"). The policy's scope "
                                        "derives from it: the apps and steps it names are allowed, others are "
                                        "asked about or refused.")]
ActionJson = Annotated[Action, Field(description=(
    "One action as JSON, e.g. {\"type\": \"tap\", \"target\": 3} (an element number from the last screen), "
    "{\"type\": \"type\", \"text\": \"hello\", \"target\": 5}, {\"type\": \"key\", \"key\": \"back\"}, "
    "{\"type\": \"swipe\", \"direction\": \"up\"}, {\"type\": \"open_app\", \"app\": \"Settings\"}."))]
Screenshot = Annotated[bool, Field(description="Also return the screenshot (PNG).")]
ModelSpec = Annotated[str | None, Field(description="The model: a built-in name, a name from config.toml, a .gguf "
                                                    "path or a server URL (default: the server's); loaded on first "
                                                    "use and kept.")]
StepBudget = Annotated[int | None, Field(ge=1, le=200, description="Step budget (default: config, 20).")]
RunRef = Annotated[str, Field(description="A run id as run_task returns it (the trajectory folder's name), or a "
                                          "trajectory folder's absolute path.")]
Verbose = Annotated[bool, Field(description="Also each screen and every model prompt and answer.")]


def build_server(toolbox: Toolbox) -> MCPServer:
    """The MCP server whose tools work through ``toolbox``."""
    server = MCPServer("edgepilot", title="edgepilot", instructions=INSTRUCTIONS, version=__version__,
                       log_level="WARNING")
    tools = Tools(toolbox)
    looks = ToolAnnotations(read_only_hint=True)
    acts = ToolAnnotations(destructive_hint=True, open_world_hint=True)
    server.add_tool(tools.list_devices, annotations=looks)
    server.add_tool(tools.observe, annotations=looks)
    server.add_tool(tools.act, annotations=acts, structured_output=False)
    server.add_tool(tools.run_task, annotations=acts)
    server.add_tool(tools.read_trajectory, annotations=looks)
    return server


class Tools:
    """The tools as the client sees them (names, arguments, descriptions), each handing its work to the
    :class:`Toolbox` in a worker thread."""

    def __init__(self, toolbox: Toolbox) -> None:
        self.toolbox = toolbox

    async def list_devices(self) -> list[dict[str, str]]:
        """The devices edgepilot can drive: the built-in virtual phone (always there), the devices this server has
        open, running `edgepilot sim serve` phones, adb devices and a local desktop. Pass a row's `device` to the
        other tools."""
        return await _in_thread(self.toolbox.list_devices)

    async def observe(self, device: DeviceSpec = "virtual", screenshot: Screenshot = False) -> CallToolResult:
        """The screen now: the app in front and its elements, one per line as `[N] Class "text" (flags)`. The
        numbers are what act's `target` takes; they hold for this screen only."""
        obs = await _in_thread(self.toolbox.observe, device)
        return CallToolResult(content=_screen("Screen:", obs, screenshot))

    async def act(self, goal: Goal, action: ActionJson, ctx: Context, device: DeviceSpec = "virtual",
                  screenshot: Screenshot = False) -> CallToolResult | InputRequiredResult:
        """Carry out one action on the device, if edgepilot's policy allows it for `goal`. Sensitive steps are put
        to the user first as a question (elicitation; on MCP 2026-07-28 the call ends with the question and is
        made again with the answer); a client that cannot ask gets them refused. A refusal, or a screen that
        changed since you last saw it, comes back as an error with the screen as it is now: the action was not
        carried out. On success, the screen after the action."""
        with asking(_asker(ctx, round_trip=True)):
            try:
                outcome: ActOutcome = await _in_thread(self.toolbox.act, device, action, goal)
            except QuestionPending as pending:
                return _input_required(pending)
        return CallToolResult(content=_screen(f"{for_terminal(outcome.message)}\n\nScreen now:", outcome.screen,
                                              screenshot), is_error=not outcome.done)

    async def run_task(self, goal: Goal, ctx: Context, device: DeviceSpec = "virtual", model: ModelSpec = None,
                       max_steps: StepBudget = None) -> TaskSummary:
        """Let edgepilot's on-device agent do a whole task on the device, every action through the same policy as
        act, its questions put to the user (elicitation; on MCP 2026-07-28, where a server cannot ask during a
        call, they are refused). Returns how it ended (status finished, gave_up, stuck, budget, stopped or error),
        the steps taken, the answer and the saved trajectory (for read_trajectory). Cancelling the call stops the
        run."""
        control = RunControl()
        asks = _value_asker(ctx, self.toolbox.config.confirm_timeout)
        work = functools.partial(self.toolbox.run_task, goal, device, model, max_steps, control=control,
                                 on_step=_progress(ctx), ask_value=asks)
        with asking(_asker(ctx, round_trip=False)):
            try:
                return await _in_thread(work, cancellable=True)
            except anyio.get_cancelled_exc_class():
                control.stop("the MCP client cancelled the call")
                raise

    async def read_trajectory(self, run: RunRef, verbose: Verbose = False) -> str:
        """A saved run step by step: goal, model, each action with the policy's decision and what the phone said,
        how it ended. Text from screens and models is shown with control characters escaped."""
        return await _in_thread(self.toolbox.read_trajectory, run, verbose=verbose)


async def _in_thread(fn: Callable[..., T], *args: Any, cancellable: bool = False, **kwargs: Any) -> T:
    """Run blocking work in a worker thread (it may ask the client through :mod:`.consent`); edgepilot's errors
    become the tool's error result, one safe line."""
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), abandon_on_cancel=cancellable)
    except (EdgepilotError, ValueError) as exc:
        raise ToolError(for_terminal(exc, newlines=False)) from exc


def _screen(head: str, obs: Observation, screenshot: bool) -> list[TextContent | ImageContent]:
    text = f"{head}\n{for_terminal(obs.to_text())}"  # the screen's text is untrusted: controls shown as escapes
    content: list[TextContent | ImageContent] = [TextContent(type="text", text=text)]
    if screenshot and obs.screenshot_png:
        content.append(ImageContent(type="image", data=base64.b64encode(obs.screenshot_png).decode("ascii"),
                                    mime_type="image/png"))
    return content


def _asker(ctx: Context, *, round_trip: bool) -> Asker:
    """Asks the client of this call, from the call's worker thread: an elicitation request while the call waits;
    or, where the protocol has the question be the call's result (``round_trip`` allows it), the answer the call
    was made again with, else :class:`QuestionPending`."""
    if is_version_at_least(ctx.protocol_version or "", QUESTION_AS_RESULT):
        return _answer_given(ctx) if round_trip else _refuse(
            f"a question cannot reach the client during a run on MCP {ctx.protocol_version}, where a server asks "
            "only by ending the call: refused; use act for steps that need a confirmation")
    cannot = why_not(ctx.client_capabilities, ctx.session.can_send_request)
    if cannot:
        return _refuse(cannot)

    def ask(request: ConfirmRequest, timeout: float) -> ConfirmResult:
        return anyio.from_thread.run(_elicit, ctx, request, timeout)

    return ask


def _value_asker(ctx: Context, timeout: float) -> AskValue:
    """Asks the client of this call for a value the goal left out (an elicitation, from the run's worker thread).
    None, and so a run that ends saying what is missing, for a secret (MCP forbids asking for one in a form: say
    it in the goal), and where no question can reach the client (:func:`why_not`, MCP 2026-07-28)."""
    cannot = (is_version_at_least(ctx.protocol_version or "", QUESTION_AS_RESULT)
              or bool(why_not(ctx.client_capabilities, ctx.session.can_send_request)))

    def ask(name: str, description: str, secret: bool) -> str | None:
        if cannot or secret:
            return None
        return anyio.from_thread.run(_elicit_value, ctx, name, description, timeout)

    return ask


async def _elicit_value(ctx: Context, name: str, description: str, timeout: float) -> str | None:
    with anyio.move_on_after(timeout):
        try:
            result = await ctx.elicit(value_question(name, description), GivenValue)
        except (MCPError, ValueError):
            return None
        data = getattr(result, "data", None)
        return data.value if result.action == "accept" and data is not None and data.value.strip() else None
    return None


def _refuse(why: str) -> Asker:
    return lambda request, timeout: ConfirmResult("no", why)


def _answer_given(ctx: Context) -> Asker:
    cannot = why_not(ctx.client_capabilities, True)
    response = (ctx.input_responses or {}).get(CONSENT_KEY)
    echoed = ctx.request_state

    def ask(request: ConfirmRequest, timeout: float) -> ConfirmResult:
        if cannot:
            return ConfirmResult("no", cannot)
        text = question(request)
        if not isinstance(response, ElicitResult) or echoed != digest(text):
            raise QuestionPending(text)
        try:
            consent = Consent.model_validate(response.content) if response.action == "accept" else None
        except ValidationError:
            return ConfirmResult("no", "the answer did not fill in the form: refused")
        return answer_of(response.action, consent)

    return ask


def _input_required(pending: QuestionPending) -> InputRequiredResult:
    ask = ElicitRequest(params=ElicitRequestFormParams(message=pending.question,
                                                       requested_schema=render_elicitation_schema(Consent)))
    return InputRequiredResult(input_requests={CONSENT_KEY: ask}, request_state=pending.digest)


async def _elicit(ctx: Context, request: ConfirmRequest, timeout: float) -> ConfirmResult:
    with anyio.move_on_after(timeout):
        try:
            result = await ctx.elicit(question(request), Consent)
        except (MCPError, ValueError) as exc:
            return ConfirmResult("no", f"the client did not answer the question ({for_terminal(exc, newlines=False)})"
                                       ": refused")
        return answer_of(result.action, getattr(result, "data", None))
    return ConfirmResult("no", f"no answer within {timeout:g} s: refused")


def _progress(ctx: Context) -> Callable[[StepReport, int], None]:
    """Reports each step of a run as MCP progress (where the client asked for it), from the run's thread."""

    def report(step: StepReport, budget: int) -> None:
        said = describe_action(step.action, step.obs) if step.action is not None else "no valid action"
        try:
            anyio.from_thread.run(ctx.report_progress, step.index + 1, budget,
                                  for_terminal(said, newlines=False, limit=200))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the client went away; the run goes on to its end (or its stop)

    return report


def serve_stdio(server: MCPServer) -> None:
    """Serve on this process's stdin and stdout until the client closes stdin."""
    anyio.run(server.run_stdio_async)
