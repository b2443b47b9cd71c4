"""Contacts: a searchable list of people; view, add, edit, delete, call or message a contact."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from edgepilot.sim import ui
from edgepilot.sim.apps.base import App, AppState, Route
from edgepilot.sim.ui import Page, View

LIST_ACTIVITY = ".activities.PeopleActivity"
VIEW_ACTIVITY = ".quickcontact.QuickContactActivity"
EDIT_ACTIVITY = ".activities.ContactEditorActivity"
CALL_ACTIVITY = ".dialer.InCallActivity"

DEFAULT_CONTACTS = [
    ("Alice Morgan", "555-0101", "alice.morgan@example.com", ""),
    ("Bruno Costa", "555-0102", "", "Neighbour, flat 4B"),
    ("Carmen Ruiz", "555-0103", "carmen.ruiz@example.com", ""),
    ("David Kim", "555-0104", "dkim@example.com", "Works at the design studio"),
    ("Emily Stone", "555-0105", "", ""),
    ("Fatima Noor", "555-0106", "fatima.noor@example.com", ""),
    ("George Hall", "555-0107", "", "Game night host"),
    ("Hannah Lee", "555-0108", "hannah.lee@example.com", ""),
    ("Ivan Petrov", "555-0109", "", ""),
    ("Julia Santos", "555-0110", "julia.santos@example.com", "Lunch on Thursdays"),
    ("Laura Bianchi", "555-0111", "", ""),
    ("Mom", "555-0112", "", ""),
    ("Nora Walsh", "555-0113", "nora.walsh@example.com", ""),
    ("Priya Shah", "555-0114", "", "Borrowed the ladder"),
    ("王小明", "555-0115", "xiaoming.wang@example.com", "Language exchange partner 🇨🇳"),
]


class Contact(BaseModel):
    """One person in the address book."""

    id: int
    name: str
    phone: str
    email: str = ""
    note: str = ""


class CallEntry(BaseModel):
    """One outgoing call placed from Contacts."""

    id: int
    name: str
    number: str


def _default_contacts() -> list[Contact]:
    return [Contact(id=i, name=n, phone=p, email=e, note=note)
            for i, (n, p, e, note) in enumerate(DEFAULT_CONTACTS, start=1)]


class ContactsState(AppState):
    contacts: list[Contact] = Field(default_factory=_default_contacts)
    call_log: list[CallEntry] = Field(default_factory=list)


def digits(value: str) -> str:
    """Only the digits of a phone number."""
    return re.sub(r"\D", "", value)


class Contacts(App):
    """The address book (``com.android.contacts``)."""

    package = "com.android.contacts"
    label = "Contacts"
    key = "contacts"
    activity = LIST_ACTIVITY
    State = ContactsState
    state: ContactsState

    def page(self, route: Route) -> Page:
        if route.name in ("contact", "edit", "delete", "call") and self.find(route.get("id")) is None:
            return Page(title="Contacts", body=[ui.text("This contact no longer exists.", muted=True)],
                        activity=VIEW_ACTIVITY)
        return getattr(self, f"_page_{route.name}")(route)

    # ------------------------------------------------------------ queries (also used by Messages)

    def find(self, contact_id: int | None) -> Contact | None:
        """The contact with that id, if any."""
        return next((c for c in self.state.contacts if c.id == contact_id), None)

    def sorted_contacts(self) -> list[Contact]:
        """All contacts in the order the list shows them."""
        return sorted(self.state.contacts, key=lambda c: (c.name.casefold(), c.id))

    def search(self, query: str) -> list[Contact]:
        """Contacts whose name contains ``query`` or whose number contains its digits."""
        q = query.strip().casefold()
        if not q:
            return self.sorted_contacts()
        q_digits = digits(q) if not re.search(r"[a-z]", q) else ""
        return [c for c in self.sorted_contacts()
                if q in c.name.casefold() or (q_digits and q_digits in digits(c.phone))]

    # ------------------------------------------------------------ pages

    def _page_main(self, route: Route) -> Page:
        query = self.form.get("search")
        people = self.search(query)
        body: list[View] = [ui.field(query, self.form.setter("search"), rid="search", hint="Search contacts")]
        if people:
            count = f"{len(people)} contact" + ("" if len(people) == 1 else "s")
            body.append(ui.text(count, rid="contact_count", size=34, muted=True, height=80))
        else:
            body.append(ui.text("No contacts found", rid="empty", muted=True))
        for c in people:
            body.append(ui.item(c.name, self._open(c.id), subtitle=c.phone, rid="contact"))
        fab = View(cls="android.widget.ImageButton", desc="Add contact", rid="add_contact", hint="+",
                   on_click=self._add)
        return Page(title="Contacts", body=body, fab=fab, activity=LIST_ACTIVITY)

    def _page_contact(self, route: Route) -> Page:
        c = self.find(route.get("id"))
        assert c is not None
        body: list[View] = [
            ui.row(ui.button("Call", lambda: self._call(c.id), rid="call"),
                   ui.button("Message", lambda: self._message(c.id), rid="message")),
            _detail(c.phone, "Mobile", "contact_phone"),
        ]
        if c.email:
            body.append(_detail(c.email, "Email", "contact_email"))
        if c.note:
            body.append(_detail(c.note, "Note", "contact_note"))
        body.append(ui.spacer(40))
        body.append(ui.row(ui.button("Edit", lambda: self._edit(c.id), rid="edit"),
                           ui.button("Delete", lambda: self.push(Route.to("delete", id=c.id)), rid="delete",
                                     danger=True)))
        return Page(title=c.name, body=body, activity=VIEW_ACTIVITY)

    def _page_add(self, route: Route) -> Page:
        return Page(title="Create contact", body=self._form_body(None), activity=EDIT_ACTIVITY)

    def _page_edit(self, route: Route) -> Page:
        return Page(title="Edit contact", body=self._form_body(route.get("id")), activity=EDIT_ACTIVITY)

    def _form_body(self, contact_id: int | None) -> list[View]:
        f = self.form
        save = lambda: self._save(contact_id)  # noqa: E731
        return [
            ui.field(f.get("name"), f.setter("name"), rid="name", hint="Name"),
            ui.field(f.get("phone"), f.setter("phone"), rid="phone", hint="Phone"),
            ui.field(f.get("email"), f.setter("email"), rid="email", hint="Email (optional)"),
            ui.field(f.get("note"), f.setter("note"), rid="note", hint="Note (optional)", on_submit=save),
            ui.row(ui.button("Cancel", self.pop, rid="cancel"), ui.button("Save", save, rid="save")),
        ]

    def _page_delete(self, route: Route) -> Page:
        c = self.find(route.get("id"))
        assert c is not None
        body = [
            ui.text(f"{c.name} will be permanently deleted from this device.", rid="dialog_message"),
            ui.row(ui.button("Cancel", self.pop, rid="cancel"),
                   ui.button("Delete", lambda: self._delete(c.id), rid="confirm_delete", danger=True)),
        ]
        return Page(title="Delete contact?", body=body, back=False, activity=VIEW_ACTIVITY)

    def _page_call(self, route: Route) -> Page:
        c = self.find(route.get("id"))
        assert c is not None
        body = [
            ui.spacer(120),
            ui.text(c.name, rid="caller_name", size=64, bold=True),
            ui.text(c.phone, rid="caller_number"),
            ui.text("Calling…", rid="call_status", muted=True),
            ui.spacer(200),
            ui.button("End call", self.pop, rid="end_call", desc="End call", danger=True),
        ]
        return Page(title="Phone", body=body, back=False, activity=CALL_ACTIVITY)

    # ------------------------------------------------------------ handlers

    def _open(self, contact_id: int):
        return lambda: self.push(Route.to("contact", id=contact_id))

    def _add(self) -> None:
        self.push(Route("add"))

    def _edit(self, contact_id: int) -> None:
        c = self.find(contact_id)
        assert c is not None
        self.push(Route.to("edit", id=contact_id))
        self.form.values.update(name=c.name, phone=c.phone, email=c.email, note=c.note)

    def _save(self, contact_id: int | None) -> None:
        name = self.form.get("name").strip()
        phone = self.form.get("phone").strip()
        if not name:
            self.toast("Enter a name")
            return
        if not digits(phone):
            self.toast("Enter a phone number")
            return
        fields = dict(name=name, phone=phone, email=self.form.get("email").strip(),
                      note=self.form.get("note").strip())
        existing = self.find(contact_id)
        if existing is not None:
            for key, value in fields.items():
                setattr(existing, key, value)
            self.pop()
            self.toast("Contact saved")
            return
        new_id = max((c.id for c in self.state.contacts), default=0) + 1
        self.state.contacts.append(Contact(id=new_id, **fields))
        self.replace(Route.to("contact", id=new_id))
        self.toast("Contact saved")

    def _delete(self, contact_id: int) -> None:
        self.state.contacts = [c for c in self.state.contacts if c.id != contact_id]
        self.stack = [self.root()]
        self.form.clear()
        self.phone.focus_cleared()
        self.toast("Contact deleted")

    def _call(self, contact_id: int) -> None:
        c = self.find(contact_id)
        assert c is not None
        log = self.state.call_log
        log.append(CallEntry(id=max((e.id for e in log), default=0) + 1, name=c.name, number=c.phone))
        self.push(Route.to("call", id=contact_id))

    def _message(self, contact_id: int) -> None:
        c = self.find(contact_id)
        assert c is not None
        messages = self.phone.by_key.get("messages")
        if messages is None or not hasattr(messages, "open_thread"):
            self.toast("No messaging app installed")
            return
        self.phone.start_app(messages.package)
        messages.open_thread(c.name)


def _detail(value: str, label: str, rid: str) -> View:
    """A read-only detail row: the value, and under it what it is."""
    return View(cls="android.widget.LinearLayout", rid=f"{rid}_row", height=190, style="row", children=[
        View(cls="android.widget.TextView", text=value, rid=rid, size=46, height=75),
        View(cls="android.widget.TextView", text=label, rid=f"{rid}_type", size=36, height=55, style="muted"),
    ])
