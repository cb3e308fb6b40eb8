"""`wework-admin`: operator commands.

  wework-admin migrate        apply the migrations of the directory and of every
                              service database on every shard (idempotent)
  wework-admin shard-of ID    which bucket and shard a tenant id lives on
  wework-admin check-config   load the settings and print the shard map, or the error
  wework-admin maintain       create partitions ahead, delete data past retention
  wework-admin backup --output DIR     dump every database, with a manifest
  wework-admin restore --input DIR     restore a backup into empty databases and verify it
  wework-admin failover --shard NAME [--replica DSN|INDEX|HOST:PORT]
                              promote a replica and publish the new shard map (docs/failover.md)
  wework-admin failover --directory [--replica DSN|INDEX|HOST:PORT]
                              promote a replica of the directory database (docs/failover.md)
  wework-admin shard-map      print the shard map in force (runtime version or settings)
  wework-admin move-buckets --buckets 512-767 --to-dsn DSN [--shard-name s2]
                              move a bucket range to new databases online (docs/bucket-moves.md)
  wework-admin verify         checksum every replica against its primary, or a bucket move's
                              source against its target (docs/operations-verify.md)
  wework-admin db-report      top statements with their plans, unused indexes (docs/operations-db-report.md)
  wework-admin quickstart [--target HOST:PORT] [--tenant-code CODE]
                              through a running server: a tenant, an API key and a user with a
                              role; prints the shell exports (WEWORK_API_KEY, ...)

Every subcommand takes --json: one JSON document on stdout (with "command", "ok", "exit_code" and,
on failure, "error"), messages and progress on stderr. Exit codes: 0 done, 1 failed, 2 bad settings
or usage; restore and verify 3, move-buckets 4: docs/operations-admin-cli.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.table import Table
from wework.domain.access import SYSTEM_ROLES
from wework.server.admin_output import Output, terminal_console
from wework.server.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from wework.persistence.failover import FailoverResult

console = terminal_console(sys.stderr)
_Outcome = TypeVar("_Outcome")


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
    sub.add_parser("maintain", help="create partitions ahead and delete data past retention (docs/maintenance.md)")
    backup = sub.add_parser("backup", help="dump every database into a directory (docs/backup-restore.md)")
    backup.add_argument("--output", required=True, type=Path,
                        help="new or empty directory; otherwise a timestamped directory is made inside it")
    backup.add_argument("--parallel", type=int, default=4, help="databases dumped at once (default 4)")
    backup.add_argument("--lock-timeout", type=float, default=600,
                        help="seconds to wait for a running migration or maintenance (default 600)")
    restore = sub.add_parser("restore", help="restore a backup into the shard map's databases and verify it")
    restore.add_argument("--input", required=True, type=Path, help="a backup directory (with manifest.json)")
    restore.add_argument("--force", action="store_true", help="replace the tables of non-empty databases")
    restore.add_argument("--dry-run", action="store_true", help="check the files and the targets, change nothing")
    restore.add_argument("--parallel", type=int, default=4, help="databases restored at once (default 4)")
    restore.add_argument("--until", type=_utc_time, metavar="TIME",
                         help="point-in-time recovery: replay the binlogs up to TIME (ISO 8601 with zone, "
                              "e.g. 2026-11-28T15:40:00Z)")
    restore.add_argument("--binlog-dir", type=Path,
                         help="archived binlog files, when the backup's server is gone (with --until)")
    sub.add_parser("shard-map", help="print the shard map in force and its published versions")
    move = sub.add_parser("move-buckets", help="move a bucket range to new databases online (docs/bucket-moves.md)")
    move.add_argument("--buckets", help="inclusive ranges, e.g. 512-767")
    move.add_argument("--to-dsn", help="DSN template of the new databases, with {db}")
    move.add_argument("--shard-name", help="name of the new shard (default: the next free sN)")
    move.add_argument("--resume", action="store_true", help="resume the unfinished move")
    move.add_argument("--abort", action="store_true", help="abandon the unfinished move (before it deletes)")
    move.add_argument("--ack-timeout", type=float, default=15.0,
                      help="seconds for every live server to apply a shard map version (default 15)")
    move.add_argument("--max-freeze", type=float, default=30.0,
                      help="unfreeze and retry later when the frozen catch-up takes longer (default 30)")
    move.add_argument("--lease-seconds", type=float, default=30.0,
                      help="a crashed move can be resumed this long after it died (default 30)")
    move.add_argument("--batch-size", type=int, default=500, help="rows per page and delete (default 500)")
    fail = sub.add_parser("failover", help="promote a replica of a shard or of the directory to primary "
                                           "(docs/failover.md)")
    which = fail.add_mutually_exclusive_group(required=True)
    which.add_argument("--shard", help="the shard whose primary is lost")
    which.add_argument("--directory", action="store_true",
                       help="the directory database's primary is lost (database.directory_replicas)")
    fail.add_argument("--replica", help="which replica: index in the shard's list, DSN template or host:port "
                                        "(default: the one that has received the most)")
    fail.add_argument("--force", action="store_true",
                      help="switch over although the primary still answers (it is set read-only first)")
    fail.add_argument("--apply-timeout", type=float, default=60.0,
                      help="seconds for the replica to apply what it received (default 60)")
    fail.add_argument("--ack-timeout", type=float, default=15.0,
                      help="seconds to wait for the running servers to apply the new map (default 15)")
    quick = sub.add_parser("quickstart", help="create a tenant, an API key and a user through a running server; "
                                              "print the shell exports")
    quick.add_argument("--target", help="the server's host:port (default 127.0.0.1 and the configured port)")
    quick.add_argument("--tls", action="store_true", help="connect with TLS (default: plaintext)")
    quick.add_argument("--tenant-code", default="quickstart", help="code of the new tenant (default quickstart)")
    quick.add_argument("--username", default="operator", help="the new user (default operator)")
    system_roles = tuple(SYSTEM_ROLES)  # every tenant is created with these
    quick.add_argument("--user-role", default="operator", choices=system_roles,
                       help="system role of the user (default operator)")
    quick.add_argument("--key-role", default="admin", choices=system_roles,
                       help="system role of the API key (default admin)")
    _add_verify_parser(sub)
    _add_db_report_parser(sub)
    for subcommand in sub.choices.values():  # the options every subcommand has
        subcommand.add_argument("--json", action="store_true",
                                help="print one JSON document on stdout, messages and progress on stderr "
                                     "(docs/operations-admin-cli.md)")
    args = parser.parse_args(argv)

    out = Output(args.command, args.json, console)
    try:
        settings = load_settings(args.config, **({"data_dir": args.data_dir} if args.data_dir else {}))
    except SettingsError as exc:
        out.error(f"wework-admin: {exc}")
        return out.finish(2)
    try:
        code = COMMANDS[args.command](settings, args, out)
        code = asyncio.run(code) if asyncio.iscoroutine(code) else code
    except Exception as exc:  # noqa: BLE001 - unforeseen: still exit 1 with one message (and a JSON document)
        traceback.print_exc()  # stderr: for the bug report
        out.error(f"{args.command} failed: {type(exc).__name__}: {exc}")
        code = 1
    return out.finish(code)


async def _migrate(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from wework.persistence.migrate import migrate_all

    config = settings.database_config

    def progress(db: str, shard: str, message: str) -> None:
        out.progress.step(f"{db:>9} {shard:<10} {message}")

    try:
        results = await migrate_all(config, progress=progress)
    except Exception as exc:  # noqa: BLE001 - an operator command reports and exits
        out.error(f"migration failed: {exc}")
        return 1
    # Shards added at runtime (bucket moves, failovers) are migrated too.
    effective = await _effective_config(settings)
    if effective is not config:
        try:
            results += await migrate_all(effective, progress=progress)
        except Exception as exc:  # noqa: BLE001 - an operator command reports and exits
            out.error(f"migration of the runtime shard map failed: {exc}")
            return 1
    out.progress.stop()
    out.say(f"migrated {len(results)} database(s)", "green")
    out.result(databases=[{"db": r.db, "shard": r.shard or None, "database": r.database, "before": r.before,
                           "after": r.after, "changed": r.changed} for r in results])
    return 0


async def _failover(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from wework.persistence.database import Database
    from wework.persistence.failover import failover
    from wework.persistence.redis.client import create_redis
    from wework.persistence.shardmap import ShardMapStore, wait_for_acks

    if args.directory:
        return await _failover_directory(settings, args, out)
    db = Database(settings.database_config, databases=())
    redis = None if settings.redis.url.startswith("memory://") else create_redis(settings.redis)
    prefix = settings.redis.key_prefix

    async def promote():
        result = await failover(ShardMapStore(db, redis=redis, key_prefix=prefix), args.shard, args.replica,
                                force=args.force, apply_timeout=args.apply_timeout,
                                progress=out.progress.step)
        behind: Any = None
        if redis is not None:
            behind = await wait_for_acks(redis, prefix, result.version, timeout=args.ack_timeout)
            if behind:
                out.warn(f"not yet on version {result.version}: {behind}")
        return result, behind

    try:
        done = await _reported_failover(out, promote())
    finally:
        await db.dispose()
        if redis is not None:
            await redis.aclose()
    if done is None:
        return 1
    result, behind = done
    out.say(f"shard {result.shard}: {result.new_primary} is the primary (was {result.old_primary}); "
            f"shard map version {result.version}", "green")
    out.line(f"version={result.version} primary={result.new_primary} position={result.applied_position}")
    _failover_result(out, result, not_acknowledged=behind or [])
    return 0


async def _failover_directory(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from wework.persistence.failover import failover_directory

    result = await _reported_failover(out, failover_directory(
        settings.database_config, args.replica, force=args.force, apply_timeout=args.apply_timeout,
        progress=out.progress.step))
    if result is None:
        return 1
    out.say(f"directory: {result.new_primary} is the primary (was {result.old_primary}); running "
            "processes reconnect to it. At the next deploy set database.directory_dsn to it and list "
            "the rebuilt old primary under directory_replicas.", "green")
    out.line(f"epoch={result.version} primary={result.new_primary} position={result.applied_position}")
    # The shard failover's keys: `shard` is "directory", `version` the new epoch, nothing to acknowledge.
    _failover_result(out, result, not_acknowledged=[])
    return 0


async def _reported_failover(out: Output, attempt: Awaitable[_Outcome]) -> _Outcome | None:
    """What a (shard or directory) failover gave, or None once its refusal or failure is
    reported: the operator reads why, the command exits 1."""
    from wework.persistence.failover import FailoverError

    try:
        return await attempt
    except FailoverError as exc:
        out.error(f"failover refused: {exc}")
    except Exception as exc:  # noqa: BLE001 - an operator command reports and exits
        out.error(f"failover failed: {type(exc).__name__}: {exc}")
    return None


def _failover_result(out: Output, result: FailoverResult, *, not_acknowledged: list) -> None:
    """The --json result of both failovers (docs/operations-admin-cli.md: the same keys)."""
    out.result(shard=result.shard, version=result.version, new_primary=result.new_primary,
               old_primary=result.old_primary, position=result.applied_position,
               remaining_replicas=result.remaining_replicas, repointed=result.repointed,
               not_acknowledged=not_acknowledged)


async def _effective_config(settings: Settings):
    """The shard map in force: the published runtime version if any, else the settings' map."""
    from sqlalchemy.engine import make_url
    from wework.persistence.database import Database
    from wework.persistence.shardmap import ShardMapStore

    url = make_url(settings.database_config.directory_dsn)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return settings.database_config  # nothing migrated yet; do not create the file
    db = Database(settings.database_config, databases=())
    try:
        current = await ShardMapStore(db).current()
    except Exception:  # noqa: BLE001 - directory not migrated yet: the settings rule
        current = None
    finally:
        await db.dispose()
    return current[1] if current is not None else settings.database_config


