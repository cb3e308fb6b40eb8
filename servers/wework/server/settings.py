"""Settings of wework-server and wework-admin (pydantic-settings).

Sources, highest first: environment variables (prefix WEWORK_, nested with __,
e.g. WEWORK_DATABASE__DIRECTORY_DSN), the YAML file named by WEWORK_CONFIG_FILE
(or --config), then the defaults. The defaults are the embedded mode: SQLite
files under data_dir, an in-process Redis, the simulator provider, and secrets
generated once into data_dir/secrets.json.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from wework.persistence.config import DatabaseConfig, RedisConfig, ShardSpec
from wework.server.providers.puppet_service.config import PuppetServiceConfig
from wework.server.providers.simulator import SimulatorConfig

# The services this build implements; account, message, callback and report join as they land.
ALL_SERVICES: tuple[str, ...] = ("tenant", "account", "message", "callback", "report", "media")
# Where the embedded mode binds gRPC and /metrics unless told otherwise.
EMBEDDED_HOST = "127.0.0.1"


class ServerConfig(BaseModel):
    host: str = "0.0.0.0"
    port: int = Field(default=50051, ge=0, le=65535)
    # Which services this process serves: any subset of ALL_SERVICES.
    services: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(ALL_SERVICES))
    grace_period_seconds: float = Field(default=10.0, ge=0)
    # On SIGTERM: this long NOT_SERVING while still serving, before new calls are refused, so
    # that load balancers and readiness probes move traffic away first (docs/operations-faults.md).
    drain_delay_seconds: float = Field(default=0.0, ge=0, le=300)
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    keepalive_time_seconds: int = Field(default=60, ge=1)
    keepalive_timeout_seconds: int = Field(default=20, ge=1)
    # Clients may ping no more often than this without data (grpc.http2.min_ping_interval_without_data_ms).
    min_ping_interval_seconds: int = Field(default=30, ge=1)
    max_concurrent_rpcs: int | None = Field(default=None, ge=1)
    health_check_interval_seconds: float = Field(default=5.0, gt=0)
    # Server processes sharing the port (SO_REUSEPORT); see docs/multiprocess.md.
    workers: int = Field(default=1, ge=1, le=64)
    # The event loop: uvloop (when installed) or asyncio's own; see docs/decisions/0036.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    @field_validator("services", mode="before")
    @classmethod
    def _split_services(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("services")
    @classmethod
    def _known_services(cls, value: list[str]) -> list[str]:
        if value == ["all"]:
            return list(ALL_SERVICES)
        unknown = [s for s in value if s not in ALL_SERVICES]
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; choose from {list(ALL_SERVICES)} or 'all'")
        if not value:
            raise ValueError("at least one service is needed")
        return value


class SecurityConfig(BaseModel):
    # Platform-admin credential (x-api-key). Required outside the embedded mode.
    admin_api_key: SecretStr | None = None
    # HMAC key that signs access tokens (at least 32 bytes).
    token_secret: SecretStr | None = None
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=86400)
    # AES-256-GCM keys for sensitive columns: key id -> base64 of 32 bytes. The
    # active one encrypts; all of them decrypt (rotation).
    encryption_keys: dict[str, SecretStr] = Field(default_factory=dict)
    active_encryption_key_id: str | None = None
    # HMAC key of the keyed hashes used for equality lookups of encrypted columns.
    lookup_hash_key: SecretStr | None = None
    max_failed_logins: int = Field(default=5, ge=1)
    lockout_minutes: int = Field(default=15, ge=1)
    # Login attempts per minute from one peer address, across all processes.
    login_attempts_per_source_per_minute: int = Field(default=60, ge=1)
    # Login attempts per minute for one tenant code (existing or not), across all processes.
    login_attempts_per_tenant_per_minute: int = Field(default=300, ge=1)
    # Argon2 computations at once per process (64 MiB and one core each); default: cores, at most 4.
    password_hash_concurrency: int | None = Field(default=None, ge=1, le=64)

    @model_validator(mode="after")
    def _keys_are_usable(self) -> SecurityConfig:
        for key_id, key in self.encryption_keys.items():
            try:
                raw = base64.b64decode(key.get_secret_value(), validate=True)
            except ValueError as exc:
                raise ValueError(f"encryption_keys.{key_id} is not base64") from exc
            if len(raw) != 32:
                raise ValueError(f"encryption_keys.{key_id} must be 32 bytes (AES-256), got {len(raw)}")
        if self.encryption_keys and self.active_encryption_key_id not in self.encryption_keys:
            raise ValueError("active_encryption_key_id must name one of encryption_keys")
        if self.token_secret is not None and len(self.token_secret.get_secret_value()) < 32:
            raise ValueError("token_secret must be at least 32 characters")
        # A short HMAC key makes the lookup hashes of encrypted columns guessable offline.
        if self.lookup_hash_key is not None and len(self.lookup_hash_key.get_secret_value()) < 32:
            raise ValueError("lookup_hash_key must be at least 32 characters")
        return self


class ProviderConfig(BaseModel):
    kind: Literal["simulator", "http", "puppet_service"] = "simulator"
    # kind "simulator": the in-process simulator (docs/providers.md)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    # kind "puppet_service": a Wechaty puppet-service provider (docs/puppet-service.md); the
    # token is per account (AccountService provider_token), never in the settings.
    puppet_service: PuppetServiceConfig = Field(default_factory=PuppetServiceConfig)
    # kind "http": a real provider's REST API (docs/provider-http-api.md)
    base_url: str | None = None
    api_key: SecretStr | None = None
    timeout_seconds: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    backoff_initial_seconds: float = Field(default=0.2, ge=0)
    backoff_max_seconds: float = Field(default=5.0, ge=0)
    backoff_jitter_seconds: float = Field(default=0.2, ge=0)

    @model_validator(mode="after")
    def _http_needs_base_url(self) -> ProviderConfig:
        if self.kind == "http" and not self.base_url:
            raise ValueError("provider.base_url is required when provider.kind is 'http'")
        return self


class S3Config(BaseModel):
    """An S3-compatible object store (AWS S3, MinIO, SeaweedFS, Ceph RGW...) for media."""

    # None: AWS's endpoint for the region.
    endpoint_url: str | None = None
    region: str = "us-east-1"
    bucket: str = "wework-media"
    # "path" works with every S3-compatible server; AWS also takes "virtual".
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    # None: the default credential chain (environment, instance profile, IRSA...).
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    # Passed through on every PUT: "AES256" or "aws:kms" (with sse_kms_key_id); None: the bucket's default.
    server_side_encryption: Literal["AES256", "aws:kms", "aws:kms:dsse"] | None = None
    sse_kms_key_id: str | None = None
    # Create the bucket at start when it is missing (development and tests; production buckets
    # are made by the platform team with their lifecycle and encryption policies).
    create_bucket: bool = False


class MediaConfig(BaseModel):
    """Media storage (docs/media.md): an S3-compatible store, or a local directory (embedded)."""

    backend: Literal["local", "s3"] = "local"
    # backend "local": the directory (default: data_dir/media). Links are served by the HTTP
    # listener of callback.http_port.
    local_dir: Path | None = None
    s3: S3Config = Field(default_factory=S3Config)
    # Prefix of every object key of this deployment, e.g. "prod/"; keys continue with the tenant.
    key_prefix: str = Field(default="", max_length=200, pattern=r"^([A-Za-z0-9._-]+/)*$")
    # Upload part size: bytes held in memory per upload; larger files go up as multipart uploads.
    part_size_bytes: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024, le=512 * 1024 * 1024)
    # Per-tenant storage quota in bytes (0: unlimited); uploads in progress count with their declared size.
    tenant_quota_bytes: int = Field(default=10 * 1024**3, ge=0)
    link_ttl_seconds: int = Field(default=900, ge=1)
    max_link_ttl_seconds: int = Field(default=7 * 86400, ge=1, le=7 * 86400)
    # Base URL of platform-served links (local backend), as recipients reach the HTTP listener;
    # None: http://callback.http_host:callback.http_port.
    public_base_url: str | None = None
    # wework-admin maintain: media no message used for this long is removed.
    retention_days: int = Field(default=90, ge=1)
    # Uploads started this long ago and never finished are removed by the sweep (object, reservation, multipart upload).
    incomplete_upload_hours: int = Field(default=24, ge=1)
    sweep_batch_size: int = Field(default=500, ge=1, le=10000)
    # Incoming media fetched from providers' URLs (SSRF-guarded like webhooks).
    fetch_timeout_seconds: float = Field(default=30.0, gt=0)


class MaintenanceConfig(BaseModel):
    """`wework-admin maintain`: retention and partitions kept ready (docs/maintenance.md)."""

    # Days a row is kept, by its partition column (created_at / received_time); 0 keeps it forever.
    message_retention_days: int = Field(default=1095, ge=0)
    status_history_retention_days: int = Field(default=1095, ge=0)
    callback_event_retention_days: int = Field(default=180, ge=0)
    # Partitions created ahead of the current period: years (messages, status history), months
    # (callback events). The job must run at least once within this horizon.
    partitions_ahead_years: int = Field(default=1, ge=1, le=10)
    partitions_ahead_months: int = Field(default=3, ge=1, le=36)
    # Rows per DELETE of expired rows in the partition that straddles the cutoff.
    delete_batch_size: int = Field(default=10000, ge=1, le=1_000_000)
    # How long partition DDL waits for a busy table before giving up until the next run.
    lock_wait_seconds: int = Field(default=10, ge=1, le=3600)

    def policy(self) -> Any:
        """The persistence layer's MaintenancePolicy with these values."""
        from wework.persistence.maintenance import MaintenancePolicy

        return MaintenancePolicy(**self.model_dump())


