"""What an LSM store collector gets in one poll."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp

from .config import LsmConfig


class ExpvarError(Exception):
    """The expvar endpoint answered, but not with the JSON object Go's expvar serves."""


class DirectoryError(Exception):
    """The store's directory cannot be read: missing (volume not mounted) or refused."""

    def __init__(self, message: str, permission: bool = False) -> None:
        super().__init__(message)
        self.permission = permission


@dataclass(frozen=True)
class LsmContext:
    """The target's config, its HTTP session (None without expvar_url) and the one
    thread its directory walks run on."""

    config: LsmConfig
    http: aiohttp.ClientSession | None
    walker: ThreadPoolExecutor
    walks: Any  # directory.WalkState; Any keeps this module free of the collectors
