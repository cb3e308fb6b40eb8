"""Fuzzing every RPC of every service (issue 17): generated malformed and boundary requests,
sent over a real port with the platform admin's key acting in a tenant (so every handler is
reached), must never answer INTERNAL or UNKNOWN nor name the server's internals, and the
server must be healthy afterwards.

The RPCs are found by reflection over the served services' descriptors and the requests are
generated from the request messages' descriptors, so a new RPC or field is fuzzed without a
change here. Hypothesis runs derandomized (the same examples on every run; no example
database), in a thread with a blocking channel while the server runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import Callable

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness.embedded import embedded_stack, mariadb_stack
from harness.rpcs import methods_of, path_of, request_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wework.v1 import tenant_pb2, tenant_pb2_grpc

# ~80 RPCs on two backends: 100 examples each (200 per RPC) keep the whole test near two
# minutes on the CI's 2 cores. A longer local hunt:
#   WEWORK_FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/integration/test_fuzz_rpcs.py
EXAMPLES_PER_RPC = int(os.environ.get("WEWORK_FUZZ_EXAMPLES", "100"))
CALL_TIMEOUT = 5.0
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
# What must never reach a caller: tracebacks, Python exception names, module paths.
INTERNAL_NAMES = re.compile(
    r"Traceback|\b[A-Z]\w*(Error|Exception)\b|\bwework\.(server|persistence|domain)\b|\w\.py\b"
    r"|google\.protobuf\.|sqlalchemy|aiosqlite|pymysql|redis\.exceptions")

BOUNDARY_STRINGS = ["", " ", "x", "0", "-1", "a" * 65, "a" * 5000, "../../etc/passwd", "' OR 1=1 --",
                    "%s%n", "\u0000", "名字", "😀", "*", "tenants/x", "2026-13-45T99:99:99Z", "{}", "null"]
INT32 = [0, 1, -1, 2**31 - 1, -(2**31)]
UINT32 = [0, 1, 2**32 - 1]
INT64 = [0, 1, -1, 2**63 - 1, -(2**63)]
UINT64 = [0, 1, 2**64 - 1]
DOUBLES = [0.0, -1.0, 1e308, -1e308, math.nan, math.inf, -math.inf]
TIMESTAMP_SECONDS = [0, -1, 1, 253_402_300_799, 253_402_300_800, -62_135_596_800, -62_135_596_801,
                     2**40, -(2**40), 2**63 - 1]
NANOS = [0, 1, 999_999_999, 1_000_000_000, -1]


def _text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(BOUNDARY_STRINGS),
                     st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))


def _json_values(wellformed: bool) -> st.SearchStrategy:
    numbers = st.sampled_from([d for d in DOUBLES if math.isfinite(d)] if wellformed else DOUBLES)
    scalars = st.one_of(st.none(), st.booleans(), numbers, st.integers(-10, 10), _text(), _text())
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_text(), inner, max_size=3)), max_leaves=8)


class Requests:
    """Hypothesis strategies for the request messages, built from their descriptors.

    `wellformed` requests hold only defined enum numbers, plausible Timestamps and finite
    numbers, so that they pass the shared validator and reach the handlers' own checks with
    boundary strings and integers; the others are malformed anywhere.
    """

    def __init__(self, wellformed: bool) -> None:
        self._wellformed = wellformed
        self._cache: dict[tuple[str, int], st.SearchStrategy[Message]] = {}

    def message(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        key = (descriptor.full_name, depth)
        if key not in self._cache:
            self._cache[key] = self._build(descriptor, depth)
        return self._cache[key]

    def _build(self, descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        cls = _message_class(descriptor)
        name = descriptor.full_name
        if name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
            plausible = st.builds(lambda s, n: cls(seconds=s, nanos=n),
                                  st.integers(0, 4_000_000_000), st.integers(0, 999_999_999))
            boundary = st.builds(lambda s, n: cls(seconds=s, nanos=n),
                                 st.sampled_from(TIMESTAMP_SECONDS), st.sampled_from(NANOS))
            return plausible if self._wellformed else st.one_of(plausible, boundary)
        if name == "google.protobuf.Struct":
            def struct(d: dict) -> Message:
                m = cls()
                m.update(d)
                return m
            return st.dictionaries(_text(), _json_values(self._wellformed), max_size=3).map(struct)
        if name == "google.protobuf.FieldMask":
            return st.lists(_text(), max_size=3).map(lambda paths: cls(paths=paths))
        fields: dict[str, st.SearchStrategy] = {}
        for field in descriptor.fields:
            value = self._value(field, depth)
            if value is None:
                continue
            if field.is_repeated and not _is_map(field):
                value = st.lists(value, max_size=3)
            fields[field.name] = st.one_of(st.none(), value)
        return st.fixed_dictionaries(fields).map(lambda values: _fill(cls(), values))

    def _value(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy | None:
        t = field.type
        if _is_map(field):
            entry = field.message_type
            key = self._value(entry.fields_by_name["key"], depth)
            value = self._value(entry.fields_by_name["value"], depth)
            return None if key is None or value is None else st.dictionaries(key, value, max_size=2)
        if t == FieldDescriptor.TYPE_ENUM:
            defined = st.sampled_from([v.number for v in field.enum_type.values])
            return defined if self._wellformed else st.one_of(defined, st.sampled_from([99, -1, 2**31 - 1]))
        if t == FieldDescriptor.TYPE_STRING:
            return _text()
        if t == FieldDescriptor.TYPE_BYTES:
            return st.binary(max_size=32)
        if t == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
            return st.one_of(st.sampled_from(INT32), st.integers(-(2**31), 2**31 - 1))
        if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
            return st.sampled_from(UINT32)
        if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
            return st.one_of(st.sampled_from(INT64), st.integers(-1000, 10**6))
        if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
            return st.sampled_from(UINT64)
        if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return st.sampled_from(DOUBLES)
        if t == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                return None
            return st.deferred(lambda: self.message(field.message_type, depth + 1))
        return None


def _message_class(descriptor: Descriptor) -> type[Message]:
    from google.protobuf.message_factory import GetMessageClass
    return GetMessageClass(descriptor)


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _fill(message: Message, values: dict) -> Message:
    for field in message.DESCRIPTOR.fields:
        value = values.get(field.name)
        if value is None:
            continue
        target = getattr(message, field.name)
        if _is_map(field):
            for k, v in value.items():
                if isinstance(v, Message):
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif field.is_repeated:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for v in value:
                    target.add().CopyFrom(v)
            else:
                target.extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(message, field.name, value)
    return message


def _send(channel: grpc.Channel, method: MethodDescriptor, bodies: list[bytes],
          metadata: tuple[tuple[str, str], ...]) -> tuple[grpc.StatusCode, str]:
    path = path_of(method)
    try:
        if method.client_streaming and method.server_streaming:
            call = channel.stream_stream(path)(iter(bodies), metadata=metadata, timeout=CALL_TIMEOUT)
            next(call, None)
            call.cancel()
        elif method.client_streaming:
            channel.stream_unary(path)(iter(bodies), metadata=metadata, timeout=CALL_TIMEOUT)
        elif method.server_streaming:
            call = channel.unary_stream(path)(bodies[0], metadata=metadata, timeout=CALL_TIMEOUT)
            next(call, None)
            call.cancel()
        else:
            channel.unary_unary(path)(bodies[0], metadata=metadata, timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.CANCELLED:  # our own cancel after the first response
            return grpc.StatusCode.OK, ""
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def _fuzz_one(channel: grpc.Channel, method: MethodDescriptor, requests: tuple[Requests, Requests],
              metadata: tuple[tuple[str, str], ...], answers: dict[str, int]) -> None:
    wellformed, malformed = (r.message(method.input_type).map(lambda m: m.SerializeToString()) for r in requests)
    body = st.one_of(wellformed, wellformed, malformed, st.binary(max_size=48))
    bodies = st.lists(body, min_size=1, max_size=3) if method.client_streaming else body.map(lambda b: [b])

    @settings(max_examples=EXAMPLES_PER_RPC, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(bodies)
    def check(sent: list[bytes]) -> None:
        code, details = _send(channel, method, sent, metadata)
        answers[code.name] = answers.get(code.name, 0) + 1
        assert code not in NEVER, f"{path_of(method)} answered {code.name}: {details!r} to {sent!r}"
        assert not INTERNAL_NAMES.search(details), f"{path_of(method)} leaked {details!r} to {sent!r}"

    check()


def fuzz_all(target: str, methods: list[MethodDescriptor], metadata: tuple[tuple[str, str], ...],
             progress: Callable[[str], None]) -> dict[str, int]:
    requests = (Requests(wellformed=True), Requests(wellformed=False))
    answers: dict[str, int] = {}
    with grpc.insecure_channel(target) as channel:
        for method in methods:
            progress(path_of(method))
            _fuzz_one(channel, method, requests, metadata, answers)
    return answers


@pytest.fixture(scope="module", params=[
    "embedded",  # SQLite files and the in-process Redis
    pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.redis]),  # what production runs on
])
async def stack(request, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    if request.param == "embedded":
        async with embedded_stack(data_dir) as stack:
            yield stack
    else:
        mariadb, redis_server = request.getfixturevalue("mariadb_server"), request.getfixturevalue("redis_server")
        async with mariadb_stack(data_dir, mariadb, redis_server) as stack:
            yield stack


async def test_no_rpc_answers_internal_or_leaks_internal_names(stack):
    services = [r.service_full_name for r in stack.app.registrations]
    methods = methods_of(services)
    assert len(methods) >= 70 and all(request_class(m) for m in methods)
    metadata = (*stack.admin_metadata(), ("x-wework-tenant", stack.tenant_id))
    seen: list[str] = []
    answers = await asyncio.to_thread(fuzz_all, stack.target, methods, metadata, seen.append)
    assert len(seen) == len(methods)
    # The generated requests reached the handlers, not only the decoder: valid answers too.
    assert answers.get("OK", 0) > 50 and answers.get("INVALID_ARGUMENT", 0) > 100, answers

    # Healthy afterwards: serving, answering, and a tenant's own key still works.
    async with grpc.aio.insecure_channel(stack.target) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        tenant = await tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(
            tenant_pb2.GetTenantRequest(id=stack.tenant_id), metadata=stack.tenant_metadata(), timeout=5)
        assert tenant.id == stack.tenant_id
