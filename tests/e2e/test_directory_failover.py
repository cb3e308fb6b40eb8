"""Drill: the directory database's primary killed under load, failed over, nothing acknowledged lost.

The directory sits on a private primary/replica pair (semi-sync, GTID; harness/replication.py,
never the shared mariadbd), listed as `directory_dsn` and `directory_replicas`; the shards sit
on the default MariaDB. A wework-server takes a steady stream of CreateTenant and CreateAccount
calls; the directory primary is killed with SIGKILL, `wework-admin failover --directory`
promotes the replica (its epoch rises), and the running server's next directory connections go
there without a restart (persistence/directory_primary.py). Every tenant and account whose
creation was acknowledged before the kill (and after the failover) exists afterwards; the time
from the kill to the first acknowledged creation after it is printed.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid

import grpc
import harness
import pytest
from harness.admin_cli import admin_document
from harness.replication import execute, start_replicated_pair
from serverproc import TEST_ADMIN_KEY, run_admin, settings_yaml, start_server
from wework.client import ClientOptions, WeworkClient
from wework.client.errors import WeworkError
from wework.persistence.config import DatabaseConfig, ShardSpec
from wework.v1 import account_pb2 as apb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]
BEFORE_KILL = 15
AFTER_FAILOVER = 10


@pytest.fixture
def directory_platform(mariadb_server, redis_server, tmp_path):
    pair = start_replicated_pair()
    prefix = harness.new_db_prefix("dd")
    config = DatabaseConfig(
        directory_dsn=pair.primary.url(f"{prefix}_directory"),
        directory_replicas=[pair.replica.url(f"{prefix}_directory")],
        shards=[ShardSpec(name="s0", buckets="0-1023", dsn=mariadb_server.url(f"{prefix}_{{db}}_0"))],
        pool_size=4, max_overflow=8, connect_timeout_seconds=2, shard_map_poll_seconds=0.5)
    server = None
    try:
        settings = settings_yaml(tmp_path / "server.yaml", config.model_dump(mode="json"), redis_server.url,
                                 redis={"key_prefix": f"{prefix}:"})
        migrated = run_admin(settings, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        server = start_server(tmp_path, settings, name="server", wait_service="wework.v1.TenantService")
        yield {"server": server, "settings": settings, "pair": pair, "prefix": prefix}
    finally:
        if server is not None:
            server.stop(signal.SIGTERM)
        pair.stop()
        mariadb_server.drop_databases(prefix + "_")


class Creator(threading.Thread):
    """CreateTenant and, in each new tenant, CreateAccount in a loop; remembers what was acknowledged."""

    def __init__(self, target: str) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.tenants: list[str] = []
        self.accounts: list[tuple[str, str]] = []
        self.acked_at: list[float] = []  # when each tenant creation was acknowledged
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with WeworkClient(ClientOptions(target=self.target, api_key=TEST_ADMIN_KEY, timeout=5)) as admin:
            while not self.stop.is_set():
                code = f"t{uuid.uuid4().hex[:12]}"
                try:
                    tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code))
                    self.tenants.append(tenant.id)
                    self.acked_at.append(time.monotonic())  # a tenant needs the directory's primary
                    with WeworkClient(ClientOptions(target=self.target, api_key=TEST_ADMIN_KEY, timeout=5,
                                                    tenant_id=tenant.id)) as client:
                        account = client.accounts.create_account(apb.Account(account_name="a"))
                    self.accounts.append((tenant.id, account.id))
                except (WeworkError, grpc.RpcError):
                    self.refused += 1  # not acknowledged: it may or may not exist, both are correct
                    time.sleep(0.1)

    def wait(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.tenants) < n:
            assert time.monotonic() < deadline, f"only {len(self.tenants)} of {n} tenants acknowledged"
            time.sleep(0.05)


def test_kill_9_the_directory_primary_fail_over_and_lose_no_tenant_or_account(directory_platform):
    p = directory_platform
    creator = Creator(p["server"].target)
    creator.start()
    try:
        creator.wait(BEFORE_KILL, 60)
        p["pair"].primary.process.send_signal(signal.SIGKILL)  # kill -9: no clean shutdown
        p["pair"].primary.process.wait(10)
        killed_at = time.monotonic()
        tenants_before, accounts_before = list(creator.tenants), list(creator.accounts)
        time.sleep(0.5)

        result = run_admin(p["settings"], "failover", "--directory", "--json", timeout=120)
        failed_over = time.monotonic() - killed_at
        assert result.returncode == 0, result.stderr + result.stdout
        report = admin_document("failover", result.returncode, result.stdout, result.stderr)
        assert (report["shard"], report["version"]) == ("directory", 1), report
        creator.wait(len(creator.tenants) + AFTER_FAILOVER, 60)
    finally:
        creator.stop.set()
        creator.join(15)
    first_after = next(t for t in creator.acked_at if t > killed_at)
    print(f"directory failover: promoted {failed_over:.1f} s after the kill (command included), first "
          f"tenant created {first_after - killed_at:.1f} s after it; {len(creator.tenants)} tenants "
          f"({len(tenants_before)} before the kill), {creator.refused} refused meanwhile")

    # Everything acknowledged is there: in the promoted directory and through the running server.
    ids = {r[0] for r in execute(p["pair"].replica, f"SELECT tenant_id FROM `{p['prefix']}_directory`.tenant_codes")}
    assert set(creator.tenants) <= ids, set(creator.tenants) - ids
    assert set(tenants_before) <= ids
    with WeworkClient(ClientOptions(target=p["server"].target, api_key=TEST_ADMIN_KEY)) as admin:
        for tenant_id in tenants_before:
            assert admin.tenants.get_tenant(tpb.GetTenantRequest(id=tenant_id)).id == tenant_id
    for tenant_id, account_id in accounts_before + creator.accounts[-3:]:
        with WeworkClient(ClientOptions(target=p["server"].target, api_key=TEST_ADMIN_KEY,
                                        tenant_id=tenant_id)) as client:
            assert client.accounts.get_account(account_id).id == account_id
