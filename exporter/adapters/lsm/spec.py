"""The LSM store adapter's spec: what the core needs to load, poll and render it.

Kept apart from the package's ``__init__`` so that importing the package (for its
driver-free catalog) does not import aiohttp's client.
"""

from __future__ import annotations

from ...adapter import AdapterSpec
from .catalog import COLLECTORS
from .config import LsmConfig
from .target import _target, classify, families, from_env

ADAPTER = AdapterSpec(
    collectors=COLLECTORS,
    name="lsm",
    config=LsmConfig,
    target=_target,
    families=families,
    classify=classify,
    from_env=from_env,
    description="embedded LSM stores (Badger, LevelDB, Pebble): directory, disk, Badger's expvar",
)
