"""`wework-admin move-buckets` against a running server under write load (docs/bucket-moves.md).

The load creates and renames roles and sends messages through the real gRPC server (with the
provider simulator and the dispatcher in the server), for tenants inside the moving range and
outside it, while the move copies, catches up, freezes, verifies, deletes and switches.
Afterwards every acknowledged write exists exactly once, on the shard the new map names, and
every accepted message is sent (the dispatcher picks the new shard up without a restart).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Self

import harness
import pytest
from google.protobuf import field_mask_pb2
from harness.admin_cli import admin_document
from serverproc import BIN, TEST_ADMIN_KEY, online_account, run_admin, settings_yaml, start_server
from wework.client import ClientOptions, WeworkClient
from wework.persistence.sharding import bucket_of
from wework.v1 import message_pb2 as mpb
from wework.v1 import tenant_pb2 as pb

pytestmark = [pytest.mark.mariadb, pytest.mark.redis, pytest.mark.e2e, pytest.mark.slow]

RANGE_A = (768, 1023)  # the top half of s1 -> new shard s2
RANGE_B = (256, 511)  # the top half of s0 -> new shard s3
DONE = (mpb.MESSAGE_STATUS_SENT, mpb.MESSAGE_STATUS_DELIVERED)


def in_range(tenant_id: str, rng: tuple[int, int]) -> bool:
    return rng[0] <= bucket_of(tenant_id, 1024) <= rng[1]


SETTINGS = {
    "provider": {"simulator": {"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1,
                               "heartbeat_interval_seconds": 0.5}},
    "message": {"account_min_interval_seconds": 0.01, "account_jitter_seconds": 0, "idle_poll_seconds": 0.2},
    "database": {"shard_map_poll_seconds": 1.0},
}


class MovePlatform:
    def __init__(self, server, config_path, prefix) -> None:
        self.server, self.config_path, self.prefix = server, config_path, prefix

    def client(self, **options) -> WeworkClient:
        return WeworkClient(ClientOptions(target=self.server.target, **options))

    def new_tenant(self) -> tuple[str, str]:
        """A tenant with an admin API key and an ONLINE account (simulator): (tenant id, key)."""
        code = f"t{uuid.uuid4().hex[:12]}"
        with self.client(api_key=TEST_ADMIN_KEY) as admin:
            tenant = admin.tenants.create_tenant(pb.Tenant(tenant_code=code, tenant_name=code))
        with self.client(api_key=TEST_ADMIN_KEY, tenant_id=tenant.id) as admin:
            roles = {r.role_code: r.id for r in admin.tenants.iter_roles()}
            key = admin.tenants.create_api_key(pb.ApiKey(display_name="e2e", role_id=roles["admin"])).secret
        return tenant.id, key

    def online_account(self, key: str) -> str:
        with self.client(api_key=key) as client:
            return online_account(client).id


@pytest.fixture(scope="module")
def platform(mariadb_server, redis_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bucket-move")
    prefix = harness.new_db_prefix("e")
    config = harness.make_database_config(prefix, [mariadb_server], 2)
    database = {**config.model_dump(mode="json"), **SETTINGS["database"]}
    config_path = settings_yaml(workdir / "settings.yaml", database, redis_server.url,
                                redis={"key_prefix": f"{prefix}:"},
                                **{k: v for k, v in SETTINGS.items() if k != "database"})
    migrated = run_admin(config_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    server = start_server(workdir, config_path)
    yield MovePlatform(server, config_path, prefix)
    server.stop(signal.SIGTERM)
    mariadb_server.drop_databases(prefix + "_")


@dataclass(frozen=True)
class TenantFixture:
    id: str
    key: str
    account_id: str


@pytest.fixture(scope="module")
def tenants(platform):
    """Two tenants in each range, two outside both; each with an ONLINE account."""
    want = {"A": 2, "B": 2, "out": 2}
    found: dict[str, list[tuple[str, str]]] = {k: [] for k in want}
    for _ in range(80):
        tid, key = platform.new_tenant()
        group = "A" if in_range(tid, RANGE_A) else "B" if in_range(tid, RANGE_B) else "out"
        if len(found[group]) < want[group]:
            found[group].append((tid, key))
        if all(len(found[k]) >= n for k, n in want.items()):
            return {g: [TenantFixture(tid, key, platform.online_account(key)) for tid, key in members]
                    for g, members in found.items()}
    pytest.fail(f"could not place tenants in the ranges: {found}")


@dataclass
class Load:
    """Threads that create roles and rename their own roles until stopped."""

    platform: object
    tenants: list[TenantFixture]
    threads: int = 3
    created: list[tuple[str, str, str]] = field(default_factory=list)  # (tenant, role id, role code)
    messages: list[tuple[str, str]] = field(default_factory=list)  # (tenant, message id) accepted
    names: dict[str, str] = field(default_factory=dict)  # role id -> last acknowledged name
    latencies: dict[str, list[float]] = field(default_factory=dict)  # tenant -> seconds per write
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)]

    def __enter__(self) -> Self:
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(60)

    def _run(self, n: int) -> None:
        clients = {t.id: self.platform.client(api_key=t.key) for t in self.tenants}
        mine: list[tuple[str, str]] = []
        i = 0
        try:
            while not self._stop.is_set():
                tenant = self.tenants[i % len(self.tenants)]
                tid, client = tenant.id, clients[tenant.id]
                i += 1
                started = time.monotonic()
                try:
                    if i % 4 == 1:
                        m = client.messages.send_message(account_id=tenant.account_id, conversation_id=f"c{n}-{i}",
                                                         content=mpb.MessageContent(text=mpb.TextContent(
                                                             text=f"m{n}-{i}")))
                        with self._lock:
                            self.messages.append((tid, m.id))
                    elif i % 3 == 0 and mine:
                        role_tid, role_id = mine[i % len(mine)]
                        name = f"renamed {n}-{i}"
                        clients[role_tid].tenants.update_role(pb.UpdateRoleRequest(
                            role=pb.Role(id=role_id, role_name=name),
                            update_mask=field_mask_pb2.FieldMask(paths=["role_name"])))
                        tid = role_tid
                        with self._lock:
                            self.names[role_id] = name
                    else:
                        code = f"r{uuid.uuid4().hex[:12]}"
                        role = client.tenants.create_role(pb.CreateRoleRequest(role=pb.Role(
                            role_code=code, role_name="load", permissions=["users.read"])))
                        mine.append((tid, role.id))
                        with self._lock:
                            self.created.append((tid, role.id, code))
                            self.names[role.id] = "load"
                except Exception as exc:  # noqa: BLE001 - collected and asserted on
                    with self._lock:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    self.latencies.setdefault(tid, []).append(time.monotonic() - started)
        finally:
            for c in clients.values():
                c.close()

    def wait_for(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.created) < n and time.monotonic() < deadline:
            time.sleep(0.05)


def rows_by_shard(mariadb_server, prefix: str, db: str, table: str, shards: list[str]) -> dict[str, dict[str, int]]:
    """shard -> {id: number of rows with that id}, read straight from each shard's database."""
    out: dict[str, dict[str, int]] = {}
    for shard in shards:
        conn = mariadb_server.sync_connect(f"{prefix}_{db}_{shard}")
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT id, COUNT(*) FROM {table} GROUP BY id")
                out[shard] = {r[0]: r[1] for r in cur.fetchall()}
        finally:
            conn.close()
    return out


