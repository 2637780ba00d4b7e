"""The etcd adapter's spec: what the core needs to load, poll and render it."""

from __future__ import annotations

from ...adapter import AdapterSpec
from .catalog import COLLECTORS
from .client import classify
from .config import EtcdConfig, from_env
from .target import families, target

ADAPTER = AdapterSpec(
    collectors=COLLECTORS,
    name="etcd",
    config=EtcdConfig,
    target=target,
    families=families,
    classify=classify,
    from_env=from_env,
    description="etcd: canary put/get/delete, member status (DB size, leader, raft), alarms",
)
