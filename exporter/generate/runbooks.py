"""Keep docs/runbooks.md in step with thresholds.yaml and the adapters' runbooks.

The runbook prose is written by hand: the exporter's own alerts in docs/runbooks.md,
each adapter's in its package (``exporter/adapters/<name>/runbooks.md``, beside the
catalog that defines its alerts, so a new adapter or collector brings its runbooks
with it). The generator owns three things in docs/runbooks.md: the thresholds table
between the BEGIN/END GENERATED markers, the adapters' sections after ADAPTERS_BEGIN
(copied from their packages), and a skeleton section for any alert that has none yet
(so every runbook_url has an anchor to land on; the tests reject a skeleton's TODOs,
so someone has to write it, in the package file for an adapter's alert).
"""

from __future__ import annotations

from importlib import resources

from .catalog import ADAPTER_TITLES, CATALOGS, SIGNALS, Signal, human_threshold, number, resolve
from .thresholds import Level, Thresholds

BEGIN = "<!-- BEGIN GENERATED thresholds (sparki-exporter generate; edit rules/thresholds.yaml) -->"
END = "<!-- END GENERATED thresholds -->"
ADAPTERS_BEGIN = (
    "<!-- BEGIN GENERATED adapter runbooks (edit exporter/adapters/<name>/runbooks.md) -->"
)


def adapter_runbooks(name: str) -> str:
    """An adapter package's runbooks.md (its ``## Title`` and ``### Alert`` sections)."""
    path = resources.files(f"exporter.adapters.{name}") / "runbooks.md"
    return path.read_text(encoding="utf-8") if path.is_file() else f"## {ADAPTER_TITLES[name]}\n"


def _cell(signal: Signal, level: Level | None, job: str) -> str:
    if level is None:
        return "-"
    if signal.unit == "bool":
        return f"`{resolve(signal.value, job)}` = 0 for {level.hold}"
    op = "&gt;" if signal.op == ">" else "&lt;"
    return f"{op} {human_threshold(signal.unit, level.threshold)} for {level.hold}"


def table(thresholds: Thresholds) -> str:
    lines = [
        BEGIN,
        "",
        "| alert | thresholds.yaml | warning (chat) | critical (page) | why |",
        "|---|---|---|---|---|",
    ]
    job = thresholds.exporter_job
    for signal in SIGNALS:
        st = thresholds[signal.key]
        why = st.reason
        if st.min_rate is not None:
            why += f" Silent below {number(st.min_rate)}/s of traffic."
        lines.append(
            f"| [{signal.alert}](#{signal.alert.lower()}) | `{signal.key}` | "
            f"{_cell(signal, st.level('warning'), job)} | "
            f"{_cell(signal, st.level('critical'), job)} | "
            f"{why.replace('|', '/')} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def skeleton(signal: Signal) -> str:
    return (
        f"### {signal.alert}\n\n"
        f"**Means:** TODO ({signal.title}).\n\n"
        "**Impact:** TODO\n\n"
        "**Check first:** TODO\n\n"
        "**Fix:** TODO\n"
    )


def render(thresholds: Thresholds, current: str | None) -> str:
    """The runbooks text with a fresh table and a section for every alert."""
    if current is None:
        current = (
            "# Runbooks for the Sparki storage alerts\n\n"
            "Every alert's runbook_url points at its section here.\n\n"
            f"{BEGIN}\n{END}\n"
        )
    if BEGIN not in current or END not in current:
        current = current.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, _, rest = current.partition(BEGIN)
    _, _, tail = rest.partition(END)
    common = (head + table(thresholds) + tail).partition(ADAPTERS_BEGIN)[0].rstrip("\n")
    text = common + "\n"
    text += _skeletons(common, "common")
    text += f"\n{ADAPTERS_BEGIN}\n"
    for name in CATALOGS:
        book = adapter_runbooks(name).rstrip("\n") + "\n"
        text += "\n" + book + _skeletons(book, name)
    return text


def _skeletons(text: str, adapter: str) -> str:
    headings = {line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")}
    missing = [s for s in SIGNALS if s.adapter == adapter and s.alert not in headings]
    return "".join(f"\n<!-- {ADAPTER_TITLES[s.adapter]} -->\n" + skeleton(s) for s in missing)
