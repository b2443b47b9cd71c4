"""Messages: SMS conversations, a conversation screen with a compose bar, new chats."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from edgepilot.sim import ui
from edgepilot.sim.apps.base import App, AppState, Route
from edgepilot.sim.ui import Page, View

LIST_ACTIVITY = ".ui.ConversationListActivity"
THREAD_ACTIVITY = ".ui.conversation.ConversationActivity"
NEW_ACTIVITY = ".ui.conversation.NewConversationActivity"
NOW = "09:41"
PREVIEW_CHARS = 38
MAX_SUGGESTIONS = 6

# Oldest conversation first; message ids are given in this order, so the last one is the newest.
DEFAULT_THREADS: list[tuple[str, list[tuple[str, bool, str]]]] = [
    ("Priya Shah", [("Can I borrow your ladder this weekend?", False, "Mon"),
                    ("Sure, come by Saturday morning", True, "Mon")]),
    ("555-0199", [("Hi, is this still your number? It's Sam from the climbing gym", False, "Mon")]),
    ("Carmen Ruiz", [("Did you get the photos from the trip?", False, "Tue"),
                     ("Yes! They came out great", True, "Tue")]),
    ("Pharmacy", [("Your prescription is ready for pickup at Main St.", False, "Tue")]),
    ("George Hall", [("Game night at my place on Friday?", False, "Wed"),
                     ("Count me in", True, "Wed")]),
    ("Hannah Lee", [("Thanks for the book recommendation!", False, "Yesterday")]),
    ("Julia Santos", [("Are we still on for lunch tomorrow?", False, "Yesterday")]),
    ("David Kim", [("I sent you the slides for Monday", False, "07:50"),
                   ("Got them, thanks", True, "07:52")]),
    ("Mom", [("Don't forget to call grandma today", False, "08:10"),
             ("I will!", True, "08:15"),
             ("Love you ❤️", False, "08:16")]),
    ("Alice Morgan", [("Running late, save me a seat", False, "08:45")]),
    ("BankAlert", [("A card payment of $42.10 at City Grocer was approved.", False, "Yesterday"),
                   ("Your verification code is 482913. Do not share this code with anyone.", False, "09:02")]),
]


class Message(BaseModel):
    """One SMS; ``outgoing`` is True for messages this phone sent."""

    id: int
    text: str
    outgoing: bool = False
    time: str = NOW


class Thread(BaseModel):
    """A conversation with one contact (their display name) or a bare number."""

    contact: str
    messages: list[Message] = Field(default_factory=list)


def _default_threads() -> list[Thread]:
    threads, next_id = [], 1
    for contact, rows in DEFAULT_THREADS:
        msgs = []
        for text, outgoing, time in rows:
            msgs.append(Message(id=next_id, text=text, outgoing=outgoing, time=time))
            next_id += 1
        threads.append(Thread(contact=contact, messages=msgs))
    return threads


class MessagesState(AppState):
    threads: list[Thread] = Field(default_factory=_default_threads)


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _is_number(value: str) -> bool:
    return bool(_digits(value)) and not re.search(r"[A-Za-z]", value)


def _preview(m: Message) -> str:
    body = ("You: " if m.outgoing else "") + m.text
    if len(body) > PREVIEW_CHARS:
        body = body[: PREVIEW_CHARS - 1].rstrip() + "…"
    return f"{body} · {m.time}"


class Messages(App):
    """The SMS app (``com.google.android.apps.messaging``)."""

    package = "com.google.android.apps.messaging"
    label = "Messages"
    key = "messages"
    activity = LIST_ACTIVITY
    State = MessagesState
    state: MessagesState

    # ------------------------------------------------------------ queries

    def thread(self, contact: str) -> Thread | None:
        """The conversation with that contact (or number), if there is one."""
        return next((t for t in self.state.threads if t.contact == contact), None)

    def ordered_threads(self) -> list[Thread]:
        """Conversations, the one with the newest message first."""
        return sorted(self.state.threads, key=lambda t: -max((m.id for m in t.messages), default=-1))

    def _contacts(self) -> list:
        app = self.phone.by_key.get("contacts")
        return app.sorted_contacts() if app is not None and hasattr(app, "sorted_contacts") else []

    def _suggestions(self, query: str) -> list:
        q = query.strip().casefold()
        people = self._contacts()
        if q:
            q_digits = _digits(q) if _is_number(q) else ""
            people = [c for c in people if q in c.name.casefold() or (q_digits and q_digits in _digits(c.phone))]
        return people[:MAX_SUGGESTIONS] if q else people

    def resolve(self, recipient: str) -> str | None:
        """The thread name a typed recipient means: a contact's name, a known thread, or a number."""
        raw = recipient.strip()
        if not raw:
            return None
        people = self._contacts()
        for c in people:
            if c.name.casefold() == raw.casefold():
                return c.name
        for t in self.state.threads:
            if t.contact.casefold() == raw.casefold():
                return t.contact
        if _is_number(raw):
            for c in people:
                if _digits(c.phone) == _digits(raw):
                    return c.name
            for t in self.state.threads:
                if _is_number(t.contact) and _digits(t.contact) == _digits(raw):
                    return t.contact
            return raw
        return None

    # ------------------------------------------------------------ pages

    def _page_main(self, route: Route) -> Page:
        body: list[View] = []
        for t in self.ordered_threads():
            subtitle = _preview(t.messages[-1]) if t.messages else "No messages yet"
            body.append(ui.item(t.contact, self._opener(t.contact), subtitle=subtitle, rid="conversation"))
        if not body:
            body.append(ui.text("No conversations yet", rid="empty", muted=True))
        fab = View(cls="android.widget.ImageButton", desc="Start chat", rid="start_chat", hint="+",
                   on_click=lambda: self.push(Route("new")))
        return Page(title="Messages", body=body, fab=fab, activity=LIST_ACTIVITY)

    def _page_thread(self, route: Route) -> Page:
        contact = route.get("contact")
        t = self.thread(contact)
        body: list[View] = []
        if t is None or not t.messages:
            body.append(ui.text(f"Start a conversation with {contact}", rid="empty", muted=True))
        else:
            body.extend(_bubble(m, contact) for m in t.messages)
        return Page(title=contact, body=body, bottom=[self._compose_bar(lambda: self._send_to(contact))],
                    activity=THREAD_ACTIVITY)

    def _page_new(self, route: Route) -> Page:
        to = self.form.get("to")
        chosen = self.resolve(to)
        body: list[View] = [
            ui.field(to, self.form.setter("to"), rid="recipient", hint="To: type a name or number"),
            ui.header("Contacts" if not to.strip() else "Suggestions"),
        ]
        people = self._suggestions(to)
        for c in people:
            body.append(ui.item(c.name, self._choose(c.name), subtitle=c.phone, rid="contact_suggestion",
                                selected=c.name == chosen))
        if not people:
            hint = f"Send to {to.strip()}" if chosen else "No matching contacts"
            body.append(ui.text(hint, rid="empty", muted=True))
        return Page(title="New conversation", body=body, bottom=[self._compose_bar(self._send_new)],
                    activity=NEW_ACTIVITY)

    def _compose_bar(self, send) -> View:
        draft = self.form.get("compose")
        box = ui.field(draft, self.form.setter("compose"), rid="compose", hint="Text message")
        box.weight = 3.0
        send_button = ui.button("Send", send, rid="send", desc="Send", enabled=bool(draft.strip()))
        return ui.row(box, send_button, height=150)

    # ------------------------------------------------------------ navigation and handlers

    def open_thread(self, contact: str) -> None:
        """Show the conversation with ``contact`` over the list (it may have no messages yet)."""
        route = Route.to("thread", contact=contact)
        self.stack = [self.root(), route]
        self.form.clear()
        self.scroll = {route: 10**6}
        self.phone.focus_cleared()

    def _opener(self, contact: str):
        return lambda: self.open_thread(contact)

    def _choose(self, name: str):
        def choose() -> None:
            self.form.values["to"] = name
            self.phone.focus = "compose"

        return choose

    def _append(self, contact: str, text: str, *, outgoing: bool, time: str = NOW) -> Thread:
        next_id = max((m.id for t in self.state.threads for m in t.messages), default=0) + 1
        t = self.thread(contact)
        if t is None:
            t = Thread(contact=contact)
            self.state.threads.append(t)
            t = self.state.threads[-1]
        t.messages.append(Message(id=next_id, text=text, outgoing=outgoing, time=time))
        return t

    def _send_to(self, contact: str) -> None:
        text = self.form.get("compose").strip()
        if not text:
            return
        self._append(contact, text, outgoing=True)
        self.form.values["compose"] = ""
        self.scroll[self.route] = 10**6

    def _send_new(self) -> None:
        text = self.form.get("compose").strip()
        if not text:
            return
        contact = self.resolve(self.form.get("to"))
        if contact is None:
            self.toast("Choose a contact or enter a phone number")
            return
        self._append(contact, text, outgoing=True)
        self.open_thread(contact)

    # ------------------------------------------------------------ task set-up hooks

    def setup_incoming_message(self, contact: str, text: str, time: str = NOW) -> None:
        """Receive an SMS from ``contact``: append it and post a notification that opens the chat."""
        self._append(contact, text, outgoing=False, time=time)
        self.phone.notify(self.package, contact, text, open=lambda: self.open_thread(contact))


def _bubble(m: Message, contact: str) -> View:
    """One message in a conversation: its text, then who sent it and when."""
    body = ui.text(m.text, rid="message_text", size=44)
    meta = ui.text(f"{'You' if m.outgoing else contact} · {m.time}", rid="message_meta", size=32, muted=True,
                   height=60)
    return View(cls="android.widget.LinearLayout", rid="message_outgoing" if m.outgoing else "message_incoming",
                children=[body, meta], height=body.height + meta.height, style="row")
