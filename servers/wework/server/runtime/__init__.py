"""gRPC server runtime: interceptors, error mapping, health, reflection, JSON logs, shutdown."""

from wework.server.runtime.context import current_principal, current_request, current_trace_id
from wework.server.runtime.errors import status_from_exception, to_grpc_status
from wework.server.runtime.health import HealthReporter, ReadinessCheck
from wework.server.runtime.interceptors import Authenticator, build_interceptors
from wework.server.runtime.logging import configure_logging
from wework.server.runtime.registry import ServiceRegistration, ServiceRegistry
from wework.server.runtime.server import GrpcServer, StopSignals, loop_factory, run_on_loop, run_until_signal

__all__ = [
    "Authenticator",
    "GrpcServer",
    "HealthReporter",
    "ReadinessCheck",
    "ServiceRegistration",
    "ServiceRegistry",
    "StopSignals",
    "build_interceptors",
    "configure_logging",
    "current_principal",
    "current_request",
    "current_trace_id",
    "loop_factory",
    "run_on_loop",
    "run_until_signal",
    "status_from_exception",
    "to_grpc_status",
]
