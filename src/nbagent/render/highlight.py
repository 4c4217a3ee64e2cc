"""Syntax highlighting of code arguments, decided in the kernel (Pygments comes with
IPython): the views only colour runs of text by a short token name.

A run is ``(token, text)`` where token is one of :data:`TOKENS` or ``""`` (plain). The
lexer is chosen by the argument's name (``sql``/``query`` → SQL, ``command``/``cmd`` →
shell, ``patch`` → diff, anything else → Python); long code is not highlighted.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pygments.lexer import Lexer
    from pygments.token import _TokenType

Token = Literal["", "k", "s", "m", "c", "f", "b"]
"""keyword, string, number, comment, function or class name, builtin; ``""`` plain."""

TOKENS: tuple[Token, ...] = ("k", "s", "m", "c", "f", "b")

Run = tuple[Token, str]

MAX_HIGHLIGHT_CHARS = 20_000
"""Longer code is shown plain (highlighting is for reading, not for megabytes)."""

_LANGUAGE = {"sql": "sql", "query": "sql", "command": "bash", "cmd": "bash", "patch": "diff"}


def language_of(key: str) -> str:
    """The language of a code argument, by its name (``sql``, ``bash``, ``diff``, else
    ``python``): the lexer here and the Markdown fence use it."""
    return _LANGUAGE.get(key.lower(), "python")


@cache
def _lexer(language: str) -> Lexer:
    from pygments.lexers import get_lexer_by_name

    return get_lexer_by_name(language, stripnl=False, ensurenl=False)


@cache
def _kinds() -> tuple[tuple[_TokenType, Token], ...]:
    """Pygments token types and what each shows as (subtypes included)."""
    from pygments import token as t

    return (
        (t.Keyword, "k"), (t.Operator.Word, "k"), (t.Literal.String, "s"),
        (t.Literal.Number, "m"), (t.Comment, "c"), (t.Name.Function, "f"), (t.Name.Class, "f"),
        (t.Name.Decorator, "f"), (t.Name.Builtin, "b"),
    )  # fmt: skip


def _token(kind: _TokenType) -> Token:
    from pygments.token import is_token_subtype

    return next((token for parent, token in _kinds() if is_token_subtype(kind, parent)), "")


def highlight(key: str, code: str) -> tuple[Run, ...]:
    """``code`` (the value of argument ``key``) as runs of one token each, adjacent runs of
    the same token merged; one plain run when the code is long or the lexer fails."""
    if not code or len(code) > MAX_HIGHLIGHT_CHARS:
        return (("", code),)
    try:
        lexer = _lexer(language_of(key))
        runs: list[Run] = []
        for kind, text in lexer.get_tokens(code):
            token = _token(kind)
            if runs and runs[-1][0] == token:
                runs[-1] = (token, runs[-1][1] + text)
            else:
                runs.append((token, text))
    except Exception:  # a lexer bug must never hide the code
        return (("", code),)
    if "".join(text for _, text in runs) != code:
        return (("", code),)
    return tuple(runs)
