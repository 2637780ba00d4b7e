"""The etcd adapter against real etcd members (Debian's etcd-server 3.4)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from fixtures_etcd import AUTH_PASSWORD, EtcdCluster, EtcdMember, b64, gateway

from devstack.redis import TlsFiles
from exporter.adapter import Reason

FAST = {"poll_interval": "1s", "poll_timeout": "0.9s"}


def config(target: dict[str, Any]) -> dict[str, Any]:
    return {**FAST, "etcd": [target]}


async def count_of(exp: Any, target: str, operation: str = "put") -> float:
    value = await exp.value(
        "sparki_etcd_canary_duration_seconds_count", target=target, operation=operation
    )
    return value or 0.0


async def count(exp: Any, operation: str) -> float:
    value = await exp.value(
        "sparki_etcd_canary_duration_seconds_count", target="t", operation=operation
    )
    return value or 0.0


async def test_canary_and_status_of_a_single_member(
    etcd_server: EtcdMember, start_exporter: Any
) -> None:
    exp = await start_exporter(config(etcd_server.target("t")))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="etcd", target="t")
    before = {op: await count(exp, op) for op in ("put", "get", "delete")}
    await exp.polls("etcd", "t", 2)
    for op in ("put", "get", "delete"):
        assert await count(exp, op) >= before[op] + 2, op

    # Status values are etcd's own, labelled by member name. The canary keeps
    # writing, so the database may grow a page between etcd's answer and the
    # exporter's poll: the exported size must lie between two readings of etcd
    # taken around a poll.
    def status() -> dict[str, Any]:
        reply = etcd_server.etcdctl("endpoint", "status", "-w", "json")
        return dict(json.loads(reply)[0]["Status"])

    first = status()
    await exp.polls("etcd", "t", 1)
    size = await exp.value("sparki_etcd_db_size_bytes", target="t", member="single")
    last = status()
    assert float(first["dbSize"]) <= size <= float(last["dbSize"]), (first, size, last)
    assert await exp.value("sparki_etcd_member_up", target="t", member="single") == 1
    assert await exp.value("sparki_etcd_has_leader", target="t", member="single") == 1
    assert await exp.value("sparki_etcd_is_leader", target="t", member="single") == 1
    assert await exp.value("sparki_etcd_raft_term", target="t", member="single") == float(
        last["raftTerm"]
    )
    assert await exp.value("sparki_etcd_raft_index_lag", target="t", member="single") == 0
    assert await exp.value("sparki_etcd_db_quota_bytes", target="t") == 2 * 1024**3
    assert await exp.value("sparki_etcd_alarm", target="t", alarm="nospace") == 0
    assert await exp.value("sparki_etcd_leader_changes_total", target="t") == 0
    for name in ("canary", "status", "alarms"):
        assert await exp.value("sparki_collector_success", adapter="etcd", collector=name) == 1
    text = await exp.scrape()
    assert str(etcd_server.client_port) not in text  # members by name, never by address

    # Nothing left behind under the canary prefix.
    await exp.exporter.stop()
    left = gateway(
        etcd_server.url,
        "/v3/kv/range",
        {
            "key": b64("/sparki-exporter/"),
            "range_end": b64("/sparki-exporter0"),
            "count_only": True,
        },
    )
    assert int(left.get("count", 0)) == 0


async def test_a_collector_switched_off_is_not_run(
    etcd_server: EtcdMember, start_exporter: Any
) -> None:
    exp = await start_exporter(config(etcd_server.target("t", collectors={"canary": False})))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="etcd", target="t")
    await exp.polls("etcd", "t", 1)
    assert await exp.samples("sparki_etcd_canary_duration_seconds_count", target="t") == []
    assert await exp.value("sparki_etcd_member_up", target="t", member="single") == 1


async def test_over_quota_raises_nospace_and_the_canary_counts_refusals(
    etcd_factory: Any, start_exporter: Any
) -> None:
    quota = 4 * 1024 * 1024
    member = etcd_factory(f"--quota-backend-bytes={quota}")
    blob = b64("x" * 256 * 1024)
    for i in range(200):
        try:
            gateway(member.url, "/v3/kv/put", {"key": b64(f"fill/{i}"), "value": blob})
        except urllib.error.HTTPError as exc:
            assert "space exceeded" in exc.read().decode()
            break
    else:
        pytest.fail("etcd never refused a write over its quota")
    exp = await start_exporter(config(member.target("t", quota_backend_bytes=quota)))
    await exp.wait_value("sparki_etcd_alarm", 1, timeout=30, target="t", alarm="nospace")
    assert await exp.value("sparki_etcd_alarm", target="t", alarm="corrupt") == 0
    assert await exp.value("sparki_up", adapter="etcd", target="t") == 1

    async def refused() -> bool:
        value = await exp.value(
            "sparki_etcd_canary_errors_total", target="t", operation="put", reason="nospace"
        )
        return bool(value)

    await exp.wait_for(refused, 15)
    size = await exp.value("sparki_etcd_db_size_bytes", target="t", member="p0")
    assert size is not None and size / quota > 0.8
    assert await exp.value("sparki_etcd_db_quota_bytes", target="t") == quota


async def test_leader_loss_in_a_three_member_cluster(
    etcd_cluster: EtcdCluster, start_exporter: Any
) -> None:
    exp = await start_exporter(
        {"poll_interval": "1s", "poll_timeout": "0.9s", "etcd": [etcd_cluster.target("t")]}
    )
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="etcd", target="t")
    for m in etcd_cluster.members:
        await exp.wait_value("sparki_etcd_has_leader", 1, target="t", member=m.name)
    leaders = await exp.samples("sparki_etcd_is_leader", target="t")
    assert sum(s.value for s in leaders) == 1
    assert await exp.value("sparki_etcd_cluster_members", target="t") == 3
    old = etcd_cluster.leader()
    changes = await exp.value("sparki_etcd_leader_changes_total", target="t") or 0.0
    old.stop()
    try:
        await exp.wait_value("sparki_etcd_member_up", 0, timeout=20, target="t", member=old.name)

        async def new_leader() -> bool:
            got = await exp.value("sparki_etcd_leader_changes_total", target="t")
            return got is not None and got >= changes + 1

        await exp.wait_for(new_leader, 20)
        rest = [m for m in etcd_cluster.members if m is not old]
        for m in rest:
            await exp.wait_value("sparki_etcd_has_leader", 1, target="t", member=m.name)
        assert await exp.value("sparki_up", adapter="etcd", target="t") == 1
        assert await exp.samples("sparki_etcd_db_size_bytes", target="t", member=old.name) == []
    finally:
        old.start()
    await exp.wait_value("sparki_etcd_member_up", 1, timeout=30, target="t", member=old.name)
    lags = await exp.samples("sparki_etcd_raft_index_lag", target="t")
    assert len(lags) == 3


async def test_auth_with_the_right_password(etcd_auth: EtcdMember, start_exporter: Any) -> None:
    target = etcd_auth.target("t", username="root", password=AUTH_PASSWORD)
    exp = await start_exporter(config(target))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="etcd", target="t")
    await exp.polls("etcd", "t", 1)
    assert await count(exp, "put") >= 1


async def test_without_credentials_auth_fails_clearly(
    etcd_auth: EtcdMember, start_exporter: Any
) -> None:
    exp = await start_exporter(config(etcd_auth.target("t")))
    state = exp.runner("etcd", "t").state
    await exp.wait_for(lambda: state.polled, 30)
    assert state.last_reason == Reason.AUTH, state.last_error


async def test_restart_mid_run(etcd_factory: Any, start_exporter: Any) -> None:
    member = etcd_factory()
    exp = await start_exporter(config(member.target("t")))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="etcd", target="t")
    member.stop()
    await exp.wait_value("sparki_up", 0, timeout=15, adapter="etcd", target="t")
    state = exp.runner("etcd", "t").state
    assert state.last_reason == Reason.CONNECT, state.last_error
    assert "127.0.0.1" not in (state.last_error or "")
    member.start()
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="etcd", target="t")
    before = await count(exp, "put")
    await exp.polls("etcd", "t", 1)
    assert await count(exp, "put") > before


async def test_tls_with_client_certificates(
    etcd_factory: Any, start_exporter: Any, tmp_path: Path
) -> None:
    tls = TlsFiles(tmp_path / "tls")
    member = etcd_factory(tls=tls)
    good = member.target(
        "good",
        ca_file=str(tls.ca_file),
        cert_file=str(tls.client_cert),
        key_file=str(tls.client_key),
    )
    wrong_ca = {**good, "name": "wrong-ca", "ca_file": str(tls.wrong_ca_file)}
    no_cert = member.target("no-cert", ca_file=str(tls.ca_file))
    exp = await start_exporter({**FAST, "etcd": [good, wrong_ca, no_cert]})
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="etcd", target="good")
    assert await exp.value("sparki_etcd_member_up", target="good", member="p0") == 1
    for name in ("wrong-ca", "no-cert"):
        state = exp.runner("etcd", name).state
        await exp.wait_for(lambda state=state: state.polled, 30)
        assert state.last_reason == Reason.CONNECT, (name, state.last_error)
        assert await exp.value("sparki_up", adapter="etcd", target=name) == 0


async def test_a_user_without_rights_on_the_canary_prefix_loses_only_the_canary(
    etcd_auth: EtcdMember, start_exporter: Any, captured_logs: Any
) -> None:
    """A user with read/write elsewhere: the canary is refused (permission) and degrades
    alone; status and alarms (open to every user in etcd 3.4) still work."""
    token = gateway(
        etcd_auth.url, "/v3/auth/authenticate", {"name": "root", "password": AUTH_PASSWORD}
    )["token"]
    password = "limited-Pass-3e9"
    for path, body in (
        ("/v3/auth/user/add", {"name": "limited", "password": password}),
        ("/v3/auth/role/add", {"name": "canary"}),
        (
            "/v3/auth/role/grant",
            {
                "name": "canary",
                "perm": {
                    "permType": "READWRITE",
                    "key": b64("/elsewhere/"),
                    "range_end": b64("/elsewhere0"),
                },
            },
        ),
        ("/v3/auth/user/grant", {"user": "limited", "role": "canary"}),
    ):
        try:
            gateway(etcd_auth.url, path, body, token)
        except urllib.error.HTTPError as exc:  # a rerun in the same session
            assert "already exists" in exc.read().decode()
    exp = await start_exporter(config(etcd_auth.target("t", username="limited", password=password)))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="etcd", target="t")
    await exp.polls("etcd", "t", 1)
    success = {
        s.labels["collector"]: s.value
        for s in await exp.samples("sparki_collector_success", adapter="etcd", target="t")
    }
    assert success == {"canary": 0, "status": 1, "alarms": 1}, success
    assert await exp.samples("sparki_etcd_canary_duration_seconds_count", target="t") == []
    assert await exp.value("sparki_etcd_member_up", target="t", member="auth") == 1
    assert await exp.value("sparki_etcd_alarm", target="t", alarm="nospace") == 0
    logs = captured_logs()
    assert "collector=canary" in logs and "permission denied" in logs, logs
    assert logs.count("collector failed") == 1, logs  # once per change, not per poll
    failed = [line for line in logs.splitlines() if "collector failed" in line]
    assert "127.0.0.1" not in failed[0] and password not in logs


def test_config_refuses_half_given_pairs_and_bad_endpoints() -> None:
    from exporter.config import ConfigError, validate

    for target, wanted in (
        ({"endpoints": ["http://e:2379"], "username": "u"}, "username and password"),
        ({"endpoints": ["http://e:2379"], "cert_file": "/c"}, "cert_file and key_file"),
        ({"endpoints": ["e:2379"]}, "must be a URL"),
        ({"endpoints": ["http://e:2379/v3"]}, "must be a URL"),
        ({"endpoints": ["http://u:Secret-9@e:2379"]}, "must not carry credentials"),
        ({"endpoints": []}, "at least 1"),
        ({"endpoints": ["http://e:2379"], "collectors": {"canry": False}}, "did you mean"),
    ):
        with pytest.raises(ConfigError) as err:
            validate({"etcd": [{"name": "t", **target}]}, {})
        assert wanted in str(err.value), (target, str(err.value))
        assert "Secret-9" not in str(err.value)


def test_from_env_reads_etcdctl_style_variables() -> None:
    from exporter.config import from_environment

    cfg = from_environment(
        {
            "ETCD_ENDPOINTS": "http://a:2379, http://b:2379",
            "ETCD_USERNAME": "u",
            "ETCD_PASSWORD": "p",
        }
    )
    ((section, target),) = cfg.targets()
    assert section == "etcd" and target.endpoints == ["http://a:2379", "http://b:2379"]
    assert target.secrets() == ["p"]


async def test_a_corrupt_alarm_shows_and_clears(etcd_factory: Any, start_exporter: Any) -> None:
    member = etcd_factory()
    member_id = member.status()["header"]["member_id"]
    exp = await start_exporter(config(member.target("t")))
    await exp.wait_value("sparki_etcd_alarm", 0, timeout=30, target="t", alarm="corrupt")
    alarm = {"memberID": member_id, "alarm": "CORRUPT"}
    gateway(member.url, "/v3/maintenance/alarm", {"action": "ACTIVATE", **alarm})
    await exp.wait_value("sparki_etcd_alarm", 1, timeout=15, target="t", alarm="corrupt")
    assert await exp.value("sparki_etcd_alarm", target="t", alarm="nospace") == 0
    gateway(member.url, "/v3/maintenance/alarm", {"action": "DEACTIVATE", **alarm})
    await exp.wait_value("sparki_etcd_alarm", 0, timeout=15, target="t", alarm="corrupt")


async def test_a_hung_member_costs_part_of_a_poll_and_only_its_own_series(
    etcd_cluster: EtcdCluster, hung_server: Any, start_exporter: Any
) -> None:
    """An endpoint that accepts and never answers, listed first: the canary falls over
    to the next member and the others' status is still read in the same poll."""
    target = etcd_cluster.target("t")
    target["endpoints"] = [f"http://127.0.0.1:{hung_server.port}", *target["endpoints"]]
    exp = await start_exporter({"poll_interval": "2s", "poll_timeout": "1.5s", "etcd": [target]})
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="etcd", target="t")
    await exp.polls("etcd", "t", 2)
    assert await exp.value("sparki_up", adapter="etcd", target="t") == 1
    assert await exp.value("sparki_etcd_member_up", target="t", member="endpoint-0") == 0
    for m in etcd_cluster.members:
        assert await exp.value("sparki_etcd_member_up", target="t", member=m.name) == 1
    assert await count(exp, "put") >= 2
    state = exp.runner("etcd", "t").state
    assert state.last_duration is not None and state.last_duration < 1.5


