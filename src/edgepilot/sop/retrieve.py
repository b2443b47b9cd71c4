"""Find the SOP for a task sentence: lexical ranking over name, description and phrasings, then
parameter filling.

Why a ranking of our own rather than bm25s: a library holds tens of SOPs, so
scoring every one in pure Python takes milliseconds, and ``edgepilot.sop``
stays free of numpy and scipy (the agent imports it on small devices).

The score of an SOP, 0..1, mixes three things (:data:`WEIGHTS`):

- coverage: BM25 of the task's words in the SOP's text (name, description,
  app labels, phrasings), each word's weight capped at its IDF, divided by the
  sum of the IDFs of the task's words (words no SOP uses count as the rarest);
- similarity: the best IDF-weighted F1 between the task's words and the words
  of one phrasing, which also punishes phrasings with words the task lacks;
- phrasing: the share of the task that one phrasing matches word for word.

Parameter values are not words an SOP can contain, so they are left out of the
task's words: quoted text, numbers, addresses, capitalised names, and what a
matching phrasing captures (the ``Ann Lee`` of ``Call {name}``). Below
:data:`THRESHOLD` nothing is returned: no SOP is better than a wrong one.

Parameters are filled from, in order: the phrasing that matches the task, the
words around a placeholder in any phrasing (``number of {contact}``), and the
values of the task whose shape (time, phone number, name... see
:mod:`edgepilot.sop.values`) is the shape of the parameter's example. A value
must have that shape whichever way it was found.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from edgepilot.sop.format import PLACEHOLDER, Sop, SopStep, render_steps
from edgepilot.sop.library import SopLibrary, load_library
from edgepilot.sop.values import Span, fits, shape, spans

THRESHOLD = 0.45
WEIGHTS = {"coverage": 0.5, "similarity": 0.4, "phrasing": 0.1}
MAX_TASK_CHARS = 500
MAX_VALUE_CHARS = 120
SHORT_VALUE_WORDS = 3  # a free-text value of a parameter whose example is this short may be 1 word longer
K1, B = 1.2, 0.75  # BM25's usual constants

STOPWORDS = frozenset("""
a an the to of for in on at by with from and or but is are be am was it its this that these those my me i you your
we our us please can could would will should do does did don doesn just now then so some any there here up as
into about also again very really want like let lets
""".split())
# one spelling per concept, applied to SOPs and tasks alike
CANONICAL = {"wi": "wifi", "fi": "", "wlan": "wifi", "wireless": "wifi", "sms": "text", "texts": "text",
             "aeroplane": "airplane", "plane": "airplane", "flight": "airplane", "e": "", "mail": "email",
             "labeled": "label", "labelled": "label", "telephone": "phone", "cellphone": "phone"}
PREPOSITIONS = ("at", "for", "on", "in", "to", "by", "with", "from", "of")
FILLERS = ("a", "an", "the", "my", "your", "this", "that", "some", "please")
_NO_STEM = frozenset({"news", "this", "is", "was", "has", "yes", "always", "bus", "gas", "status", "address"})
_EMPTY_VALUES = frozenset(FILLERS) | {"it", "is", "are", "me", "you", "them", "him", "her", "that", "this"}
_WEAK = STOPWORDS | {"s", "t", "what", "which", "who", "how", "when", "where"}
_WORD = re.compile(r"[a-z0-9]+")
_RAW_WORD = re.compile(r"[A-Za-z0-9]+")
_FILLER = r"(?:(?:" + "|".join(FILLERS) + r")[\W_]+)?"
_SPLIT = re.compile(r"(\{[a-z_][a-z0-9_]*\})")
QUOTED = re.compile(r'"[^"]*"|“[^”]*”')
"""Quoted text, straight or curly: a value, never words of what to do."""
_STRIP = " \t\"'“”‘’.,;:!?()[]"


def tokenize(text: str) -> list[str]:
    """Lower-case content words, lightly stemmed, with spelling variants merged (``Wi-Fi`` → ``wifi``)."""
    text = re.sub(r"\bwi[\s-]?fi\b", "wifi", text.lower())
    text = re.sub(r"\be-?mail", "email", text)
    out = []
    for word in _WORD.findall(text):
        word = CANONICAL.get(word, word)
        if not word or word in STOPWORDS or (len(word) == 1 and not word.isdigit()):
            continue
        out.append(_stem(word))
    return out


def _stem(word: str) -> str:
    if word in _NO_STEM or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "ls":
                word = word[:-1]
            break
    return word


@dataclass(frozen=True)
class Match:
    """The SOP chosen for a task, with its score and the parameter values found in the task."""

    sop: Sop
    score: float
    params: dict[str, str] = field(default_factory=dict)
    phrasing: str | None = None
    """The phrasing that matched the task word for word, if one did."""

    @property
    def missing(self) -> tuple[str, ...]:
        """Declared parameters the task gave no value for (they stay ``{name}`` in the text)."""
        return tuple(name for name in self.sop.params if name not in self.params)

    @property
    def steps(self) -> tuple[SopStep, ...]:
        """The SOP's steps with the parameters filled in."""
        return self.sop.fill(self.params)

    @property
    def text(self) -> str:
        """The filled procedure as prompt text."""
        return self.render()

    def render(self, *, current: int | None = None, screens: bool = True) -> str:
        """The filled procedure as prompt text; ``current`` marks the step the run is on."""
        return render_steps(self.sop.description, self.steps, current=current, screens=screens)


