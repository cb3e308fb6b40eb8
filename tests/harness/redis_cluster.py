"""Real Redis topologies the standard `redis_server` cannot give: a three-node Redis Cluster, and a
private single server that a test may stop and start again on the same port (outage drills).

Both are started from the installed `redis-server` (and `redis-cli` for `--cluster create`), each
node with its own port and directory, no persistence, and are stopped by `stop()` (also at exit).
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .servers import INSTALL_HINT, START_TIMEOUT_SECONDS, ServerUnavailable, _redis_ping, _tail, free_port

CLUSTER_HINT = (
    "The Redis Cluster tests start three redis-server processes and join them with "
    "`redis-cli --cluster create`; install both (Debian/Ubuntu: `apt-get install redis-server redis-tools`)."
)

_STARTED: list = []


@atexit.register
def _stop_all() -> None:
    while _STARTED:
        _STARTED.pop().stop()


def _binary(name: str, hint: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin:/usr/local/bin")
    if not found:
        raise ServerUnavailable(f"{name} not found. {hint}")
    return found


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class RestartableRedis:
    """A private single redis-server on a fixed port: `stop()` it mid-test, `start()` it again."""

    port: int
    basedir: Path
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Starts (again) on the same port; empty, like a Redis restarted without persistence."""
        if self.running:
            return
        log = self.basedir / "redis.log"
        self.process = subprocess.Popen(
            [_binary("redis-server", INSTALL_HINT), "--port", str(self.port), "--bind", self.host,
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(self.basedir),
             "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            if _redis_ping(self.host, self.port):
                return
            time.sleep(0.05)
        _stop(self.process)
        raise ServerUnavailable(f"redis-server on port {self.port} did not start:\n{_tail(log)}")

    def stop(self) -> None:
        """SIGTERM: the server refuses new connections at once (the port closes)."""
        _stop(self.process)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.basedir, ignore_errors=True)
        if self in _STARTED:
            _STARTED.remove(self)


def start_restartable_redis() -> RestartableRedis:
    server = RestartableRedis(free_port(), Path(tempfile.mkdtemp(prefix="wwt-redis-outage-")))
    server.start()
    _STARTED.append(server)
    return server


@dataclass
class RedisCluster:
    """Master nodes covering all 16384 slots (three by default), each with `replicas` replica
    nodes (none by default), on 127.0.0.1."""

    ports: list[int]
    basedir: Path
    processes: list[subprocess.Popen] = field(default_factory=list, repr=False)
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """A seed node; the client discovers the others (`redis.cluster: true`)."""
        return f"redis://{self.host}:{self.ports[0]}"

    def cli(self, port: int, *args: str, timeout: float = 30) -> str:
        res = subprocess.run([_binary("redis-cli", CLUSTER_HINT), "-h", self.host, "-p", str(port), *args],
                             capture_output=True, text=True, timeout=timeout, check=False)
        if res.returncode != 0:
            raise ServerUnavailable(f"redis-cli {' '.join(args)} failed: {res.stdout}{res.stderr}")
        return res.stdout

    def cluster_info(self, port: int | None = None) -> dict[str, str]:
        text = self.cli(port or self.ports[0], "cluster", "info")
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def node_for_key(self, key: str) -> int:
        """The port of the master serving `key` (from CLUSTER KEYSLOT and CLUSTER SHARDS/SLOTS)."""
        slot = int(self.cli(self.ports[0], "cluster", "keyslot", key).strip())
        for line in self.cli(self.ports[0], "cluster", "nodes").splitlines():
            parts = line.split()
            if "master" not in parts[2]:
                continue
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            for spec in parts[8:]:
                if spec.startswith("["):
                    continue
                lo, _, hi = spec.partition("-")
                if int(lo) <= slot <= int(hi or lo):
                    return port
        raise AssertionError(f"no node serves slot {slot}")

    def masters(self, via: int | None = None) -> dict[int, str]:
        """port -> node id of the nodes that are masters now and not failed (a failover changes
        them), as the node on `via` sees the cluster."""
        found = {}
        for line in self.cli(via or self.ports[0], "cluster", "nodes").splitlines():
            parts = line.split()
            if "master" in parts[2] and "fail" not in parts[2]:
                found[int(parts[1].split("@")[0].rsplit(":", 1)[1])] = parts[0]
        return found

    def kill(self, port: int) -> None:
        """SIGKILL the node on `port` (a crash: no goodbye to the cluster bus)."""
        proc = self.processes[self.ports.index(port)]
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.processes:
            _stop(proc)
        self.processes.clear()
        shutil.rmtree(self.basedir, ignore_errors=True)
        if self in _STARTED:
            _STARTED.remove(self)


def start_redis_cluster(nodes: int = 3, replicas: int = 0) -> RedisCluster:
    """Starts `nodes` masters and `replicas` replicas of each (cluster-enabled redis-servers),
    joins them with `redis-cli --cluster create` and waits until every node reports
    cluster_state:ok and every replica is in sync. Raises ServerUnavailable (with the fix) when
    the binaries are missing or the cluster does not form. A replica takes over a master that
    stays unreachable for cluster-node-timeout (2 s) plus an election (docs/redis.md)."""
    server_bin = _binary("redis-server", INSTALL_HINT)
    _binary("redis-cli", CLUSTER_HINT)
    basedir = Path(tempfile.mkdtemp(prefix="wwt-redis-cluster-"))
    cluster = RedisCluster([], basedir)
    _STARTED.append(cluster)
    try:
        for i in range(nodes * (1 + replicas)):
            port = _free_cluster_port()
            node_dir = basedir / f"node{i}"
            node_dir.mkdir()
            cluster.processes.append(subprocess.Popen(
                [server_bin, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(node_dir / "nodes.conf"), "--cluster-node-timeout", "2000",
                 "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(node_dir),
                 "--logfile", str(node_dir / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
            cluster.ports.append(port)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for i, port in enumerate(cluster.ports):
            while not _redis_ping("127.0.0.1", port):
                if cluster.processes[i].poll() is not None or time.monotonic() > deadline:
                    raise ServerUnavailable(f"cluster node on port {port} did not start:\n"
                                            f"{_tail(basedir / f'node{i}' / 'redis.log')}")
                time.sleep(0.05)
        cluster.cli(cluster.ports[0], "--cluster", "create",
                    *(f"127.0.0.1:{p}" for p in cluster.ports), "--cluster-replicas", str(replicas), "--cluster-yes",
                    timeout=60)
        while True:
            states = [cluster.cluster_info(p).get("cluster_state") for p in cluster.ports]
            if all(s == "ok" for s in states) and (not replicas or _replicas_in_sync(cluster)):
                return cluster
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"Redis Cluster did not reach cluster_state:ok: {states}")
            time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise


def _replicas_in_sync(cluster: RedisCluster) -> bool:
    for port in cluster.ports:
        info = cluster.cli(port, "info", "replication")
        if "role:slave" in info and "master_link_status:up" not in info:
            return False
    return True


def _free_cluster_port() -> int:
    # A node also listens on port + 10000 (the cluster bus): both must be free.
    for _ in range(50):
        port = free_port()
        if port + 10000 <= 65535:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue
    raise ServerUnavailable("no free port pair (port, port+10000) for a cluster node")