class AccountConfig(BaseModel):
    """AccountService: heartbeats, recovery, QR refreshes, WatchAccounts (docs/operations-login-recovery.md)."""

    # An ONLINE account without a heartbeat for this long goes OFFLINE and recovery starts.
    heartbeat_timeout_seconds: float = Field(default=60, gt=0)
    monitor_interval_seconds: float = Field(default=5, gt=0)
    monitor_batch_size: int = Field(default=100, ge=1, le=10000)
    # Reconnect attempts before the account goes to ERROR; the waits between them double from
    # the initial backoff up to the maximum.
    recovery_max_attempts: int = Field(default=5, ge=1)
    recovery_backoff_initial_seconds: float = Field(default=5, ge=0)
    recovery_backoff_max_seconds: float = Field(default=300, ge=0)
    # How long one monitor holds an account while it waits for the provider's reconnect.
    recovery_lease_seconds: float = Field(default=30, gt=0)
    # New QR codes fetched after an expired one, before the login ends in ERROR.
    login_max_qr_refreshes: int = Field(default=3, ge=0)
    # WatchAccounts re-reads the change log at least this often (Redis wake-ups come sooner).
    watch_poll_seconds: float = Field(default=1.0, gt=0)


class MessageConfig(BaseModel):
    """MessageService: accepting messages (docs/messages.md). Dispatch fields follow below."""

    # How far ahead scheduled_time may be.
    max_schedule_days: int = Field(default=30, ge=1, le=365)
    # Group commit of SendMessage: while the previous batch of accepted messages had company, the
    # next one waits up to this long for more sends before its transaction (0: never waits). A
    # lone send never waits. Longer: more messages per commit, less CPU per message, more latency
    # under load (docs/decisions/0042-accept-linger-and-one-process-per-core.md). The same value
    # is application.messages.LINGER_SECONDS, the default of use cases built without settings.
    accept_linger_seconds: float = Field(default=0.006, ge=0, le=0.1)
    # Redis keys of the daily quota counters live this long after their UTC day began.
    quota_key_ttl_seconds: int = Field(default=2 * 86400, ge=86400)
    # Connections that write a large batch's messages at StartBatchTask, each an XA branch of one
    # transaction (docs/batch-tasks.md). The server runs one thread per connection; 1 writes
    # every batch through Start's own connection.
    materialize_writers: int = Field(default=2, ge=1, le=16)
    # ---- dispatch (docs/pacing.md) ----
    # wework-server also runs a dispatcher when it serves "message" (wework-worker dispatch is
    # the dedicated process; any number of either may run).
    run_dispatcher_in_server: bool = True
    # Provider attempts of one message before a transient error fails it.
    max_attempts: int = Field(default=5, ge=1, le=100)
    # Retry backoff: initial * 2^(n-1), capped, +- jitter fraction.
    backoff_initial_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=300.0, ge=0)
    backoff_jitter: float = Field(default=0.2, ge=0, le=1)
    # A message whose account is not online waits (hold_reason visible) and is re-checked this
    # often; it fails with ACCOUNT_NOT_ONLINE after hold_timeout_seconds.
    hold_recheck_seconds: float = Field(default=5.0, gt=0)
    hold_timeout_seconds: float = Field(default=3600.0, gt=0)
    # Messages claimed per shard transaction, and sends in flight per worker process.
    claim_batch_size: int = Field(default=1000, ge=1, le=5000)
    max_in_flight: int = Field(default=256, ge=1, le=10000)
    # A claimed message not finished within the lease goes back to the queue (crashed worker).
    claim_lease_seconds: float = Field(default=60.0, gt=0)
    # Idle poll when no Redis wake-up arrives.
    idle_poll_seconds: float = Field(default=1.0, gt=0)
    # Per-account pacing: at least this many seconds between two sends, plus 0..jitter.
    account_min_interval_seconds: float = Field(default=1.0, ge=0)
    account_jitter_seconds: float = Field(default=0.5, ge=0)
    # Per-account ceilings over sliding windows, shared by every dispatcher (unset: off, the
    # interval alone bounds the account; WeCom publishes no per-account figure, docs/pacing.md).
    account_per_minute: int | None = Field(default=None, ge=1)
    account_per_hour: int | None = Field(default=None, ge=1)
    # Per-recipient limits (WeCom: 30 a minute, 1000 an hour per member).
    recipient_per_minute: int = Field(default=30, ge=1)
    recipient_per_hour: int = Field(default=1000, ge=1)
    # While Redis cannot decide pacing, sends are held (never sent unpaced) and asked again after this.
    pacing_hold_seconds: float = Field(default=1.0, gt=0)


