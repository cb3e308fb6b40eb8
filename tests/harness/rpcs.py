"""Every RPC the server serves, found by reflection over the proto descriptors, and a way to
call any of them with raw bytes (so a new RPC is covered by the tests that walk them)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def methods_of(service_names: Iterable[str]) -> list[MethodDescriptor]:
    pool = descriptor_pool.Default()
    return [m for name in service_names for m in pool.FindServiceByName(name).methods]


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def request_class(method: MethodDescriptor) -> type[Message]:
    return GetMessageClass(method.input_type)


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    violations: list[str]  # BadRequest field paths

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details} {self.violations}"


def _violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    if status is None:
        return []
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


async def call_raw(channel: grpc.aio.Channel, method: MethodDescriptor, bodies: Sequence[bytes],
                   metadata: Sequence[tuple[str, str]], timeout: float = 2.0) -> Outcome:
    """Sends `bodies` (one for a unary request, each as a message of a client stream) as they
    are; returns the status (OK after the first response of a server stream)."""
    path = path_of(method)
    try:
        if method.client_streaming:
            async def requests():
                for body in bodies:
                    yield body

            if method.server_streaming:
                call = channel.stream_stream(path)(requests(), metadata=metadata, timeout=timeout)
                await call.read()
                call.cancel()
            else:
                await channel.stream_unary(path)(requests(), metadata=metadata, timeout=timeout)
        elif method.server_streaming:
            call = channel.unary_stream(path)(bodies[0], metadata=metadata, timeout=timeout)
            await call.read()
            call.cancel()
        else:
            await channel.unary_unary(path)(bodies[0], metadata=metadata, timeout=timeout)
    except grpc.aio.AioRpcError as error:
        return Outcome(error.code(), error.details() or "", _violations(error))
    except asyncio.CancelledError:
        return Outcome(grpc.StatusCode.CANCELLED, "", [])
    return Outcome(grpc.StatusCode.OK, "", [])


def enum_paths(descriptor: Descriptor, prefix: str = "", seen: frozenset[str] = frozenset()
               ) -> list[tuple[str, list[FieldDescriptor]]]:
    """(field path, chain of fields from the request down) of every enum field under `descriptor`;
    recursive messages are entered once."""
    out: list[tuple[str, list[FieldDescriptor]]] = []
    for field in descriptor.fields:
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.type == FieldDescriptor.TYPE_ENUM:
            out.append((path, [field]))
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name not in seen \
                and not field.message_type.GetOptions().map_entry:
            for sub_path, chain in enum_paths(field.message_type, path, seen | {descriptor.full_name}):
                out.append((sub_path, [field, *chain]))
    return out


def undefined_number(field: FieldDescriptor) -> int:
    number = 99
    while number in field.enum_type.values_by_number:
        number += 1
    return number


def with_undefined_enum(message_class: type[Message], chain: list[FieldDescriptor]) -> tuple[Message, str]:
    """A request whose enum at the end of `chain` holds an undefined number, and the path the
    server must name (repeated fields get one element: `[0]`)."""
    request = message_class()
    node, parts = request, []
    for field in chain[:-1]:
        if field.is_repeated:
            node = getattr(node, field.name).add()
            parts.append(f"{field.name}[0]")
        else:
            node = getattr(node, field.name)
            parts.append(field.name)
    last = chain[-1]
    number = undefined_number(last)
    if last.is_repeated:
        getattr(node, last.name).append(number)
        parts.append(f"{last.name}[0]")
    else:
        setattr(node, last.name, number)
        parts.append(last.name)
    return request, ".".join(parts)
