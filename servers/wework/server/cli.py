"""`wework-server`: serves any subset of the platform's gRPC services.

With no settings at all it runs the embedded default: SQLite files under
./var, an in-process Redis and generated secrets, migrated at start.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from wework.server.settings import ALL_SERVICES, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from wework.server.runtime.server import GrpcServer

log = logging.getLogger("wework.server")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wework-server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help="gRPC port (env WEWORK_PORT; default 50051)")
    parser.add_argument("--host", help="address to bind (env WEWORK_SERVER__HOST; default 0.0.0.0, "
                             "127.0.0.1 in the embedded mode)")
    parser.add_argument("--services",
                        help=f"comma-separated subset of {','.join(ALL_SERVICES)} or 'all' "
                             "(env WEWORK_SERVER__SERVICES)")
    parser.add_argument("--config", help="YAML settings file (env WEWORK_CONFIG_FILE)")
    parser.add_argument("--data-dir", help="data directory of the embedded mode (env WEWORK_DATA_DIR)")
    parser.add_argument("--workers", type=int,
                        help="server processes sharing the port (env WEWORK_SERVER__WORKERS; default 1)")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict = {}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.port is not None:
        overrides["port"] = args.port
    settings = load_settings(args.config, **overrides)
    if args.host:
        settings.server.host = args.host
    changed = {k: v for k, v in (("services", args.services), ("workers", args.workers)) if v is not None}
    if changed:
        # Re-validate through the model so a bad value names the setting.
        from wework.server.settings import ServerConfig
        settings.server = ServerConfig(**{**settings.server.model_dump(), **changed})
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"wework-server: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a bad --services list or --workers count
        print(f"wework-server: invalid settings: {exc}", file=sys.stderr)
        return 2
    if settings.server.workers > 1 and settings.embedded:
        print(f"wework-server: server.workers (env WEWORK_SERVER__WORKERS, --workers) is "
              f"{settings.server.workers}, but the embedded mode needs 1: its in-process Redis and "
              "SQLite files cannot be shared between processes; configure `database` and `redis.url` "
              "to run several workers", file=sys.stderr)
        return 2
    if settings.server.workers > 1:
        return run_workers(argv if argv is not None else sys.argv[1:], settings)
    return run_single(settings)


def run_single(settings: Settings) -> int:
    """Serves in this process until SIGTERM/SIGINT (also the body of each worker process)."""
    from wework.server.runtime.logging import configure_logging
    from wework.server.runtime.server import CannotListen, run_on_loop

    configure_logging(settings.logging)
    # Alembic announces every plugin at INFO on each start of the embedded mode.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        run_on_loop(serve(settings), settings.server.event_loop)
    except KeyboardInterrupt:
        pass
    except CannotListen as exc:
        print(f"wework-server: cannot listen on {exc.address}: the port is in use (another server?) or the "
              "host is not an address of this machine; choose another port with --port N or WEWORK_PORT, "
              "the address with --host or WEWORK_SERVER__HOST", file=sys.stderr)
        return 1
    return 0


async def serve(settings: Settings) -> None:
    from wework.server.runtime.server import StopSignals, check_can_listen, run_until_signal

    check_can_listen(settings.server)  # before any worker starts, so that a taken port ends the process
    # The handlers first: a SIGTERM during start-up (a rolling update, `--workers` stopping its
    # children) then stops this process cleanly once started instead of killing it (exit -15).
    stop = StopSignals()
    try:
        server = await _start(settings)
        await run_until_signal(server, stop=stop)
    finally:
        stop.remove()


async def _start(settings: Settings) -> GrpcServer:
    """Builds the application and starts serving; the started server."""
    from wework.persistence.migrate import migrate_all
    from wework.server.app import build_application
    from wework.server.observability import Observability
    from wework.server.runtime.gc_tuning import settle_after_startup
    from wework.server.runtime.server import GrpcServer

    # Tracing before the first engine exists (engines are hooked as they are made); /metrics
    # early, so a slow start (migrations, a database not up yet) is visible too.
    obs = Observability(settings.observability)
    obs.start(services=settings.server.services)
    try:
        if settings.embedded:
            # The embedded mode has no separate migration step: bring SQLite up to date here.
            await migrate_all(settings.database_config)
        app = await build_application(settings, on_engine_created=obs.on_engine_created)
        obs.attach(app)
    except BaseException:
        await obs.close()
        raise
    server = GrpcServer(settings.server, app.registrations, app.authenticator,
                        readiness_checks=obs.readiness(await app.readiness_checks()),
                        on_shutdown=[app.close, obs.close])
    port = await server.start()
    settle_after_startup()
    _print_banner(settings, port)
    return server


# ---- several processes on one port (--workers N; docs/multiprocess.md) ------------------------

def run_workers(argv: list[str], settings: Settings) -> int:
    """Runs settings.server.workers copies of the server on one port and supervises them.

    The children are spawned, not forked: grpc and asyncio objects do not survive a fork, and a
    spawned child starts clean, re-reads the same settings and binds with SO_REUSEPORT. SIGTERM
    and SIGINT are forwarded to every child, each drains its calls; 0 only if all exit 0. A child
    that dies on its own brings the others down and the parent exits 1: a pod with fewer workers
    than configured would serve at reduced capacity unnoticed, the orchestrator restarts it whole.
    """
    import multiprocessing
    import signal
    import time
    from multiprocessing.connection import wait

    from wework.server.runtime.logging import configure_logging

    configure_logging(settings.logging)
    ctx = multiprocessing.get_context("spawn")
    parent = os.getpid()
    children = [ctx.Process(target=_worker_main, args=(argv, index, parent), name=f"wework-server-worker-{index}")
                for index in range(settings.server.workers)]
    stop_sent: int | None = None  # the signal forwarded, once a stop was requested
    deadline: float | None = None
    failed = False

    def stop_all(sig: int) -> None:
        nonlocal stop_sent, deadline
        if stop_sent is None:
            stop_sent = sig
            # The children drain for the grace period; beyond that plus their shutdown hooks, kill.
            deadline = (time.monotonic() + settings.server.drain_delay_seconds
                        + settings.server.grace_period_seconds + 30)
        for child in children:
            if child.pid is not None and child.exitcode is None:
                try:
                    os.kill(child.pid, sig)
                except ProcessLookupError:
                    pass

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping %d workers", signal.Signals(signum).name, len(children))
        stop_all(signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.start()
            if stop_sent is not None:  # a signal arrived while starting: stop the late ones too
                stop_all(stop_sent)
        log.info("started %d worker processes", len(children),
                 extra={"worker_pids": [c.pid for c in children]})
        running = list(children)
        while running:
            wait([c.sentinel for c in running], timeout=1.0)
            for child in [c for c in running if c.exitcode is not None]:
                running.remove(child)
                if child.exitcode != 0:
                    failed = True
                if stop_sent is None:
                    failed = True
                    log.error("worker %s (pid %s) exited unexpectedly with %s; stopping the others",
                              child.name, child.pid, child.exitcode)
                    stop_all(signal.SIGTERM)
                elif child.exitcode != 0:
                    log.error("worker %s (pid %s) exited with %s", child.name, child.pid, child.exitcode)
            if deadline is not None and time.monotonic() > deadline:
                for child in running:
                    log.error("worker %s (pid %s) did not stop in time; killing it", child.name, child.pid)
                    child.kill()
                failed = failed or bool(running)
                deadline = None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("all workers stopped", extra={"exit_code": 1 if failed else 0})
    return 1 if failed else 0


def _worker_main(argv: list[str], index: int, parent: int) -> None:
    """Body of worker `index`: the normal serve path, with its own /metrics port."""
    import signal
    import threading
    import time

    # Own process group: a terminal's Ctrl-C reaches only the parent, which forwards one
    # SIGTERM; a second signal would cut the child's graceful shutdown short.
    os.setpgrp()
    settings = settings_from_args(parse_args(argv))
    obs = settings.observability
    if obs.metrics_port:  # 0 stays 0: every worker picks a free port and logs it
        obs.metrics_port += index
    if index > 0:
        # The provider posts callbacks to one HTTP port, bound without SO_REUSEPORT: worker 0
        # takes them (the work they cause reaches every worker through the database and Redis).
        settings.callback.http_port = None

    def watch_parent() -> None:
        # SIGKILLed parent: do not serve on as an orphan nobody supervises.
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    code = run_single(settings)
    sys.exit(code)


def _print_banner(settings: Settings, port: int) -> None:
    services = ",".join(settings.server.services)
    print(f"wework-server listening on {settings.server.host}:{port} (services: {services})", flush=True)
    if settings.embedded:
        secrets_file = (settings.data_dir / "secrets.json").resolve()
        print(f"embedded mode: SQLite under {settings.data_dir.resolve()}, in-process Redis; "
              f"the platform-admin key is in {secrets_file}\n"
              "try (the commands work as written, from any directory):\n"
              + "\n".join("  " + command for command in try_commands(settings, port)),
              flush=True)


def try_commands(settings: Settings, port: int) -> list[str]:
    """Shell commands the embedded banner suggests: absolute paths, so they need no PATH step."""
    host = settings.server.host
    target = f"{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]') else host}:{port}"
    bin_dir = Path(sys.executable).parent
    grpcurl = shlex.quote(str(bin_dir / "grpcurl")) if (bin_dir / "grpcurl").exists() else "grpcurl"
    secrets_file = shlex.quote(str((settings.data_dir / "secrets.json").resolve()))
    key = (f"$({shlex.quote(sys.executable)} -c 'import json,sys; "
           f"print(json.load(open(sys.argv[1]))[\"admin_api_key\"])' {secrets_file})")
    admin = shlex.quote(str(bin_dir / "wework-admin"))
    data_dir = shlex.quote(str(settings.data_dir.resolve()))
    return [
        f"{grpcurl} -plaintext {target} list",
        f"{grpcurl} -plaintext -H \"x-api-key: {key}\" -d '{{}}' {target} wework.v1.TenantService/ListTenants",
        (f"{admin} --data-dir {data_dir} quickstart --target {target}"
         "   # a tenant, an API key and a user with a role; prints the shell exports"),
    ]


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