@dataclass(frozen=True)
class _Phrasing:
    sop: int
    text: str
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    literal_words: int


@dataclass(frozen=True)
class _Anchor:
    """The words around one placeholder of a phrasing, as a pattern that captures the value between them."""

    name: str
    strength: int
    pattern: re.Pattern[str]


class Retriever:
    """An index over SOPs; :meth:`retrieve` gives the best SOP above the threshold, or None."""

    def __init__(self, sops: Iterable[Sop], *, threshold: float = THRESHOLD) -> None:
        self.sops: list[Sop] = list(sops)
        self.threshold = threshold
        self._docs = [Counter(tokenize(_document(s))) for s in self.sops]
        self._lengths = [sum(d.values()) for d in self._docs]
        self._avg = (sum(self._lengths) / len(self._lengths)) if self._lengths else 1.0
        df: Counter[str] = Counter()
        for doc in self._docs:
            df.update(doc.keys())
        n = len(self.sops)
        self._idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self._unknown_idf = math.log(1 + (n + 0.5) / 0.5)
        self._vocabulary = frozenset(w.lower() for s in self.sops
                                     for w in _RAW_WORD.findall(" ".join([s.name, *s.app_labels, *s.phrasings])))
        self._phrasing_words = [[set(tokenize(PLACEHOLDER.sub(" ", p))) for p in s.phrasings] for s in self.sops]
        self._phrasings = [_Phrasing(i, p, _compile(p), tuple(PLACEHOLDER.findall(p)),
                                     len(_RAW_WORD.findall(PLACEHOLDER.sub(" ", p))))
                           for i, s in enumerate(self.sops) for p in s.phrasings]
        self._anchors = [_anchors(s) for s in self.sops]
        self._suffixes = [_suffixes(s) for s in self.sops]

    def retrieve(self, task: str, *, threshold: float | None = None) -> Match | None:
        """The best SOP for the task, or None when its score is below the threshold."""
        best = self.rank(task, k=1)
        limit = self.threshold if threshold is None else threshold
        return best[0] if best and best[0].score >= limit else None

    def rank(self, task: str, k: int = 5) -> list[Match]:
        """The ``k`` best SOPs for the task, best first, whatever their score."""
        task = " ".join(task.split())[:MAX_TASK_CHARS]
        if not self.sops or not task:
            return []
        query = self._query(task)
        full = self._whole_matches(task)
        scored = []
        for i in range(len(self.sops)):
            quality, phrasing, values = full.get(i, (0.0, None, {}))
            anchored = self._anchored(i, task)
            captured = {t for value in values.values() for t in tokenize(value)}
            captured |= {t for value, strength in anchored.values() if strength >= 2
                         for t in tokenize(value) if t not in self._idf}
            words = [t for t in query if t not in captured]
            score = (WEIGHTS["coverage"] * self._coverage(words, i) + WEIGHTS["similarity"] * self._similarity(words, i)
                     + WEIGHTS["phrasing"] * quality)
            scored.append((score, i, phrasing, values, anchored))
        scored.sort(key=lambda x: (-x[0], x[1]))
        spans_ = spans(task, self._vocabulary)
        return [Match(self.sops[i], round(score, 4), self._fill(i, task, values, anchored, spans_), phrasing)
                for score, i, phrasing, values, anchored in scored[:k]]

    def fill(self, sop: Sop, task: str) -> dict[str, str]:
        """The values of ``sop``'s parameters in ``task`` (``sop`` must be one of this index's SOPs)."""
        i = next(n for n, s in enumerate(self.sops) if s is sop or s == sop)
        task = " ".join(task.split())[:MAX_TASK_CHARS]
        _, _, values = self._whole_matches(task, only=i).get(i, (0.0, None, {}))
        return self._fill(i, task, values, self._anchored(i, task), spans(task, self._vocabulary))

    # ------------------------------------------------------------ scoring

    def _query(self, task: str) -> list[str]:
        """The task's words that an SOP could contain: not quoted text, numbers, addresses, or
        capitalised words that no SOP uses (names: ``Ann Lee``, ``Spotify``)."""
        out = []
        chunks = QUOTED.sub(" ", task).split()
        for n, chunk in enumerate(chunks):
            if "@" in chunk or re.search(r"\w\.\w", chunk):
                continue
            capital = _capital(chunk)
            if capital and (n == 0 or chunks[n - 1].endswith((".", "!", "?", ":"))):
                # a sentence starts with a capital anyway: a name only if the next word has one too
                capital = n + 1 < len(chunks) and _capital(chunks[n + 1])
            for token in tokenize(chunk):
                if any(ch.isdigit() for ch in token) or (capital and token not in self._idf):
                    continue
                out.append(token)
        return out

    def _coverage(self, words: list[str], i: int) -> float:
        """The share of the words' IDF that the SOP's text explains (BM25, each word capped at its IDF)."""
        doc, norm = self._docs[i], K1 * (1 - B + B * self._lengths[i] / self._avg)
        once = (K1 + 1) / (1 + K1)  # the BM25 weight of one occurrence in an SOP of average length
        total = reachable = 0.0
        for term in set(words):
            idf = self._idf.get(term, self._unknown_idf)
            tf = doc.get(term, 0)
            if tf:
                total += idf * min(1.0, tf * (K1 + 1) / (tf + norm) / once)
            reachable += idf
        return total / reachable if reachable else 0.0

    def phrasing_recall(self, sop: Sop, task: str) -> float:
        """The largest IDF-weighted share of one of ``sop``'s phrasings' content words that ``task`` holds
        (``sop`` must be one of this index's SOPs)."""
        i = next(n for n, s in enumerate(self.sops) if s is sop or s == sop)
        words = set(tokenize(task))
        best = 0.0
        for terms in self._phrasing_words[i]:
            total = sum(self._idf.get(t, 0.0) for t in terms)
            if total:
                best = max(best, sum(self._idf.get(t, 0.0) for t in terms & words) / total)
        return best

    def _similarity(self, words: list[str], i: int) -> float:
        """The best IDF-weighted F1 between the words and the words of one of the SOP's phrasings."""
        query = set(words)
        if not query:
            return 0.0

        def weight(terms: set[str]) -> float:
            return sum(self._idf.get(t, self._unknown_idf) for t in terms)

        best = 0.0
        for terms in self._phrasing_words[i]:
            common = weight(query & terms)
            if common:
                precision, recall = common / weight(terms), common / weight(query)
                best = max(best, 2 * precision * recall / (precision + recall))
        return best

    # ------------------------------------------------------------ parameters

    def _whole_matches(self, task: str, only: int | None = None) -> dict[int, tuple[float, str, dict[str, str]]]:
        """For each SOP, its phrasing that matches the most of the task word for word:
        (share of the task matched, phrasing, captured values)."""
        best: dict[int, tuple[tuple[float, int], str, dict[str, str]]] = {}
        length = max(1, len(task.strip(_STRIP)))
        for ph in self._phrasings:
            if only is not None and ph.sop != only:
                continue
            m = ph.pattern.search(task)
            if m is None:
                continue
            values = {name: _clean(m.group(name)) for name in ph.names}
            if not all(_plausible(self.sops[ph.sop], name, v) for name, v in values.items()):
                continue
            key = (len(task[m.start():m.end()].strip(_STRIP)) / length, ph.literal_words)
            if ph.sop not in best or key > best[ph.sop][0]:
                best[ph.sop] = (key, ph.text, values)
        return {i: (key[0], text, values) for i, (key, text, values) in best.items()}

    def _anchored(self, i: int, task: str) -> dict[str, tuple[str, int]]:
        """Values found by the words around a placeholder in any phrasing, with the anchor's strength
        (strongest anchors first; a value already given to another parameter is not taken twice)."""
        sop, found = self.sops[i], {}
        for anchor in self._anchors[i]:
            if anchor.name in found:
                continue
            taken = {v.casefold() for v, _ in found.values()}
            for m in anchor.pattern.finditer(task):
                value = _clean(m.group("v"))
                if value.casefold() not in taken and _plausible(sop, anchor.name, value):
                    found[anchor.name] = (value, anchor.strength)
                    break
        return found

    def _fill(self, i: int, task: str, values: dict[str, str], anchored: dict[str, tuple[str, int]],
              found: list[Span]) -> dict[str, str]:
        """Whole-match values, then anchored ones, then values followed by the words that follow the
        parameter in a phrasing, then values of the task with the parameter's shape, then the anchored
        rest. Free text is anchored by a strong anchor only, and when the task quotes text, only quoted
        text is taken (``titled "Chores"`` gives ``Chores``, not ``titled``)."""
        sop = self.sops[i]
        params = dict(values)
        quoted = {span.text.casefold() for span in found if span.quoted}
        for name, (value, strength) in anchored.items():
            if shape_of(sop, name) != "text" or (strength >= 2 and (not quoted or value.casefold() in quoted)):
                params.setdefault(name, value)
        for name, value in self._followed(i, task, params, found).items():
            params.setdefault(name, value)
        for name in sop.params:
            if name not in params and (value := self._shaped(sop, name, params, found)) is not None:
                params[name] = value
        for name, (value, _) in anchored.items():
            if value.casefold() not in {v.casefold() for v in params.values()} and (not quoted or
                                                                                  value.casefold() in quoted):
                params.setdefault(name, value)
        for name, value in params.items():  # quoted words as the task wrote them: "Happy birthday!" keeps its !
            params[name] = next((s.text for s in found if s.quoted and s.text != value  # "... ✓" keeps its ✓
                                 and _SYMBOLS_AROUND.sub("", s.text).casefold() == value.casefold()), value)
        return {name: params[name] for name in sop.params if name in params}

    def _followed(self, i: int, task: str, params: dict[str, str], found: list[Span]) -> dict[str, str]:
        """Values of a telling shape (a name, a time...) that the task follows with the words a phrasing
        puts right after the parameter: in ``Nikhil Ueda needs Vera Novak's number``, ``'s number`` (from
        ``Send {contact}'s number to {name}``) makes Vera Novak the contact and ``needs`` (from ``{name}
        needs the number of {contact}``) makes Nikhil Ueda the name, whatever their order. A name no
        phrasing anchors by the words before it used to go to the first parameter of its shape."""
        sop, out = self.sops[i], {}
        used = {v.casefold() for v in params.values()}
        for name, words in self._suffixes[i]:
            if name in params or name in out:
                continue
            want = shape_of(sop, name)
            for span in found:
                if span.quoted or span.text.casefold() in used or not fits(span.text, want) \
                        or _known(span.text, self._vocabulary):
                    continue
                after = [w.lower() for w in _RAW_WORD.findall(task[span.end:span.end + 40])][:len(words)]
                if after == list(words) and _plausible(sop, name, span.text):
                    out[name] = span.text
                    used.add(span.text.casefold())
                    break
        return out

    def _shaped(self, sop: Sop, name: str, params: dict[str, str], found: list[Span]) -> str | None:
        """The first value of the task, not used yet, with the shape of the parameter's example."""
        want = shape_of(sop, name)
        used = [v.casefold() for v in params.values()]
        for span in found:
            if any(span.text.casefold() in u for u in used):
                continue
            if want == "text" and not span.quoted:
                continue
            if want != "text" and (not fits(span.text, want) or _known(span.text, self._vocabulary)):
                continue
            if _plausible(sop, name, span.text):
                return span.text
        return None