async def _shard_map(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from wework.persistence.database import Database
    from wework.persistence.shardmap import ShardMapStore

    db = Database(settings.database_config, databases=())
    try:
        store = ShardMapStore(db)
        version, config = await store.effective()
        history = await store.history()
    finally:
        await db.dispose()
    table = Table(title=f"shard map version {version} ({'runtime' if version else 'settings'}, "
                        f"{config.bucket_count} buckets)")
    for col in ("shard", "buckets", "dsn template", "replicas"):
        table.add_column(col)
    for shard in config.shards:
        table.add_row(shard.name, shard.buckets, _redact(shard.dsn), str(len(shard.replicas)))
    out.table(table)
    if config.frozen_buckets:
        out.line(f"frozen buckets: {config.frozen_buckets}")
    for v, reason, at in history:
        out.line(f"  v{v} {at:%Y-%m-%d %H:%M:%S} {reason}")
    out.result(version=version, source="runtime" if version else "settings", **_shard_map_json(config),
               frozen_buckets=config.frozen_buckets or None,
               history=[{"version": v, "reason": reason, "at": at} for v, reason, at in history])
    return 0


def _shard_map_json(config: Any) -> dict[str, Any]:
    return {"bucket_count": config.bucket_count,
            "shards": [{"name": s.name, "buckets": s.buckets, "dsn": _redact(s.dsn),
                        "replicas": [_redact(r) for r in s.replicas]} for s in config.shards]}


async def _move_buckets(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from wework.persistence.bucket_move import BucketMover, MoveAlreadyRunning, MoveError, MoveOptions
    from wework.persistence.redis.client import MEMORY_URL, create_redis

    if not (args.resume or args.abort) and not (args.buckets and args.to_dsn):
        out.error("move-buckets: --buckets and --to-dsn are needed (or --resume / --abort)")
        return 2
    if settings.redis.url.startswith(MEMORY_URL):
        out.error("move-buckets needs the servers' Redis (redis.url): it waits there for every "
                  "server to apply the freeze")
        return 2
    redis = create_redis(settings.redis)
    options = MoveOptions(ack_timeout_seconds=args.ack_timeout, max_freeze_seconds=args.max_freeze,
                          lease_seconds=args.lease_seconds, batch_size=args.batch_size)
    mover = BucketMover(settings.database_config, redis, settings.redis.key_prefix, options=options,
                        progress=out.progress.step)
    try:
        if args.abort:
            move_id = await mover.abort()
            out.warn(f"move {move_id} aborted; the range stays where it was")
            out.result(move_id=move_id, aborted=True)
            return 0
        if args.resume:
            result = await mover.resume()
        else:
            result = await mover.move(args.buckets, args.to_dsn, args.shard_name)
    except MoveAlreadyRunning as exc:
        out.error(str(exc))
        return 4
    except MoveError as exc:
        out.error(f"move-buckets: {exc}")
        return 1
    finally:
        await mover.close()
        await redis.aclose()
    bad = [c for c in result.checks if not c.ok]
    out.progress.stop()
    out.say(f"moved buckets {result.buckets} to {result.target_shard}: shard map version "
            f"{result.version}, {len(result.checks)} tables verified, {result.rows_deleted} source rows "
            "deleted", "green" if not bad else "red")
    out.line(f"write freeze: {result.freeze_seconds:.3f} s")
    out.result(move_id=result.move_id, aborted=False, resumed=result.resumed, buckets=result.buckets,
               target_shard=result.target_shard, version=result.version,
               freeze_seconds=round(result.freeze_seconds, 3), rows_deleted=result.rows_deleted,
               tables_verified=len(result.checks),
               mismatched_tables=[f"{c.db}.{c.table}" for c in bad])
    return 1 if bad else 0


def _quickstart(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    """Creates a tenant, an API key and a user through the running server's API (so every rule of
    the API applies), logs the user in, and prints the shell exports on stdout."""
    import secrets

    import grpc
    from wework.v1 import tenant_pb2 as pb
    from wework.v1 import tenant_pb2_grpc as pb_grpc

    target = args.target or f"127.0.0.1:{settings.server.port}"
    admin_key = settings.security.admin_api_key
    if admin_key is None:  # pragma: no cover - load_settings fills or refuses it
        out.error("wework-admin: security.admin_api_key (env WEWORK_SECURITY__ADMIN_API_KEY) is not set")
        return 2
    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials()) if args.tls \
        else grpc.insecure_channel(target)
    password = secrets.token_urlsafe(18)
    try:
        with channel:
            stub = pb_grpc.TenantServiceStub(channel)
            admin = [("x-api-key", admin_key.get_secret_value())]
            tenant = stub.CreateTenant(pb.CreateTenantRequest(
                tenant=pb.Tenant(tenant_code=args.tenant_code, tenant_name=args.tenant_code)), metadata=admin, timeout=30)
            in_tenant = [*admin, ("x-wework-tenant", tenant.id)]
            roles = {r.role_code: r.id for r in stub.ListRoles(pb.ListRolesRequest(page_size=100),
                                                                 metadata=in_tenant, timeout=30).roles}
            key = stub.CreateApiKey(pb.CreateApiKeyRequest(api_key=pb.ApiKey(
                display_name="quickstart", role_id=roles[args.key_role])), metadata=in_tenant, timeout=30)
            stub.CreateUser(pb.CreateUserRequest(user=pb.User(
                username=args.username, email=f"{args.username}@{args.tenant_code.replace('_', '-')}.example",
                password=password,
                role_ids=[roles[args.user_role]])), metadata=in_tenant, timeout=30)
            login = stub.Login(pb.LoginRequest(tenant_code=args.tenant_code, username=args.username,
                                               password=password), timeout=30)
    except grpc.RpcError as exc:
        out.error(f"wework-admin: {target}: {exc.code().name}: {exc.details()}")
        if exc.code() is grpc.StatusCode.ALREADY_EXISTS:
            out.warn("choose another --tenant-code")
        return 1
    exports = {
        "WEWORK_TARGET": target, "WEWORK_TENANT_ID": tenant.id, "WEWORK_TENANT_CODE": args.tenant_code,
        "WEWORK_API_KEY": key.secret, "WEWORK_USERNAME": args.username, "WEWORK_PASSWORD": password,
        "WEWORK_ACCESS_TOKEN": login.access_token,
    }
    out.say(f"tenant {args.tenant_code} ({tenant.id}), API key with role {args.key_role}, user "
            f"{args.username} with role {args.user_role}; the access token expires "
            f"{login.expire_time.ToDatetime():%H:%M} UTC. Paste these exports, or run: "
            f"eval \"$(wework-admin quickstart ...)\"", "green")
    for name, value in exports.items():
        out.line(f"export {name}={shlex.quote(value)}")
    # The secrets are the point of this command: it prints them for the operator who asked.
    out.result(tenant_id=tenant.id, tenant_code=args.tenant_code, username=args.username,
               access_token_expires_at=login.expire_time.ToDatetime(tzinfo=UTC), exports=exports)
    return 0


async def _shard_of(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from wework.persistence.sharding import ShardRouter, bucket_of

    config = await _effective_config(settings)
    shard = ShardRouter(config).shard_for(args.tenant_id)
    bucket = bucket_of(args.tenant_id, config.bucket_count)
    out.line(f"tenant {args.tenant_id}: bucket {bucket} -> shard {shard.name}")
    out.result(tenant_id=args.tenant_id, bucket=bucket, shard=shard.name)
    return 0


def _check_config(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    config = settings.database_config
    table = Table(title=f"shard map ({config.bucket_count} buckets)")
    for col in ("shard", "buckets", "dsn template", "replicas"):
        table.add_column(col)
    for shard in config.shards:
        table.add_row(shard.name, shard.buckets, _redact(shard.dsn), str(len(shard.replicas)))
    out.table(table)
    out.line(f"directory: {_redact(config.directory_dsn)}")
    out.line(f"services: {', '.join(settings.server.services)}; embedded: {settings.embedded}")
    out.result(**_shard_map_json(config), directory=_redact(config.directory_dsn),
               services=list(settings.server.services), embedded=settings.embedded)
    return 0


async def _maintain(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from dataclasses import asdict

    from wework.persistence.maintenance import maintain_all

    if settings.embedded:
        out.warn("SQLite (embedded mode): no partitions; expired rows are deleted only")
    reports = await maintain_all(settings.database_config, settings.maintenance.policy(),
                                 progress=lambda r: out.progress.step(f"{r.label:<16} {r.status}"))
    out.progress.stop()
    table = Table(title="maintenance")
    for col in ("database", "status", "table", "partitions created", "partitions dropped", "rows deleted",
                "note"):
        table.add_column(col)
    color = {"done": "green", "skipped": "yellow", "failed": "red"}
    for r in reports:
        status = f"[{color[r.status]}]{r.status}[/{color[r.status]}]"
        if not r.tables:
            table.add_row(f"{r.label} ({r.database})", status, "", "", "", "", r.message)
        for i, t in enumerate(r.tables):
            dropped = ", ".join(t.dropped) + (f" (~{t.dropped_rows_estimate} rows)" if t.dropped else "")
            table.add_row(f"{r.label} ({r.database})" if i == 0 else "", status if i == 0 else "", t.table,
                          _names(t.created), dropped, str(t.deleted_rows), r.message if i == 0 else "")
    if not out.as_json:  # the table is a report for humans: on stderr, beside the progress
        terminal_console(sys.stderr, width=max(console.width, 160)).print(table)
    failed = [r for r in reports if r.status == "failed"]
    skipped = [r for r in reports if r.status == "skipped"]
    out.say(f"{len(reports) - len(failed) - len(skipped)} done, {len(skipped)} skipped "
            f"(another run holds them), {len(failed)} failed")
    media = await _sweep_media(settings, out)
    out.result(done=len(reports) - len(failed) - len(skipped), skipped=len(skipped), failed=len(failed),
               databases=[{**asdict(r), "label": r.label} for r in reports], media=media)
    return 1 if failed or media is None else 0


async def _sweep_media(settings: Settings, out: Output) -> dict[str, int] | None:
    """Media unused past media.retention_days, media of deleted tenants, abandoned and incomplete
    uploads (docs/media.md), in batches of media.sweep_batch_size. None when the sweep failed."""
    from wework.persistence.database import Database
    from wework.persistence.repositories.media import deleted_tenant_ids
    from wework.server.application.media import MediaUseCases, media_policy
    from wework.server.media.store import build_store

    db = Database(settings.database_config, databases=("user", "message"))
    store = None
    try:
        await db.start()
        store = await build_store(settings.media, settings.data_dir,
                                  settings.security.token_secret.get_secret_value().encode(), None)
        deleted = [t for shard in await db.for_each_shard("user", lambda uow: deleted_tenant_ids(uow.session)) for t in shard]
        removed = await MediaUseCases(db, store, media_policy(settings.media)).sweep(deleted)
    except Exception as exc:  # noqa: BLE001 - an operator command reports and exits
        out.error(f"media sweep failed: {type(exc).__name__}: {exc}")
        return None
    finally:
        if store is not None:
            await store.close()
        await db.dispose()
    out.say(f"media: {removed['expired']} unused past {settings.media.retention_days} days removed, "
            f"{removed['deleted_tenants']} of deleted tenants removed, "
            f"{removed['abandoned_uploads']} abandoned uploads removed, "
            f"{removed['incomplete_uploads']} incomplete uploads aborted")
    return dict(removed)


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 4 else f"{names[0]} .. {names[-1]} ({len(names)})"


def _backup(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from wework.persistence.backup import BackupError, backup_all

    try:
        result = backup_all(settings.database_config, args.output, parallel=args.parallel,
                            lock_timeout=args.lock_timeout, progress=out.progress)
    except (BackupError, OSError) as exc:
        out.error(f"backup failed: {exc}")
        return 1
    except Exception as exc:  # noqa: BLE001 - an operator command reports and exits
        out.error(f"backup failed: {type(exc).__name__}: {exc}")
        return 1
    out.progress.stop()
    m = result.manifest
    no_binlog = [e.label for e in m.databases if e.engine == "mysql" and not e.binlog.enabled]
    out.say(f"backed up {len(m.databases)} database(s), {m.total_rows} rows in {result.seconds:.1f} s", "green")
    if no_binlog:
        out.warn(f"binary logging is off for {len(no_binlog)} database(s): no point-in-time "
                 "recovery past this backup")
    out.line(str(result.path))  # stdout: for scripts
    out.result(path=str(result.path), databases=len(m.databases), rows=m.total_rows,
               seconds=round(result.seconds, 3), started_at=m.started_at, finished_at=m.finished_at,
               binlog_off=no_binlog)
    return 0


def _restore(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from wework.persistence.backup import BackupError, RestoreError, VerificationError, restore_all

    started = datetime.now(UTC)
    try:
        result = restore_all(settings.database_config, args.input, force=args.force, parallel=args.parallel,
                             progress=out.progress, dry_run=args.dry_run, until=args.until,
                             binlog_dir=args.binlog_dir)
    except VerificationError as exc:
        out.error(f"VERIFICATION FAILED: {exc}")
        return 3
    except (BackupError, RestoreError, OSError) as exc:
        out.error(f"restore failed: {exc}")
        return 1
    except Exception as exc:  # noqa: BLE001 - an operator command reports and exits
        out.error(f"restore failed: {type(exc).__name__}: {exc}")
        return 1
    out.progress.stop()
    m = result.manifest
    data_as_of = result.until or min(e.snapshot_at for e in m.databases)
    out.result(dry_run=result.dry_run, backup_started_at=m.started_at, databases=len(m.databases),
               rows=m.total_rows, seconds=round(result.seconds, 3), until=result.until,
               data_as_of=None if result.dry_run else data_as_of,
               restored=[{"label": d.label, "database": d.database, "rows": d.rows, "seconds": round(d.seconds, 3),
                          "replayed_bytes": d.replayed_bytes} for d in result.databases])
    if result.dry_run:
        out.say(f"dry run: the backup of {m.started_at:%Y-%m-%d %H:%M:%S} UTC is intact and "
                f"its {len(m.databases)} target database(s) can be restored", "green")
        return 0
    out.say(f"restored and verified {len(result.databases)} database(s), {m.total_rows} rows "
            f"(row counts and checksums match the manifest) in {result.seconds:.1f} s", "green")
    if result.until is not None:
        out.say(f"[green]replayed the binlogs of {len(result.databases)} database(s) up to "
                f"{result.until:%Y-%m-%d %H:%M:%S} UTC[/green] (point-in-time recovery)")
    else:
        out.say(f"data as of {min(e.snapshot_at for e in m.databases):%Y-%m-%d %H:%M:%S} UTC (backup "
                f"taken {m.started_at:%Y-%m-%d %H:%M:%S}); restore started {started:%H:%M:%S}")
    return 0


def _add_verify_parser(sub: Any) -> None:
    verify = sub.add_parser("verify", help="checksum replicas against their primary, or a bucket move's source "
                                           "against its target (docs/operations-verify.md)")
    verify.add_argument("--shard", action="append", default=[], help="only this shard (repeatable)")
    verify.add_argument("--table", action="append", default=[], help="only this table, TABLE or DB.TABLE (repeatable)")
    verify.add_argument("--buckets", help="compare a bucket range between --source-dsn and --target-dsn")
    verify.add_argument("--source-dsn", help="DSN template (with {db}) of the range's source (default: the shard "
                                             "of the range in the map in force)")
    verify.add_argument("--target-dsn", help="DSN template (with {db}) of the range's target")
    verify.add_argument("--move", action="store_true",
                        help="compare source and target of the unfinished bucket move (its range and target)")
    verify.add_argument("--chunk-size", type=int, default=1000, help="rows per checksum statement (default 1000)")
    verify.add_argument("--sleep", type=float, default=0.0, help="seconds to pause after each chunk (default 0)")
    verify.add_argument("--replica-wait", type=float, default=60.0,
                        help="seconds a replica may take to reach the primary's position (default 60)")
    verify.add_argument("--resume", action="store_true", help="continue the interrupted run where it stopped")
    verify.add_argument("--checksum-db", default="wework_verify",
                        help="database on each primary holding checksums and progress (default wework_verify)")
    _add_job_metrics_arguments(verify)


def _add_job_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-file", help="write the figures for node_exporter's textfile collector (*.prom)")
    parser.add_argument("--pushgateway", help="push the figures to this Prometheus Pushgateway (host:port or URL)")


async def _verify(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    """Exit 0: everything equal; 1: differences (named on stdout); 3: a comparison could not be made."""
    import json
    import time

    from wework.persistence.verify import ReplicaVerifier, VerifyError, VerifyOptions
    from wework.server.observability import metrics

    if args.chunk_size < 1:
        out.error("verify: --chunk-size must be at least 1")
        return 2
    options = VerifyOptions(chunk_size=args.chunk_size, sleep_seconds=args.sleep,
                            replica_wait_seconds=args.replica_wait, resume=args.resume,
                            checksum_db=args.checksum_db, tables=frozenset(args.table))
    config = await _effective_config(settings)
    kind = "move" if (args.buckets or args.move) else "replica"
    try:
        if kind == "move":
            verifier = await _move_verifier(settings, config, args, options, out)
            if verifier is None:
                return 2
        else:
            verifier = ReplicaVerifier(config, options, progress=out.progress.step, shards=args.shard)
        report = await verifier.run()
    except VerifyError as exc:
        out.error(f"verify: {exc}")
        return 3
    except Exception as exc:  # noqa: BLE001 - an operator command reports and exits
        out.error(f"verify failed: {type(exc).__name__}: {exc}")
        return 3
    out.progress.stop()
    for t in report.tables:
        metrics.VERIFY_CHUNKS.labels(t.kind, t.shard, t.target).inc(t.chunks)
        metrics.VERIFY_ROWS.labels(t.kind, t.shard, t.target).inc(t.rows)
        metrics.VERIFY_DIFFERING_CHUNKS.labels(t.kind, t.shard, t.target, t.db, t.table).set(t.differing_chunks)
        metrics.VERIFY_DIFFERING_ROWS.labels(t.kind, t.shard, t.target, t.db, t.table).set(t.differing_rows)
    metrics.VERIFY_ERRORS.labels(kind).set(len(report.errors))
    metrics.VERIFY_DURATION.labels(kind).set(report.seconds)
    metrics.VERIFY_LAST_RUN.labels(kind).set(time.time())
    if args.metrics_file or args.pushgateway:
        metrics.export_job_metrics(f"wework-verify-{kind}", textfile=args.metrics_file, pushgateway=args.pushgateway)
    out.result(kind=kind, **report.to_json())
    for d in report.differences:
        for r in d.rows:
            out.line(f"DIFF {d.kind} shard={d.shard} target={d.target} table={d.db}.{d.table} chunk={d.chunk} "
                     f"range=({d.lower}, {d.upper}] row={json.dumps(r.key, default=str)} {r.problem}")
        if not d.rows:
            out.line(f"DIFF {d.kind} shard={d.shard} target={d.target} table={d.db}.{d.table} chunk={d.chunk} "
                     f"range=({d.lower}, {d.upper}] rows {d.source_rows}/{d.target_rows} (changed since)")
    for e in report.errors:
        out.line(f"ERROR {e}")
    chunks = sum(t.chunks for t in report.tables)
    out.say(f"{len(report.tables)} table comparison(s), {chunks} chunk(s), "
            f"{len(report.differences)} differing chunk(s), {len(report.errors)} error(s) in "
            f"{report.seconds:.1f} s", "green" if report.ok else "red")
    return 3 if report.errors else (1 if report.differences else 0)


async def _move_verifier(settings: Settings, config: Any, args: argparse.Namespace, options: Any,
                         out: Output) -> Any:
    """The MoveVerifier of --buckets/--source-dsn/--target-dsn, or of the unfinished move (--move)."""
    from wework.persistence.bucket_move import bucket_set
    from wework.persistence.sharding import ShardRouter
    from wework.persistence.verify import MoveVerifier

    buckets, source, target, target_name = args.buckets, args.source_dsn, args.target_dsn, "target"
    if args.move:
        import sqlalchemy as sa
        from wework.persistence.database import Database
        from wework.persistence.models.directory import BucketMove

        db = Database(settings.database_config, databases=())
        try:
            async with db.directory_session(read_only=True) as s:
                row = (await s.execute(sa.select(BucketMove).where(BucketMove.phase.in_(
                    ("copy", "catchup", "frozen"))).order_by(BucketMove.created_at.desc()))).scalars().first()
        finally:
            await db.dispose()
        if row is None:
            out.error("verify --move: no unfinished bucket move before its delete phase")
            return None
        buckets, target, target_name = row.buckets, row.target_dsn, row.target_shard
    if not (buckets and target):
        out.error("verify: --buckets needs --target-dsn (or use --move)")
        return None
    try:
        moving = bucket_set(buckets)
    except ValueError as exc:
        out.error(f"verify: --buckets {buckets!r}: {exc}")
        return None
    if source is None:
        shards = {ShardRouter(config).shard_for_bucket(b).name: ShardRouter(config).shard_for_bucket(b)
                  for b in moving}
        if len(shards) != 1:
            out.error(f"verify: the range spans shards {sorted(shards)}; give --source-dsn or one "
                      "shard's range at a time")
            return None
        (source_name, spec), = shards.items()
        source = spec.dsn
    else:
        source_name = "source"
    return MoveVerifier(config, buckets, source, target, source_name=source_name, target_name=target_name,
                        options=options, progress=out.progress.step)


def _add_db_report_parser(sub: Any) -> None:
    report = sub.add_parser("db-report", help="top statements by total time with their plans, and unused indexes "
                                              "(docs/operations-db-report.md)")
    report.add_argument("--top", type=int, default=10, help="statements per server (default 10)")
    report.add_argument("--no-plans", action="store_true", help="do not EXPLAIN the top statements")
    report.add_argument("--enable-statistics", action="store_true",
                        help="SET GLOBAL userstat, slow log into its table, log_queries_not_using_indexes first")
    report.add_argument("--long-query-time", type=float,
                        help="with --enable-statistics: SET GLOBAL long_query_time (seconds; 0 logs everything)")
    _add_job_metrics_arguments(report)


async def _db_report(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    """One report per MariaDB server holding the shard map's primaries (and the directory)."""
    from sqlalchemy.engine import make_url
    from wework.persistence.config import SERVICE_DATABASES
    from wework.persistence.database import create_engine_for
    from wework.persistence.dbreport import enable_statistics, server_report
    from wework.server.observability import metrics

    config = await _effective_config(settings)
    by_server: dict[str, list[str]] = {}  # host:port -> a DSN there, then its schemas
    dsns: dict[str, str] = {}
    for dsn in [config.directory_dsn, *(s.dsn_for(db) for s in config.shards for db in SERVICE_DATABASES)]:
        url = make_url(dsn)
        if url.get_backend_name() != "mysql":
            out.error("db-report reads MariaDB's statistics; the embedded mode (SQLite) has none")
            return 2
        server = f"{url.host}:{url.port or 3306}"
        dsns.setdefault(server, dsn)
        by_server.setdefault(server, []).append(url.database or "")
    reports = []
    for server, schemas in by_server.items():
        engine = create_engine_for(dsns[server], config, pooled=False)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                if args.enable_statistics:
                    changed = await enable_statistics(conn, args.long_query_time)
                    out.progress.step(f"{server}: {', '.join(changed) or 'statistics already on'}")
                out.progress.step(f"{server}: reading the statistics of {len(schemas)} database(s)")
                reports.append(await server_report(conn, server, schemas, top=args.top, with_plans=not args.no_plans))
        except Exception as exc:  # noqa: BLE001 - an operator command reports and exits
            out.error(f"db-report: {server}: {type(exc).__name__}: {exc}")
            return 1
        finally:
            await engine.dispose()
    out.progress.stop()
    for r in reports:
        for source in (r.statement_source, r.index_source):
            if source:
                metrics.DB_REPORT_SOURCE.labels(r.server, source).set(1)
        for s in r.statements:
            metrics.DB_REPORT_STATEMENT_SECONDS.labels(r.server, s.digest).set(s.total_seconds)
            metrics.DB_REPORT_STATEMENT_CALLS.labels(r.server, s.digest).set(s.calls)
            metrics.DB_REPORT_FULL_SCANS.labels(r.server, s.digest).set(int(s.full_scan))
        if r.unused_indexes is not None:
            for schema in by_server[r.server]:
                metrics.DB_REPORT_UNUSED_INDEXES.labels(r.server, schema).set(
                    sum(1 for i in r.unused_indexes if i.schema == schema))
    if args.metrics_file or args.pushgateway:
        metrics.export_job_metrics("wework-db-report", textfile=args.metrics_file, pushgateway=args.pushgateway)
    out.result(servers=[r.to_json() for r in reports])
    if out.as_json:
        return 0
    stdout = terminal_console(sys.stdout, width=max(console.width, 160))
    for r in reports:
        table = Table(title=f"{r.server}: top statements by total time ({r.statement_source or 'no source'})")
        for col in ("digest", "db", "calls", "total s", "avg ms", "rows examined", "plan", "statement"):
            table.add_column(col)
        for s in r.statements:
            plan = "; ".join(f"{a.table}: {'FULL SCAN' if a.full_scan else a.access_type} {a.key or ''}".strip()
                             for a in s.plan or []) or (s.plan_error or "")
            table.add_row(s.digest, s.schema or "", str(s.calls), f"{s.total_seconds:.3f}",
                          f"{1000 * s.total_seconds / max(s.calls, 1):.2f}", str(s.rows_examined), plan, s.text[:120])
        stdout.print(table)
        if r.unused_indexes is None:
            stdout.print("unused indexes: no index statistics on this server")
        else:
            idx = Table(title=f"{r.server}: indexes no statement read since {r.index_since} ({r.index_source})")
            for col in ("database", "table", "index", "unique"):
                idx.add_column(col)
            for i in r.unused_indexes:
                idx.add_row(i.schema, i.table, i.index, "yes (enforces a constraint)" if i.unique else "no")
            stdout.print(idx)
        for note in r.notes:
            stdout.print(f"note: {note}")
    return 0


def _utc_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no time zone; add Z for UTC")
    return parsed.astimezone(UTC)


def _redact(dsn: str) -> str:
    """Hides the password of a DSN: operators paste this output into tickets."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(dsn.replace("{db}", "__db__")).render_as_string(hide_password=True).replace("__db__", "{db}")
    except Exception:  # noqa: BLE001 - a malformed DSN is shown as is, without its secret part
        return dsn.split("@")[-1]


# The subcommands and what runs them: (settings, parsed arguments, output) -> exit code (or a coroutine
# of it). A subcommand's options are declared once, on its parser in main(), and reach it in `args`.
COMMANDS: dict[str, Callable[[Settings, argparse.Namespace, Output], Any]] = {
    "migrate": _migrate,
    "shard-of": _shard_of,
    "check-config": _check_config,
    "maintain": _maintain,
    "backup": _backup,
    "restore": _restore,
    "shard-map": _shard_map,
    "move-buckets": _move_buckets,
    "failover": _failover,
    "verify": _verify,
    "db-report": _db_report,
    "quickstart": _quickstart,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
