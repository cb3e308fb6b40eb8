"""Real MariaDB and Redis servers for integration tests.

A server already listening on the default port is reused (CI images and developer machines run
one); otherwise the harness starts a private one from the installed binaries, so a test run never
depends on a hand-prepared machine. `start_private_mariadb` always starts a new one, for tests
that need several independent servers (sharding over servers); `private_mariadb` is the same
for the length of a with-block (a module fixture: a server whose global settings a test changes).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

INSTALL_HINT = (
    "Integration tests need a real MariaDB and Redis. Either run them on 127.0.0.1 "
    "(MariaDB: port 3306, user root, empty password; Redis: port 6379) or install the binaries so "
    "the tests can start private ones: Debian/Ubuntu `apt-get install mariadb-server redis-server`. "
    "Override the address with WEWORK_TEST_MARIADB_HOST/PORT/USER/PASSWORD and "
    "WEWORK_TEST_REDIS_HOST/PORT."
)

START_TIMEOUT_SECONDS = 60.0


class ServerUnavailable(RuntimeError):
    """No usable server and none can be started; the message says how to fix it."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class MariaDBServer:
    host: str
    port: int
    user: str = "root"
    password: str = ""
    # Set when this harness started the server; None for a reused external one.
    process: subprocess.Popen | None = field(default=None, repr=False)
    basedir: Path | None = field(default=None, repr=False)

    def url(self, dbname: str | None = None, driver: str = "mysql+aiomysql") -> str:
        """SQLAlchemy URL; `dbname` may hold the `{db}` placeholder of a shard DSN."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        return f"{driver}://{auth}@{self.host}:{self.port}/{dbname or ''}"

    def sync_connect(self, database: str | None = None, **kwargs):
        import pymysql

        params: dict = {"host": self.host, "port": self.port, "user": self.user, "password": self.password,
                        "charset": "utf8mb4", "autocommit": True, "connect_timeout": 5}
        params.update(kwargs)
        return pymysql.connect(database=database, **params)

    def list_databases(self, prefix: str) -> list[str]:
        conn = self.sync_connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW DATABASES")
                return sorted(r[0] for r in cur.fetchall() if r[0].startswith(prefix))
        finally:
            conn.close()

    def drop_databases(self, prefix: str) -> list[str]:
        """Drops every database whose name starts with `prefix`; returns their names."""
        if not prefix or len(prefix) < 4:
            raise ValueError("refusing to drop databases by a short prefix")
        names = self.list_databases(prefix)
        if names:
            conn = self.sync_connect()
            try:
                with conn.cursor() as cur:
                    for name in names:
                        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            finally:
                conn.close()
        return names

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process)
            self.process = None
        if self.basedir is not None:
            shutil.rmtree(self.basedir, ignore_errors=True)
            self.basedir = None


@dataclass
class RedisServer:
    host: str
    port: int
    process: subprocess.Popen | None = field(default=None, repr=False)
    basedir: Path | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process)
            self.process = None
        if self.basedir is not None:
            shutil.rmtree(self.basedir, ignore_errors=True)
            self.basedir = None


def _stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# Servers this process started; stopped at exit even if pytest dies before fixture teardown.
_STARTED: list[MariaDBServer | RedisServer] = []


@atexit.register
def _stop_all() -> None:
    while _STARTED:
        _STARTED.pop().stop()


def _mariadb_accepts(server: MariaDBServer) -> bool:
    import pymysql

    try:
        server.sync_connect(connect_timeout=2).close()
        return True
    except (pymysql.MySQLError, OSError):
        return False


def find_or_start_mariadb() -> MariaDBServer:
    host = os.environ.get("WEWORK_TEST_MARIADB_HOST", "127.0.0.1")
    port = int(os.environ.get("WEWORK_TEST_MARIADB_PORT", "3306"))
    server = MariaDBServer(host, port, os.environ.get("WEWORK_TEST_MARIADB_USER", "root"),
                           os.environ.get("WEWORK_TEST_MARIADB_PASSWORD", ""))
    if _port_open(host, port) and _mariadb_accepts(server):
        return server
    return start_private_mariadb()


def _mariadb_binaries() -> tuple[str, str]:
    mariadbd = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
    install = shutil.which("mariadb-install-db") or shutil.which(
        "mariadb-install-db", path="/usr/bin:/usr/local/bin:/usr/sbin")
    if not mariadbd or not install:
        raise ServerUnavailable("no MariaDB server reachable and mariadbd/mariadb-install-db not found. "
                                + INSTALL_HINT)
    return mariadbd, install


def _in_netns(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def start_private_mariadb(extra_args: Sequence[str] = (), *, netns: str | None = None,
                          host: str = "127.0.0.1") -> MariaDBServer:
    """Starts a new mariadbd with its own datadir on a free port (root, empty password).

    `extra_args` are added to mariadbd's options (replication: server id, binlog, semi-sync);
    one that enables the binlog replaces the default `--skip-log-bin`.

    `netns`: runs it inside that network namespace (tests/drills), on port 3306 of every address
    there, with root allowed from any host; `host` is the address this process reaches it at.
    """
    mariadbd, install = _mariadb_binaries()
    basedir = Path(tempfile.mkdtemp(prefix="wwt-mariadb-"))
    datadir = basedir / "data"
    log = basedir / "error.log"
    # mariadbd refuses to run as root unless told to.
    user_args = ["--user=root"] if os.geteuid() == 0 else []
    for _attempt in range(2):  # the bootstrap's temporary tables in /tmp were seen to vanish under load
        res = subprocess.run(
            [install, "--no-defaults", f"--datadir={datadir}", "--auth-root-authentication-method=normal",
             "--skip-test-db", *user_args],
            capture_output=True, text=True, timeout=120, check=False,
        )
        if res.returncode == 0:
            break
        shutil.rmtree(datadir, ignore_errors=True)
    if res.returncode != 0:
        shutil.rmtree(basedir, ignore_errors=True)
        raise ServerUnavailable(f"mariadb-install-db failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    last_error = ""
    binlog_args = [] if any(a.startswith("--log-bin") for a in extra_args) else ["--skip-log-bin"]
    for _attempt in range(3):  # the free port may be taken between choosing and binding it
        port = 3306 if netns else free_port()  # a namespace of its own has every port free
        proc = subprocess.Popen(
            [*_in_netns(netns), mariadbd, "--no-defaults", f"--datadir={datadir}", f"--port={port}",
             f"--bind-address={'0.0.0.0' if netns else '127.0.0.1'}", f"--socket={basedir}/mysqld.sock",
             f"--pid-file={basedir}/mysqld.pid", f"--log-error={log}", *binlog_args,
             "--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--max-connections=500",
             "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci", *user_args,
             *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        server = MariaDBServer(host, port, "root", "", process=proc, basedir=basedir)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if netns and _allow_remote_root(basedir / "mysqld.sock"):
                _STARTED.append(server)
                return server
            if not netns and _port_open("127.0.0.1", port, 0.5) and _mariadb_accepts(server):
                _STARTED.append(server)
                return server
            time.sleep(0.2)
        last_error = _tail(log)
        server.basedir = None  # keep the datadir for the next attempt
        server.stop()
        if "Address already in use" not in last_error and "Can't start server" not in last_error:
            break
    shutil.rmtree(basedir, ignore_errors=True)
    raise ServerUnavailable(f"mariadbd did not accept connections within {START_TIMEOUT_SECONDS:.0f} s; "
                            f"its error log ends with:\n{last_error}")


@contextmanager
def private_mariadb(extra_args: Sequence[str] = ()) -> Iterator[MariaDBServer]:
    """A new mariadbd (start_private_mariadb with `extra_args`) for the block: for tests that
    change its global settings or need options the shared server lacks (binlog, performance
    schema). Stopped, its datadir removed, when the block ends."""
    server = start_private_mariadb(extra_args)
    try:
        yield server
    finally:
        forget(server)


def _allow_remote_root(socket_path: Path) -> bool:
    """Through the unix socket (shared across network namespaces): root may connect from
    anywhere, as it does from 127.0.0.1. False while the server is not up yet."""
    import pymysql

    try:
        conn = pymysql.connect(unix_socket=str(socket_path), user="root", password="", connect_timeout=2)
    except (pymysql.MySQLError, OSError):
        return False
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS 'root'@'%'")
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION")
        return True
    finally:
        conn.close()


def _redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def find_or_start_redis() -> RedisServer:
    host = os.environ.get("WEWORK_TEST_REDIS_HOST", "127.0.0.1")
    port = int(os.environ.get("WEWORK_TEST_REDIS_PORT", "6379"))
    if _redis_ping(host, port):
        return RedisServer(host, port)
    return start_private_redis()


def start_private_redis(*, netns: str | None = None, host: str = "127.0.0.1",
                        port: int | None = None) -> RedisServer:
    """A new redis-server on a free port (or `port`: e.g. a restart where a stopped one listened);
    `netns`: inside that network namespace, on port 6379 of every address there, reached at
    `host` (tests/drills)."""
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/local/bin")
    if not binary:
        raise ServerUnavailable("no Redis reachable and redis-server not found. " + INSTALL_HINT)
    basedir = Path(tempfile.mkdtemp(prefix="wwt-redis-"))
    log = basedir / "redis.log"
    last_error = ""
    for _attempt in range(3):
        listen_port = 6379 if netns else (port or free_port())
        bind = ["--bind", "0.0.0.0", "--protected-mode", "no"] if netns else ["--bind", "127.0.0.1"]
        proc = subprocess.Popen(
            [*_in_netns(netns), binary, "--port", str(listen_port), *bind, "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(basedir), "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        server = RedisServer(host, listen_port, process=proc, basedir=basedir)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and proc.poll() is None:
            if _redis_ping(host, listen_port):
                _STARTED.append(server)
                return server
            time.sleep(0.1)
        last_error = _tail(log)
        server.basedir = None
        server.stop()
    shutil.rmtree(basedir, ignore_errors=True)
    raise ServerUnavailable(f"redis-server did not answer PING; its log ends with:\n{last_error}")


def forget(server: MariaDBServer | RedisServer) -> None:
    """Stops a server this harness started (no-op for a reused external one)."""
    if server in _STARTED:
        _STARTED.remove(server)
    server.stop()