def retrieve(task: str, library: object | None = None, *, threshold: float | None = None) -> Match | None:
    """The SOP for a task sentence, with its parameters filled; None when no SOP fits well enough.

    Args:
        task: the task sentence, as the user wrote it.
        library: a :class:`~edgepilot.sop.library.SopLibrary`, a :class:`Retriever`, or SOPs
            (default: :func:`~edgepilot.sop.library.load_library` from the current directory).
        threshold: the lowest score accepted (default :data:`THRESHOLD`).
    """
    return retriever_for(library).retrieve(task, threshold=threshold)


def rank(task: str, library: object | None = None, k: int = 5) -> list[Match]:
    """The ``k`` best SOPs for a task, whatever their score (for ``edgepilot sop find`` and tuning)."""
    return retriever_for(library).rank(task, k)


def fill_params(sop: Sop, task: str) -> dict[str, str]:
    """The values of ``sop``'s parameters found in ``task``, for an SOP chosen by other means."""
    return Retriever([sop]).fill(sop, task)


def retriever_for(library: SopLibrary | Retriever | Sequence[Sop] | None) -> Retriever:
    """The lexical index over ``library`` (default: :func:`~edgepilot.sop.library.load_library`); a library's
    index is built once and kept on it."""
    if isinstance(library, Retriever):
        return library
    if library is None:
        library = load_library()
    if isinstance(library, SopLibrary):
        if not isinstance(library.index, Retriever):
            library.index = Retriever(library.sops)
        return library.index
    return Retriever(library)


