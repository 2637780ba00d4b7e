"""The MySQL/MariaDB adapter's spec: what the core needs to load, poll and render it.

Kept apart from the package's ``__init__`` so that importing the package (for its
driver-free catalog) does not import the driver.
"""

from __future__ import annotations

from ...adapter import AdapterSpec
from .catalog import COLLECTORS
from .config import MysqlConfig, from_env
from .errors import classify
from .target import MysqlTarget, families

ADAPTER = AdapterSpec(
    collectors=COLLECTORS,
    name="mysql",
    config=MysqlConfig,
    target=MysqlTarget,
    families=families,
    classify=classify,
    from_env=from_env,
    description="MySQL/MariaDB: statement digest latency, connections, InnoDB, replication",
)
