"""SOP libraries: folders of SOP files searched in order (project, user, bundled).

An SOP in an earlier folder shadows one of the same name in a later folder. A
broken file does not take the library down: it is kept in :attr:`SopLibrary.problems`
(``edgepilot sop list`` shows them) and the other SOPs stay usable.
"""

from __future__ import annotations

import difflib
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edgepilot import paths
from edgepilot.errors import SopError
from edgepilot.sop.format import Sop, SopProblem, load_sop

Origin = Literal["project", "user", "bundled"]
ORIGINS: tuple[Origin, ...] = ("project", "user", "bundled")
BUNDLED_DIR = Path(__file__).with_name("bundled")
PROJECT_SUBDIR = "sops"
SKIPPED_FILES = {"readme.md"}


def project_dir(cwd: Path | None = None) -> Path:
    """The project's SOP folder: ``./sops`` under ``cwd`` (the current directory by default)."""
    return Path(cwd or Path.cwd()) / PROJECT_SUBDIR


@dataclass(frozen=True)
class Folder:
    """One place SOPs are read from, and which kind of place it is."""

    origin: Origin
    path: Path


@dataclass(frozen=True)
class Entry:
    """An SOP as found in a library: the SOP, the file, and which folder it came from."""

    sop: Sop
    origin: Origin
    path: Path


def default_folders(project: Path | None = None, user: Path | None = None) -> list[Folder]:
    """The search order: project folder, user folder, bundled SOPs."""
    return [Folder("project", project if project is not None else project_dir()),
            Folder("user", user if user is not None else paths.user_sops_dir()),
            Folder("bundled", BUNDLED_DIR)]


@dataclass
class SopLibrary:
    """The SOPs of several folders, earlier folders first; build it with :func:`load_library`."""

    folders: tuple[Folder, ...]
    entries: dict[str, Entry] = field(default_factory=dict)
    shadowed: list[tuple[Entry, Entry]] = field(default_factory=list)
    """(hidden, winner) pairs: an SOP that a same-named SOP of an earlier folder hides."""
    problems: list[SopProblem] = field(default_factory=list)
    index: object | None = field(default=None, repr=False)  # the retriever built over it (sop.retrieve), once
    _views: dict[str, SopLibrary] = field(default_factory=dict, repr=False)

    def without(self, names: Iterable[str]) -> SopLibrary:
        """The library less the procedures named, with an index and device views of its own (a copy made with
        :func:`dataclasses.replace` would share this one's cached views, and offer what it hides)."""
        gone = set(names)
        return SopLibrary(self.folders, {n: e for n, e in self.entries.items() if n not in gone}, self.shadowed,
                          self.problems)

    def for_device(self, kind: str) -> SopLibrary:
        """The procedures for a device of this kind (``android``, ``desktop``): a phone's procedure is never
        offered on a desktop, nor a desktop's on a phone (``device`` in docs/sops.md); kept, with its index."""
        view = self._views.get(kind)
        if view is None:
            view = SopLibrary(self.folders, {n: e for n, e in self.entries.items() if e.sop.fits(kind)},
                              self.shadowed, self.problems)
            self._views[kind] = view
        return view

    def __iter__(self) -> Iterator[Sop]:
        return (e.sop for e in self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    @property
    def sops(self) -> list[Sop]:
        return [e.sop for e in self.entries.values()]

    def entry(self, name: str) -> Entry:
        """The entry of the SOP called ``name``.

        Raises:
            SopError: no SOP has that name (the message suggests close names).
        """
        if name in self.entries:
            return self.entries[name]
        close = [n for n in self.entries if name and name.lower() in n][:3]
        close = close or difflib.get_close_matches(name, list(self.entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `edgepilot sop list` shows them"
        raise SopError(f"no SOP named {name!r}{hint}")

    def get(self, name: str) -> Sop:
        """The SOP called ``name`` (see :meth:`entry`)."""
        return self.entry(name).sop



def load_library(folders: Sequence[Folder] | None = None, *, project: Path | None = None,
                 user: Path | None = None) -> SopLibrary:
    """Read every SOP of the folders (default: :func:`default_folders`), earlier folders winning.

    Missing folders are skipped; unreadable or invalid files become :attr:`SopLibrary.problems`.
    """
    folders = tuple(folders) if folders is not None else tuple(default_folders(project, user))
    library = SopLibrary(folders=folders)
    for folder in folders:
        for entry in _read_folder(folder, library.problems):
            winner = library.entries.get(entry.sop.name)
            if winner is None:
                library.entries[entry.sop.name] = entry
            elif winner.origin == entry.origin and winner.path.parent == entry.path.parent:
                library.problems.append(SopProblem(str(entry.path), 0, f"another file of this folder "
                                                   f"({winner.path.name}) already defines the SOP "
                                                   f"{entry.sop.name!r}; this one is ignored, rename one"))
            else:
                library.shadowed.append((entry, winner))
    return library


def _read_folder(folder: Folder, problems: list[SopProblem]) -> list[Entry]:
    if not folder.path.exists():
        return []
    if not folder.path.is_dir():
        problems.append(SopProblem(str(folder.path), 0, f"the {folder.origin} SOP folder is not a folder"))
        return []
    entries = []
    try:
        files = sorted(p for p in folder.path.iterdir() if p.suffix.lower() == ".md"
                       and p.name.lower() not in SKIPPED_FILES)
    except OSError as exc:
        problems.append(SopProblem(str(folder.path), 0, f"cannot list the folder: {exc.strerror or exc}"))
        return []
    for path in files:
        try:
            entries.append(Entry(load_sop(path), folder.origin, path))
        except SopError as exc:
            problems.extend(exc.problems or [SopProblem(str(path), 0, str(exc))])
    return entries


def install_sop(path: Path, folder: Path | None = None, *, force: bool = False) -> Path:
    """Check an SOP file and copy it into the user folder as ``NAME.md``.

    Returns:
        Where it was written.

    Raises:
        SopError: the file is invalid, or an SOP of that name is already there and ``force`` is off.
    """
    sop = load_sop(path)
    folder = folder if folder is not None else paths.user_sops_dir()
    target = folder / f"{sop.name}.md"
    same = [e.path for e in _read_folder(Folder("user", folder), []) if e.sop.name == sop.name]
    if target.exists() and target not in same:
        same.append(target)
    if same and not force:
        raise SopError(f"the user folder already has the SOP {sop.name!r} ({same[0]}); use --force to replace it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for other in same:
            if other != target:
                other.unlink()
        if Path(path).resolve() != target.resolve():
            shutil.copyfile(path, target)
    except OSError as exc:
        raise SopError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target