class CallbackConfig(BaseModel):
    """Provider callbacks (docs/callbacks.md): the HTTP endpoint POST /provider/callbacks on
    http_host:http_port (off while http_port is unset) and IngestCallback store them durably
    (callback_events) before answering; processors work them off afterwards."""

    http_host: str = "127.0.0.1"
    http_port: int | None = Field(default=None, ge=0, le=65535)
    # Verify X-Provider-Signature (HMAC-SHA256) with this secret. Unset accepts unsigned posts,
    # which is only allowed on loopback (a simulator on the same machine); IngestCallback then
    # refuses every call.
    secret: SecretStr | None = None
    # Timestamp tolerance of a signature; a (timestamp, signature) pair is accepted once.
    max_skew_seconds: int = Field(default=300, ge=1)
    # wework-server also runs a callback processor (wework-worker callbacks is the dedicated
    # process; any number of either may run).
    run_processor_in_server: bool = True
    # Callbacks claimed per shard transaction, and processed concurrently per process.
    batch_size: int = Field(default=200, ge=1, le=5000)
    max_in_flight: int = Field(default=64, ge=1, le=1000)
    # A claimed callback not finished within the lease goes back to the queue (crashed processor).
    lease_seconds: float = Field(default=60.0, gt=0)
    idle_poll_seconds: float = Field(default=1.0, gt=0)
    # Attempts before a callback whose processing keeps failing is left `failed`; the waits
    # between them double from backoff_initial_seconds up to backoff_max_seconds.
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_initial_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=300.0, ge=0)
    # Heartbeat callbacks processed later than this are ignored (they say nothing about now).
    stale_heartbeat_seconds: float = Field(default=60.0, gt=0)
    # A redelivery of a callback within this many days is recognised as a duplicate.
    dedupe_retention_days: int = Field(default=7, ge=1)
    # Effect-ledger rows are kept this long; ReplayCallbacks refuses callbacks older than this
    # (a replay past it could apply a second effect).
    replay_window_days: int = Field(default=30, ge=1)
    # Benchmarks only: also serve POST /provider/noop (the no-op baseline of bench_callback_ingest).
    bench_routes: bool = False

    @model_validator(mode="after")
    def _signed_beyond_loopback(self) -> CallbackConfig:
        if self.http_port is not None and self.secret is None \
                and self.http_host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("callback.secret is required when the callback endpoint listens beyond loopback")
        return self


