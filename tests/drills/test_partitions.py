"""Partition and slowness drills, Jepsen-style, on this machine (docs/operations-faults.md).

The platform runs in network namespaces of the test's own making (conftest.py, netlab.py). Each
drill runs a stream of SendMessage calls from three callers (through the client facade, with its
retries), a batch task, and the provider's delivery callbacks; cuts or slows one link for a few
seconds; heals it; and then checks:
- every answer during the fault was OK or a retryable code (UNAVAILABLE, DEADLINE_EXCEEDED);
- the callers then retry what failed with the same request id: every message exists exactly
  once (nothing unacknowledged was created twice), and is sent exactly once (one provider
  message per message, whatever the idempotent re-sends);
- the batch task completes;
and prints the time to recover (also in the run's summary, see conftest.py).
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from dataclasses import dataclass, replace

import grpc
import pytest
from drill_report import RECOVERY
from harness import httpcall
from serverproc import TEST_ADMIN_KEY, online_account
from wework.client import ClientOptions, WeworkClient, WeworkError
from wework.v1 import message_pb2 as pb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.drill, pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

RETRYABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
FAULT_SECONDS = 4.0
CALLERS = 3
BATCH = 30
SEND_TIMEOUT = 10.0


@dataclass
class Answer:
    started: float
    ended: float
    code: str
    conversation_id: str


def _code(exc: WeworkError) -> str:
    return exc.grpc_code.name if isinstance(exc.grpc_code, grpc.StatusCode) else str(exc.grpc_code)


class Traffic:
    """SendMessage from CALLERS threads through the facade, each send its own conversation id
    (which is also its request id), until stopped. The last caller's channel does not retry,
    so its answers are the server's own."""

    def __init__(self, client: WeworkClient, raw: WeworkClient, account_id: str, name: str) -> None:
        self._client, self._raw, self._account_id, self._name = client, raw, account_id, name
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CALLERS)]

    def send(self, conversation_id: str, client: WeworkClient | None = None) -> None:
        (client or self._client).messages.send_message(
            account_id=self._account_id, conversation_id=conversation_id, request_id=conversation_id,
            content=pb.MessageContent(text=pb.TextContent(text=conversation_id)), timeout=SEND_TIMEOUT)

    def _run(self, caller: int) -> None:
        n = 0
        client = self._raw if caller == CALLERS - 1 else self._client
        while not self._stop.is_set():
            n += 1
            conversation_id = f"{self._name}-{caller}-{n}"
            started = time.monotonic()
            try:
                self.send(conversation_id, client)
                code = "OK"
            except WeworkError as exc:
                code = _code(exc)
            self.answers.append(Answer(started, time.monotonic(), code, conversation_id))
            time.sleep(0.05 if code == "OK" else 0.2)

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(SEND_TIMEOUT * 5)


def _rows(platform, tenant_id: str, sql: str, *args) -> list[tuple]:
    from sqlalchemy.engine import make_url

    conn = platform.db.sync_connect(make_url(platform.config.shards[0].dsn_for("message")).database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, (tenant_id, *args))
            return list(cur.fetchall())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def sender(lab_platform):
    """A tenant (quota large enough for every drill) and an online account."""
    code = f"t{uuid.uuid4().hex[:12]}"
    with WeworkClient(ClientOptions(target=lab_platform.target, api_key=TEST_ADMIN_KEY)) as admin:
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code,
                                                        max_daily_messages=1_000_000))
    with WeworkClient(ClientOptions(target=lab_platform.target, api_key=TEST_ADMIN_KEY, tenant_id=tenant.id)) as client:
        account = online_account(client)
    return tenant.id, account.id


