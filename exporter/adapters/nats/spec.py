"""The NATS adapter's spec: what the core needs to load, poll and render it.

Kept apart from the package's ``__init__`` so that importing the package (for its
driver-free catalog) does not import nats-py.
"""

from __future__ import annotations

from ...adapter import AdapterSpec
from .catalog import COLLECTORS
from .config import NatsConfig
from .target import _target, classify, families, from_env

ADAPTER = AdapterSpec(
    collectors=COLLECTORS,
    name="nats",
    config=NatsConfig,
    target=_target,
    families=families,
    classify=classify,
    from_env=from_env,
    description="NATS with JetStream: server, streams, consumers and a request/reply canary",
)
