"""Writing one benchmark's section of docs/benchmarks.md without losing anyone else's.

Every benchmark owns one ``## `` section and rewrites it with each run. A section may
also hold ``### `` subsections written by hand (a paired before/after run, what a
result means for an issue) or by another mode of the same benchmark (``load_bench
--only``): a rerun replaces its own text and every subsection it writes again, and
keeps the others after it, in their order. Other sections are never touched.
"""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
INTRO = """# Benchmarks

Measurements of sparki-exporter beside the exporters users would otherwise run
(../shared/ANCHORS.md), each in one run against the same server on the same machine.
Each section says how to rerun it; numbers from different machines are not comparable.
"""


def _subsections(lines: list[str]) -> list[tuple[str, list[str]]]:
    """(heading, its lines) for every ``### `` subsection in ``lines``."""
    found: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("### "):
            found.append((line.rstrip(), [line]))
        elif found:
            found[-1][1].append(line)
    return found


def write_section(heading: str, text: str, doc: Path = DOC) -> None:
    """Replace (or append) the ``heading`` section of ``doc`` with ``text``.

    Subsections of the old section whose heading ``text`` does not write again are
    kept, after ``text``.
    """
    current = doc.read_text() if doc.exists() else INTRO
    lines = current.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == heading), None)
    body = text.rstrip("\n")
    if start is None:
        doc.write_text(current.rstrip("\n") + "\n\n" + body + "\n")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    written = {ln.rstrip() for ln in body.splitlines() if ln.startswith("### ")}
    for sub_heading, sub_lines in _subsections(lines[start + 1 : end]):
        if sub_heading not in written:
            body += "\n\n" + "\n".join(sub_lines).rstrip("\n")
    before = "\n".join(lines[:start]).rstrip("\n")
    after = "\n".join(lines[end:]).rstrip("\n")
    doc.write_text(before + "\n\n" + body + "\n" + ("\n" + after + "\n" if after else ""))