class ReportConfig(BaseModel):
    """ReportService (docs/reports.md): range limits, caching, export chunks."""

    # Longest [start_time, end_time) of GetMessageStats, GetAccountHealth and GetTemplateUsage.
    max_range_days: int = Field(default=93, ge=1, le=3660)
    # Longest range of ExportMessageStats (a year and a leap day by default).
    max_export_range_days: int = Field(default=367, ge=1, le=3660)
    # Answers are cached in Redis (and in process) this long: the staleness bound. 0 turns it off.
    cache_ttl_seconds: float = Field(default=30.0, ge=0, le=3600)
    # Buckets per ExportMessageStats response (the most a caller may ask for).
    export_chunk_rows: int = Field(default=500, ge=1, le=10000)


class WebhookConfig(BaseModel):
    """Tenant webhooks (docs/webhooks.md): delivery worker, retries, SSRF rules."""

    # wework-server also runs a delivery worker (wework-worker webhooks is the dedicated process;
    # any number of either may run).
    run_worker_in_server: bool = True
    # Only a 2xx answer within this many seconds counts as delivered.
    timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    # Delay before each attempt: the first after the event, each later one after the previous
    # failure (Svix's: now, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); then the delivery fails.
    retry_schedule_seconds: list[float] = Field(
        default_factory=lambda: [0, 5, 300, 1800, 7200, 18000, 36000, 36000], min_length=1, max_length=50)
    # An endpoint whose deliveries have all failed for this long is disabled (DISABLED_FAILING).
    disable_after_seconds: float = Field(default=5 * 86400, gt=0)
    # SSRF guard: private, loopback, link-local, multicast and reserved targets are refused
    # unless allowed here (all of them, or the listed networks, e.g. ["127.0.0.0/8"]).
    allow_private_targets: bool = False
    allowed_target_cidrs: list[str] = Field(default_factory=list)
    # How long the old secret keeps signing after RotateWebhookSecret when the call names no TTL.
    previous_secret_ttl_seconds: int = Field(default=86400, ge=0, le=7 * 86400)
    max_endpoints_per_tenant: int = Field(default=20, ge=1, le=1000)
    # Finished deliveries (and their attempts) are deleted this long after they were queued.
    delivery_retention_days: float = Field(default=30, gt=0)
    # Deliveries claimed per shard transaction, posts in flight per worker, and the claim lease
    # (longer than timeout_seconds: a claim not finished by then is retried by another worker).
    claim_batch_size: int = Field(default=100, ge=1, le=1000)
    max_in_flight: int = Field(default=64, ge=1, le=1000)
    claim_lease_seconds: float = Field(default=60.0, gt=0)
    idle_poll_seconds: float = Field(default=1.0, gt=0)

    @field_validator("retry_schedule_seconds")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value):
            raise ValueError("retry delays must not be negative")
        return value

    @field_validator("allowed_target_cidrs")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for v in value:
            try:
                ipaddress.ip_network(v, strict=False)
            except ValueError as exc:
                raise ValueError(f"{v!r} is not an IP network (CIDR)") from exc
        return value

    @model_validator(mode="after")
    def _lease_covers_timeout(self) -> WebhookConfig:
        if self.claim_lease_seconds <= self.timeout_seconds:
            raise ValueError("claim_lease_seconds must be longer than timeout_seconds")
        return self


