"""`wework-worker`: background workers as their own processes.

    wework-worker dispatch [--config FILE]
    wework-worker webhooks [--config FILE]
    wework-worker callbacks [--config FILE]

`dispatch` sends due messages (workers/dispatch.py). It builds the same composition root as
wework-server (so the account gateway, provider, caches and wake-ups are wired identically)
without serving gRPC, and runs until SIGTERM/SIGINT. Any number may run next to the servers.
`webhooks` posts tenant webhooks (workers/webhooks.py); any number may run too.
`callbacks` processes stored provider callbacks (workers/callbacks.py); any number may run too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from wework.server.settings import ServerConfig, SettingsError, load_settings

log = logging.getLogger("wework.worker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wework-worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    dispatch = sub.add_parser("dispatch", help="send due messages through the provider")
    dispatch.add_argument("--config", help="YAML settings file (env WEWORK_CONFIG_FILE)")
    webhooks = sub.add_parser("webhooks", help="deliver tenant webhooks (signed, with retries)")
    webhooks.add_argument("--config", help="YAML settings file (env WEWORK_CONFIG_FILE)")
    callbacks = sub.add_parser("callbacks", help="process stored provider callbacks (the inbox)")
    callbacks.add_argument("--config", help="YAML settings file (env WEWORK_CONFIG_FILE)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(args.config)
        _configure_for(settings, args.command)
    except (SettingsError, ValueError) as exc:
        print(f"wework-worker: {exc}", file=sys.stderr)
        return 2
    from wework.server.runtime.logging import configure_logging

    configure_logging(settings.logging)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        asyncio.run(run_worker(settings, args.command))
    except KeyboardInterrupt:
        pass
    return 0


def _configure_for(settings, command: str) -> None:
    """Only what `command` runs: no gRPC, no callback HTTP port (that is the servers')."""
    settings.callback.http_port = None
    if command == "webhooks":
        # Only the webhook delivery worker: no services, dispatcher or callback processing.
        settings.server = ServerConfig(**{**settings.server.model_dump(), "services": ["tenant"]})
        settings.message.run_dispatcher_in_server = False
        return
    settings.webhooks.run_worker_in_server = False  # `wework-worker webhooks` delivers them
    # The dispatcher asks the account service of its process about accounts.
    settings.server = ServerConfig(**{**settings.server.model_dump(), "services": ["tenant", "account", "message"]})
    settings.message.run_dispatcher_in_server = command == "dispatch"
    settings.callback.run_processor_in_server = command == "callbacks"


async def run_worker(settings, command: str) -> None:
    """Builds the composition root of wework-server (so the account gateway, provider, caches and
    wake-ups are wired identically) without serving gRPC, and runs until SIGTERM/SIGINT."""
    from wework.server.runtime.gc_tuning import settle_after_startup
    from wework.server.runtime.server import StopSignals

    # The handlers first: the dispatcher starts sending inside build_application, and a SIGTERM
    # then (a rolling update) must stop the worker cleanly - sends in flight recorded, claims
    # handed back - not kill it (exit -15) with its claims left to their lease.
    stop = StopSignals()
    app = None
    try:
        app = await _build(settings, command)
        settle_after_startup()
        print(f"wework-worker {command} running (pid {os.getpid()})", flush=True)
        await stop.requested.wait()
    finally:
        stop.remove()
        if app is not None:
            await app.close()


async def _build(settings, command: str):
    """The application of a worker running `command`."""
    from wework.persistence.migrate import migrate_all
    from wework.server.app import build_application, start_webhook_worker

    if settings.embedded:
        await migrate_all(settings.database_config)
    app = await build_application(settings)
    if command == "webhooks":
        worker = await start_webhook_worker(settings, app.ctx, app.redis)
        app.closers.insert(0, worker.close)
    return app


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
