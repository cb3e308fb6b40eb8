"""Pacing holds across dispatcher processes: three `wework-worker dispatch` processes share one
account's interval, its per-minute ceiling and its recipients' limits through Redis
(workers/pacing.py), checked on the provider's side (the simulator's receive times); and many
accounts are still sent concurrently (pacing is per account, not one global queue)."""

from __future__ import annotations

import time
from collections import defaultdict
from itertools import pairwise

import pytest
from harness import httpcall
from serverproc import TEST_ADMIN_KEY
from test_dispatch_crash import _worker, online_tenant_account, split_platform
from wework.client import ClientOptions, WeworkClient
from wework.v1 import account_pb2 as apb
from wework.v1 import message_pb2 as pb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]
INTERVAL = 0.3
WORKERS = 3


def assert_paced(sends: list[float], interval: float) -> None:
    """Provider receive times of one account's sends kept its interval. The dispatchers take
    slots exactly one interval apart on the Redis clock, but a send may reach the provider later
    than its slot (a loaded machine, a worker's first HTTP connection: 0.19 s was seen), which
    shortens the gap to the next one. So: never three sends within one interval (unshared
    pacing, or a burst after an outage, puts several sends milliseconds apart), and the sends
    together take their intervals, less one."""
    sends = sorted(sends)
    gaps = [round(b - a, 3) for a, b in pairwise(sends)]
    assert all(sends[i + 2] - sends[i] >= interval for i in range(len(sends) - 2)), gaps
    assert len(sends) < 2 or sends[-1] - sends[0] >= (len(sends) - 2) * interval, gaps


def _sends(p) -> list[dict]:
    return [r for r in httpcall.get(p["sim_url"] + "/_requests").json() if r["path"].endswith("/messages")]


def _start_workers(p) -> None:
    for i in range(WORKERS):
        p["workers"].append(_worker(p["settings"], p["tmp"] / f"worker{i}.log"))


def test_three_workers_keep_one_accounts_interval_ceiling_and_recipient_limit(mariadb_server, redis_server,
                                                                              tmp_path):
    # Small claims, so that every worker holds messages of the account at the same time. The
    # deployment's defaults (a few ms apart, 6 a minute) are overridden by the tenant (4 a
    # minute) and by the account itself (INTERVAL apart).
    with split_platform(mariadb_server, redis_server, tmp_path, recipient_per_minute=2, account_per_minute=6,
                        claim_batch_size=2, claim_lease_seconds=30) as p:
        tenant_id, account_id = online_tenant_account(p)
        with WeworkClient(ClientOptions(target=p["server"].target, api_key=TEST_ADMIN_KEY)) as admin:
            admin.tenants.update_tenant(tpb.Tenant(id=tenant_id, config={"pacing": {"account_per_minute": 4}}),
                                        update_mask=["config"])
        with WeworkClient(ClientOptions(target=p["server"].target, api_key=TEST_ADMIN_KEY,
                                        tenant_id=tenant_id)) as client:
            client.accounts.update_account(
                apb.Account(id=account_id, config={"pacing": {"min_interval_seconds": INTERVAL}}),
                update_mask=["config"])
            _start_workers(p)
            httpcall.delete(p["sim_url"] + "/_requests")
            # 2 to one member who may get 2 a minute (a 3rd waits for its minute), 8 to others.
            targets = ([pb.BatchTarget(conversation_id="busy-member") for _ in range(3)]
                       + [pb.BatchTarget(conversation_id=f"member-{i}") for i in range(8)])
            task = client.messages.create_batch_task(pb.BatchSendTask(
                task_name="paced", account_id=account_id,
                message_content=pb.MessageContent(text=pb.TextContent(text="paced")),
                manual=pb.ManualTargets(targets=targets)))
            client.messages.start_batch_task(task.id)
            latest = None
            for update in client.messages.watch_batch_task(task.id, timeout=60):
                latest = update.task
                if latest.sent_count >= 4:
                    break
            assert latest is not None and latest.sent_count >= 4, latest
            time.sleep(2.0)  # time enough to overrun the ceiling, if the workers could
            sends = sorted(r["at"] for r in _sends(p))
            logs = [(p["tmp"] / f"worker{i}.log").read_text() for i in range(WORKERS)]
            # The tenant's ceiling: 4 in the account's first minute, whichever worker sent them,
            # one interval (the account's) apart.
            assert len(sends) == 4, (sends, logs)
            assert_paced(sends, INTERVAL)
            keys = [r["idempotency_key"] for r in _sends(p)]
            assert len(set(keys)) == len(keys)  # none sent twice
            busy = [m for m in client.messages.iter_messages() if m.conversation_id == "busy-member"
                    and m.status in (pb.MESSAGE_STATUS_SENT, pb.MESSAGE_STATUS_DELIVERED)]
            assert len(busy) <= 2  # the member's own limit


def test_many_accounts_progress_concurrently_across_workers(mariadb_server, redis_server, tmp_path):
    accounts, per_account = 6, 3
    # A lease long enough for a loaded machine: an expired one is re-sent (same idempotency key),
    # which the provider answers from its record but also counts as a request.
    with split_platform(mariadb_server, redis_server, tmp_path, account_min_interval_seconds=INTERVAL,
                        claim_lease_seconds=30) as p:
        senders = [online_tenant_account(p) for _ in range(accounts)]
        _start_workers(p)
        httpcall.delete(p["sim_url"] + "/_requests")
        for tenant_id, account_id in senders:
            with WeworkClient(ClientOptions(target=p["server"].target, api_key=TEST_ADMIN_KEY,
                                            tenant_id=tenant_id)) as client:
                for i in range(per_account):
                    client.messages.send_message(account_id=account_id, conversation_id=f"m-{i}",
                                                 content=pb.MessageContent(text=pb.TextContent(text="hi")))
        deadline = time.monotonic() + 60
        while len(_sends(p)) < accounts * per_account and time.monotonic() < deadline:
            time.sleep(0.1)
        by_account: dict[str, list[float]] = defaultdict(list)
        for r in _sends(p):
            by_account[r["path"].split("/")[-2]].append(r["at"])
        assert sorted(len(v) for v in by_account.values()) == [per_account] * accounts, _sends(p)
        assert len({r["idempotency_key"] for r in _sends(p)}) == accounts * per_account
        # Every account's interval holds, and the accounts were sent side by side: each one's
        # first send came before any account had finished (one account after another would put
        # the last account's first send after the first account's last).
        for times in by_account.values():
            assert_paced(times, INTERVAL)
        assert max(min(t) for t in by_account.values()) < min(max(t) for t in by_account.values()), by_account