def _document(sop: Sop) -> str:
    words = [sop.name.replace("-", " "), sop.description, *sop.app_labels]
    words += [PLACEHOLDER.sub(" ", p) for p in sop.phrasings]
    return " \n ".join(words)


def _capital(chunk: str) -> bool:
    return chunk.lstrip(_STRIP)[:1].isupper()


def _known(text: str, vocabulary: frozenset[str]) -> bool:
    """Whether every word of a value is a word SOPs use (``Bank``, ``Chrome``): not a value of its own."""
    words = _RAW_WORD.findall(text.lower())
    return bool(words) and all(w in vocabulary for w in words)


def shape_of(sop: Sop, name: str) -> str:
    """The shape of parameter ``name``'s example (:func:`~edgepilot.sop.values.shape`); ``text`` without one."""
    param = sop.params.get(name)
    return shape(param.example) if param is not None and param.example else "text"


def _plausible(sop: Sop, name: str, value: str) -> bool:
    """Whether a value can be the parameter's: no stray quote, the shape of its example, and free text
    not much longer than the example."""
    if not value or len(value) > MAX_VALUE_CHARS or any(q in value for q in "\"“”"):
        return False
    param = sop.params.get(name)
    if param is None or not param.example:
        return True
    want = shape(param.example)
    if want != "text":
        return fits(value, want)
    example = len(_RAW_WORD.findall(param.example))
    return example > SHORT_VALUE_WORDS or len(_RAW_WORD.findall(value)) <= example + 1


