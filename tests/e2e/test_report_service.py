"""ReportService end to end: a real wework-server (MariaDB shards, Redis, the simulator failing
some sends with two different codes), driven through the client facade (`client.reports`).

A batch task sent from a template, and single template messages, reach their outcomes; then each
report is checked against SQL over the messages table: batch counters and failure reasons by
error_code, template usage, message statistics; bad input answers INVALID_ARGUMENT naming the
field; a repeated read is a cache hit on /metrics; ExportMessageStats streams in chunks.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import harness
import pytest
import sqlalchemy as sa
from google.protobuf import timestamp_pb2
from serverproc import TEST_ADMIN_KEY, online_account, run_admin, settings_yaml, start_server
from wework.client import (
    AsyncWeworkClient,
    ClientOptions,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    WeworkClient,
)
from wework.persistence.database import Database
from wework.v1 import account_pb2 as apb
from wework.v1 import message_pb2 as mpb
from wework.v1 import report_pb2 as pb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SERVICE = "wework.v1.ReportService"
SETTINGS = {
    "provider": {"simulator": {"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1,
                               "heartbeat_interval_seconds": 0.5, "delivery_delay_seconds": 0.01,
                               "send_failure_rate": 0.3, "transient_failure_rate": 0.2, "seed": 5}},
    "message": {"account_min_interval_seconds": 0.01, "account_jitter_seconds": 0, "idle_poll_seconds": 0.2,
                "max_attempts": 1},
    "report": {"max_range_days": 31, "cache_ttl_seconds": 60, "export_chunk_rows": 100},
}


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


class ReportPlatform:
    def __init__(self, mariadb_server, redis_server, workdir) -> None:
        self.workdir = workdir
        self.prefix = harness.new_db_prefix("r")
        self.config = harness.make_database_config(self.prefix, [mariadb_server], 2)
        self.settings = settings_yaml(workdir / "server.yaml", self.config.model_dump(mode="json"),
                                      redis_server.url, redis={"key_prefix": f"{self.prefix}:"}, **SETTINGS)
        self.server = None

    def client(self, **options) -> WeworkClient:
        return WeworkClient(ClientOptions(target=self.server.target, **options))

    def new_tenant(self) -> tuple[tpb.Tenant, dict[str, str]]:
        """A tenant and API keys of its admin and viewer roles."""
        code = f"t{uuid.uuid4().hex[:12]}"
        with self.client(api_key=TEST_ADMIN_KEY) as admin:
            tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code))
        with self.client(api_key=TEST_ADMIN_KEY, tenant_id=tenant.id) as admin:
            roles = {r.role_code: r.id for r in admin.tenants.iter_roles()}
            keys = {code: admin.tenants.create_api_key(tpb.ApiKey(display_name=code, role_id=roles[code])).secret
                    for code in ("admin", "viewer")}
        return tenant, keys

    def online_account(self, client: WeworkClient) -> apb.Account:
        return online_account(client, "sender")

    def sql(self, tenant_id: str, statement: str, **params) -> list[tuple]:
        async def go():
            db = Database(self.config, ["message"])
            try:
                async with db.unit_of_work("message", tenant_id) as uow:
                    return [tuple(r) for r in (await uow.session.execute(sa.text(statement), params)).all()]
            finally:
                await db.dispose()
        return asyncio.run(go())

    def metric(self, name: str, **labels: str) -> float:
        text = urllib.request.urlopen(self.server.metrics_url, timeout=5).read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
            if m and m.group(1) == name and ",".join(sorted((m.group(2) or "").split(","))) == want:
                return float(m.group(3))
        return 0.0


@pytest.fixture(scope="module")
def rp(mariadb_server, redis_server, tmp_path_factory):
    p = ReportPlatform(mariadb_server, redis_server, tmp_path_factory.mktemp("reports"))
    migrated = run_admin(p.settings, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    p.server = start_server(p.workdir, p.settings, name="server", wait_service=SERVICE)
    yield p
    p.server.stop(signal.SIGTERM)
    mariadb_server.drop_databases(p.prefix + "_")


@pytest.fixture(scope="module")
def sent(rp):
    """A tenant whose batch (60 targets, from a template) and 10 single template messages are done."""
    tenant, keys = rp.new_tenant()
    with rp.client(api_key=keys["admin"]) as client:
        account = rp.online_account(client)
        used = client.messages.create_template(mpb.MessageTemplate(
            template_name="greeting", template_type=mpb.MESSAGE_TYPE_TEXT,
            template_content=mpb.MessageContent(text=mpb.TextContent(text="hello"))))
        unused = client.messages.create_template(mpb.MessageTemplate(
            template_name="unused", template_type=mpb.MESSAGE_TYPE_TEXT,
            template_content=mpb.MessageContent(text=mpb.TextContent(text="never"))))
        task = client.messages.create_batch_task(mpb.BatchSendTask(
            task_name="report-batch", account_id=account.id, template_id=used.id,
            manual=mpb.ManualTargets(targets=[mpb.BatchTarget(conversation_id=f"c-{i}") for i in range(60)])))
        client.messages.start_batch_task(task.id)
        for i in range(10):
            client.messages.send_message(account_id=account.id, conversation_id=f"s-{i}", template_id=used.id)
        list(client.messages.watch_batch_task(task.id, timeout=60))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # every receipt in: delivered or failed, nothing else
            statuses = dict(rp.sql(tenant.id, "SELECT status, COUNT(*) FROM messages WHERE tenant_id = :t "
                                              "GROUP BY status", t=tenant.id))
            if sum(statuses.values()) == 70 and set(statuses) <= {"delivered", "failed"}:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"messages not final: {statuses}")
    return tenant, keys, account, task, used, unused


def test_batch_task_report_equals_the_messages(rp, sent):
    tenant, keys, _, task, _, _ = sent
    with rp.client(api_key=keys["viewer"]) as client:  # reports.read is a viewer's permission
        report = client.reports.get_batch_task_report(task.id)
    counts = dict(rp.sql(tenant.id, "SELECT status, COUNT(*) FROM messages WHERE batch_id = :b GROUP BY status",
                         b=task.id))
    m = report.messages
    assert (m.total, m.delivered, m.failed, m.sent, m.pending) == (
        60, counts.get("delivered", 0), counts.get("failed", 0), 0, 0)
    assert report.total_count == 60 and report.status == "BATCH_TASK_STATUS_COMPLETED"
    # The task's own counters are reported as stored (a send the provider accepted counts as a
    # success there even if a failure receipt came later); the recount above is the messages' word.
    [row] = rp.sql(tenant.id, "SELECT total_count, sent_count, success_count, failed_count FROM batch_send_tasks "
                              "WHERE id = :b", b=task.id)
    assert (report.total_count, report.sent_count, report.success_count, report.failed_count) == row
    reasons = rp.sql(tenant.id, "SELECT COALESCE(error_code, ''), COUNT(*) FROM messages WHERE batch_id = :b "
                                "AND status = 'failed' GROUP BY error_code", b=task.id)
    assert len(reasons) >= 2  # two failure modes of the simulator, two codes
    assert sorted((r.error_code, r.count) for r in report.failure_reasons) == sorted(reasons)
    assert [r.count for r in report.failure_reasons] == sorted((r.count for r in report.failure_reasons),
                                                               reverse=True)
    assert all(r.sample_error_message for r in report.failure_reasons)
    assert report.duration.ToTimedelta() > timedelta(0) and report.throughput_per_minute > 0
    with rp.client(api_key=keys["admin"]) as client, pytest.raises(NotFoundError):
        client.reports.get_batch_task_report(str(uuid.uuid4()))


def test_template_usage_equals_the_messages(rp, sent):
    tenant, keys, _, _, used, unused = sent
    now = datetime.now(UTC)
    with rp.client(api_key=keys["admin"]) as client:
        usage = client.reports.get_template_usage(start_time=ts(now - timedelta(days=1)),
                                                  end_time=ts(now + timedelta(minutes=1)))
    [(n, ok, bad)] = rp.sql(tenant.id, "SELECT COUNT(*), SUM(status IN ('sent', 'delivered')), "
                                       "SUM(status = 'failed') FROM messages WHERE template_id = :t", t=used.id)
    assert [(t.template_id, t.message_count, t.success_count, t.failed_count) for t in usage.templates] == [
        (used.id, n, ok, bad), (unused.id, 0, 0, 0)]
    assert n == 70 and usage.templates[0].template_name == "greeting"


def test_message_stats_reconcile_and_repeat_reads_hit_the_cache(rp, sent):
    tenant, keys, account, _, _, _ = sent
    now = datetime.now(UTC)
    request = pb.GetMessageStatsRequest(start_time=ts(now - timedelta(days=2)), end_time=ts(now),
                                        granularity=pb.GRANULARITY_HOURLY, time_zone="Asia/Shanghai")
    hits = rp.metric("wework_report_cache_requests_total", report="message_stats", result="hit")
    with rp.client(api_key=keys["admin"]) as client:
        first = client.reports.get_message_stats(request)
        second = client.reports.get_message_stats(request)
        one = client.reports.get_message_stats(start_time=request.start_time, end_time=request.end_time,
                                               account_id=account.id)
    assert second == first
    assert rp.metric("wework_report_cache_requests_total", report="message_stats", result="hit") == hits + 1
    assert 0 < rp.metric("wework_report_cache_hit_ratio") <= 1
    assert len(first.buckets) in (49, 50) and first.granularity == pb.GRANULARITY_HOURLY
    expected = {(f"{h:%Y-%m-%d %H}"): (n, ok, bad) for h, n, ok, bad in (
        (datetime.strptime(k, "%Y-%m-%d %H"), int(n), int(ok), int(bad)) for k, n, ok, bad in rp.sql(
            tenant.id, "SELECT DATE_FORMAT(created_at, '%Y-%m-%d %H'), COUNT(*), SUM(status IN ('sent', "
                       "'delivered')), SUM(status = 'failed') FROM messages WHERE tenant_id = :t GROUP BY 1",
            t=tenant.id))}
    got = {f"{b.start_time.ToDatetime():%Y-%m-%d %H}": (b.total_count, b.success_count, b.failed_count)
           for b in first.buckets if b.total_count}
    assert got == expected
    assert (one.total.total_count, one.total.failed_count) == (first.total.total_count, first.total.failed_count)
    assert one.granularity == pb.GRANULARITY_DAILY and one.time_zone == "UTC"


def test_export_streams_chunks(rp, sent):
    _, keys, _, _, _, _ = sent
    now = datetime.now(UTC)
    with rp.client(api_key=keys["admin"]) as client:
        chunks = list(client.reports.export_message_stats(
            start_time=ts(now - timedelta(days=300)), end_time=ts(now), granularity=pb.GRANULARITY_DAILY,
            chunk_size=40, timeout=60))
        whole = client.reports.get_message_stats(start_time=ts(now - timedelta(days=1)), end_time=ts(now),
                                                 granularity=pb.GRANULARITY_DAILY)
    assert [c.chunk_index for c in chunks] == list(range(len(chunks))) and chunks[-1].last
    assert not any(c.last for c in chunks[:-1])
    buckets = [b for c in chunks for b in c.buckets]
    assert len(buckets) in (300, 301) and all(len(c.buckets) <= 40 for c in chunks)
    assert sum(b.total_count for b in buckets) == whole.total.total_count == 70

    async def with_asyncio():  # the asyncio facade has the same surface
        async with AsyncWeworkClient(ClientOptions(target=rp.server.target, api_key=keys["admin"])) as client:
            streamed = [c async for c in client.reports.export_message_stats(
                start_time=ts(now - timedelta(days=300)), end_time=ts(now), granularity=pb.GRANULARITY_DAILY,
                chunk_size=40, timeout=60)]
            return streamed, await client.reports.get_message_stats(start_time=ts(now - timedelta(days=1)),
                                                                    end_time=ts(now))

    streamed, stats = asyncio.run(with_asyncio())
    assert [b for c in streamed for b in c.buckets] == buckets and stats.total == whole.total


@pytest.mark.parametrize(("start_days_ago", "end_days_ago", "fields", "field"), [
    (1, 2, {}, "end_time"),  # end before start
    (40, 0, {}, "end_time"),  # over report.max_range_days
    (1, 0, {"granularity": 9}, "granularity"),
    (1, 0, {"time_zone": "Atlantis/Capital"}, "time_zone"),
    (1, 0, {"time_zone": "Asia/Kolkata"}, "time_zone"),  # +05:30: not whole UTC hours
])
def test_bad_input_is_invalid_argument_naming_the_field(rp, sent, start_days_ago, end_days_ago, fields, field):
    _, keys, _, _, _, _ = sent
    now = datetime.now(UTC)
    request = pb.GetMessageStatsRequest(start_time=ts(now - timedelta(days=start_days_ago)),
                                        end_time=ts(now - timedelta(days=end_days_ago)), **fields)
    with rp.client(api_key=keys["admin"]) as client, pytest.raises(InvalidArgumentError) as e:
        client.reports.get_message_stats(request)
    assert [v.field for v in e.value.field_violations] == [field]


def test_reports_need_reports_read_and_stay_in_the_tenant(rp, sent):
    tenant, _, account, task, _, _ = sent
    other, other_keys = rp.new_tenant()
    now = datetime.now(UTC)
    with rp.client(api_key=other_keys["admin"]) as client:
        stats = client.reports.get_message_stats(start_time=ts(now - timedelta(days=1)), end_time=ts(now))
        assert stats.total.total_count == 0 and len(stats.buckets) == 2
        with pytest.raises(NotFoundError):
            client.reports.get_batch_task_report(task.id)
        with pytest.raises(NotFoundError):
            client.reports.get_message_stats(start_time=ts(now - timedelta(days=1)), end_time=ts(now),
                                             account_id=account.id)
    with rp.client(api_key=TEST_ADMIN_KEY, tenant_id=other.id) as admin:
        role = admin.tenants.create_role(tpb.Role(role_code="noreports", role_name="No reports",
                                                  permissions=["messages.read"]))
        key = admin.tenants.create_api_key(tpb.ApiKey(display_name="nr", role_id=role.id)).secret
    with rp.client(api_key=key) as client, pytest.raises(PermissionDeniedError):
        client.reports.get_batch_task_report(task.id)
    assert tenant.id != other.id


def test_a_report_only_embedded_process_serves_reports(tmp_path, monkeypatch):
    """The chart's `report` Deployment runs `--services report`; here on the embedded SQLite
    default, called with grpcurl as docs/reports.md shows."""
    import json
    import os
    import subprocess

    from serverproc import BIN

    for key in [k for k in os.environ if k.startswith("WEWORK_")]:
        monkeypatch.delenv(key)
    server = start_server(tmp_path, args=("--services", "report"), wait_service=SERVICE)
    try:
        secrets = json.loads((tmp_path / "var" / "secrets.json").read_text())
        tenant = "0190d2f3-0000-7000-8000-000000000000"
        out = subprocess.run(
            [str(BIN / "grpcurl"), "-plaintext", "-H", f"x-api-key: {secrets['admin_api_key']}",
             "-H", f"x-wework-tenant: {tenant}", "-d", json.dumps({
                 "start_time": "2026-03-01T00:00:00Z", "end_time": "2026-03-03T00:00:00Z",
                 "granularity": "GRANULARITY_DAILY", "time_zone": "Asia/Shanghai"}),
             server.target, "wework.v1.ReportService/GetMessageStats"],
            capture_output=True, text=True, check=False, timeout=60)
        assert out.returncode == 0, out.stderr
        body = json.loads(out.stdout)
        assert [b["local_start"] for b in body["buckets"]] == [
            "2026-03-01T00:00:00+08:00", "2026-03-02T00:00:00+08:00", "2026-03-03T00:00:00+08:00"]
        assert body["time_zone"] == "Asia/Shanghai" and "total_count" not in body["total"]  # zero: omitted in JSON
    finally:
        assert server.stop() == 0
