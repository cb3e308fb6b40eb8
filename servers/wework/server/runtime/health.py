"""grpc.health.v1 with one status per served service plus "" (the whole server),
driven by readiness checks (database ping, Redis ping, ...) run in the background."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthServicer(health_pb2_grpc.HealthServicer):
    """grpc.health.v1.Health for grpc.aio.

    Unlike grpc_health's aio servicer, Watch streams end (after sending NOT_SERVING)
    once shutdown begins: an open Watch would otherwise hold server.stop() for the
    whole grace period.
    """

    def __init__(self) -> None:
        self._statuses: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._final = False

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def get(self, service: str) -> int | None:
        return self._statuses.get(service)

    def set(self, service: str, status: int) -> None:
        if self._final:  # after shutdown began, nothing turns SERVING again
            return
        if self._statuses.get(service) != status:
            self._statuses[service] = status
            self._notify()

    def enter_graceful_shutdown(self) -> None:
        for service in self._statuses:
            self._statuses[service] = NOT_SERVING
        self._final = True
        self._notify()

    async def Check(self, request, context):
        status = self._statuses.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request, context) -> None:
        last = None
        while True:
            changed = self._changed
            status = self._statuses.get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if self._final:
                return
            await changed.wait()


def non_critical(check: ReadinessCheck) -> ReadinessCheck:
    """Marks a check whose failure is logged and exported (wework_readiness) but leaves the
    server SERVING: for a dependency that every replica shares and that the server can work
    without (Redis), NOT_SERVING would only take every pod out of its Service at once."""
    check.critical = False  # type: ignore[attr-defined]
    return check


def _critical(check: ReadinessCheck) -> bool:
    return getattr(check, "critical", True)


def _name(check: ReadinessCheck) -> str:
    return getattr(check, "__qualname__", None) or getattr(check, "__name__", None) or repr(check)


class HealthReporter:
    """Owns the aio HealthServicer; all services share one verdict because they share
    the process's dependencies (pools), so a failing database fails them all."""

    def __init__(self, service_names: Iterable[str], readiness_checks: Iterable[ReadinessCheck] = (),
                 *, interval_seconds: float = 5.0, timeout_seconds: float | None = None) -> None:
        self.servicer = HealthServicer()
        self.service_names: list[str] = ["", *dict.fromkeys(n for n in service_names if n)]
        self._checks = list(readiness_checks)
        self._interval = interval_seconds
        # A check slower than the interval would pile up; cap it there (and at 5 s).
        self._timeout = timeout_seconds if timeout_seconds is not None else min(interval_seconds, 5.0)
        self._task: asyncio.Task[None] | None = None
        self._shutting_down = False
        self._serving: bool | None = None
        self._failing: set[str] = set()  # names of the checks failing at the last run

    def status(self, service: str = "") -> int | None:
        """Current ServingStatus of `service` (None when unknown)."""
        return self.servicer.get(service)

    def _set_all(self, status: int) -> None:
        for name in self.service_names:
            self.servicer.set(name, status)

    async def check_now(self) -> bool:
        """Runs every check once (concurrently, with the timeout) and publishes the verdict."""
        if self._shutting_down:
            return False
        async def run(check: ReadinessCheck) -> None:  # inside a coroutine so sync raises are caught too
            await asyncio.wait_for(check(), self._timeout)

        results = await asyncio.gather(*(run(check) for check in self._checks), return_exceptions=True)
        failures = [(check, r) for check, r in zip(self._checks, results) if isinstance(r, BaseException)]
        failing = {_name(check) for check, _ in failures}
        for check, error in failures:
            if _name(check) not in self._failing:  # log transitions, not every tick
                reason = "timed out" if isinstance(error, TimeoutError) else f"{type(error).__name__}: {error}"
                effect = "" if _critical(check) else " (non-critical: the server stays SERVING)"
                logger.warning("readiness check %s failed: %s%s", _name(check), reason, effect)
        for name in self._failing - failing:
            logger.info("readiness check %s passes again", name)
        self._failing = failing
        serving = not any(_critical(check) for check, _ in failures)
        if self._shutting_down:  # shutdown began while the checks ran: never flip back
            return False
        if serving and self._serving is False:
            logger.info("readiness checks pass again; SERVING")
        self._serving = serving
        self._set_all(SERVING if serving else NOT_SERVING)
        return serving

    async def start(self) -> None:
        """First verdict before returning (so the first probe is truthful), then the loop."""
        self._set_all(NOT_SERVING)
        await self.check_now()
        self._task = asyncio.create_task(self._loop(), name="wework-health-checks")

    async def _loop(self) -> None:
        while not self._shutting_down:
            await asyncio.sleep(self._interval)
            try:
                await self.check_now()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a check must not stop the loop for good
                logger.exception("health check loop failed")

    async def set_all_not_serving(self) -> None:
        """For shutdown: NOT_SERVING everywhere, permanently (the loop stops)."""
        self._shutting_down = True
        await self.stop()
        self.servicer.enter_graceful_shutdown()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
