"""S3 collectors: multipart uploads, lifecycle rules, storage classes, switches, refusals.

moto in server mode over real HTTP (tests/fixtures_s3.py): each test makes its own
bucket on the shared server, so the incomplete uploads and rules it creates are the
only ones the exporter can see there.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from fixtures_s3 import unique_bucket

from exporter.adapters.s3.lifecycle import coverage

FIVE_MIB = 5 * 2**20


def conf(*targets: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"poll_interval": "1s", "poll_timeout": "0.9s", "s3": list(targets), **top}


def prefix() -> str:
    return f".sparki-canary/{uuid.uuid4().hex[:8]}/"


def fast(**overrides: Any) -> dict[str, Any]:
    """Scans every second instead of every five minutes."""
    return {
        "canary": {"prefix": prefix()},
        "multipart": {"interval": "1s"},
        "lifecycle": {"interval": "1s"},
        **overrides,
    }


async def family_names(exp: Any, target: str) -> set[str]:
    fams = await exp.families()
    return {
        name
        for name, fam in fams.items()
        if any(s.labels.get("target") == target for s in fam.samples)
    }


async def test_incomplete_multipart_uploads_count_bytes_and_age(start_exporter, s3_server):
    bucket = s3_server.create_bucket(unique_bucket("mpu"))
    s3 = s3_server.client("s3")
    first = s3.create_multipart_upload(Bucket=bucket, Key="artifacts/build-1.tar")
    s3.upload_part(
        Bucket=bucket,
        Key="artifacts/build-1.tar",
        UploadId=first["UploadId"],
        PartNumber=1,
        Body=b"x" * FIVE_MIB,  # all but the last part: at least 5 MiB
    )
    s3.upload_part(
        Bucket=bucket,
        Key="artifacts/build-1.tar",
        UploadId=first["UploadId"],
        PartNumber=2,
        Body=b"y" * 1000,
    )
    second = s3.create_multipart_upload(Bucket=bucket, Key="artifacts/build-2.tar")
    exp = await start_exporter(conf(s3_server.target("mpu", bucket=bucket, **fast())))

    async def seen(name: str, want: float) -> bool:
        return await exp.value(name, target="mpu", bucket=bucket) == want

    await exp.wait_for(lambda: seen("sparki_s3_multipart_uploads", 2), timeout=20)
    await exp.wait_for(
        lambda: seen("sparki_s3_multipart_upload_bytes", FIVE_MIB + 1000), timeout=20
    )
    age = await exp.value("sparki_s3_multipart_oldest_upload_age_seconds", target="mpu")
    # moto reports every upload as initiated at one fixed moment (2010-11-10T20:48:33Z,
    # its ListMultipartUploads template); the age is counted from that Initiated time.
    initiated = datetime(2010, 11, 10, 20, 48, 33, tzinfo=UTC).timestamp()
    assert age is not None and abs(age - (time.time() - initiated)) < 60

    async def older() -> bool:
        later = await exp.value("sparki_s3_multipart_oldest_upload_age_seconds", target="mpu")
        return later is not None and later > age

    await exp.wait_for(older, timeout=10)  # the age grows between scans

    # Aborting one and completing the other leaves none: count 0, age 0, bytes 0.
    s3.abort_multipart_upload(
        Bucket=bucket, Key="artifacts/build-2.tar", UploadId=second["UploadId"]
    )
    await exp.wait_for(lambda: seen("sparki_s3_multipart_uploads", 1), timeout=20)
    parts = s3.list_parts(Bucket=bucket, Key="artifacts/build-1.tar", UploadId=first["UploadId"])
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="artifacts/build-1.tar",
        UploadId=first["UploadId"],
        MultipartUpload={
            "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts["Parts"]]
        },
    )
    await exp.wait_for(lambda: seen("sparki_s3_multipart_uploads", 0), timeout=20)
    assert await seen("sparki_s3_multipart_oldest_upload_age_seconds", 0)
    assert await seen("sparki_s3_multipart_upload_bytes", 0)
    assert await exp.value("sparki_up", adapter="s3", target="mpu") == 1


async def test_multipart_bytes_unknown_past_the_listparts_budget(
    start_exporter, s3_server, captured_logs
):
    """More uploads than parts_uploads: the count is exported, the bytes are not (a
    partial sum would under-report), and the log says why once."""
    bucket = s3_server.create_bucket(unique_bucket("mpb"))
    s3 = s3_server.client("s3")
    for i in range(3):
        s3.create_multipart_upload(Bucket=bucket, Key=f"artifacts/{i}.bin")
    exp = await start_exporter(
        conf(
            s3_server.target(
                "budget", bucket=bucket, **fast(multipart={"interval": "1s", "parts_uploads": 2})
            )
        )
    )
    await exp.wait_for(
        lambda: _equals(exp, "sparki_s3_multipart_uploads", 3, target="budget"), timeout=20
    )
    await exp.polls("s3", "budget", 2)
    assert await exp.value("sparki_s3_multipart_upload_bytes", target="budget") is None
    lines = [x for x in captured_logs().splitlines() if "multipart.parts_uploads" in x]
    assert len(lines) == 1, lines


async def _equals(exp: Any, name: str, want: float, **labels: str) -> bool:
    return await exp.value(name, **labels) == want


async def test_lifecycle_rule_presence_flips_with_the_configuration(start_exporter, s3_server):
    bucket = s3_server.create_bucket(unique_bucket("lc"))
    s3 = s3_server.client("s3")
    exp = await start_exporter(conf(s3_server.target("lc", bucket=bucket, **fast())))

    async def present() -> dict[str, float]:
        samples = await exp.samples("sparki_s3_lifecycle_rule_present", target="lc")
        return {s.labels["prefix"]: s.value for s in samples}

    # No lifecycle configuration at all: each of the design's prefixes is unmanaged.
    unmanaged = {"artifacts/": 0.0, "backups/": 0.0, "cache/": 0.0, "logs/": 0.0}
    await exp.wait_for(lambda: _is(present, unmanaged), timeout=20)

    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "logs-to-glacier",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "logs/"},
                    "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}],
                },
                {
                    "ID": "cache-off",
                    "Status": "Disabled",
                    "Filter": {"Prefix": "cache/"},
                    "Expiration": {"Days": 7},
                },
            ]
        },
    )
    await exp.wait_for(lambda: _is(present, {**unmanaged, "logs/": 1.0}), timeout=20)

    s3.delete_bucket_lifecycle(Bucket=bucket)
    await exp.wait_for(lambda: _is(present, unmanaged), timeout=20)


async def _is(read: Any, want: dict[str, float]) -> bool:
    return await read() == want


def test_which_rules_cover_a_prefix():
    """Only an enabled rule that expires or transitions everything under the prefix."""

    def rule(filter_: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"Status": "Enabled", "Expiration": {"Days": 1}, **extra}
        if filter_ is not None:
            out["Filter"] = filter_
        return out

    prefixes = ["logs/", "artifacts/"]
    assert coverage([], prefixes) == {"logs/": False, "artifacts/": False}
    assert coverage([rule({"Prefix": ""})], prefixes) == {"logs/": True, "artifacts/": True}
    assert coverage([rule({})], prefixes) == {"logs/": True, "artifacts/": True}
    assert coverage([rule(Prefix="logs")], prefixes)["logs/"]  # the older top-level form
    assert not coverage([rule({"Prefix": "logs/old/"})], prefixes)["logs/"]  # narrower
    tagged = {"And": {"Prefix": "logs/", "Tags": [{"Key": "k", "Value": "v"}]}}
    assert not coverage([rule(tagged)], prefixes)["logs/"]
    assert not coverage([rule({"Tag": {"Key": "k", "Value": "v"}})], prefixes)["logs/"]
    assert not coverage([rule({"ObjectSizeGreaterThan": 1024})], prefixes)["logs/"]
    assert not coverage([{**rule({"Prefix": "logs/"}), "Status": "Disabled"}], prefixes)["logs/"]
    abort_only = {
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
    }
    assert coverage([abort_only], prefixes) == {"logs/": False, "artifacts/": False}


async def test_inventory_counts_objects_per_storage_class(start_exporter, s3_server):
    bucket = s3_server.create_bucket(unique_bucket("classes"))
    s3 = s3_server.client("s3")
    s3.put_object(Bucket=bucket, Key="artifacts/a", Body=b"a" * 100)
    s3.put_object(Bucket=bucket, Key="artifacts/b", Body=b"b" * 50)
    s3.put_object(Bucket=bucket, Key="logs/old", Body=b"l" * 700, StorageClass="GLACIER")
    exp = await start_exporter(
        conf(
            s3_server.target(
                "classes", bucket=bucket, **fast(inventory={"enabled": True, "interval": "1s"})
            )
        )
    )

    async def by_class(name: str) -> dict[str, float]:
        samples = await exp.samples(name, target="classes", bucket=bucket)
        return {s.labels["storage_class"]: s.value for s in samples}

    want_objects = {"StandardStorage": 2.0, "GlacierStorage": 1.0}
    await exp.wait_for(
        lambda: _is(lambda: by_class("sparki_s3_storage_class_objects"), want_objects),
        timeout=20,
    )
    sizes = await by_class("sparki_s3_bucket_size_bytes")
    assert sizes == {"StandardStorage": 150.0, "GlacierStorage": 700.0}
    assert await exp.value("sparki_s3_bucket_objects", target="classes", bucket=bucket) == 3


async def test_switched_off_collectors_export_nothing(start_exporter, s3_server):
    """Per target (`collectors:`) and for every S3 target (top-level `collectors:`)."""
    cw = {"enabled": True, "endpoint_url": s3_server.endpoint_url, "interval": "1s"}
    exp = await start_exporter(
        conf(
            s3_server.target("all", **fast(cloudwatch=cw)),
            s3_server.target(
                "fewer",
                **fast(cloudwatch=cw),
                collectors={"cloudwatch": False, "multipart": False},
            ),
            collectors={"s3": {"lifecycle": False}},
        )
    )
    for name in ("all", "fewer"):
        await exp.polls("s3", name, 3)
    full = await family_names(exp, "all")
    fewer = await family_names(exp, "fewer")
    assert {
        "sparki_s3_cloudwatch_requests",
        "sparki_s3_multipart_uploads",
        "sparki_s3_probes",
    } <= full
    assert "sparki_s3_lifecycle_rule_present" not in full  # off for every S3 target
    assert "sparki_s3_probes" in fewer
    for gone in (
        "sparki_s3_cloudwatch_requests",
        "sparki_s3_cloudwatch_metrics_requested",
        "sparki_s3_request_latency_seconds",
        "sparki_s3_requests",
        "sparki_s3_multipart_uploads",
        "sparki_s3_multipart_oldest_upload_age_seconds",
        "sparki_s3_lifecycle_rule_present",
    ):
        assert gone not in fewer, gone
    runs = await exp.samples("sparki_collector_success", adapter="s3", target="fewer")
    assert {s.labels["collector"] for s in runs} == {"canary", "cost"}
    assert await exp.value("sparki_capability", target="fewer", capability="cloudwatch") is None
    assert await exp.value("sparki_capability", target="all", capability="cloudwatch") == 1


async def test_a_refused_collector_degrades_alone(
    start_exporter, s3_refusing_server, captured_logs
):
    """The key may not read lifecycle rules nor list multipart uploads (AccessDenied):
    those two collectors report failure, the canary and the target stay up."""
    server = s3_refusing_server
    exp = await start_exporter(conf(server.target("narrow", **fast())))
    await exp.wait_for(
        lambda: _equals(exp, "sparki_collector_success", 0, target="narrow", collector="lifecycle"),
        timeout=30,
    )
    await exp.wait_for(
        lambda: _equals(exp, "sparki_collector_success", 0, target="narrow", collector="multipart"),
        timeout=30,
    )
    await exp.polls("s3", "narrow", 2)
    assert await exp.value("sparki_up", adapter="s3", target="narrow") == 1
    assert await exp.value("sparki_collector_success", target="narrow", collector="canary") == 1
    names = await family_names(exp, "narrow")
    assert "sparki_s3_probes" in names
    assert "sparki_s3_lifecycle_rule_present" not in names
    assert "sparki_s3_multipart_uploads" not in names
    refusals = [
        line
        for line in captured_logs().splitlines()
        if "collector failed" in line and "lifecycle" in line
    ]
    assert len(refusals) == 1, refusals  # once per change, not once per poll
    assert "AccessDenied" in refusals[0]