def row_of(mariadb_server, prefix: str, shard: str, message_id: str) -> dict:
    conn = mariadb_server.sync_connect(f"{prefix}_message_{shard}")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM messages WHERE id = %s", (message_id,))
            names = [d[0] for d in cur.description]
            return {n: v for n, v in zip(names, cur.fetchone() or (), strict=False) if n != "content"}
    finally:
        conn.close()


def check_nothing_lost_or_duplicated(platform, mariadb_server, load: Load, tenants: dict, owners: dict,
                                     shards: list[str]) -> None:
    """Every acknowledged role exists once, on its owner shard, with its last acknowledged name.

    `shards`: database name suffixes of every shard (0, 1 from the settings; s2, s3 moved to)."""
    present = rows_by_shard(mariadb_server, platform.prefix, "user", "roles", shards)
    for tid, role_id, _code in load.created:
        where = {shard: rows[role_id] for shard, rows in present.items() if role_id in rows}
        assert where == {owners[tid]: 1}, f"role {role_id} of tenant {tid}: rows per shard {where}"
    present = rows_by_shard(mariadb_server, platform.prefix, "message", "messages", shards)
    for tid, message_id in load.messages:
        where = {shard: rows[message_id] for shard, rows in present.items() if message_id in rows}
        assert where == {owners[tid]: 1}, f"message {message_id} of tenant {tid}: rows per shard {where}"
    # And through the server: each tenant lists its roles once, with the last name written, and
    # every accepted message is sent (the moved ones by the dispatcher loop of the new shard).
    keys = {t.id: t.key for group in tenants.values() for t in group}
    deadline = time.monotonic() + 60
    for tid, message_id in load.messages:
        with platform.client(api_key=keys[tid]) as client:
            while (status := client.messages.get_message(message_id).status) not in DONE:
                assert time.monotonic() < deadline, (
                    f"message {message_id} still {mpb.MessageStatus.Name(status)}: "
                    f"{row_of(mariadb_server, platform.prefix, owners[tid], message_id)}")
                time.sleep(0.2)
    for tid, key in keys.items():
        with platform.client(api_key=key) as client:
            listed = {r.id: r.role_name for r in client.tenants.iter_roles()}
        mine = [r for t, r, _ in load.created if t == tid]
        assert set(mine) <= set(listed)
        for role_id in mine:
            assert listed[role_id] == load.names[role_id]


