"""Optional Redis commands a collector can live without: ``sparki_capability``.

A capability (LATENCY HISTOGRAM, CONFIG GET) may be refused by an ACL, renamed away on
a managed service or switched off in the server's configuration. The collector that
uses it carries on without it and puts ``(name, problem)`` in its part; the target
turns those into ``sparki_capability`` (1 only when every polled node has it) and one
log line per change that says what is lost and how to fix it. A refused command is
retried once a minute, not every poll, to keep the server's ACL LOG quiet.
"""

from __future__ import annotations

from redis import exceptions as rexc

# The capabilities, in the order they are exported.
CAPABILITIES = ("latency_histogram", "config")
# How long to wait before retrying a command the server refused (permission, unknown).
RECHECK_AFTER = 60.0

FIXES = {
    ("latency_histogram", "permission"): "ACL SETUSER <user> +latency|histogram",
    ("latency_histogram", "unsupported"): "needs Redis 7+ or Valkey with LATENCY enabled "
    "(managed services may block it); the PING probe histogram still measures latency",
    ("latency_histogram", "disabled"): "CONFIG SET latency-tracking yes "
    "(and set latency-tracking yes in redis.conf)",
    ("config", "permission"): "ACL SETUSER <user> +config|get",
    ("config", "unsupported"): "CONFIG is disabled or renamed (usual on managed services); "
    "only the latency-tracking check is lost, memory and clients come from INFO",
}
WHAT_IS_LOST = {
    "latency_histogram": "LATENCY HISTOGRAM unavailable: command latency histograms are not "
    "updated, everything else continues",
    "config": "CONFIG GET unavailable: cannot check latency-tracking, everything else continues",
}


class Capability:
    """Whether an optional command works on a node, and when it was last tried."""

    __slots__ = ("checked_at", "problem")

    def __init__(self) -> None:
        self.problem: str | None = None
        self.checked_at = -RECHECK_AFTER

    def due(self, now: float) -> bool:
        if self.problem in (None, "disabled"):
            return True
        return now - self.checked_at >= RECHECK_AFTER

    def refused(self, exc: BaseException, now: float) -> None:
        text = str(exc).lower()
        if isinstance(exc, rexc.NoPermissionError) or text.startswith("noperm"):
            self.problem = "permission"
        elif "unknown command" in text or "unknown subcommand" in text:
            self.problem = "unsupported"
        else:
            self.problem = "error"
        self.checked_at = now
