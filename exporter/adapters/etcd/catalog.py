"""What the etcd adapter records, alerts on and shows, without numbers or drivers."""

from __future__ import annotations

from ...catalog_model import Recording, Signal
from ...collector import CollectorSpec

TITLE = "etcd"

COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec("canary", "put, get and delete of the exporter's own key, timed"),
    CollectorSpec("status", "maintenance status of every configured member: DB size, leader, raft"),
    CollectorSpec("alarms", "the cluster's active alarms (NOSPACE, CORRUPT)"),
)

RECORDINGS: tuple[Recording, ...] = ()

SIGNALS: tuple[Signal, ...] = ()

HISTOGRAM_SIGNALS: dict[str, str] = {}