def test_move_under_write_load_loses_and_duplicates_nothing(platform, mariadb_server, tenants):
    group_a = tenants["A"] + tenants["out"]
    to_dsn = mariadb_server.url(f"{platform.prefix}_{{db}}_s2")
    with Load(platform, group_a) as load:
        load.wait_for(20)
        moved = run_admin(platform.config_path, "move-buckets", "--buckets", f"{RANGE_A[0]}-{RANGE_A[1]}",
                          "--to-dsn", to_dsn, "--shard-name", "s2", "--json", timeout=240)
        load.wait_for(len(load.created) + 10)
    print(moved.stderr[-6000:])
    assert moved.returncode == 0, moved.stdout[-4000:] + moved.stderr[-4000:]
    assert not load.errors, load.errors[:5]
    report = admin_document("move-buckets", moved.returncode, moved.stdout, moved.stderr)
    assert (report["buckets"], report["target_shard"], report["mismatched_tables"]) == ("768-1023", "s2", [])
    freeze = f"write freeze: {report['freeze_seconds']:.3f} s"
    in_a = [t.id for t in tenants["A"]]
    worst = max(max(load.latencies[t]) for t in in_a)
    print(f"{freeze}; slowest write of a tenant in the range seen by the client: {worst:.3f} s; "
          f"{len(load.created)} roles created, {len(load.names)} named, {len(load.messages)} messages")
    owners = {t.id: ("s2" if in_range(t.id, RANGE_A) else "0" if bucket_of(t.id, 1024) < 512 else "1")
              for t in tenants["A"] + tenants["B"] + tenants["out"]}
    check_nothing_lost_or_duplicated(platform, mariadb_server, load, {"A": tenants["A"], "out": tenants["out"]},
                                     owners, ["0", "1", "s2"])
    shard_map = run_admin(platform.config_path, "shard-map")
    assert "s2" in shard_map.stdout and "768-1023" in shard_map.stdout


def test_crashed_move_resumes_and_a_second_run_is_refused(platform, mariadb_server, tenants):
    group_b = tenants["B"] + tenants["out"]
    to_dsn = mariadb_server.url(f"{platform.prefix}_{{db}}_s3")
    env = {**os.environ, "WEWORK_CONFIG_FILE": str(platform.config_path)}
    args = [str(BIN / "wework-admin"), "move-buckets", "--buckets", f"{RANGE_B[0]}-{RANGE_B[1]}",
            "--to-dsn", to_dsn, "--shard-name", "s3", "--lease-seconds", "3", "--batch-size", "50"]
    with Load(platform, group_b) as load:
        load.wait_for(20)
        first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        try:
            # Planned (the lease is held): a second run is refused.
            for line in first.stdout:
                lines.append(line)
                if " move " in line and "from" in line:
                    break
            second = run_admin(platform.config_path, *args[1:])
            assert second.returncode == 4, second.stdout + second.stderr
            assert "another bucket move is running" in second.stderr
            # Killed once the copy pass is done.
            for line in first.stdout:
                lines.append(line)
                if "] copy:" in line:
                    break
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        assert any("] copy:" in line for line in lines), "".join(lines)
        # The lease of the dead run expires after 3 s; until then a resume is refused too.
        deadline = time.monotonic() + 30
        while True:
            resumed = run_admin(platform.config_path, "move-buckets", "--resume", timeout=240)
            if resumed.returncode != 4 or time.monotonic() > deadline:
                break
            time.sleep(1)
        load.wait_for(len(load.created) + 10)
    print("".join(lines)[-3000:])
    print(resumed.stderr[-6000:])
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]
    assert "resuming move" in resumed.stderr  # progress: stderr
    assert [line for line in resumed.stdout.splitlines() if line.startswith("write freeze:")]  # result: stdout
    assert not load.errors, load.errors[:5]
    owners = {t.id: ("s2" if in_range(t.id, RANGE_A) else "s3" if in_range(t.id, RANGE_B)
                     else "0" if bucket_of(t.id, 1024) < 512 else "1")
              for t in tenants["A"] + tenants["B"] + tenants["out"]}
    check_nothing_lost_or_duplicated(platform, mariadb_server, load, {"B": tenants["B"], "out": tenants["out"]},
                                     owners, ["0", "1", "s2", "s3"])
