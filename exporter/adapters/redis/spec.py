"""The Redis adapter's spec: what the core needs to load, poll and render it.

Kept apart from the package's ``__init__`` so that importing the package (for its
driver-free catalog) does not import the driver.
"""

from __future__ import annotations

from ...adapter import AdapterSpec
from .catalog import COLLECTORS
from .target import RedisConfig, RedisTarget, classify, families, from_env

ADAPTER = AdapterSpec(
    collectors=COLLECTORS,
    name="redis",
    config=RedisConfig,
    target=RedisTarget,
    families=families,
    classify=classify,
    from_env=from_env,
    description=(
        "Redis and Valkey: LATENCY HISTOGRAM latency, memory, keyspace, clients, "
        "replication, persistence, errors, slow log, cluster"
    ),
)
