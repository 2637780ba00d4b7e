"""Alert thresholds are bucket edges: in the code's bucket constants, and in any
per-target override, or the exporter refuses the layout with an error naming the field.

histogram_quantile interpolates inside a bucket, so a p95 compared with 0.1 s is exact
only when 0.1 is an edge; without it an alert fires early or late by up to a bucket's
width while every other test stays green.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exporter import alert_edges
from exporter.adapters.postgres import config as postgres_config
from exporter.adapters.postgres import target as postgres
from exporter.adapters.redis import latency as redis_latency
from exporter.adapters.redis import target as redis
from exporter.adapters.s3 import canary as s3
from exporter.bucket_edges import missing_edges, require_edges
from exporter.config import ConfigError, validate
from exporter.generate.edges import render
from exporter.generate.thresholds import load

ROOT = Path(__file__).resolve().parents[1]


def test_generated_edges_are_the_thresholds_in_force() -> None:
    th = load(ROOT / "rules" / "thresholds.yaml")
    (path, text), *_ = render(th).items()
    assert (ROOT / path).read_text() == text
    for key, (_, edges) in alert_edges.LATENCY_EDGES.items():
        assert set(edges) == {lv.threshold for lv in th[key].levels}, key


@pytest.mark.parametrize(
    ("bounds", "signal"),
    [
        (postgres_config.STATEMENT_BUCKETS, "postgres_statement_latency"),
        (postgres.PROBE_BUCKETS, "postgres_statement_latency"),
        (redis_latency.COMMAND_BUCKETS, "redis_command_latency"),
        (redis.PROBE_BUCKETS, "redis_command_latency"),
        (s3.PROBE_BUCKETS, "s3_canary_latency"),
    ],
)
def test_the_code_bucket_constants_have_every_threshold_as_an_edge(
    bounds: tuple[float, ...], signal: str
) -> None:
    assert missing_edges(bounds, signal) == []


def test_a_layout_without_a_threshold_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match=r"^must include 0\.05, 0\.1 .*missing 0\.1$"):
        require_edges((0.01, 0.05, 0.25), "postgres_statement_latency")


@pytest.mark.parametrize(
    ("buckets", "missing"),
    [([0.01, 0.025, 0.25, 1.0], "0.05, 0.1"), ([0.01, 0.05, 0.2, 1.0], "0.1")],
)
def test_a_statement_buckets_override_without_the_thresholds_is_refused(
    buckets: list[float], missing: str
) -> None:
    data = yaml.safe_load(
        "postgres:\n  - name: pg\n    dsn: postgresql://u@127.0.0.1/db\n"
        f"    statement_buckets: {buckets}\n"
    )
    with pytest.raises(ConfigError) as err:
        validate(data, {})
    assert err.value.lines() == [
        "postgres.0.statement_buckets: must include 0.05, 0.1 (the alert thresholds of"
        " postgres_statement_latency in rules/thresholds.yaml, compared with"
        " sparki_postgres_statement_duration_seconds) as bucket edges; missing " + missing
    ]


def test_a_statement_buckets_override_with_the_thresholds_is_accepted() -> None:
    data = {
        "postgres": [
            {
                "name": "pg",
                "dsn": "postgresql://u@127.0.0.1/db",
                "statement_buckets": [0.01, 0.05, 0.1, 0.5],
            }
        ]
    }
    config = validate(data, {})
    assert config.postgres[0].statement_buckets == (0.01, 0.05, 0.1, 0.5)  # type: ignore[attr-defined]