def duplicates(text: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """Samples that appear twice with one label set (Prometheus would drop one)."""
    from prometheus_client.parser import text_string_to_metric_families

    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    twice = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in seen:
                twice.append(key)
            seen.add(key)
    return twice


async def test_a_member_removed_while_running_and_then_replaced(
    etcd_cluster_private: EtcdCluster, start_exporter: Any
) -> None:
    """``etcdctl member remove`` of a follower whose endpoint stays in the config (configs
    lag behind): the target stays up through the other two, the cluster size reads 2,
    and the removed member reads member_up 0 under its own name (SparkiEtcdMemberDown;
    its runbook says to drop the endpoint) with no other series an alert reads. A
    replacement added later under the same name at another address takes the name
    over: the stale endpoint then reads as endpoint-<index>, never as a second series
    labelled like the member that is fine."""
    cluster = etcd_cluster_private
    victim = next(m for m in cluster.members if m is not cluster.leader())
    index = cluster.members.index(victim)
    spare = cluster.spare(victim.name)  # the replacement: same name, another address
    lagging = cluster.target("lagging")  # the three endpoints the cluster started with
    ahead = cluster.target("ahead")
    ahead["endpoints"] = [*ahead["endpoints"], spare.url]  # lists the replacement already
    exp = await start_exporter({**FAST, "etcd": [lagging, ahead]})
    for name in ("lagging", "ahead"):
        await exp.wait_value("sparki_up", 1, timeout=30, adapter="etcd", target=name)
        await exp.wait_value("sparki_etcd_member_up", 1, target=name, member=victim.name)
    assert await exp.value("sparki_etcd_cluster_members", target="lagging") == 3
    await asyncio.to_thread(cluster.remove, victim)

    await exp.wait_value("sparki_etcd_cluster_members", 2, timeout=15, target="lagging")
    await exp.wait_value("sparki_etcd_member_up", 0, target="lagging", member=victim.name)
    await exp.polls("etcd", "lagging", 2)
    assert await exp.value("sparki_up", adapter="etcd", target="lagging") == 1
    rest = sorted(m.name for m in cluster.members)
    rows = await exp.samples("sparki_etcd_member_up", target="lagging")
    assert {s.labels["member"]: s.value for s in rows} == {
        **dict.fromkeys(rest, 1.0),
        victim.name: 0.0,
    }
    # Only member_up speaks for the removed member: no leader, lag or quota series
    # that an alert would read at its last value.
    for family in (
        "sparki_etcd_has_leader",
        "sparki_etcd_raft_index_lag",
        "sparki_etcd_db_size_bytes",
        "sparki_etcd_is_leader",
    ):
        rows = await exp.samples(family, target="lagging")
        assert sorted(s.labels["member"] for s in rows) == rest, family
    for m in rest:
        assert await exp.value("sparki_etcd_has_leader", target="lagging", member=m) == 1
    leaders = await exp.samples("sparki_etcd_is_leader", target="lagging")
    assert sum(s.value for s in leaders) == 1
    before = await count_of(exp, "lagging")
    await exp.polls("etcd", "lagging", 2)
    assert await count_of(exp, "lagging") >= before + 2  # the canary uses the others
    assert str(victim.client_port) not in await exp.scrape()

    await asyncio.to_thread(cluster.add, spare)
    await exp.wait_value("sparki_etcd_cluster_members", 3, timeout=30, target="ahead")
    await exp.wait_value("sparki_etcd_member_up", 1, timeout=30, target="ahead", member=spare.name)
    stale = f"endpoint-{index}"
    for name in ("lagging", "ahead"):
        await exp.wait_value("sparki_etcd_member_up", 0, target=name, member=stale)
    await exp.polls("etcd", "ahead", 2)
    rows = await exp.samples("sparki_etcd_member_up", target="ahead")
    assert sorted((s.labels["member"], s.value) for s in rows) == sorted(
        [*((m, 1.0) for m in rest), (spare.name, 1.0), (stale, 0.0)]
    )
    # The lagging config does not list the replacement: nothing under its name there.
    assert await exp.samples("sparki_etcd_member_up", target="lagging", member=spare.name) == []
    assert duplicates(await exp.scrape()) == []
