"""Batch tasks end to end: a real wework-server (MariaDB shards, Redis, the in-process simulator,
its own dispatcher), driven through the client facade.

A batch of each target kind runs to the end under WatchBatchTask with counters equal to what
the messages say; Pause, Resume and Cancel behave. GROUP and FILTER targets need conversations
in the account database: they are seeded with SQL, as the provider would have reported them.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from datetime import UTC, datetime

import harness
import pytest
import sqlalchemy as sa
from serverproc import TEST_ADMIN_KEY, online_account, run_admin, settings_yaml, start_server
from wework.client import ClientOptions, FailedPreconditionError, ResourceExhaustedError, WeworkClient
from wework.persistence.database import Database
from wework.persistence.ids import new_id
from wework.persistence.models import account as am
from wework.v1 import account_pb2 as apb
from wework.v1 import message_pb2 as pb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SERVICE = "wework.v1.MessageService"
SETTINGS = {
    "provider": {"simulator": {"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1,
                               "heartbeat_interval_seconds": 0.5, "delivery_delay_seconds": 0.01}},
    "message": {"account_min_interval_seconds": 0.02, "account_jitter_seconds": 0, "idle_poll_seconds": 0.2},
}


class BatchPlatform:
    def __init__(self, mariadb_server, redis_server, workdir) -> None:
        self.workdir = workdir
        self.prefix = harness.new_db_prefix("b")
        self.config = harness.make_database_config(self.prefix, [mariadb_server], 2)
        self.settings = settings_yaml(workdir / "server.yaml", self.config.model_dump(mode="json"),
                                      redis_server.url, redis={"key_prefix": f"{self.prefix}:"}, **SETTINGS)
        self.server = None

    def client(self, **options) -> WeworkClient:
        return WeworkClient(ClientOptions(target=self.server.target, **options))

    def new_tenant(self, **fields) -> tuple[tpb.Tenant, str]:
        code = f"t{uuid.uuid4().hex[:12]}"
        with self.client(api_key=TEST_ADMIN_KEY) as admin:
            tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code, **fields))
        with self.client(api_key=TEST_ADMIN_KEY, tenant_id=tenant.id) as admin:
            roles = {r.role_code: r.id for r in admin.tenants.iter_roles()}
            key = admin.tenants.create_api_key(tpb.ApiKey(display_name="e2e", role_id=roles["admin"])).secret
        return tenant, key

    def online_account(self, client: WeworkClient) -> apb.Account:
        return online_account(client, "sender")

    def run(self, db_name: str, tenant_id: str, fn):
        async def go():
            db = Database(self.config, [db_name])
            try:
                async with db.unit_of_work(db_name, tenant_id) as uow:
                    return await fn(uow.session)
            finally:
                await db.dispose()
        return asyncio.run(go())

    def seed_conversations(self, tenant_id: str, account_id: str, convs: list[tuple[str, str, list[str]]]) -> None:
        now = datetime.now(UTC)

        async def insert(s):
            for conv_id, kind, tags in convs:
                s.add(am.Conversation(id=new_id(), tenant_id=tenant_id, account_id=account_id, conversation_id=conv_id,
                                      conversation_name=conv_id, conversation_type=kind, tags=tags,
                                      created_at=now, updated_at=now, version=1))
        self.run("account", tenant_id, insert)

    def message_counts(self, tenant_id: str, task_id: str) -> dict[str, int]:
        async def q(s):
            rows = await s.execute(sa.text("SELECT status, COUNT(*) FROM messages WHERE batch_id = :b GROUP BY status"),
                                   {"b": task_id})
            return {st: n for st, n in rows}
        return self.run("message", tenant_id, q)


@pytest.fixture(scope="module")
def bp(mariadb_server, redis_server, tmp_path_factory):
    p = BatchPlatform(mariadb_server, redis_server, tmp_path_factory.mktemp("batches"))
    migrated = run_admin(p.settings, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    p.server = start_server(p.workdir, p.settings, name="server", wait_service=SERVICE)
    yield p
    p.server.stop(signal.SIGTERM)
    mariadb_server.drop_databases(p.prefix + "_")


def _task(account_id: str, name: str, **targets) -> pb.BatchSendTask:
    return pb.BatchSendTask(task_name=name, account_id=account_id,
                            message_content=pb.MessageContent(text=pb.TextContent(text=f"hello from {name}")),
                            **targets)


def _watch(client: WeworkClient, task_id: str) -> list[pb.BatchTaskProgress]:
    return list(client.messages.watch_batch_task(task_id, timeout=60))


def _assert_counters(bp: BatchPlatform, tenant_id: str, task: pb.BatchSendTask) -> dict[str, int]:
    counts = bp.message_counts(tenant_id, task.id)
    assert task.total_count == sum(counts.values())
    assert task.success_count == counts.get("sent", 0) + counts.get("delivered", 0)
    assert task.failed_count == counts.get("failed", 0)
    return counts


def test_a_batch_of_each_target_kind(bp):
    tenant, key = bp.new_tenant()
    with bp.client(api_key=key) as client:
        account = bp.online_account(client)
        bp.seed_conversations(tenant.id, account.id, [
            ("g-1", "group", ["vip"]), ("g-2", "group", []), ("p-1", "private", ["vip"]), ("p-2", "private", [])])
        manual = client.messages.create_batch_task(_task(account.id, "manual", manual=pb.ManualTargets(
            targets=[pb.BatchTarget(conversation_id=f"m-{i}") for i in range(30)])))
        imported = client.messages.create_batch_task(_task(account.id, "import", **{"import": pb.ImportTargets()}))
        reply = client.messages.import_batch_targets(
            pb.ImportBatchTargetsRequest(task_id=imported.id if c == 0 else "",
                                         targets=[pb.BatchTarget(conversation_id=f"i-{c}-{i}") for i in range(50)])
            for c in range(4))
        assert (reply.imported_count, reply.total_count) == (200, 200)
        group = client.messages.create_batch_task(_task(account.id, "group", group=pb.GroupTargets()))
        filt = client.messages.create_batch_task(_task(account.id, "filter", filter=pb.FilterTargets(
            tags=["vip"], conversation_type=apb.CONVERSATION_TYPE_PRIVATE)))
        expected = {manual.id: 30, imported.id: 200, group.id: 2, filt.id: 1}
        for task_id in expected:
            assert client.messages.start_batch_task(task_id).status == pb.BATCH_TASK_STATUS_RUNNING
        for task_id, n in expected.items():
            progress = _watch(client, task_id)
            final = progress[-1].task
            assert final.status == pb.BATCH_TASK_STATUS_COMPLETED
            assert final.total_count == n and final.progress_percent == 100 and progress[-1].eta_seconds == 0
            counts = _assert_counters(bp, tenant.id, final)
            assert counts.get("pending", 0) == 0
        listed = {t.id for t in client.messages.iter_batch_tasks(account_id=account.id)}
        assert set(expected) <= listed


def test_pause_resume_cancel(bp):
    tenant, key = bp.new_tenant()
    with bp.client(api_key=key) as client:
        account = bp.online_account(client)
        strategy = pb.SendStrategy(rate_per_minute=600)  # 10 a second: slow enough to pause midway
        task = client.messages.create_batch_task(_task(account.id, "pausable", send_strategy=strategy, manual=pb.ManualTargets(
            targets=[pb.BatchTarget(conversation_id=f"c-{i}") for i in range(40)])))
        client.messages.start_batch_task(task.id)
        time.sleep(1.0)
        paused = client.messages.pause_batch_task(task.id)
        assert paused.status == pb.BATCH_TASK_STATUS_PAUSED
        before = _settled_success_count(client, task.id)  # sends already in flight end first
        time.sleep(1.5)
        after = client.messages.get_batch_task(task.id)
        assert after.success_count == before < 40, "sends went on while paused"
        with pytest.raises(FailedPreconditionError):
            client.messages.start_batch_task(task.id)
        client.messages.resume_batch_task(task.id)
        final = _watch(client, task.id)[-1].task
        assert final.status == pb.BATCH_TASK_STATUS_COMPLETED and final.success_count == 40
        _assert_counters(bp, tenant.id, final)

        doomed = client.messages.create_batch_task(_task(account.id, "doomed", send_strategy=strategy,
                                                         manual=pb.ManualTargets(targets=[
                                                             pb.BatchTarget(conversation_id=f"d-{i}")
                                                             for i in range(40)])))
        client.messages.start_batch_task(doomed.id)
        time.sleep(0.5)
        cancelled = client.messages.cancel_batch_task(doomed.id)
        assert cancelled.status == pb.BATCH_TASK_STATUS_CANCELLED
        time.sleep(1.0)
        final = client.messages.get_batch_task(doomed.id)
        counts = _assert_counters(bp, tenant.id, final)
        assert counts.get("cancelled", 0) > 0 and counts.get("pending", 0) == 0
        assert _watch(client, doomed.id)[-1].task.status == pb.BATCH_TASK_STATUS_CANCELLED


def _settled_success_count(client, task_id: str, deadline_seconds: float = 20.0) -> int:
    """The task's success_count once two reads 0.5 s apart agree: the sends a pause finds in
    flight have ended (on a loaded machine that takes longer than any fixed sleep). A batch that
    kept sending (10 a second here) never settles, and the deadline ends the wait."""
    deadline = time.monotonic() + deadline_seconds
    last = client.messages.get_batch_task(task_id).success_count
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = client.messages.get_batch_task(task_id).success_count
        if now == last:
            return now
        last = now
    raise AssertionError(f"success_count still moving after the pause: {last}")


def test_start_takes_the_whole_batch_from_the_quota_and_cancel_gives_it_back(bp):
    tenant, key = bp.new_tenant(max_daily_messages=25)
    with bp.client(api_key=key) as client:
        account = bp.online_account(client)
        slow = pb.SendStrategy(rate_per_minute=30)

        def task(name: str, n: int) -> pb.BatchSendTask:
            return client.messages.create_batch_task(_task(account.id, name, send_strategy=slow, manual=pb.ManualTargets(
                targets=[pb.BatchTarget(conversation_id=f"{name}-{i}") for i in range(n)])))

        first, second = task("first", 20), task("second", 10)
        client.messages.start_batch_task(first.id)
        with pytest.raises(ResourceExhaustedError):
            client.messages.start_batch_task(second.id)  # 20 + 10 > 25: none of it
        assert client.messages.get_batch_task(second.id).status == pb.BATCH_TASK_STATUS_CREATED
        assert bp.message_counts(tenant.id, second.id) == {}
        client.messages.cancel_batch_task(first.id)  # most of it still pending: given back
        time.sleep(0.5)
        assert client.messages.start_batch_task(second.id).status == pb.BATCH_TASK_STATUS_RUNNING
        assert sum(bp.message_counts(tenant.id, second.id).values()) == 10


def test_a_templated_batch_adds_its_messages_to_the_template_usage(bp):
    """docs/templates.md: batch tasks count in usage_count by their number of messages (issue 17)."""
    _, key = bp.new_tenant()
    with bp.client(api_key=key) as client:
        account = bp.online_account(client)
        template = client.messages.create_template(pb.MessageTemplate(
            template_name="batch-greeting", template_type=pb.MESSAGE_TYPE_TEXT,
            template_content=pb.MessageContent(text=pb.TextContent(text="Hello {{who}}")),
            variables=[pb.TemplateVariable(name="who", default_value="there")]))
        client.messages.send_message(account_id=account.id, conversation_id="one", template_id=template.id)
        task = client.messages.create_batch_task(pb.BatchSendTask(
            task_name="templated", account_id=account.id, template_id=template.id,
            manual=pb.ManualTargets(targets=[pb.BatchTarget(conversation_id=f"t-{i}") for i in range(7)])))
        assert client.messages.get_template(template.id).usage_count == 1  # created, not started: no messages
        started = client.messages.start_batch_task(task.id)
        used = client.messages.get_template(template.id)
        assert used.usage_count == 1 + 7
        assert used.last_used_time.ToDatetime() >= started.start_time.ToDatetime()
        assert _watch(client, task.id)[-1].task.status == pb.BATCH_TASK_STATUS_COMPLETED