_GAP = r"(?:(?![/~.]\w)[\W_])*"
"""What lies between a phrasing's word and a value: spaces and punctuation, but not the ``/`` or ``.`` that starts a
path or a file extension (``save it as /tmp/notes.txt``, ``the .txt files``)."""


@lru_cache(maxsize=4096)
def _compile(phrasing: str) -> re.Pattern[str]:
    """A phrasing as a regular expression over the task: its words in order, placeholders as groups."""
    parts = _SPLIT.split(phrasing)
    regex = ""
    last = max((i for i, p in enumerate(parts) if PLACEHOLDER.fullmatch(p)), default=-1)
    for i, part in enumerate(parts):
        if PLACEHOLDER.fullmatch(part):
            lazy = "" if i == last and not _RAW_WORD.search("".join(parts[i + 1:])) else "?"
            if i + 2 < len(parts) and not _RAW_WORD.search(parts[i + 1]) and ":" not in parts[i + 1] \
                    and PLACEHOLDER.fullmatch(parts[i + 2]):
                # two placeholders side by side ("Tell {name} {message}"): only capitalised words end the first
                name = r"(?-i:[A-Z][\w'&.-]*(?:\s+(?!I\b|I')[A-Z][\w'&.-]*){0,2})"
                regex += rf"[\W_]*(?P<{part[1:-1]}>{name})(?!\w)[\W_]*"
                continue
            regex += rf"{_GAP}(?P<{part[1:-1]}>.+{lazy})[\W_]*"
            continue
        words = _RAW_WORD.findall(part.replace("Wi-Fi", "WiFi"))
        if words:
            regex += r"\b" + "".join(_FILLER + ("" if w.lower() in FILLERS else _word(w) + _GAP)
                                     for w in words)
        elif 0 < i < len(parts) - 1 and part.strip():
            regex += _punctuation(part)  # "{name}: {message}": the colon must be there
    return re.compile(regex, re.IGNORECASE)


def _punctuation(part: str) -> str:
    """Punctuation between two placeholders as a pattern: quotes optional, the rest required."""
    out = ""
    for ch in part:
        if not ch.isspace():
            out += r"\s*[\"'“”‘’]?" if ch in "\"'“”‘’" else r"\s*" + re.escape(ch)
    return out + r"\s*"


