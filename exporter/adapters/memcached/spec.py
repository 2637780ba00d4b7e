"""The Memcached adapter's spec: what the core needs to load, poll and render it.

Kept apart from the package's ``__init__`` so that importing the package (for its
driver-free catalog) imports nothing else.
"""

from __future__ import annotations

from ...adapter import AdapterSpec
from .catalog import COLLECTORS
from .config import MemcachedConfig, from_env
from .target import MemcachedTarget, classify, families

ADAPTER = AdapterSpec(
    collectors=COLLECTORS,
    name="memcached",
    config=MemcachedConfig,
    target=MemcachedTarget,
    families=families,
    classify=classify,
    from_env=from_env,
    description="Memcached: a list of nodes; stats, slabs, settings and a set/get/delete canary",
)
