"""`wework-server`: serves any subset of the platform's gRPC services.

With no settings at all it runs the embedded default: SQLite files under
./var, an in-process Redis and generated secrets, migrated at start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys

from wework.server.settings import ALL_SERVICES, Settings, SettingsError, load_settings

log = logging.getLogger("wework.server")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wework-server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help="gRPC port (env WEWORK_PORT; default 50051)")
    parser.add_argument("--host", help="address to bind (env WEWORK_SERVER__HOST; default 0.0.0.0)")
    parser.add_argument("--services",
                        help=f"comma-separated subset of {','.join(ALL_SERVICES)} or 'all' "
                             "(env WEWORK_SERVER__SERVICES)")
    parser.add_argument("--config", help="YAML settings file (env WEWORK_CONFIG_FILE)")
    parser.add_argument("--data-dir", help="data directory of the embedded mode (env WEWORK_DATA_DIR)")
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
    if args.services:
        # Re-validate through the model so a bad list names the setting.
        from wework.server.settings import ServerConfig
        settings.server = ServerConfig(**{**settings.server.model_dump(), "services": args.services})
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"wework-server: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a bad --services list
        print(f"wework-server: invalid settings: {exc}", file=sys.stderr)
        return 2
    from wework.server.runtime.logging import configure_logging
    from wework.server.runtime.server import install_uvloop

    configure_logging(settings.logging)
    # Alembic announces every plugin at INFO on each start of the embedded mode.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    install_uvloop()
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    return 0


async def serve(settings: Settings) -> None:
    from wework.persistence.migrate import migrate_all
    from wework.server.app import build_application
    from wework.server.observability import Observability
    from wework.server.runtime.server import GrpcServer, run_until_signal

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
    _print_banner(settings, port)
    await run_until_signal(server)


def _print_banner(settings: Settings, port: int) -> None:
    host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::", "[::]") else settings.server.host
    services = ",".join(settings.server.services)
    print(f"wework-server listening on {settings.server.host}:{port} (services: {services})", flush=True)
    if settings.embedded:
        secrets_file = (settings.data_dir / "secrets.json").resolve()
        key_cmd = ("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"admin_api_key\"])' "
                   f"{shlex.quote(str(secrets_file))})")
        print(
            f"embedded mode: SQLite under {settings.data_dir.resolve()}, in-process Redis; the platform-admin key is in {secrets_file}\n"
            "try:\n"
            f"  grpcurl -plaintext {host}:{port} list\n"
            f"  grpcurl -plaintext -H \"x-api-key: {key_cmd}\" \\\n"
            "    -d '{\"tenant\": {\"tenant_code\": \"acme\", \"tenant_name\": \"Acme\"}}' \\\n"
            f"    {host}:{port} wework.v1.TenantService/CreateTenant",
            flush=True,
        )


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
