"""Lexer and parser for the device shell's command lines.

A command line is split into words with POSIX quoting rules (single quotes,
double quotes, backslashes; the same rules as :mod:`shlex` in POSIX mode), but
operators are recognised only when unquoted, so ``echo ';'`` prints a
semicolon. :func:`tokenize` does the splitting, :func:`parse` groups the tokens
into lists of pipelines of :class:`Command`. Nothing here runs anything; see
:mod:`edgepilot.sim.adb.shell` for that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

STATUS_MARK = "\ue000"  # stands for "$?" until the command runs

# --------------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class Token:
    """One word or operator of a command line.

    Attributes:
        kind: ``"word"`` or ``"op"``.
        text: The word after quote removal, or the operator text.
        quoted: The word had quotes or backslashes (no glob expansion).
    """

    kind: str
    text: str
    quoted: bool = False


class ShellSyntaxError(ValueError):
    """The command line cannot be parsed (unterminated quote, stray operator)."""


_OPERATORS = ("&&", "||", ">>", ">&", "&>", ";", "&", "|", ">", "<")


class _Lexer:
    def __init__(self, line: str) -> None:
        self.line = line
        self.pos = 0
        self.tokens: list[Token] = []
        self.word: list[str] = []
        self.in_word = False
        self.quoted = False

    def run(self) -> list[Token]:
        while self.pos < len(self.line):
            self._step(self.line[self.pos])
        self._end_word()
        return self.tokens

    def _end_word(self) -> None:
        if self.in_word:
            self.tokens.append(Token("word", "".join(self.word), self.quoted))
        self.word, self.in_word, self.quoted = [], False, False

    def _add(self, text: str, quoted: bool = False) -> None:
        self.word.append(text)
        self.in_word = True
        self.quoted = self.quoted or quoted

    def _step(self, ch: str) -> None:
        if ch in " \t\r":
            self._end_word()
            self.pos += 1
        elif ch == "\n":
            self._end_word()
            self.tokens.append(Token("op", ";"))
            self.pos += 1
        elif ch == "#" and not self.in_word:
            end = self.line.find("\n", self.pos)
            self.pos = len(self.line) if end < 0 else end
        elif ch == "'":
            self._single_quote()
        elif ch == '"':
            self._double_quote()
        elif ch == "\\":
            self._backslash()
        elif ch == "$" and self.line.startswith("$?", self.pos):
            self._add(STATUS_MARK)
            self.pos += 2
        elif ch in ";&|<>":
            self._operator()
        else:
            self._add(ch)
            self.pos += 1

    def _single_quote(self) -> None:
        end = self.line.find("'", self.pos + 1)
        if end < 0:
            raise ShellSyntaxError("unterminated quoted string")
        self._add(self.line[self.pos + 1 : end], quoted=True)
        self.pos = end + 1

    def _double_quote(self) -> None:
        self.pos += 1
        parts = []
        while self.pos < len(self.line) and self.line[self.pos] != '"':
            ch = self.line[self.pos]
            nxt = self.line[self.pos + 1 : self.pos + 2]
            if ch == "\\" and nxt in ('"', "\\", "$", "`", "\n"):
                parts.append("" if nxt == "\n" else nxt)
                self.pos += 2
            elif ch == "$" and nxt == "?":
                parts.append(STATUS_MARK)
                self.pos += 2
            else:
                parts.append(ch)
                self.pos += 1
        if self.pos >= len(self.line):
            raise ShellSyntaxError("unterminated quoted string")
        self._add("".join(parts), quoted=True)
        self.pos += 1

    def _backslash(self) -> None:
        nxt = self.line[self.pos + 1 : self.pos + 2]
        if nxt != "\n":
            self._add(nxt, quoted=True)
        self.pos += 2

    def _operator(self) -> None:
        fd = ""
        word = "".join(self.word)
        if self.line[self.pos] in "<>" and self.in_word and not self.quoted and word.isdigit():
            fd, self.word, self.in_word = word, [], False
        self._end_word()
        op = next(o for o in _OPERATORS if self.line.startswith(o, self.pos))
        self.pos += len(op)
        self.tokens.append(Token("op", fd + op))


def tokenize(line: str) -> list[Token]:
    """Split a command line into words and operators (POSIX quoting, no expansion).

    Raises:
        ShellSyntaxError: Unterminated quote.
    """
    return _Lexer(line).run()


# --------------------------------------------------------------------------- parser


@dataclass
class Command:
    """One simple command: its words and its redirections ``(op, target)``."""

    words: list[Token] = field(default_factory=list)
    redirects: list[tuple[str, str]] = field(default_factory=list)


REDIRECT_RE = re.compile(r"^(\d*)(>>|>&|>|<|&>)$")
_LIST_OPS = {";": ";", "&": ";", "&&": "&&", "||": "||"}


def parse(tokens: list[Token]) -> list[tuple[str, list[Command]]]:
    """Group tokens into ``(connector, pipeline)`` pairs.

    The connector says when the pipeline runs: ``";"`` always, ``"&&"`` after
    success, ``"||"`` after failure.

    Raises:
        ShellSyntaxError: An operator without a command, or a redirection
            without a target.
    """
    items: list[tuple[str, list[Command]]] = []
    connector, pipeline, cmd = ";", [], Command()
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "word":
            cmd.words.append(tok)
        elif REDIRECT_RE.match(tok.text):
            if i + 1 >= len(tokens) or tokens[i + 1].kind != "word":
                raise ShellSyntaxError(f"unexpected {tokens[i + 1].text if i + 1 < len(tokens) else 'newline'}")
            cmd.redirects.append((tok.text, tokens[i + 1].text))
            i += 1
        elif tok.text == "|":
            if not cmd.words and not cmd.redirects:
                raise ShellSyntaxError("unexpected '|'")
            pipeline.append(cmd)
            cmd = Command()
        else:
            if cmd.words or cmd.redirects:
                pipeline.append(cmd)
            elif pipeline or tok.text in ("&&", "||"):
                raise ShellSyntaxError(f"unexpected '{tok.text}'")
            if pipeline:
                items.append((connector, pipeline))
            connector, pipeline, cmd = _LIST_OPS[tok.text], [], Command()
        i += 1
    if cmd.words or cmd.redirects:
        pipeline.append(cmd)
    elif pipeline or connector != ";":
        raise ShellSyntaxError("unexpected end of line")
    if pipeline:
        items.append((connector, pipeline))
    return items