def run_drill(platform, sender, name: str, fault, heal) -> None:
    tenant_id, account_id = sender
    options = ClientOptions(target=platform.target, api_key=TEST_ADMIN_KEY, tenant_id=tenant_id)
    with WeworkClient(options) as client, \
            WeworkClient(replace(options, channel_options=(("grpc.enable_retries", 0),))) as raw:
        traffic = Traffic(client, raw, account_id, name)
        traffic.start()
        task = client.messages.create_batch_task(pb.BatchSendTask(
            task_name=name, account_id=account_id, message_content=pb.MessageContent(text=pb.TextContent(text=name)),
            manual=pb.ManualTargets(targets=[pb.BatchTarget(conversation_id=f"{name}-batch-{i}")
                                             for i in range(BATCH)])))
        client.messages.start_batch_task(task.id)
        time.sleep(1.0)  # steady traffic before the fault
        fault_at = time.monotonic()
        fault()
        try:
            time.sleep(FAULT_SECONDS)
        finally:
            heal()
        healed_at, healed_epoch = time.monotonic(), time.time()
        deadline = healed_at + 60
        while not any(a.code == "OK" and a.started >= healed_at for a in traffic.answers):
            assert time.monotonic() < deadline, f"{name}: no send succeeded within 60 s of the heal:\n{platform.log()}"
            time.sleep(0.05)
        sends_back = min(a.ended for a in traffic.answers if a.code == "OK" and a.started >= healed_at) - healed_at
        traffic.stop()

        during = [a for a in traffic.answers if a.started < healed_at and a.ended > fault_at]
        codes = collections.Counter(a.code for a in during)
        assert set(codes) <= {"OK"} | RETRYABLE, f"{name}: non-retryable answers during the fault: {codes}"

        # The callers retry what failed, with the same request id.
        failed = [a.conversation_id for a in traffic.answers if a.code != "OK"]
        for conversation_id in failed:
            deadline = time.monotonic() + 30
            while True:
                try:
                    traffic.send(conversation_id)
                    break
                except WeworkError as exc:
                    assert _code(exc) in RETRYABLE and time.monotonic() < deadline, (name, conversation_id, exc)
                    time.sleep(0.2)

        final = list(client.messages.watch_batch_task(task.id, timeout=90))[-1].task
        assert final.status == pb.BATCH_TASK_STATUS_COMPLETED, final

    attempted = {a.conversation_id for a in traffic.answers} | {f"{name}-batch-{i}" for i in range(BATCH)}
    deadline = time.monotonic() + 60
    while True:
        rows = _rows(platform, tenant_id, "SELECT conversation_id, status, wework_msg_id, id FROM messages "
                     "WHERE tenant_id = %s AND conversation_id LIKE %s", f"{name}-%")
        if all(r[1] in ("sent", "delivered") for r in rows) and len(rows) >= len(attempted):
            break
        assert time.monotonic() < deadline, f"{name}: not every message was sent: " \
            f"{collections.Counter(r[1] for r in rows)}"
        time.sleep(0.2)

    per_conversation = collections.Counter(r[0] for r in rows)
    assert set(per_conversation) == attempted, f"{name}: acknowledged but missing, or unknown rows"
    assert max(per_conversation.values()) == 1, f"{name}: created twice: " \
        f"{[c for c, n in per_conversation.items() if n > 1]}"
    provider_ids = [r[2] for r in rows]
    assert all(provider_ids) and len(set(provider_ids)) == len(rows), f"{name}: a message was sent twice"
    requests = httpcall.get(platform.sim_url + "/_requests").json()
    sends = [r for r in requests if r["path"].endswith("/messages")]
    ids = {r[3] for r in rows}
    resent = sum(n - 1 for key, n in collections.Counter(r["idempotency_key"] for r in sends).items() if key in ids)
    after_heal = [r["at"] for r in sends if r["at"] >= healed_epoch and r["idempotency_key"] in ids]
    dispatch_back = (min(after_heal) - healed_epoch) if after_heal else float("nan")
    line = (f"{name}: sends OK again {sends_back:.2f} s after the heal, dispatch {dispatch_back:.2f} s; "
            f"answers during the {FAULT_SECONDS:g} s fault: {dict(codes)}; {len(rows)} messages each stored "
            f"and sent once ({len(failed)} retried by their callers, {resent} idempotent re-sends to the provider)")
    RECOVERY.append(line)
    print(line)


def test_server_cut_from_the_mariadb_primary(lab_platform, sender):
    run_drill(lab_platform, sender, "db-cut", lambda: lab_platform.lab.cut("app", "db"),
              lambda: lab_platform.lab.heal("app", "db"))


def test_server_cut_from_redis(lab_platform, sender):
    run_drill(lab_platform, sender, "redis-cut", lambda: lab_platform.lab.cut("app", "redis"),
              lambda: lab_platform.lab.heal("app", "redis"))


def test_dispatcher_cut_from_the_provider(lab_platform, sender):
    # The provider's delivery callbacks to the ingress cross the same link, so they stop too.
    run_drill(lab_platform, sender, "provider-cut", lambda: lab_platform.lab.cut("app", "prov"),
              lambda: lab_platform.lab.heal("app", "prov"))


def test_latency_and_loss_to_the_database_and_provider(lab_platform, sender):
    refusal = lab_platform.lab.netem_refusal()
    if refusal is not None:
        RECOVERY.append(f"netem: SKIPPED, {refusal}")
        pytest.skip(f"latency and loss drill skipped: {refusal}")
    lab = lab_platform.lab

    def slow() -> None:
        lab.netem("app", "db", delay_ms=50, jitter_ms=20, loss_percent=5)
        lab.netem("app", "prov", delay_ms=100, jitter_ms=50, loss_percent=10)

    def fast() -> None:
        lab.clear_qdisc("app", "db")
        lab.clear_qdisc("app", "prov")

    run_drill(lab_platform, sender, "netem", slow, fast)


def test_slow_links_to_the_database_and_provider(lab_platform, sender):
    """Slowness that needs no netem: the links to MariaDB and to the provider throttled to
    256 kbit/s (a token bucket, tc tbf), so every round trip queues behind the others."""
    lab = lab_platform.lab

    def slow() -> None:
        lab.throttle("app", "db", rate_kbit=256)
        lab.throttle("app", "prov", rate_kbit=256)

    def fast() -> None:
        lab.clear_qdisc("app", "db")
        lab.clear_qdisc("app", "prov")

    run_drill(lab_platform, sender, "throttled", slow, fast)
