"""The PostgreSQL adapter's spec: what the core needs to load, poll and render it.

Kept apart from the package's ``__init__`` so that importing the package (for its
driver-free catalog) does not import the driver.
"""

from __future__ import annotations

from ...adapter import AdapterSpec
from .catalog import COLLECTORS
from .config import PostgresConfig, from_env
from .errors import classify
from .target import PostgresTarget, families

ADAPTER = AdapterSpec(
    collectors=COLLECTORS,
    name="postgres",
    config=PostgresConfig,
    target=PostgresTarget,
    families=families,
    classify=classify,
    from_env=from_env,
    description="PostgreSQL: pg_stat_statements latency, connections, transactions, replication",
)
