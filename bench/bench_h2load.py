"""Health/Check, SendMessage and BatchSendMessages driven by h2load (a C HTTP/2 load generator).

The Python benchmarks drive the server from a grpc.aio client on the same two cores, which
costs about as much CPU as the server's side of a call; h2load costs little, so the rates here
are the server's (issue 20). One wework-server on MariaDB + Redis (bench_get_account's
helpers), one run: for each connection shape (-c connections x -m streams each; 4x16 and 16x16
by default) the no-op Health/Check, SendMessage, and BatchSendMessages of 100 and of 1,000
items, each for --seconds. Prints each rate, latency percentiles (from h2load's per-request
log) and the ratios to the no-op.

gRPC over h2load: a POST of a data file holding one length-prefixed gRPC message (the 5-byte
prefix: flag 0, big-endian length), content-type application/grpc, te: trailers and the
x-api-key header. h2load sends the same body every time and only sees HTTP statuses, while a
gRPC error travels in trailers with HTTP 200: "succeeded" is no proof. So the requests carry no
request_id (it is optional; with one, every repeat would answer the first message) and the
accepted rate is counted in MariaDB: rows of the bench tenant written during the phase divided
by the phase's time. The messages are scheduled a day ahead and the dispatcher is off: the
accept path alone. A phase whose rows fall short of its calls x items says so (refused calls).

    .venv/bin/python bench/bench_h2load.py [--seconds 10] [--shapes 4x16,16x16] [--workers 1,2] [--rounds 3] [--profile]

--workers takes a list: each worker count gets its own server, one after the other in the same
run, and SendMessage's ratio is printed against the same server's no-op ("x no-op") and against
the best no-op of the run at that shape ("x best"). Beside the rates: the CPU per message of the
server (all processes), of its event loop's thread (one worker: the thread that sets the rate)
and of mariadbd, and the messages per COMMIT (the group commit's batch; mariadbd's global
Com_commit, so other work on the same server counts too).

--rounds N runs each shape's phases in turn N times (no-op, SendMessage, ..., no-op, ...) and
reports the round with the median ratio, each round's ratio beside it: on this shared machine
two phases a minute apart differ by up to a tenth, and a ratio of neighbours in time moves less.

--profile also records the server with py-spy during each SendMessage phase (a speedscope file
and the top functions per phase, in the work directory, kept). h2load comes from the Debian
package nghttp2-client: installed with apt-get when it is missing (as root, or through sudo).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymysql
from grpc_health.v1 import health_pb2
from wework.v1 import message_pb2

sys.path.insert(0, str(Path(__file__).parent))
from bench_get_account import clean_up, percentile, start_server, stop_server
from bench_send_message import prepare

NOOP, SEND = "Health/Check", "SendMessage"
BATCHES = (100, 1000)


def find_h2load() -> str:
    """The h2load binary; installs nghttp2-client with apt-get when it is missing."""
    found = shutil.which("h2load")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print("h2load not found: installing the Debian package nghttp2-client", file=sys.stderr)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "nghttp2-client"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("h2load")
    if not found:
        raise SystemExit("h2load is still missing after installing nghttp2-client")
    return found


def grpc_frame(message) -> bytes:
    """One gRPC length-prefixed message: compressed flag 0, 4-byte big-endian length, bytes."""
    body = message.SerializeToString()
    return struct.pack(">BI", 0, len(body)) + body


def bodies(workdir: Path, account_id: str) -> dict[str, tuple[str, Path, int]]:
    """name -> (path of the method, data file, messages per call)."""
    later = int(time.time()) + 86400  # a day ahead: the accept path only

    def send(i: int) -> message_pb2.SendMessageRequest:
        req = message_pb2.SendMessageRequest(
            account_id=account_id, conversation_id=f"wmbench{i % 50}",
            content=message_pb2.MessageContent(text=message_pb2.TextContent(text="benchmark message")))
        req.scheduled_time.FromSeconds(later)
        return req

    specs = {NOOP: ("/grpc.health.v1.Health/Check",
                    health_pb2.HealthCheckRequest(service="wework.v1.MessageService"), 0),
             SEND: ("/wework.v1.MessageService/SendMessage", send(0), 1)}
    for n in BATCHES:
        specs[f"BatchSend x{n}"] = ("/wework.v1.MessageService/BatchSendMessages",
                                    message_pb2.BatchSendMessagesRequest(requests=[send(i) for i in range(n)]), n)
    out = {}
    for name, (path, message, per_call) in specs.items():
        data = workdir / f"{re.sub(r'[^a-z0-9]+', '_', name.lower())}.bin"
        data.write_bytes(grpc_frame(message))
        out[name] = (path, data, per_call)
    return out


class RowCounter:
    """Messages of the bench tenant in MariaDB: the proof of acceptance."""

    def __init__(self, mariadb_url: str, prefix: str, tenant_id: str) -> None:
        m = re.match(r"^[^:]+://(?P<user>[^:@/]*)(?::(?P<pw>[^@/]*))?@(?P<host>[^:/]+)(?::(?P<port>\d+))?", mariadb_url)
        if m is None:
            raise SystemExit(f"cannot read user/host/port from {mariadb_url!r}")
        self._conn = pymysql.connect(host=m["host"], port=int(m["port"] or 3306), user=m["user"] or "root",
                                     password=m["pw"] or "", database=f"{prefix}_message_0", autocommit=True)
        self._tenant = tenant_id

    def count(self) -> int:
        with self._conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM messages WHERE tenant_id = %s", (self._tenant,))
            return int(cur.fetchone()[0])

    def settled(self, quiet: float = 1.0, limit: float = 60.0) -> int:
        """The count once it has not moved for `quiet` seconds: calls of the previous phase that
        h2load left in flight (cancelled when it closed its connections) finish writing first,
        so neither phase is charged with the other's work."""
        deadline = time.monotonic() + limit
        last = self.count()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.count()
            if now == last:
                break
            last = now
        return last

    def commits(self) -> int:
        """COMMITs the MariaDB server has run so far (all sessions: the machine's other work too)."""
        with self._conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Com_commit'")
            return int(cur.fetchone()[1])

    def close(self) -> None:
        self._conn.close()