def _word(word: str, *, exact_prepositions: bool = False) -> str:
    """One word of a phrasing as a pattern: Wi-Fi in any spelling, prepositions interchangeable,
    longer words with any ending (``label`` matches ``labelled``)."""
    low = word.lower()
    if low == "wifi":
        return r"wi[\W_]?fi\b"
    if low in PREPOSITIONS and not exact_prepositions:
        return "(?:" + "|".join(PREPOSITIONS) + r")\b"
    if len(low) >= 4 and not low.isdigit():
        stem = low[:-1] if low.endswith("e") and len(low) >= 5 else low
        return re.escape(stem) + r"\w{0,4}\b"
    return re.escape(low) + r"\b"


_TRAILING_PLACE = re.compile(r"[\s,(]+(?:in|inside|into|at|under|from)\s+(?:~|\.{1,2})?/\S*\)?$", re.IGNORECASE)
"""A folder given after a value (``photos in /tmp/docs``): where, not part of the value."""


_SYMBOLS_AROUND = re.compile(r"^[\W_]+|[\W_]+$")


def _clean(value: str) -> str:
    """A captured value without surrounding quotes and punctuation; unquoted, also without a leading
    ``the``/``is``... (``buy the Yoga mat``) or a trailing possessive (``Ann Lee's``)."""
    value = _TRAILING_PLACE.sub("", value.strip())
    if value[:1] in "\"“'‘":
        return value.strip(_STRIP).strip()
    value = re.sub(r"^(?:(?:is|are|was|as|of|the|a|an|my)\s+)+", "", value.strip(_STRIP), flags=re.IGNORECASE)
    value = re.sub(r"['’]s$", "", value.strip(_STRIP)).strip(_STRIP).strip()
    return "" if value.lower() in _EMPTY_VALUES else value


def _anchors(sop: Sop) -> list[_Anchor]:
    """Anchors for every placeholder of every phrasing, strongest first (more content words around it)."""
    out = [anchor for phrasing in sop.phrasings for anchor in _phrasing_anchors(phrasing)]
    out.sort(key=lambda x: -x.strength)
    return out


def _suffixes(sop: Sop) -> list[tuple[str, tuple[str, ...]]]:
    """For each placeholder of a telling shape (not free text) in each phrasing, the fewest words right
    after it that hold a word other than a stopword (``'s number`` → ``s``, ``number``), at most two."""
    out: dict[tuple[str, tuple[str, ...]], None] = {}
    for phrasing in sop.phrasings:
        for name, _, after in placeholders(phrasing):
            if shape_of(sop, name) == "text":
                continue
            words = [w.lower() for w in after[:2]]
            strong = next((n for n, w in enumerate(words) if w not in _WEAK), None)
            if strong is not None:
                out[(name, tuple(words[:strong + 1]))] = None
    return list(out)


@lru_cache(maxsize=4096)
def placeholders(phrasing: str) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
    """Each placeholder of a phrasing: its name, and the words of the text before and after it (up to the
    neighbouring placeholders)."""
    parts = _SPLIT.split(phrasing)
    return tuple((part[1:-1], tuple(_RAW_WORD.findall(parts[i - 1])) if i > 0 else (),
                  tuple(_RAW_WORD.findall(parts[i + 1])) if i + 1 < len(parts) else ())
                 for i, part in enumerate(parts) if PLACEHOLDER.fullmatch(part))


@lru_cache(maxsize=4096)
def _phrasing_anchors(phrasing: str) -> tuple[_Anchor, ...]:
    """For each placeholder, patterns of up to three words before it and one after, with their strength
    (how many of those words are not stopwords; anchors of fillers alone are useless)."""
    out: list[_Anchor] = []
    for name, before, after in placeholders(phrasing):
        for b, a in ((3, 1), (2, 1), (1, 1), (3, 0), (2, 0), (1, 0)):
            words_before, words_after = before[-b:] if len(before) >= b else (), after[:a]
            strength = sum(w.lower() not in _WEAK for w in words_before + words_after)
            if len(words_after) < a or not strength or all(w.lower() in FILLERS for w in words_before):
                continue
            regex = r"\b" + "".join(_FILLER + ("" if w.lower() in FILLERS else
                                                _word(w, exact_prepositions=True) + _GAP)
                                     for w in words_before)
            regex += r"(?P<v>.+?)"
            regex += ((r"[\W_]*\b" + _FILLER + _word(words_after[0], exact_prepositions=True))
                      if words_after else r"(?:[.,;!?\"”](?!\w)|$)")  # not the dot of notes.txt
            out.append(_Anchor(name, strength, re.compile(regex, re.IGNORECASE)))
    return tuple(out)
