"""The grpc.aio server of wework-server: interceptors, health, reflection, shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2_grpc  # health: SERVICE_NAME only
from grpc_reflection.v1alpha import reflection
from wework.server.runtime.drain import Drain
from wework.server.runtime.health import HealthReporter, ReadinessCheck
from wework.server.runtime.interceptors import Authenticator, ShutdownSignal, build_interceptors
from wework.server.runtime.registry import ServiceRegistration, ServiceRegistry, check_permission_tables
from wework.server.settings import ServerConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")

ShutdownHook = Callable[[], Awaitable[None]]

# Between the last admitted call's answer and grpc's stop: its caller's next call arrives in this
# time and is held as a refusal, instead of arriving as grpc stops (which drops it: CANCELLED).
SETTLE_SECONDS = 0.1


def loop_factory(event_loop: str = "uvloop") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's new_event_loop for `event_loop="uvloop"` when uvloop is installed, else None
    (asyncio's default loop). For asyncio.Runner: the event-loop policy API is deprecated."""
    if event_loop != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_on_loop(main: Coroutine[Any, Any, T], event_loop: str = "uvloop") -> T:
    """asyncio.run(main) on the chosen event loop (server.event_loop)."""
    with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
        return runner.run(main)


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", config.keepalive_time_seconds * 1000),
        ("grpc.keepalive_timeout_ms", config.keepalive_timeout_seconds * 1000),
        ("grpc.http2.min_ping_interval_without_data_ms", config.min_ping_interval_seconds * 1000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Two servers on one port would split traffic silently; fail to bind instead. Only the
        # worker processes of one `--workers N` parent share the port on purpose.
        ("grpc.so_reuseport", 1 if config.workers > 1 else 0),
    ]


def _address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    return f"{host}:{port}"


def check_can_listen(config: ServerConfig) -> None:
    """Raises CannotListen unless the gRPC address can be bound now, with the socket options grpc
    uses. Called before anything starts: a server that fails to bind after its background
    workers are up can hang on their shutdown instead of exiting."""
    if not config.port:
        return  # a free port is picked at bind time
    host = config.host.strip("[]")
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if config.workers > 1:  # the workers share the port (grpc.so_reuseport)
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind(address)
    except OSError as exc:
        raise CannotListen(_address(config.host, config.port)) from exc


class _GenericHandlersOnly:
    """The server as the generated `add_*Servicer_to_server` functions see it: their generic
    handler is added, their registered-method handlers are not.

    For registered methods grpc.aio keeps one call request pending per method and, for every
    call, awaits the first of them (`asyncio.wait` over all ~80 of the platform's methods): about
    25 us of the event loop's CPU per RPC, 15% of a no-op call (docs/decisions/0021). With
    generic handlers only, it waits on the few that health and reflection register, and the
    method is found by a dict lookup in the service's generic handler.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict) -> None:
        """Left out on purpose: the generic handler added beside it serves the same methods."""


class CannotListen(RuntimeError):
    """The gRPC address could not be bound: the port is taken, or the host is not this machine's."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.address = address