def run_h2load(h2load: str, target: str, path: str, data: Path, key: str, connections: int, streams: int,
               seconds: float, log_file: Path) -> dict:
    cmd = [h2load, "-c", str(connections), "-m", str(streams), "-t", "1", "-D", f"{seconds:g}",
           "-d", str(data), "--log-file", str(log_file),
           "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", f"x-api-key: {key}",
           f"http://{target}{path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"h2load failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    out = done.stdout
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    requests = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored, (\d+) timeout", out)
    if finished is None or requests is None:
        raise SystemExit(f"cannot read h2load's output:\n{out[-2000:]}")
    elapsed = float(finished[1]) / (1000 if finished[2] == "ms" else 1)
    latencies = []
    for line in log_file.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            latencies.append(int(parts[2]) / 1000)  # microseconds -> ms
    latencies.sort()
    return {"elapsed": elapsed, "done": int(requests[3]), "succeeded": int(requests[4]),
            "failed": int(requests[5]) + int(requests[6]) + int(requests[7]), "rps": float(finished[3]),
            "p50": percentile(latencies, 50), "p99": percentile(latencies, 99)}


def cpu_seconds(pid: int | None, thread: int | None = None) -> float:
    """User + system CPU of a process (all its threads), or of one of its threads, so far; 0
    when there is none."""
    if pid is None:
        return 0.0
    stat = Path(f"/proc/{pid}/stat") if thread is None else Path(f"/proc/{pid}/task/{thread}/stat")
    try:
        fields = stat.read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of a process and its children (the worker processes of --workers N)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += cpu_seconds(int(stat.parent.name))
    return total


def mariadb_pid() -> int | None:
    """The local mariadbd's pid (its CPU is counted per message beside the server's)."""
    found = subprocess.run(["pgrep", "-o", "-x", "mariadbd"], check=False, capture_output=True, text=True).stdout.split()
    return int(found[0]) if found else None


def profile(pid: int, seconds: float, out: Path, native: bool = False) -> subprocess.Popen:
    """py-spy on the server for `seconds` (collapsed stacks); started before the phase.
    `native`: C frames too (grpc's Cython core, protobuf), at a higher cost to the server."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is missing: install the dev extra (pip install -e '.[dev]')")
    mode = ["--native"] if native else ["--nonblocking"]
    return subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200", "-f", "raw",
                             "-o", str(out), *mode], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_functions(raw: Path, n: int = 25) -> list[tuple[str, float]]:
    """Inclusive share of samples per function from py-spy's collapsed-stack output."""
    total, inclusive = 0, {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:n]
    return [(frame, count / total) for frame, count in ranked] if total else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per RPC and shape (default 10)")
    parser.add_argument("--shapes", default="4x16,16x16", help="connections x streams, comma-separated")
    parser.add_argument("--mariadb", default="mysql+aiomysql://root@127.0.0.1:3306", help="MariaDB base URL")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--profile", action="store_true", help="py-spy the server in each SendMessage phase")
    parser.add_argument("--profile-rpc", default=SEND, help="the RPC --profile records (default SendMessage)")
    parser.add_argument("--workers", default="1",
                        help="server processes on the port (server.workers; docs/multiprocess.md); a "
                        "comma-separated list (e.g. 1,2) measures each in turn, one server each, same run")
    parser.add_argument("--profile-native", action="store_true", help="--profile with C frames (py-spy --native)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run each shape's phases in turn this many times and report the median round "
                        "(the ratio of each round to its own no-op is printed too)")
    parser.add_argument("--only", default="", help="comma-separated phases to run (default all), e.g. "
                        "'SendMessage,BatchSend x1000'; the no-op always runs (the ratios need it)")
    args = parser.parse_args()
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",") if s.strip()]
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    h2load = find_h2load()

    # workers -> shape -> rpc -> result
    results: dict[int, dict[str, dict[str, dict]]] = {}
    profiles: dict[str, list[tuple[str, float]]] = {}
    workdirs: list[Path] = []
    for n in workers:
        workdir = Path(tempfile.mkdtemp(prefix="wwbench-h2load-"))
        workdirs.append(workdir)
        results[n] = measure(args, n, shapes, h2load, workdir, profiles)

    print(f"h2load benchmark: wework-server on MariaDB + Redis, no dispatcher; h2load -t 1, "
          f"{args.seconds:g} s per RPC and shape; {os.cpu_count()} CPU(s), "
          f"{platform.python_version()}, server, MariaDB, Redis and h2load on this machine")
    print("calls/s: h2load's (HTTP answers, gRPC errors included); rows: messages written in MariaDB "
          "during the phase; msgs/s: rows / phase time; x no-op: SendMessage msgs/s over the same "
          "server's Health/Check calls/s; x best: over the best Health/Check calls/s of the run at that shape")
    print("server/loop/MariaDB us: CPU microseconds of the server (all processes and threads), of its event "
          "loop's thread (one worker: the bottleneck) and of mariadbd per message written (per call for the no-op)")
    print(f"{'wk':>2} {'shape':>6} {'rpc':16} {'calls':>8} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'rows':>9} "
          f"{'msgs/s':>9} {'x no-op':>8} {'x best':>7} {'server us':>10} {'loop us':>8} {'MariaDB us':>10} {'rows/commit':>11}")
    best = {shape: max(by_shape[shape][NOOP]["rps"] for by_shape in results.values()) for shape in results[workers[0]]}
    for n, by_shape in results.items():
        for shape, by_rpc in by_shape.items():
            for name, r in by_rpc.items():
                # SendMessage: accepted (rows) per second against the calls per second of the
                # no-op of the same round.
                noop = r["noop_rps"]
                ratio = f"{r['msg_per_s'] / noop:.2f}" if name == SEND and noop else ""
                against_best = f"{r['msg_per_s'] / best[shape]:.2f}" if name == SEND and best[shape] else ""
                msgs = f"{r['msg_per_s']:.0f}" if r["msg_per_s"] is not None else "-"
                flag = "  (fewer rows than calls: some refused)" if r["short"] else ""
                cpu = "".join(f" {r[k]:>{w}.1f}" if r[k] is not None else f" {'-':>{w}}"
                              for k, w in (("server_us", 10), ("loop_us", 8), ("mariadb_us", 10), ("rows_per_commit", 11)))
                print(f"{n:>2} {shape:>6} {name:16} {r['done']:>8} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                      f"{r['rows']:>9} {msgs:>9} {ratio:>8} {against_best:>7}{cpu}{flag}")
                if name == SEND and len(r["ratios"]) > 1:
                    print(f"{'':>9} x no-op of each round: {', '.join(f'{x:.2f}' for x in r['ratios'])}")
    for label, top in profiles.items():
        print(f"py-spy, {args.profile_rpc} at {label} (inclusive share of server samples; files in "
              f"{', '.join(map(str, workdirs))}):")
        for frame, share in top:
            print(f"  {share:6.1%}  {frame[:150]}")
    print(json.dumps({"results": {str(n): by_shape for n, by_shape in results.items()}}, separators=(",", ":")))
    return 0


def measure(args: argparse.Namespace, workers: int, shapes: list[tuple[int, ...]], h2load: str, workdir: Path,
            profiles: dict[str, list[tuple[str, float]]]) -> dict[str, dict[str, dict]]:
    """One server with `workers` processes: every shape and phase; shape -> rpc -> result."""
    admin_key = "wwadmin_" + secrets.token_urlsafe(24)
    # The accept path alone: no dispatcher in the server (the messages are scheduled anyway).
    extra: dict = {"message": {"run_dispatcher_in_server": False}}
    if workers > 1:
        extra["server"] = {"workers": workers}
    proc, port, info = start_server(workdir, args, admin_key, extra)
    results: dict[str, dict[str, dict]] = {}
    try:
        target = f"127.0.0.1:{port}"
        key, account_id = prepare(target, admin_key)
        tenant_id = _tenant_of(target, key)
        counter = RowCounter(args.mariadb, info["prefix"], tenant_id)
        specs = bodies(workdir, account_id)
        if args.only:
            wanted = {NOOP, *(name.strip() for name in args.only.split(","))}
            specs = {name: spec for name, spec in specs.items() if name in wanted}
        db_pid = mariadb_pid()
        for c, m in shapes:
            shape = f"{c}x{m}"
            # The phases run in turn, `--rounds` times (no-op, SendMessage, ..., no-op, ...): each
            # round's ratio compares neighbours in time, and the median round is reported.
            rounds: dict[str, list[dict]] = {name: [] for name in specs}
            for n in range(args.rounds):
                for name, (path, data, per_call) in specs.items():
                    spy = None
                    if args.profile and name == args.profile_rpc and n == 0:
                        spy = profile(proc.pid, args.seconds, workdir / f"profile-{shape}.txt", args.profile_native)
                    rounds[name].append(run_phase(args, h2load, target, key, proc.pid, db_pid, counter, workers,
                                                  shape, path, data, per_call, workdir))
                    if spy is not None:
                        spy.wait()
                        profiles[f"{shape}, {workers} worker(s)"] = top_functions(workdir / f"profile-{shape}.txt")
            results[shape] = {name: median_round(runs, rounds[NOOP]) for name, runs in rounds.items()}
        counter.close()
    finally:
        stop_server(proc)
        clean_up(args.mariadb, info, *([] if args.profile else [workdir]))
    return results


def run_phase(args: argparse.Namespace, h2load: str, target: str, key: str, pid: int, db_pid: int | None,
              counter: RowCounter, workers: int, shape: str, path: str, data: Path, per_call: int,
              workdir: Path) -> dict:
    """One RPC at one shape for --seconds: h2load's figures, the rows written and the CPU used."""
    c, m = (int(x) for x in shape.split("x"))
    before = counter.settled()
    commits_before = counter.commits()
    # The event loop's thread (the process's first: its id is the pid) is the bottleneck of one
    # worker: its CPU per call is what sets the rate.
    cpu_before = tree_cpu_seconds(pid), cpu_seconds(db_pid), cpu_seconds(pid, pid)
    r = run_h2load(h2load, target, path, data, key, c, m, args.seconds,
                   workdir / f"log-{shape}-{per_call}.tsv")
    server_cpu, db_cpu, loop_cpu = (tree_cpu_seconds(pid) - cpu_before[0], cpu_seconds(db_pid) - cpu_before[1],
                                    cpu_seconds(pid, pid) - cpu_before[2])
    rows = counter.count() - before  # written during the phase: accepted and durable
    commits = counter.commits() - commits_before
    # Messages per transaction: the group commit's batch size (per call, a batch RPC's).
    r["rows_per_commit"] = rows / commits if per_call and commits else None
    r["rows"] = rows
    r["msg_per_s"] = rows / r["elapsed"] if per_call else None
    r["short"] = bool(per_call) and rows < r["done"] * per_call
    # CPU per unit of work (a message; a call for the no-op): less moved by the other load on
    # the machine than the rates are.
    units = rows if per_call else r["done"]
    r["server_us"] = 1e6 * server_cpu / units if units else None
    r["loop_us"] = 1e6 * loop_cpu / units if units and workers == 1 else None
    r["mariadb_us"] = 1e6 * db_cpu / units if units and per_call else None
    return r


def median_round(runs: list[dict], noops: list[dict]) -> dict:
    """The round whose ratio to the same round's no-op is the median (the no-op's own: its rate
    is the median), with every round's ratio beside it (`ratios`)."""
    if runs is noops:
        ratios = [r["rps"] for r in runs]
    else:
        ratios = [(r["msg_per_s"] or r["rps"]) / noop["rps"] if noop["rps"] else 0.0
                  for r, noop in zip(runs, noops, strict=True)]
    median = sorted(range(len(runs)), key=ratios.__getitem__)[(len(runs) - 1) // 2]
    return {**runs[median], "ratios": ratios if runs is not noops else [], "noop_rps": noops[median]["rps"]}


def _tenant_of(target: str, key: str) -> str:
    from wework.client import ClientOptions, WeworkClient
    with WeworkClient(ClientOptions(target, api_key=key)) as client:
        return client.accounts.iter_accounts().__next__().tenant_id


if __name__ == "__main__":
    raise SystemExit(main())
