"""Small PromQL and exposition-format helpers for checking names, without a parser.

They are used by the tests (and usable by hand) to prove that every metric name a rule
or a dashboard reads is one the exporter emits or a recording rule writes. They handle
the PromQL this project generates: selectors, functions, aggregations with by/without,
vector matching with on/ignoring/group_left/group_right, and Grafana's $variables.
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NUMBER = re.compile(r"(?<![\w:.])(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![\w:])")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
    }
)
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}


def from_grafana(expr: str) -> str:
    """Replace Grafana's variables so the expression is plain PromQL."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects."""
    text = _STRING.sub(" ", from_grafana(expr))
    text = _MATCHERS.sub(" ", text)
    while _BRACKETS.search(text):
        text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def exposition_names(text: str) -> set[str]:
    """Every sample name an exposition declares or contains (histograms expanded)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            if kind == "histogram":
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
            elif kind == "summary":
                names.update({name, f"{name}_sum", f"{name}_count"})
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def label_values_metric(query: str) -> str | None:
    """The metric of a Grafana ``label_values(metric{...}, label)`` variable query."""
    match = re.match(r"^\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", query)
    return match.group(1) if match else None


_SKIP_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_AGGREGATIONS = frozenset(
    {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk"}
    | {"quantile", "count_values", "limitk", "limit_ratio"}
)
_CLOSE = {"{": "}", "[": "]", "(": ")"}


def _skip(expr: str, i: int) -> int:
    """The index just past the bracket (or string) that opens at ``expr[i]``."""
    opener = expr[i]
    if opener in "\"'`":
        j = i + 1
        while j < len(expr) and expr[j] != opener:
            j += 2 if expr[j] == "\\" and opener != "`" else 1
        return j + 1
    closer, depth, j = _CLOSE[opener], 0, i
    while j < len(expr):
        ch = expr[j]
        if ch in "\"'`":
            j = _skip(expr, j)
            continue
        if ch == opener:
            depth += 1
        elif ch == closer:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise ValueError(f"unbalanced {opener!r} in {expr!r}")


def with_matchers(expr: str, matchers: str) -> str:
    """``expr`` with ``matchers`` (``job=~"$job",...``) added to every selector in it.

    How every dashboard query honours the job, instance and cluster variables without
    each panel spelling them out: metric names (not functions, keywords, label names in
    by/on lists, or anything in strings, matchers or ranges) get the matchers, inside
    their existing braces or in new ones.
    """
    if not matchers:
        return expr
    out: list[str] = []
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch in "\"'`[":
            j = _skip(expr, i)
            out.append(expr[i:j])
            i = j
            continue
        if ch.isdigit() or (ch == "." and i + 1 < len(expr) and expr[i + 1].isdigit()):
            m = re.match(r"[0-9.]+(?:[eE][+-]?\d+)?[a-zA-Z]*", expr[i:])
            assert m is not None
            out.append(m.group(0))
            i += m.end()
            continue
        m = _IDENT.match(expr, i)
        if m is None or (i > 0 and (expr[i - 1].isalnum() or expr[i - 1] in "_:$")):
            if m is not None:  # the tail of a variable such as $__rate_interval
                out.append(m.group(0))
                i = m.end()
                continue
            out.append(ch)
            i += 1
            continue
        name = m.group(0)
        j = m.end()
        rest = expr[j:].lstrip()
        after = j + (len(expr[j:]) - len(rest))
        if name.lower() in _SKIP_GROUPING and rest.startswith("("):
            end = _skip(expr, after)
            out.append(expr[i:end])
            i = end
            continue
        aggregation = name in _AGGREGATIONS and re.match(r"(by|without)\s*\(", rest)
        if rest.startswith("(") or name.lower() in KEYWORDS or aggregation:
            out.append(name)
            i = j
            continue
        if rest.startswith("{"):
            end = _skip(expr, after)
            inner = expr[after + 1 : end - 1].strip()
            joined = f"{inner},{matchers}" if inner else matchers
            out.append(f"{name}{{{joined}}}")
            i = end
            continue
        out.append(f"{name}{{{matchers}}}")
        i = j
    return "".join(out)
