"""``sparki-exporter generate``: rules, dashboards, deploy files and tests from one source.

rules/thresholds.yaml holds every threshold; exporter/generate/catalog.py holds every
expression. From the two this writes

- rules/sparki-recording.rules.yml and rules/sparki-alerts.rules.yml,
- deploy/kubernetes/prometheusrule.yaml (the same groups, for the Prometheus Operator),
- deploy/alertmanager/alertmanager.yml (routing, grouping and inhibition),
- exporter/alert_edges.py (thresholds that must be histogram bucket edges),
- dashboards/*.json (Grafana, built with grafana-foundation-sdk),
- tests/promtool/*.test.yml (promtool unit tests of every alert).

``--check`` writes nothing: it regenerates in memory and exits 1 listing every file that
differs from the committed one (and any runbook anchor an alert points at that
docs/runbooks.md lacks), so CI can prove the committed files are current.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from . import alertmanager, edges, promtests, rules, runbooks
from .catalog import SDK_REQUIREMENT, SIGNALS, WATCHDOG, anchor
from .thresholds import ThresholdsError, load

THRESHOLDS_FILE = "rules/thresholds.yaml"
RUNBOOKS_FILE = "docs/runbooks.md"
# Directories the generator owns entirely: files there that it did not write are stale.
OWNED = (("dashboards", "*.json"), ("tests/promtool", "*.test.yml"))


def default_root() -> Path:
    """The working directory if it holds the thresholds, else this source checkout."""
    cwd = Path.cwd()
    if (cwd / THRESHOLDS_FILE).exists():
        return cwd
    return Path(__file__).resolve().parents[2]


def render_all(root: Path) -> dict[str, str]:
    """Every generated file's text, by path relative to ``root``."""
    thresholds = load(root / THRESHOLDS_FILE)
    from . import dashboards  # needs grafana-foundation-sdk: imported only here

    files: dict[str, str] = {}
    files.update(rules.render(thresholds))
    files.update(alertmanager.render(thresholds))
    files.update(edges.render(thresholds))
    files.update(dashboards.render(thresholds))
    files.update(promtests.render(thresholds))
    book = root / RUNBOOKS_FILE
    current = book.read_text(encoding="utf-8") if book.exists() else None
    files[RUNBOOKS_FILE] = runbooks.render(thresholds, current)
    return files


_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors_in(text: str) -> set[str]:
    anchors = set()
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else _HEADING.match(line)
        if match:
            anchors.add(slug(match.group(1)))
    return anchors


def unwritten_runbooks(text: str) -> list[str]:
    """Alerts whose runbook section is missing or still a skeleton with TODOs."""
    anchors = runbook_anchors_in(text)
    out = []
    for alert in [*(s.alert for s in SIGNALS), WATCHDOG]:
        if anchor(alert) not in anchors:
            out.append(alert)
            continue
        section = text.split(f"### {alert}\n", 1)[-1].split("\n#", 1)[0]
        if "TODO" in section:
            out.append(alert)
    return out


def where(alert: str) -> str:
    """Where an alert's runbook section is written by hand."""
    signal = next((s for s in SIGNALS if s.alert == alert), None)
    if signal is None or signal.adapter == "common":
        return f"write it in {RUNBOOKS_FILE}"
    return f"write it in exporter/adapters/{signal.adapter}/runbooks.md"


def stale_files(root: Path, files: dict[str, str]) -> list[str]:
    out = []
    for folder, pattern in OWNED:
        for path in sorted((root / folder).glob(pattern)):
            rel = path.relative_to(root).as_posix()
            if rel not in files:
                out.append(rel)
    return out


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sparki-exporter generate",
        description="Write alert and recording rules, the PrometheusRule manifest, Grafana "
        "dashboards and promtool tests from rules/thresholds.yaml.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing files that differ from what would be generated",
    )
    parser.add_argument(
        "--root", type=Path, help="repository root (default: the working directory)"
    )
    args = parser.parse_args(list(argv))
    root: Path = args.root or default_root()
    if not (root / THRESHOLDS_FILE).is_file():
        # From an installed wheel there is no checkout to fall back on: say what to pass.
        print(
            f"no {THRESHOLDS_FILE} under {root}: run from a checkout, or pass --root DIR "
            f"with DIR/{THRESHOLDS_FILE} (the files are written under DIR)",
            file=sys.stderr,
        )
        return 2
    try:
        files = render_all(root)
    except ThresholdsError as exc:
        print(f"{THRESHOLDS_FILE}: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(
            f"cannot build dashboards: {exc}; pip install '{SDK_REQUIREMENT}'",
            file=sys.stderr,
        )
        return 2
    stale = stale_files(root, files)
    no_runbook = unwritten_runbooks(files[RUNBOOKS_FILE])
    if args.check:
        differ = []
        for rel, text in sorted(files.items()):
            path = root / rel
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                differ.append(rel)
        for rel in differ:
            print(f"out of date: {rel}")
        for rel in stale:
            print(f"not generated (stale): {rel}")
        for alert in no_runbook:
            print(f"runbook not written: {RUNBOOKS_FILE}#{anchor(alert)} ({alert}); {where(alert)}")
        if differ or stale or no_runbook:
            print("run `sparki-exporter generate` and commit the result", file=sys.stderr)
            return 1
        print(f"{len(files)} generated files are up to date")
        return 0
    written = 0
    for rel, text in sorted(files.items()):
        path = root / rel
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {rel}")
        written += 1
    for rel in stale:
        (root / rel).unlink()
        print(f"removed {rel} (no longer generated)")
    for alert in no_runbook:
        print(
            f"warning: the runbook of {alert} is not written yet ({RUNBOOKS_FILE}#{anchor(alert)})",
            file=sys.stderr,
        )
    print(f"{written} of {len(files)} files changed")
    return 0
