"""What the PostgreSQL adapter records, alerts on and shows, without numbers or drivers.

Read by the generator (exporter.generate) and by the command line (collector names);
it must import no database or cloud driver.
"""

from __future__ import annotations

from ...catalog_model import Recording, Signal
from ...collector import CollectorSpec

TITLE = "PostgreSQL"

COLLECTORS: tuple[CollectorSpec, ...] = ()

RECORDINGS: tuple[Recording, ...] = ()

SIGNALS: tuple[Signal, ...] = ()

# Signals whose thresholds must be bucket edges of a histogram: signal key -> metric.
HISTOGRAM_SIGNALS: dict[str, str] = {}
