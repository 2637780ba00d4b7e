"""Keep docs/runbooks.md in step with thresholds.yaml.

The runbook prose is written by hand. The generator owns two things in it: the
thresholds table between the BEGIN/END GENERATED markers, and a skeleton section for
any alert that has none yet (so every runbook_url has an anchor to land on; the tests
reject a skeleton's TODOs, so someone has to write it).
"""

from __future__ import annotations

from .catalog import ADAPTER_TITLES, SIGNALS, Signal, human_threshold, number, resolve
from .thresholds import Level, Thresholds

BEGIN = "<!-- BEGIN GENERATED thresholds (sparki-exporter generate; edit rules/thresholds.yaml) -->"
END = "<!-- END GENERATED thresholds -->"


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
    text = head + table(thresholds) + tail
    headings = {line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")}
    missing = [s for s in SIGNALS if s.alert not in headings]
    if missing:
        text = text.rstrip("\n") + "\n"
        for signal in missing:
            text += f"\n<!-- {ADAPTER_TITLES[signal.adapter]} -->\n" + skeleton(signal)
    return text
