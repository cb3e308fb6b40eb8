"""Request decoding and the checks every request passes, driven by the proto descriptors.

The runtime gives each method a deserializer that never raises (grpc.aio would answer an
exception there with UNKNOWN and the exception's class name) and, before the handler runs,
checks what the wire format cannot: enum numbers the enum does not define (proto3 keeps them),
Timestamps and Durations outside their documented ranges, NaN or Infinity in a Struct (JSON
has no such numbers) and nesting deeper than MAX_DEPTH. Handlers can then convert without
guarding each field. Docs: docs/decisions/0024-request-validation.md.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from wework.domain.errors import FieldViolation, InvalidArgument

# Levels of message nesting below the request (a Struct inside a Struct counts one level per
# Struct, Value and ListValue). Deep enough for any real template variables; recursion in the
# handlers (json_format, the domain's renderers) stays far from Python's limit.
MAX_DEPTH = 32
# Violations reported per request: enough to fix a request, bounded for a hostile one.
MAX_VIOLATIONS = 20

# google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
# google.protobuf.Duration: about +-10,000 years.
MAX_DURATION_SECONDS = 315_576_000_000
MAX_NANOS = 999_999_999

_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
_STRUCT = "google.protobuf.Struct"
_VALUE = "google.protobuf.Value"
_LIST_VALUE = "google.protobuf.ListValue"
_WELL_KNOWN = frozenset({_TIMESTAMP, _DURATION, _STRUCT, _VALUE, _LIST_VALUE})

UNDECODABLE_DESCRIPTION = "the request body cannot be decoded as this method's request message"


class Undecodable:
    """What the deserializer hands on for bytes that are not the method's request message."""

    __slots__ = ()


UNDECODABLE = Undecodable()


def request_class(method_path: str) -> type[Message] | None:
    """The request message class of "/package.Service/Method" from the default descriptor pool."""
    service, _, method = method_path.lstrip("/").partition("/")
    try:
        descriptor = descriptor_pool.Default().FindServiceByName(service).methods_by_name[method].input_type
    except KeyError:
        return None
    return GetMessageClass(descriptor)


def safe_deserializer(message_class: type[Message]) -> Callable[[bytes], Any]:
    parse = message_class.FromString

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:  # noqa: BLE001 - DecodeError, or whatever else a malformed body raises
            return UNDECODABLE

    return deserialize


