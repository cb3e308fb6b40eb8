"""`wework-admin`: operator commands.

  wework-admin migrate        apply the migrations of the directory and of every
                              service database on every shard (idempotent)
  wework-admin shard-of ID    which bucket and shard a tenant id lives on
  wework-admin check-config   load the settings and print the shard map, or the error
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from rich.console import Console
from rich.table import Table
from wework.server.settings import Settings, SettingsError, load_settings

console = Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wework-admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML settings file (env WEWORK_CONFIG_FILE)")
    parser.add_argument("--data-dir", help="data directory of the embedded mode")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="migrate every database to the latest schema")
    shard = sub.add_parser("shard-of", help="print the bucket and shard of a tenant id")
    shard.add_argument("tenant_id")
    sub.add_parser("check-config", help="validate the settings and print the shard map")
    args = parser.parse_args(argv)

    try:
        settings = load_settings(args.config, **({"data_dir": args.data_dir} if args.data_dir else {}))
    except SettingsError as exc:
        console.print(f"[red]wework-admin: {exc}[/red]")
        return 2
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "shard-of":
        return _shard_of(settings, args.tenant_id)
    return _check_config(settings)


async def _migrate(settings: Settings) -> int:
    from wework.persistence.migrate import migrate_all

    config = settings.database_config

    def progress(db: str, shard: str, message: str) -> None:
        console.print(f"[cyan]{db:>9}[/cyan] [bold]{shard:<10}[/bold] {message}")

    try:
        results = await migrate_all(config, progress=progress)
    except Exception as exc:  # noqa: BLE001 - an operator command reports and exits
        console.print(f"[red]migration failed: {exc}[/red]")
        return 1
    console.print(f"[green]migrated {len(results)} database(s)[/green]")
    return 0


def _shard_of(settings: Settings, tenant_id: str) -> int:
    from wework.persistence.sharding import ShardRouter, bucket_of

    config = settings.database_config
    shard = ShardRouter(config).shard_for(tenant_id)
    print(f"tenant {tenant_id}: bucket {bucket_of(tenant_id, config.bucket_count)} -> shard {shard.name}")
    return 0


def _check_config(settings: Settings) -> int:
    config = settings.database_config
    table = Table(title=f"shard map ({config.bucket_count} buckets)")
    for col in ("shard", "buckets", "dsn template", "replicas"):
        table.add_column(col)
    for shard in config.shards:
        table.add_row(shard.name, shard.buckets, _redact(shard.dsn), str(len(shard.replicas)))
    Console().print(table)
    print(f"directory: {_redact(config.directory_dsn)}")
    print(f"services: {', '.join(settings.server.services)}; embedded: {settings.embedded}")
    return 0


def _redact(dsn: str) -> str:
    """Hides the password of a DSN: operators paste this output into tickets."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(dsn.replace("{db}", "__db__")).render_as_string(hide_password=True).replace("__db__", "{db}")
    except Exception:  # noqa: BLE001 - a malformed DSN is shown as is, without its secret part
        return dsn.split("@")[-1]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
