"""Sharding: replicas split one configuration's targets with no coordination.

Three shard processes and one unsharded process read the same 300-target config.
Most targets point at a closed port (a poll fails at once: cheap), some at a real
redis-server (so the adapter's own families are in the comparison too). Every target
must be polled by exactly one shard, and the union of the shards' series must be the
unsharded process's series.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fixtures_core import free_port
from fixtures_redis import RedisServer
from prometheus_client.parser import text_string_to_metric_families

from devstack.exporter import exporter_argv
from exporter.shard import Shard, jump_hash, owner, parse

pytestmark = pytest.mark.slow

TARGETS = 300
LIVE = 20  # of them on the real redis-server
SHARDS = 3
# Per-process families: the same in every process, not per target.
PROCESS_FAMILIES = re.compile(r"sparki_exporter_.*")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    out = set()
    for fam in text_string_to_metric_families(text):
        if PROCESS_FAMILIES.fullmatch(fam.name):
            continue
        for s in fam.samples:
            labels = dict(s.labels)
            if "cmd" in labels:
                # Which commands a server's LATENCY HISTOGRAM lists depends on what every
                # client (the other exporters included) ran so far, not on sharding.
                labels["cmd"] = "*"
            out.add((s.name, tuple(sorted(labels.items()))))
    return out


@pytest.fixture
def fleet(tmp_path: Path, redis_server: RedisServer) -> Iterator[dict[str, str]]:
    closed = free_port()
    redis_targets = [redis_server.target(f"live-{i:03d}") for i in range(LIVE)]
    redis_targets += [
        {"name": f"gone-{i:03d}", "url": f"redis://127.0.0.1:{closed}/0"}
        for i in range(TARGETS - LIVE)
    ]
    cfg = tmp_path / "sparki.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "poll_interval": "30s",
                "poll_timeout": "5s",
                "log": {"level": "warn"},
                "redis": redis_targets,
            }
        )
    )
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    try:
        for name, extra in [
            *[
                (f"shard-{i}", ["--shard.count", str(SHARDS), "--shard.index", str(i)])
                for i in range(SHARDS)
            ],
            ("all", []),
        ]:
            port = free_port()
            log = (tmp_path / f"{name}.log").open("wb")
            procs[name] = subprocess.Popen(exporter_argv(cfg, port, *extra), stdout=log, stderr=log)
            urls[name] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        for name, url in urls.items():
            while True:  # /readyz: the first poll of every target of the process is done
                try:
                    if _get(url + "/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError((tmp_path / f"{name}.log").read_text()[-3000:])
                time.sleep(0.2)
        yield urls
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(15)


def test_shards_split_the_targets_and_their_union_is_the_whole(fleet: dict[str, str]) -> None:
    scraped = {name: _get(url + "/metrics")[1] for name, url in fleet.items()}
    polled: Counter[str] = Counter()
    for i in range(SHARDS):
        shard = f"shard-{i}"
        for fam in text_string_to_metric_families(scraped[shard]):
            if fam.name == "sparki_up":
                for s in fam.samples:
                    polled[s.labels["target"]] += 1
                    assert owner("redis", s.labels["target"], SHARDS) == i
            if fam.name == "sparki_exporter_shard_info":
                (info,) = fam.samples
                assert info.labels == {"shard": str(i), "shard_count": "3", "shard_replica": "0"}
    # every target by exactly one shard, and every shard has a fair share
    assert len(polled) == TARGETS and set(polled.values()) == {1}
    for i in range(SHARDS):
        share = sum(1 for t in polled if owner("redis", t, SHARDS) == i)
        assert 60 <= share <= 140, share

    union = set().union(*(_series(scraped[f"shard-{i}"]) for i in range(SHARDS)))
    whole = _series(scraped["all"])
    assert any(name.startswith("sparki_redis_") for name, _ in whole)
    assert union == whole, (sorted(union - whole)[:5], sorted(whole - union)[:5])
    assert "sparki_exporter_shard_info" not in scraped["all"]


def test_probe_of_another_shards_target_is_refused_naming_it(fleet: dict[str, str]) -> None:
    target = next(f"live-{i:03d}" for i in range(LIVE) if owner("redis", f"live-{i:03d}", 3) == 1)
    query = urllib.parse.urlencode({"target": target})
    status, body = _get(fleet["shard-0"] + f"/probe?{query}")
    assert status == 421 and "shard 1" in body, (status, body)
    status, body = _get(fleet["shard-1"] + f"/probe?{query}")
    assert status == 200 and f'sparki_up{{adapter="redis",target="{target}"}} 1' in body
    status, body = _get(fleet["shard-0"] + "/probe?target=nowhere")
    assert status == 400 and "unknown target" in body


def test_hash_is_stable_and_moves_few_targets_when_growing() -> None:
    # Fixed values: a replica on another machine, Python or release must agree, or a
    # fleet mid-upgrade polls some targets twice and others not at all.
    assert [owner("redis", f"t{i}", 3) for i in range(8)] == [0, 0, 2, 1, 1, 1, 2, 0]
    by_5 = [owner("postgres", f"target-{i}", 5) for i in range(12)]
    assert by_5 == [3, 2, 1, 1, 0, 2, 4, 2, 0, 3, 4, 0]
    # The published test vectors of Lamping and Veach's jump hash (as other
    # implementations, e.g. Go's, check theirs).
    vectors = [
        (1, 1, 0),
        (42, 57, 43),
        (0xDEAD10CC, 1, 0),
        (0xDEAD10CC, 666, 361),
        (256, 1024, 520),
    ]
    assert [jump_hash(key, buckets) for key, buckets, _ in vectors] == [b for *_, b in vectors]
    assert all(0 <= jump_hash(k, 7) < 7 for k in range(1000))
    names = [f"target-{i}" for i in range(3000)]
    moved = sum(owner("postgres", n, 4) != owner("postgres", n, 5) for n in names)
    assert moved < 3000 * 0.3  # about 1/5 move, not most as with a plain modulo


def test_shard_flags() -> None:
    assert parse(None, None) is None
    assert parse("2", 3) == Shard(2, 3)
    assert parse("auto", 3, hostname="sparki-exporter-4") == Shard(1, 3, replica=1)
    assert parse("auto", 3, hostname="sparki-exporter-2.sparki.mon.svc") == Shard(2, 3)
    for index, count, host in [
        ("3", 3, None),
        ("x", 3, None),
        ("auto", 3, "laptop"),
        ("1", None, None),
        (None, 2, None),
        ("0", 0, None),
    ]:
        with pytest.raises(ValueError):
            parse(index, count, hostname=host)