class GrpcServer:
    def __init__(
        self,
        config: ServerConfig,
        registrations: Sequence[ServiceRegistration],
        authenticator: Authenticator,
        readiness_checks: Iterable[ReadinessCheck] = (),
        on_shutdown: Iterable[ShutdownHook] = (),
    ) -> None:
        self.config = config
        self.registry = ServiceRegistry(registrations)
        self._authenticator = authenticator
        self._on_shutdown = list(on_shutdown)
        self.health = HealthReporter(
            [r.service_full_name for r in self.registry.registrations],
            readiness_checks,
            interval_seconds=config.health_check_interval_seconds,
        )
        self._server: grpc.aio.Server | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._shutdown_signal = ShutdownSignal()
        self._drain = Drain([health.SERVICE_NAME, reflection.SERVICE_NAME])
        self.port: int | None = None

    @property
    def started(self) -> bool:
        return self._server is not None

    async def start(self) -> int:
        """Binds, starts serving and returns the bound port (config.port 0 picks a free one)."""
        if self._server is not None:
            raise RuntimeError("server already started")
        check_permission_tables(self.registry.registrations)
        server = grpc.aio.server(
            # The drain innermost: its refusals are mapped, logged and counted like any error.
            interceptors=[*build_interceptors(self.registry, self._authenticator, self._shutdown_signal),
                          self._drain],
            options=server_options(self.config),
            maximum_concurrent_rpcs=self.config.max_concurrent_rpcs,
        )
        generic_only = _GenericHandlersOnly(server)
        for reg in self.registry.registrations:
            reg.add_to_server(reg.servicer, generic_only)
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, server)
        reflection.enable_server_reflection(
            [*(r.service_full_name for r in self.registry.registrations), health.SERVICE_NAME,
             reflection.SERVICE_NAME],
            server,
        )
        address = _address(self.config.host, self.config.port)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc's "Failed to bind": taken, or not an address of this host
            raise CannotListen(address) from exc
        if not port:
            raise CannotListen(address)
        # Health before traffic: the first probe answer reflects the first readiness check.
        await self.health.start()
        await server.start()
        self._server, self.port = server, port
        logger.info("gRPC server listening", extra={
            "address": _address(self.config.host, port),
            "services": [r.service_full_name for r in self.registry.registrations],
        })
        return port

    async def wait_for_termination(self) -> None:
        if self._server is None:
            raise RuntimeError("server not started")
        # Shielded: cancelling grpc's own waiter would also cancel its shutdown future,
        # and a later stop() would then fail with CancelledError.
        await asyncio.shield(self._server.wait_for_termination())

    async def stop(self, grace: float | None = None, drain_delay: float | None = None) -> None:
        """Drains, then stops: NOT_SERVING everywhere; `drain_delay` s more of serving while
        load balancers notice; then new calls are refused (UNAVAILABLE / SHUTTING_DOWN) and
        streams end the same way, while the calls received finish within `grace` s; then grpc
        stops and the shutdown hooks run. Defaults: the config's drain_delay_seconds and
        grace_period_seconds.

        Idempotent: concurrent or repeated calls wait for the first one.
        """
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(
                self.config.grace_period_seconds if grace is None else grace,
                self.config.drain_delay_seconds if drain_delay is None else drain_delay))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float, drain_delay: float) -> None:
        logger.info("shutting down", extra={"grace_period_seconds": grace, "drain_delay_seconds": drain_delay})
        await self.health.set_all_not_serving()
        if drain_delay > 0 and self._server is not None:
            # Readiness probes and health-checking balancers read NOT_SERVING while calls still
            # succeed here: traffic moves away before anything is refused.
            await asyncio.sleep(drain_delay)
        self._drain.refuse_new_calls()
        self._shutdown_signal.set()  # watch streams end now
        if self._server is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            if await self._drain.wait_for_calls(grace):
                await asyncio.sleep(max(0.0, min(SETTLE_SECONDS, deadline - loop.time())))
            else:
                logger.warning("calls still running at the end of the grace period are cancelled",
                               extra={"calls": self._drain.in_progress})
            # grpc's stop turns new streams away at once (GOAWAY; callers see UNAVAILABLE) and
            # gives what is left the rest of the grace. The held refusals are answered only once
            # it has begun: their callers' retries then find the connection closing.
            # At least a moment even when the calls used up the grace: the refusals it answers.
            rest = max(deadline - loop.time(), min(grace, SETTLE_SECONDS))
            stopping = asyncio.ensure_future(self._server.stop(rest))
            await asyncio.sleep(0)
            self._drain.release_refused()
            await stopping
        for hook in self._on_shutdown:
            try:
                await hook()
            except Exception:  # one failing hook must not keep the others' pools open
                logger.exception("shutdown hook %s failed", getattr(hook, "__qualname__", hook))
        logger.info("shutdown complete")


class StopSignals:
    """SIGTERM/SIGINT caught on the running loop from the moment this is made: make it before
    start-up. Without handlers a signal that arrives while the process starts (pools, the
    dispatcher already sending, binding the port, the start-up garbage collection after "gRPC
    server listening") takes the default action: the process dies at once (exit -15), nothing
    drained, claims left to their lease, and a `--workers` parent counts that worker as failed.
    With them, the start-up completes and the process then stops as it would once running (a
    start-up is not cut in the middle: what it started is closed in order).

    `remove()` puts the default action back (a second Ctrl-C then kills at once)."""

    def __init__(self, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self._loop, self._signals = asyncio.get_running_loop(), tuple(signals)
        self.requested = asyncio.Event()
        for sig in self._signals:
            self._loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.info("received %s", sig.name)
        self.requested.set()

    def remove(self) -> None:
        """Idempotent."""
        signals, self._signals = self._signals, ()
        for sig in signals:
            self._loop.remove_signal_handler(sig)


async def run_until_signal(
    server: GrpcServer, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT), *,
    stop: StopSignals | None = None,
) -> None:
    """Serves until SIGTERM/SIGINT (or the server terminates), then stops it gracefully.

    `stop`: the handlers made before start-up (a signal already received stops at once);
    without it they are installed here. They are removed before the shutdown, so a second
    Ctrl-C kills the process at once instead of waiting out the grace period.
    """
    stop = stop or StopSignals(signals)
    try:
        if not server.started:
            await server.start()
        signalled = asyncio.ensure_future(stop.requested.wait())
        terminated = asyncio.ensure_future(server.wait_for_termination())
        try:
            await asyncio.wait([signalled, terminated], return_when=asyncio.FIRST_COMPLETED)
        finally:
            signalled.cancel()
            terminated.cancel()
    finally:
        stop.remove()
    await server.stop()
