"""The S3 adapter's spec: what the core needs to load, poll and render it.

Kept apart from the package's ``__init__`` so that importing the package (for its
driver-free catalog) does not import the driver.
"""

from __future__ import annotations

from ...adapter import AdapterSpec
from .catalog import COLLECTORS
from .config import S3Config, from_env
from .errors import classify
from .target import _target, families

ADAPTER = AdapterSpec(
    collectors=COLLECTORS,
    name="s3",
    config=S3Config,
    target=_target,
    families=families,
    classify=classify,
    from_env=from_env,
    description="S3 and MinIO: canary probes, request metrics, bucket size and cost, "
    "multipart uploads, lifecycle rules",
)