class RequestValidator:
    """Checks decoded requests; raises InvalidArgument with one BadRequest violation per problem."""

    def __init__(self) -> None:
        # Message descriptor -> its fields that can hold something to check. Messages with none
        # (most requests) cost one dict lookup.
        self._plans: dict[Descriptor, tuple[FieldDescriptor, ...]] = {}

    def check(self, request: Any, where: str = "") -> None:
        """`where` prefixes the descriptions (e.g. "message 3 of the stream: ")."""
        if isinstance(request, Undecodable):
            raise InvalidArgument(FieldViolation("request", where + UNDECODABLE_DESCRIPTION),
                                  where + UNDECODABLE_DESCRIPTION)
        if not self._has_problem(request, 0):
            return
        violations: list[FieldViolation] = []
        for path, problem in self._problems(request, "", 0):
            violations.append(FieldViolation(path, where + problem))
            if len(violations) >= MAX_VIOLATIONS:
                break
        if violations:
            raise InvalidArgument(violations)

    async def checked_stream(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """The requests of a client stream, each checked as it arrives."""
        index = 0
        async for request in requests:
            self.check(request, f"message {index} of the stream: ")
            index += 1
            yield request

    # -- the walk --------------------------------------------------------------------------------

    def _plan(self, descriptor: Descriptor) -> tuple[FieldDescriptor, ...]:
        plan = self._plans.get(descriptor)
        if plan is None:
            plan = self._plans[descriptor] = _plan_of(descriptor, set())
        return plan

    def _has_problem(self, message: Message, depth: int) -> bool:
        """Whether _problems would find anything: the same walk without paths or generators,
        about a third of its cost on a valid request (every request, and every item of a
        1,000-item BatchSendMessages). _problems then names what it found."""
        descriptor = getattr(message, "DESCRIPTOR", None)
        if descriptor is None:
            return False
        name = descriptor.full_name
        if name == _TIMESTAMP:
            return not _timestamp_ok(message)
        if name in _WELL_KNOWN:
            return any(True for _ in self._well_known(message, name, "", depth))
        plan = self._plan(descriptor)
        if not plan:
            return False
        if depth > MAX_DEPTH:
            return True
        for field in plan:
            if field.is_repeated:
                values = getattr(message, field.name)
                if field.message_type is not None and field.message_type.GetOptions().map_entry:
                    field, values = field.message_type.fields_by_name["value"], values.values()
                for value in values:  # a loop, not any(): no generator per field of every item
                    if self._bad_value(field, value, depth + 1):
                        return True
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                if message.HasField(field.name) and self._has_problem(getattr(message, field.name), depth + 1):
                    return True
            elif self._bad_value(field, getattr(message, field.name), depth):
                return True
        return False

    def _bad_value(self, field: FieldDescriptor, value: Any, depth: int) -> bool:
        if field.type == FieldDescriptor.TYPE_ENUM:
            return field.enum_type.values_by_number.get(value) is None
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            return self._has_problem(value, depth)
        return False

    def _problems(self, message: Message, prefix: str, depth: int) -> Iterator[tuple[str, str]]:
        descriptor = getattr(message, "DESCRIPTOR", None)
        if descriptor is None:  # a method outside the descriptor pool, with its own deserializer
            return
        name = descriptor.full_name
        if name in _WELL_KNOWN:
            yield from self._well_known(message, name, prefix, depth)
            return
        plan = self._plan(descriptor)
        if not plan:
            return
        if depth > MAX_DEPTH:
            yield prefix or "request", f"nested more than {MAX_DEPTH} levels deep"
            return
        for field in plan:
            path = f"{prefix}.{field.name}" if prefix else field.name
            if field.is_repeated:
                if field.message_type is not None and field.message_type.GetOptions().map_entry:
                    value_field = field.message_type.fields_by_name["value"]
                    for key, value in getattr(message, field.name).items():
                        yield from self._value(value_field, value, f"{path}[{key!r}]", depth + 1)
                else:
                    for i, value in enumerate(getattr(message, field.name)):
                        yield from self._value(field, value, f"{path}[{i}]", depth + 1)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                if message.HasField(field.name):
                    yield from self._problems(getattr(message, field.name), path, depth + 1)
            else:
                yield from self._value(field, getattr(message, field.name), path, depth)

    def _value(self, field: FieldDescriptor, value: Any, path: str, depth: int) -> Iterator[tuple[str, str]]:
        if field.type == FieldDescriptor.TYPE_ENUM:
            if field.enum_type.values_by_number.get(value) is None:
                yield path, f"{value} is not a defined {field.enum_type.name} value"
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            yield from self._problems(value, path, depth)

    def _well_known(self, message: Any, name: str, path: str, depth: int) -> Iterator[tuple[str, str]]:
        if name == _TIMESTAMP:
            if not _timestamp_ok(message):
                yield path, "must be a time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
        elif name == _DURATION:
            seconds, nanos = message.seconds, message.nanos
            if not (abs(seconds) <= MAX_DURATION_SECONDS and abs(nanos) <= MAX_NANOS
                    and (seconds == 0 or nanos == 0 or (seconds > 0) == (nanos > 0))):
                yield path, "must be a duration within +-315576000000 seconds"
        else:
            yield from _json_problems(message, name, path, depth)


def _timestamp_ok(message: Any) -> bool:
    return MIN_TIMESTAMP_SECONDS <= message.seconds <= MAX_TIMESTAMP_SECONDS and 0 <= message.nanos <= MAX_NANOS


def _json_problems(message: Any, name: str, path: str, depth: int) -> Iterator[tuple[str, str]]:
    """Struct / Value / ListValue: finite numbers only (JSON has no NaN), bounded nesting.
    Iterative, so that a hostile depth cannot exhaust the stack before the bound is seen."""
    pending: list[tuple[Any, str, str, int]] = [(message, name, path, depth)]
    while pending:
        node, kind, at, level = pending.pop()
        if level > MAX_DEPTH:
            yield at, f"nested more than {MAX_DEPTH} levels deep"
            return
        if kind == _STRUCT:
            for key, value in node.fields.items():
                pending.append((value, _VALUE, f"{at}.{key}" if at else key, level + 1))
        elif kind == _LIST_VALUE:
            for i, value in enumerate(node.values):
                pending.append((value, _VALUE, f"{at}[{i}]", level + 1))
        else:
            which = node.WhichOneof("kind")
            if which == "number_value":
                if not math.isfinite(node.number_value):
                    yield at, "numbers must be finite (JSON has no NaN or Infinity)"
                    return
            elif which == "struct_value":
                pending.append((node.struct_value, _STRUCT, at, level + 1))
            elif which == "list_value":
                pending.append((node.list_value, _LIST_VALUE, at, level + 1))


def _plan_of(descriptor: Descriptor, visiting: set[str]) -> tuple[FieldDescriptor, ...]:
    """The fields of `descriptor` under which an enum or a well-known type can occur."""
    visiting = visiting | {descriptor.full_name}
    plan = []
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_ENUM:
            plan.append(field)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            nested = field.message_type
            if nested.GetOptions().map_entry:
                value = nested.fields_by_name["value"]
                if value.type == FieldDescriptor.TYPE_ENUM or (
                        value.type == FieldDescriptor.TYPE_MESSAGE and _needs_check(value.message_type, visiting)):
                    plan.append(field)
            elif _needs_check(nested, visiting):
                plan.append(field)
    return tuple(plan)


def _needs_check(descriptor: Descriptor, visiting: set[str]) -> bool:
    if descriptor.full_name in _WELL_KNOWN or descriptor.full_name in visiting:
        return True  # a recursive message: walked, so that its depth is bounded
    return bool(_plan_of(descriptor, visiting))
