"""Real MariaDB primary/replica pairs: GTID, row-based binlog, semi-synchronous replication.

Each server is a private mariadbd (own datadir and port, see servers.start_private_mariadb). The
replica follows the primary with `MASTER_USE_GTID=slave_pos` and is read-only; the primary waits
for the replica's ACK before a commit returns (AFTER_SYNC). Both carry a binlog and the semi-sync
settings of both roles, so that a promoted replica can serve as a primary at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .servers import MariaDBServer, forget, start_private_mariadb

REPL_USER = "wework_repl"
REPL_PASSWORD = "repl-test-only"
# A commit waits this long for the replica's ACK before the primary falls back to asynchronous
# replication (logged by MariaDB); long enough never to trigger in a healthy test.
SEMI_SYNC_TIMEOUT_MS = 10000


def _server_args(server_id: int, *, replica: bool) -> list[str]:
    args = [
        f"--server-id={server_id}", "--log-bin=mysql-bin", "--binlog-format=ROW", "--log-slave-updates=1",
        "--gtid-strict-mode=1", "--rpl-semi-sync-slave-enabled=1",
        "--rpl-semi-sync-master-wait-point=AFTER_SYNC", f"--rpl-semi-sync-master-timeout={SEMI_SYNC_TIMEOUT_MS}",
        # The replica notices a dead primary quickly and keeps retrying.
        "--slave-net-timeout=5", "--relay-log=relay-bin",
        # Test speed: no fsync per commit. Data still survives kill -9 of mariadbd (it sits in the
        # OS page cache); production keeps sync_binlog=1 and innodb_flush_log_at_trx_commit=1 so
        # that it also survives a machine crash.
        "--sync-binlog=0", "--innodb-flush-log-at-trx-commit=2",
    ]
    # Only the primary waits for ACKs: a replica promoted later has it switched on by the failover
    # when replicas remain (a primary with no replica would stall each commit for the timeout).
    args.append(f"--rpl-semi-sync-master-enabled={0 if replica else 1}")
    if replica:
        args.append("--read-only=1")
    return args


def _create_repl_user(server: MariaDBServer) -> None:
    conn = server.sync_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")  # on every server alike, never replicated
            cur.execute(f"CREATE USER IF NOT EXISTS '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}'")
            cur.execute(f"GRANT REPLICATION SLAVE, REPLICATION SLAVE ADMIN ON *.* TO '{REPL_USER}'@'%'")
    finally:
        conn.close()


def attach_replica(replica: MariaDBServer, primary: MariaDBServer, timeout: float = 30) -> None:
    """Points `replica` at `primary` (GTID, slave_pos) and waits until both threads run."""
    conn = replica.sync_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("STOP SLAVE")
            cur.execute(
                "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
                "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
                (primary.host, primary.port, REPL_USER, REPL_PASSWORD))
            cur.execute("START SLAVE")
        deadline = time.monotonic() + timeout
        while True:
            status = slave_status(replica)
            if status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"replication did not start: {status}")
            time.sleep(0.1)
    finally:
        conn.close()
    # The primary counts the replica as a semi-sync client once the IO thread registered.
    deadline = time.monotonic() + timeout
    while global_status(primary, "Rpl_semi_sync_master_clients") in ("0", None):
        if time.monotonic() > deadline:
            raise RuntimeError("the replica never registered as a semi-sync client")
        time.sleep(0.1)


def slave_status(server: MariaDBServer) -> dict:
    import pymysql.cursors

    conn = server.sync_connect(cursorclass=pymysql.cursors.DictCursor)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            return cur.fetchone() or {}
    finally:
        conn.close()


def global_status(server: MariaDBServer, name: str) -> str | None:
    conn = server.sync_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
            row = cur.fetchone()
            return row[1] if row else None
    finally:
        conn.close()


def execute(server: MariaDBServer, sql: str, args=None) -> list[tuple]:
    conn = server.sync_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


@dataclass
class ReplicatedPair:
    primary: MariaDBServer
    replica: MariaDBServer

    def stop(self) -> None:
        for server in (self.replica, self.primary):
            forget(server)


def start_replicated_pair() -> ReplicatedPair:
    """A new primary (server_id 1) and a replica of it (server_id 2), replication running."""
    # One after the other: two mariadb-install-db runs at once were seen to fail.
    primary = start_private_mariadb(_server_args(1, replica=False))
    try:
        replica = start_private_mariadb(_server_args(2, replica=True))
    except BaseException:
        forget(primary)
        raise
    pair = ReplicatedPair(primary, replica)
    try:
        for server in (primary, replica):
            _create_repl_user(server)
        attach_replica(replica, primary)
    except BaseException:
        pair.stop()
        raise
    return pair
