"""Observability of wework-server: Prometheus metrics, OpenTelemetry traces, and the
glue that attaches them to a running application (docs/observability.md, docs/metrics.md).

    obs = Observability(settings.observability)
    obs.start(services=settings.server.services)          # tracing + the /metrics endpoint
    app = await build_application(settings, on_engine_created=obs.on_engine_created)
    obs.attach(app)                                       # Redis spans, cache collector
    ...
    await obs.close()                                     # at shutdown: flush spans, stop /metrics

Code that counts things uses `wework.server.observability.metrics` directly.
"""

from __future__ import annotations

import asyncio
import logging
import platform
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.sdk.trace.export import SpanExporter
from wework.server.observability import collectors, metrics
from wework.server.observability.collectors import ReadinessCheck, observed_readiness
from wework.server.observability.metrics import MetricsServer, register_collector, start_metrics_server
from wework.server.observability.tracing import (
    Tracing,
    build_version,
    configure_tracing,
    instrument_engine,
    instrument_redis,
)
from wework.server.settings import ObservabilityConfig

logger = logging.getLogger(__name__)

__all__ = ["Observability", "metrics", "observed_readiness", "register_collector"]


class Observability:
    """Tracing and metrics of one server process.

    `exporters` (tests) receive every span; `install_global=False` (tests running several
    servers in one process) leaves OpenTelemetry's process-wide provider alone.
    """

    def __init__(self, config: ObservabilityConfig | None = None, *,
                 exporters: Sequence[SpanExporter] = (), install_global: bool = True) -> None:
        self.config = config or ObservabilityConfig()
        self._exporters = tuple(exporters)
        self._install_global = install_global
        self.tracing: Tracing | None = None
        self.metrics_server: MetricsServer | None = None
        self._undo: list[Callable[[], None]] = []
        self._closed = False

    @property
    def metrics_port(self) -> int | None:
        """The bound /metrics port, None when not serving."""
        return self.metrics_server.port if self.metrics_server else None

    def start(self, services: Iterable[str] = ()) -> None:
        cfg = self.config
        self.tracing = configure_tracing(cfg.service_name, cfg.trace_sample_ratio, cfg.otlp_endpoint,
                                         exporters=self._exporters, install_global=self._install_global)
        metrics.BUILD_INFO.info({"version": build_version(), "python": platform.python_version(),
                                 "services": ",".join(services)})
        if cfg.otlp_endpoint:
            logger.info("exporting traces", extra={"otlp_endpoint": _without_userinfo(cfg.otlp_endpoint),
                                                   "trace_sample_ratio": cfg.trace_sample_ratio})
        if not cfg.metrics_enabled:
            return
        try:
            self.metrics_server = start_metrics_server(cfg.metrics_host, cfg.metrics_port)
        except OSError as exc:
            # Metrics are not worth refusing traffic for: serve, and say loudly why the
            # scrape target will be down.
            logger.error("cannot serve metrics on %s:%s: %s (set observability.metrics_port, "
                         "env WEWORK_OBSERVABILITY__METRICS_PORT)", cfg.metrics_host, cfg.metrics_port, exc)
            return
        logger.info("metrics endpoint listening", extra={
            "address": f"{cfg.metrics_host}:{self.metrics_server.port}", "metrics_port": self.metrics_server.port})

    # ---- hooks into the application --------------------------------------------------------

    def on_engine_created(self, engine: Any, db: str, shard: str | None) -> None:
        """Database(on_engine_created=...): pool metrics always, SQL spans when exported."""
        self._undo.append(collectors.DB_POOLS.add(engine, db, shard))
        if self.tracing is not None and self.tracing.exporting:
            instrument_engine(engine, self.tracing)

    def attach(self, app: Any) -> None:
        """Redis spans (when exported) and the cache collector for a built Application."""
        if self.tracing is not None and self.tracing.exporting:
            instrument_redis(app.redis, self.tracing)
        prefix = app.settings.redis.key_prefix
        for cache in app.caches:
            name = cache.namespace.removeprefix(prefix)
            self._undo.append(collectors.CACHES.add(name, cache))

    def readiness(self, checks: Iterable[ReadinessCheck]) -> list[ReadinessCheck]:
        """The checks, reporting wework_readiness{check} as they run."""
        return observed_readiness(checks)

    async def close(self) -> None:
        """Stops /metrics, drops this process's collector sources, flushes pending spans."""
        if self._closed:
            return
        self._closed = True
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        server, self.metrics_server = self.metrics_server, None
        if server is not None:
            await asyncio.to_thread(server.close)
        tracing, self.tracing = self.tracing, None
        if tracing is not None:
            # Blocks for the export of what is still queued (bounded by the exporter's timeout).
            await asyncio.to_thread(tracing.shutdown)


def _without_userinfo(url: str) -> str:
    """The URL without user:password@, should someone put collector credentials there."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
