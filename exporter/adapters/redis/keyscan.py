"""What the key collectors (``ttl``, ``streams``) share: Redis globs, batches, node choice.

Redis glob patterns (the ``MATCH`` of SCAN, the patterns of KEYS) become compiled regexes.

The key collectors (``ttl``, ``streams``) classify keys by the patterns an operator
configures, written as Redis writes them (``session:*``, ``perm:*:*``). They classify on
the exporter's side, not with ``SCAN MATCH``, so that one cursor serves every pattern
and a key is read once per pass. ``fnmatch`` is close but not the same language (it
knows no backslash escape and negates with ``[!...]``), so this follows Redis'
``stringmatchlen``: ``*``, ``?``, ``[abc]``, ``[^abc]``, ``[a-z]`` and ``\\x`` for a
literal ``x``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .context import NodeContext


def glob_to_regex(pattern: str) -> str:
    """The regex (anchored by the caller with fullmatch) of one Redis glob pattern."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            i, cls = _char_class(pattern, i + 1)
            out.append(cls)
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _char_class(pattern: str, i: int) -> tuple[int, str]:
    """A ``[...]`` starting after its ``[``: (index of its ``]``, the regex class).

    Like Redis, an unterminated class runs to the end of the pattern.
    """
    n = len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    items: list[str] = []
    while i < n and pattern[i] != "]":
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            i += 1
            items.append(re.escape(pattern[i]))
        elif i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            low, high = sorted((ch, pattern[i + 2]))
            items.append(f"{re.escape(low)}-{re.escape(high)}")
            i += 2
        else:
            items.append(re.escape(ch))
        i += 1
    if not items:
        # "[]" matches nothing in Redis, "[^]" any one character.
        return i, "." if negate else "(?!)"
    return i, f"[{'^' if negate else ''}{''.join(items)}]"


class Classifier:
    """First matching pattern wins; keys no pattern matches are ``None``.

    All patterns go into one alternation with a named group each, so a key costs one
    regex match however many patterns there are (a poll classifies up to thousands).
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        alternatives = [f"(?P<p{i}>{glob_to_regex(p)})" for i, p in enumerate(self.patterns)]
        self._regex = re.compile("|".join(alternatives), re.DOTALL) if alternatives else None

    def __call__(self, key: str) -> str | None:
        if self._regex is None:
            return None
        match = self._regex.fullmatch(key)
        if match is None:
            return None
        # With fullmatch, the first alternative that can match the whole key is taken.
        return self.patterns[int(match.lastgroup[1:])] if match.lastgroup else None


async def batch(ctx: NodeContext, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Replies to ``commands``, error replies as exceptions in their place.

    Sent in one round trip when the target gives its context a ``pipeline`` (thousands
    of PTTL one by one would cost a round trip each); else one ``call`` after another,
    which gives the same replies, only slower.
    """
    if not commands:
        return []
    pipeline = getattr(ctx, "pipeline", None)
    if pipeline is not None:
        return list(await pipeline(*commands))
    out: list[Any] = []
    for command in commands:
        try:
            out.append(await ctx.call(*command))
        except Exception as exc:  # an error reply; the connection is still in step
            if not _is_reply_error(exc):
                raise
            out.append(exc)
    return out


def _is_reply_error(exc: BaseException) -> bool:
    # redis-py's ResponseError, without importing the driver here (the error's class
    # names it): connection and timeout errors must propagate, they are fatal.
    return any(c.__name__ == "ResponseError" for c in type(exc).__mro__)


def skip_node(ctx: NodeContext) -> bool:
    """Whether the key collectors leave this node alone: a replica of a cluster.

    A cluster replica holds the same keys as its primary; reading both would count each
    key twice. A single server is read whatever its role (it is what the target names).
    """
    return bool(ctx.node) and ctx.role == "replica"


def as_text(value: Any) -> str:
    return value.decode(errors="surrogateescape") if isinstance(value, bytes) else str(value)


def as_int(value: Any) -> int | None:
    """An integer reply, or None for a nil, an error or anything else."""
    if isinstance(value, bool) or isinstance(value, Exception) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
