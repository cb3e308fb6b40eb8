"""Pacing holds across dispatcher processes: two `wework-worker dispatch` processes share one
account's minimum interval and its recipients' limits through Redis (workers/pacing.py)."""

from __future__ import annotations

from itertools import pairwise

import httpx
import pytest
from serverproc import TEST_ADMIN_KEY
from test_dispatch_crash import _worker, online_tenant_account, split_platform
from wework.client import ClientOptions, WeworkClient
from wework.v1 import message_pb2 as pb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]
INTERVAL = 0.4
N = 8


def test_two_workers_send_one_account_no_faster_than_its_interval(mariadb_server, redis_server, tmp_path):
    # Small claims, so that both workers hold messages of the account at the same time.
    with split_platform(mariadb_server, redis_server, tmp_path, account_min_interval_seconds=INTERVAL,
                        recipient_per_minute=3, claim_batch_size=2) as p:
        tenant_id, account_id = online_tenant_account(p)
        for name in ("worker1", "worker2"):
            p["workers"].append(_worker(p["settings"], p["tmp"] / f"{name}.log"))
        httpx.delete(p["sim_url"] + "/_requests")
        with WeworkClient(ClientOptions(target=p["server"].target, api_key=TEST_ADMIN_KEY,
                                        tenant_id=tenant_id)) as client:
            # N to different members, and 4 to one member who may get 3 a minute.
            task = client.messages.create_batch_task(pb.BatchSendTask(
                task_name="paced", account_id=account_id,
                message_content=pb.MessageContent(text=pb.TextContent(text="paced")),
                manual=pb.ManualTargets(targets=[pb.BatchTarget(conversation_id=f"member-{i}") for i in range(N)]
                                        + [pb.BatchTarget(conversation_id="busy-member") for _ in range(4)])))
            client.messages.start_batch_task(task.id)
            deadline_task = None
            for update in client.messages.watch_batch_task(task.id, timeout=60):
                deadline_task = update.task
                if update.task.sent_count >= N + 3:
                    break
            assert deadline_task is not None and deadline_task.sent_count >= N + 3, deadline_task
            sends = sorted(r["at"] for r in httpx.get(p["sim_url"] + "/_requests").json()
                           if r["path"].endswith("/messages"))
            # Both workers sent (each claims its own messages), yet one account's sends are
            # about one interval apart at the provider. A gap is measured where the requests
            # arrive, so one request's HTTP latency may shrink it: 57 ms was seen on a loaded
            # machine. Unshared pacing would put the two workers' sends milliseconds apart.
            logs = [(p["tmp"] / f"worker{i}.log").read_text() for i in (1, 2)]
            assert len(sends) == N + 3, sends
            assert min(b - a for a, b in pairwise(sends)) >= INTERVAL - 0.1, sends
            # The 4th message to the busy member waits for its minute: still pending, deferred.
            latest = client.messages.get_batch_task(task.id)
            assert latest.success_count == N + 3 and latest.total_count == N + 4, (latest, logs)
