"""Notes (Keep-style): a list of notes, an editor with an explicit Save, delete with confirmation.

Saving needs the editor's "Save" action; leaving the editor any other way
(back, the up arrow) discards what was typed. Saving an empty note discards it
with a toast, like Keep.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from edgepilot.sim import ui
from edgepilot.sim.apps.base import App, AppState, Route
from edgepilot.sim.ui import TITLE_H, Handler, Page, View

EMPTY_TOAST = "Empty note discarded"
LABELS = ["All notes", "Lists", "Ideas", "Work", "Personal", "Travel", "Shopping", "Archive"]


class Note(BaseModel):
    """One note. ``id`` 0 means "not assigned yet" (the state gives it a fresh id)."""

    id: int = 0
    title: str = ""
    body: str = ""


def _default_notes() -> list[Note]:
    data = [
        ("Groceries", "Milk\nEggs\nSpinach\nCoffee beans"),
        ("Packing list", "Passport\nCharger\nSunscreen\nHiking boots"),
        ("Book ideas", "A lighthouse keeper who collects lost letters"),
        ("Meeting notes", "Q3 roadmap review\nShip the beta by the 14th"),
        ("Recipes", "Lemon pasta: zest, butter, parmesan, pepper"),
        ("Workout plan", "Mon run 5 km\nWed yoga\nFri weights"),
        ("Gift ideas", "Mom: scarf\nDad: bird feeder"),
        ("Wi-Fi at the cabin", "Network CabinNet, password pinecone77"),
        ("Reading list", "The Overstory\nPiranesi\nKlara and the Sun"),
        ("Car", "Oil change due at 48,000 miles"),
        ("Chores", "Water the plants\nTake out recycling on Tuesday"),
        ("Podcast to try", "Hidden Brain, episode on habits"),
        ("Weekend 🌞", "Farmers market 🥕🍓\nBike ride to the lake 🚲"),
    ]
    return [Note(id=i, title=t, body=b) for i, (t, b) in enumerate(data, start=1)]


class NotesState(AppState):
    notes: list[Note] = Field(default_factory=_default_notes)

    @model_validator(mode="after")
    def _assign_ids(self) -> NotesState:
        next_id = max((n.id for n in self.notes), default=0) + 1
        for note in self.notes:
            if note.id <= 0:
                note.id = next_id
                next_id += 1
        return self


def first_line(body: str) -> str:
    """The first non-empty line of a note's body (the list shows it under the title)."""
    return next((line.strip() for line in body.splitlines() if line.strip()), "")


def _action(label: str, on_click: Handler, rid: str) -> View:
    """A text action in the toolbar (like "Save" in an editor)."""
    return View(cls="android.widget.Button", text=label, desc=label, rid=rid, on_click=on_click,
                height=TITLE_H, size=40, bold=True, align="center", style="plain", weight=0.0)


class Notes(App):
    """A Keep-style notes app."""

    package = "com.google.android.keep"
    label = "Notes"
    key = "notes"
    activity = ".activities.BrowseActivity"
    State = NotesState
    state: NotesState
    label_filter: str = LABELS[0]  # the selected label chip; not part of the state (it filters nothing)

    # ------------------------------------------------------------ pages

    def _page_main(self, route: Route) -> Page:
        body: list[View] = []
        for note in reversed(self.state.notes):
            body.append(ui.item(note.title or first_line(note.body) or "Empty note", self._open(note.id),
                                subtitle=first_line(note.body) if note.title else "", rid="note"))
        if not body:
            body.append(ui.text("Notes you add appear here", muted=True, rid="empty_view"))
        body.insert(0, ui.chips(LABELS, self.label_filter, self._pick_label, rid="label_chips"))
        # an overflow button with no label at all (a NAF node, as many real toolbars have); it does nothing
        more = View(cls="android.widget.ImageButton", rid="more_options", on_click=lambda: None, hint=":",
                    style="icon", height=TITLE_H - 30, weight=0.0)
        fab = View(cls="android.widget.ImageButton", text="+", desc="New note", rid="new_note_button",
                   on_click=self._new, size=80, align="center")
        return Page(title="Notes", body=body, fab=fab, actions=[more], activity=self.activity)

    def _pick_label(self, label: str) -> None:
        """Select a label chip (it only marks the chip: every note stays listed)."""
        self.label_filter = label

    def reset(self) -> None:
        super().reset()
        self.label_filter = LABELS[0]

    def _page_editor(self, route: Route) -> Page:
        note_id = route.get("id")
        title = self.form.get("title")
        text = self.form.get("body")
        lines = len(ui.wrap(text, 44, ui.WIDTH - 2 * ui.PAD - 48))
        body = [
            ui.field(title, self.form.setter("title"), rid="editable_title", hint="Title", height=150),
            ui.field(text, self.form.setter("body"), rid="edit_note_text", hint="Note",
                     on_submit=self._newline, height=max(600, lines * 60 + 80)),
        ]
        actions = []
        if note_id is not None:
            actions.append(_action("Delete", lambda: self.push(Route.to("confirm_delete", id=note_id)),
                                   rid="menu_delete"))
        actions.append(_action("Save", self._save, rid="menu_save"))
        return Page(title="Edit note" if note_id is not None else "New note", body=body, actions=actions,
                    activity=".activities.EditorActivity")

    def _page_confirm_delete(self, route: Route) -> Page:
        note = self._note(route.get("id"))
        name = (note.title or first_line(note.body)) if note else ""
        body = [
            ui.text(f"\u201c{name}\u201d will be deleted." if name else "This note will be deleted.",
                    rid="message", muted=True),
            ui.row(ui.button("Cancel", self.pop, rid="button2"),
                   ui.button("Delete", lambda: self._delete(route.get("id")), rid="button1", danger=True)),
        ]
        return Page(title="Delete note?", body=body, activity=".activities.EditorActivity")

    # ------------------------------------------------------------ handlers

    def _note(self, note_id: int | None) -> Note | None:
        return next((n for n in self.state.notes if n.id == note_id), None)

    def _open(self, note_id: int):
        def open_note() -> None:
            note = self._note(note_id)
            if note is None:
                return
            self.push(Route.to("editor", id=note_id))
            self.form.values.update(title=note.title, body=note.body)

        return open_note

    def _new(self) -> None:
        self.push(Route.to("editor"))

    def _newline(self) -> None:
        self.form.values["body"] = self.form.get("body") + "\n"

    def _save(self) -> None:
        note_id = self.route.get("id")
        title, body = self.form.get("title").strip(), self.form.get("body").rstrip()
        note = self._note(note_id)
        if not title and not body:
            if note is not None:
                self.state.notes.remove(note)
            self.toast(EMPTY_TOAST)
        elif note is None:
            self.state.notes.append(Note(id=self._next_id(), title=title, body=body))
            self.toast("Note saved")
        else:
            note.title, note.body = title, body
            self.toast("Note saved")
        self.pop()

    def _delete(self, note_id: int | None) -> None:
        self.state.notes = [n for n in self.state.notes if n.id != note_id]
        self.reset()
        self.phone.focus_cleared()
        self.toast("Note deleted")

    def _next_id(self) -> int:
        return max((n.id for n in self.state.notes), default=0) + 1

    # ------------------------------------------------------------ set-up hooks

    def setup_add_note(self, title: str, body: str = "", oldest: bool = False) -> None:
        """Add a note with a fresh id: the newest (shown first), or with ``oldest`` the last in the list."""
        note = Note(id=self._next_id(), title=title, body=body)
        if oldest:
            self.state.notes.insert(0, note)
        else:
            self.state.notes.append(note)