class LoggingConfig(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = True


class ObservabilityConfig(BaseModel):
    # Prometheus text format on http://<metrics_host>:<metrics_port>/metrics, served by the process.
    metrics_enabled: bool = True
    metrics_host: str = "0.0.0.0"
    # 0 picks a free port (tests); the bound port is logged ("metrics endpoint listening").
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    # OTLP/HTTP (protobuf) collector, e.g. http://otel-collector:4318 (/v1/traces is appended).
    # Unset: spans are still made (trace ids reach the logs) but not exported.
    otlp_endpoint: str | None = None
    service_name: str = Field(default="wework", min_length=1)
    # Share of new traces sampled; a caller's sampled/unsampled decision (traceparent) is kept.
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # WEWORK_OBSERVABILITY__OTLP_ENDPOINT="" turns export off
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError("otlp_endpoint must be an http:// or https:// URL (OTLP/HTTP, port 4318)")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WEWORK_",
        env_nested_delimiter="__",
        extra="forbid",
        yaml_file=None,
    )

    data_dir: Path = Path("var")
    # Set by `--port` / WEWORK_PORT; kept at top level because the chart and operators rely on it.
    port: int | None = Field(default=None, ge=0, le=65535)
    server: ServerConfig = Field(default_factory=ServerConfig)
    database: DatabaseConfig | None = None
    redis: RedisConfig = Field(default_factory=RedisConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    provider: ProviderConfig = Field(default_factory=ProviderConfig)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    account: AccountConfig = Field(default_factory=AccountConfig)
    message: MessageConfig = Field(default_factory=MessageConfig)
    callback: CallbackConfig = Field(default_factory=lambda: CallbackConfig())
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    webhooks: WebhookConfig = Field(default_factory=WebhookConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("WEWORK_CONFIG_FILE")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _apply_port(self) -> Settings:
        if self.port is not None:
            self.server.port = self.port
        return self

    @model_validator(mode="after")
    def _embedded_binds_loopback(self) -> Settings:
        # The embedded mode runs on a generated admin key for development: it listens on this
        # machine only unless an address is set explicitly (--host, WEWORK_SERVER__HOST, ...).
        if self.embedded:
            if "host" not in self.server.model_fields_set:
                self.server.host = EMBEDDED_HOST
            if "metrics_host" not in self.observability.model_fields_set:
                self.observability.metrics_host = EMBEDDED_HOST
        return self

    # ---- derived -----------------------------------------------------------------

    @property
    def embedded(self) -> bool:
        """True when running on the embedded default (SQLite + in-process Redis)."""
        return self.database_config.directory_dsn.startswith("sqlite")

    @property
    def database_config(self) -> DatabaseConfig:
        if self.database is not None:
            return self.database
        data = self.data_dir.resolve() / "data"
        return DatabaseConfig(
            directory_dsn=f"sqlite+aiosqlite:///{data}/directory.db",
            shards=[ShardSpec(name="s0", buckets="0-1023", dsn=f"sqlite+aiosqlite:///{data}/{{db}}_s0.db")],
        )


class SettingsError(Exception):
    """A setting is missing or wrong; the message names it."""


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Loads settings, names the bad setting on error, and fills embedded-mode secrets."""
    if config_file:
        os.environ["WEWORK_CONFIG_FILE"] = config_file
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "(settings)"
            env = "WEWORK_" + "__".join(str(p) for p in err["loc"]).upper()
            problems.append(f"  {name} (env {env}): {err['msg']}")
        raise SettingsError("invalid settings:\n" + "\n".join(problems)) from None
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read settings: {exc}") from None
    _fill_secrets(settings)
    return settings


def _fill_secrets(settings: Settings) -> None:
    """Embedded mode: generate missing secrets once into data_dir/secrets.json (mode 0600).

    Outside the embedded mode a missing secret is an error that names the setting:
    a production deployment must never run on a key it did not choose.
    """
    sec = settings.security
    missing = [
        name
        for name, value in (
            ("security.admin_api_key", sec.admin_api_key),
            ("security.token_secret", sec.token_secret),
            ("security.lookup_hash_key", sec.lookup_hash_key),
            ("security.encryption_keys", sec.encryption_keys or None),
        )
        if value is None
    ]
    if not missing:
        return
    if not settings.embedded:
        envs = ", ".join("WEWORK_" + m.replace(".", "__").upper() for m in missing)
        raise SettingsError(f"missing secret setting(s) {', '.join(missing)} (env {envs})")
    path = settings.data_dir / "secrets.json"
    if path.exists():
        stored = json.loads(path.read_text())
    else:
        stored = {
            "admin_api_key": "wwadmin_" + secrets.token_urlsafe(24),
            "token_secret": secrets.token_urlsafe(48),
            "lookup_hash_key": secrets.token_urlsafe(48),
            "encryption_key_id": "k1",
            "encryption_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(stored, fh, indent=2)
    if sec.admin_api_key is None:
        sec.admin_api_key = SecretStr(stored["admin_api_key"])
    if sec.token_secret is None:
        sec.token_secret = SecretStr(stored["token_secret"])
    if sec.lookup_hash_key is None:
        sec.lookup_hash_key = SecretStr(stored["lookup_hash_key"])
    if not sec.encryption_keys:
        sec.encryption_keys = {stored["encryption_key_id"]: SecretStr(stored["encryption_key"])}
        sec.active_encryption_key_id = stored["encryption_key_id"]
