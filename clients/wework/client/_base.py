"""What the asyncio and blocking clients share, with no I/O: per-method facts read from the
proto descriptors, request building, retry decisions, deadlines and credential metadata.

Everything a method needs beyond its name comes from its descriptor, by AIP conventions, so
a new RPC needs no hand-written entry here (docs/decisions/0029-client-from-one-source.md):
- paged (AIP-158): the request has `page_token` and `page_size`, the response
  `next_page_token`; the items are the response's first repeated message field;
- retry-safe: the method is idempotent (the `idempotency_level` option, or an AIP read: Get,
  List, BatchGet) or its request has a `request_id` (AIP-155), filled once before the first
  attempt so every retry carries the same id;
- resumable stream: request and response both have a string `cursor`;
- batch (AIP-233): the request has a repeated message field `requests` and the response a
  repeated `results`; the facade splits a long `requests` into calls the server takes
  (wework.client.batching) and joins their `results`;
- positional shortcuts: a str fills the request's field 1 when it is a string named `id` or
  `*_id`; a message of this package fills the one request field of its type.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import random
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final, Self, TypeVar

import grpc
from google.protobuf import descriptor_pool, field_mask_pb2, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.descriptor_pb2 import MethodOptions
from google.protobuf.message import Message

from .config import ClientOptions
from .errors import WeworkError, from_status

M = TypeVar("M", bound=Message)
Metadata = Sequence[tuple[str, str]]

# Channel-level settings cannot change on a client that shares its channel.
PER_CALL_OPTIONS = frozenset({"api_key", "access_token", "token_provider", "tenant_id", "timeout"})

# The server's bound on the items of one batch call (BatchSendMessages, docs/messages.md): the
# facade sends longer lists in calls of at most this many (wework.client.batching).
MAX_BATCH_ITEMS: Final = 1000

_IDEMPOTENT_LEVELS = frozenset({MethodOptions.NO_SIDE_EFFECTS, MethodOptions.IDEMPOTENT})
_READ_PREFIXES = ("Get", "List", "BatchGet")


class _Default:
    """The sentinel of `retry=` and `timeout=`: "the method's default"."""

    _instance: _Default | None = None

    def __new__(cls) -> Self:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = _Default()


def snake_case(name: str) -> str:
    """ListApiKeys -> list_api_keys."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def service_attribute(service_name: str) -> str:
    """The attribute of the root client for a service: TenantService -> tenants."""
    stem = snake_case(service_name.removesuffix("Service"))
    return stem if stem.endswith(("s", "ia", "ta")) else stem + "s"


def _field(descriptor: Descriptor, name: str, type_: int | None = None) -> FieldDescriptor | None:
    fd = descriptor.fields_by_name.get(name)
    if fd is None or fd.is_repeated or (type_ is not None and fd.type != type_):
        return None
    return fd


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """What the client knows of one RPC, all of it read from its descriptor."""

    name: str  # "ListTenants"
    path: str  # "/wework.v1.TenantService/ListTenants"
    python_name: str  # "list_tenants"
    input: Descriptor
    output: Descriptor
    client_streaming: bool
    server_streaming: bool
    id_field: str | None  # the field a positional str fills
    wrap_fields: dict[str, str]  # message full name -> the request field it fills
    items_field: str | None  # paged methods: the repeated field of the response
    has_request_id: bool
    idempotent: bool
    resumable: bool  # a server stream resumed from its last `cursor`
    batched: bool  # `requests` in, `results` out: a long list is sent in several calls

    @property
    def paged(self) -> bool:
        return self.items_field is not None

    @property
    def retry_safe(self) -> bool:
        return self.idempotent or self.has_request_id

    @property
    def iter_name(self) -> str:
        """iter_tenants for ListTenants: the items of every page."""
        return "iter_" + snake_case(self.name.removeprefix("List") or self.name)

    @functools.cached_property
    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.input)

    @functools.cached_property
    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.output)


def describe(method: MethodDescriptor) -> MethodInfo:
    request, response = method.input_type, method.output_type
    string = FieldDescriptor.TYPE_STRING
    first = request.fields_by_number.get(1)
    id_field = (first.name if first is not None and not first.is_repeated and first.type == string
                and (first.name == "id" or first.name.endswith("_id")) else None)
    by_type: dict[str, list[str]] = {}
    for fd in request.fields:
        if fd.message_type is not None and not fd.is_repeated \
                and fd.message_type.file.package == request.file.package:
            by_type.setdefault(fd.message_type.full_name, []).append(fd.name)
    wrap_fields = {type_name: names[0] for type_name, names in by_type.items() if len(names) == 1}
    items_field = None
    if (_field(request, "page_token", string) and _field(request, "page_size")
            and _field(response, "next_page_token", string) and not method.server_streaming):
        repeated = [fd for fd in response.fields if fd.is_repeated and fd.message_type is not None]
        items_field = repeated[0].name if repeated else None
    idempotent = (method.GetOptions().idempotency_level in _IDEMPOTENT_LEVELS
                  or method.name.startswith(_READ_PREFIXES))
    return MethodInfo(
        name=method.name,
        path=f"/{method.containing_service.full_name}/{method.name}",
        python_name=snake_case(method.name),
        input=request,
        output=response,
        client_streaming=method.client_streaming,
        server_streaming=method.server_streaming,
        id_field=id_field,
        wrap_fields=wrap_fields,
        items_field=items_field,
        has_request_id=_field(request, "request_id", string) is not None,
        idempotent=idempotent,
        resumable=bool(method.server_streaming and not method.client_streaming
                       and _field(request, "cursor", string) and _field(response, "cursor", string)),
        batched=bool(not (method.client_streaming or method.server_streaming)
                     and _repeated_message(request, "requests") and _repeated_message(response, "results")),
    )


def _repeated_message(descriptor: Descriptor, name: str) -> bool:
    fd = descriptor.fields_by_name.get(name)
    return fd is not None and fd.is_repeated and fd.message_type is not None


@functools.cache
def service_methods(service_full_name: str) -> dict[str, MethodInfo]:
    """Every method of a service of the default pool (its generated module is imported)."""
    service: ServiceDescriptor = descriptor_pool.Default().FindServiceByName(service_full_name)
    return {m.name: describe(m) for m in service.methods}


# -- requests ----------------------------------------------------------------------------------


def build_request(info: MethodInfo, request: Any, fields: dict[str, Any]) -> Message:
    """The request message from a ready message, or a shortcut value plus keyword fields.

    A str fills `info.id_field` (get_tenant("0191...")); a message of another type fills the
    request field of that type (create_tenant(Tenant(...))).
    """
    cls = info.request_class
    if isinstance(request, cls):
        if fields:
            raise TypeError(f"pass a {cls.__name__} or keyword fields, not both")
        return request
    if request is not None:
        if isinstance(request, str) and info.id_field:
            fields = {info.id_field: request, **fields}
        elif isinstance(request, Message) and request.DESCRIPTOR.full_name in info.wrap_fields:
            fields = {info.wrap_fields[request.DESCRIPTOR.full_name]: request, **fields}
        else:
            raise TypeError(f"{info.python_name}: expected a {cls.__name__}, got {type(request).__name__}")
    return cls(**_coerce(cls.DESCRIPTOR, fields))


def _coerce(descriptor: Descriptor, fields: dict[str, Any]) -> dict[str, Any]:
    # update_mask=["tenant_name"] reads better than FieldMask(paths=[...]).
    out = dict(fields)
    for name, value in fields.items():
        fd = descriptor.fields_by_name.get(name)
        if (
            fd is not None
            and fd.message_type is not None
            and fd.message_type.full_name == "google.protobuf.FieldMask"
            and not isinstance(value, field_mask_pb2.FieldMask)
        ):
            out[name] = field_mask_pb2.FieldMask(paths=[value] if isinstance(value, str) else list(value))
    return out


def _copy(request: M) -> M:
    copy = type(request)()
    copy.CopyFrom(request)
    return copy


def with_request_id(info: MethodInfo, request: M) -> M:
    """A copy of `request` with a fresh uuid4 request_id if it has an empty one.

    Done once, before the first attempt, so every retry resends the same id and the server
    deduplicates them (AIP-155). The caller's message is not changed: reusing it as a
    template must not reuse the id.
    """
    if not info.has_request_id or request.request_id:  # type: ignore[attr-defined]
        return request
    copy = _copy(request)
    copy.request_id = str(uuid.uuid4())  # type: ignore[attr-defined]
    return copy


def with_field(request: M, name: str, value: str) -> M:
    """A copy with one field changed (page_token, cursor); earlier requests stay as sent
    (in-process channels and interceptors may keep a reference to them)."""
    copy = _copy(request)
    setattr(copy, name, value)
    return copy


def next_page_token(request: Message, response: Message) -> str:
    """The next token, or "" when done. A repeated token would loop forever: fail instead."""
    token: str = response.next_page_token  # type: ignore[attr-defined]
    if token and token == request.page_token:  # type: ignore[attr-defined]
        raise RuntimeError(f"server returned page_token {token!r} twice; stopping to avoid a loop")
    return token


def is_stream_start(response: Message) -> bool:
    """A resumable stream's first answer carries nothing but the cursor it starts from."""
    return [fd.name for fd, _ in response.ListFields()] in ([], ["cursor"])


# -- deadlines and retries -------------------------------------------------------------------


class Deadline:
    """One point in time for a whole operation: every attempt and every page shares it."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (None: no deadline); raises DeadlineExceededError when none are."""
        if self._at is None:
            return None
        left = self._at - time.monotonic()
        if left <= 0:
            raise from_status(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"deadline of {self.timeout:g}s exceeded (across retries and pages)")
        return left

    def allows(self, delay: float) -> bool:
        return self._at is None or time.monotonic() + delay < self._at


# ETAG_MISMATCH is ABORTED too, but the same request fails the same way: re-read first (AIP-154).
NOT_RETRIED_REASONS = frozenset({"ETAG_MISMATCH"})


@dataclasses.dataclass(frozen=True)
class Retry:
    """When and how often a failed call is tried again (per call: `retry=Retry(...)`).

    The wait before attempt n+1 is the server's RetryInfo delay when it sent one, else an
    exponential backoff (initial * multiplier**(n-1), at most `maximum`, with jitter). No
    attempt starts after the call's deadline; a wait that would cross it ends the retries.
    By default only retry-safe methods are retried (see the module docstring); a Retry
    passed explicitly applies to any method: the caller vouches for it.
    """

    codes: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})
    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    max_attempts: int | None = 4  # None: until the deadline

    def delay(self, error: WeworkError, attempt: int, deadline: Deadline) -> float | None:
        """Seconds to wait before the next attempt, or None to give up with `error`."""
        if error.grpc_code not in self.codes or error.reason in NOT_RETRIED_REASONS:
            return None
        if self.max_attempts is not None and attempt >= self.max_attempts:
            return None
        if error.retry_delay is not None:
            wait = error.retry_delay
        else:
            backoff = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
            wait = random.uniform(backoff / 2, backoff)  # jitter, not secrecy
        return wait if deadline.allows(wait) else None


DEFAULT_RETRY: Final = Retry()


def retry_for(info: MethodInfo, retry: Retry | None | _Default) -> Retry | None:
    if retry is DEFAULT:
        return DEFAULT_RETRY if info.retry_safe else None
    return retry  # type: ignore[return-value]


# Stream failures after which a resumable stream is reopened from its last cursor: the server
# went away, or ended its calls at shutdown (both answer UNAVAILABLE). CANCELLED is left alone:
# it is what closing this client's own channel causes.
RESUMABLE_STREAM_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclasses.dataclass(frozen=True)
class StreamResume:
    """How a resumable stream (a `cursor` in request and response) is reopened."""

    delay: float = 0.1
    max_delay: float = 5.0
    max_reconnects: int | None = None

    def allows(self, code: grpc.StatusCode, reconnects: int) -> bool:
        return code in RESUMABLE_STREAM_CODES and (self.max_reconnects is None or reconnects < self.max_reconnects)


# -- credentials ---------------------------------------------------------------------------

# Set while a token provider runs: a call it makes through this client (e.g. Login) goes
# without a credential instead of asking the provider again, endlessly.
_providing: contextvars.ContextVar[bool] = contextvars.ContextVar("wework_client_providing", default=False)


class CallSettings:
    """Credential metadata and default deadline attached to every call."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self._static = options.credential_metadata()
        self._tenant = (("x-wework-tenant", options.tenant_id),) if options.tenant_id else ()

    @property
    def token_provider(self) -> Callable[[], Any] | None:
        return self.options.token_provider

    def providing(self) -> contextvars.Token[bool] | None:
        """Marks the provider as running; None when it already is (nested call: no credential)."""
        if self.options.token_provider is None or _providing.get():
            return None
        return _providing.set(True)

    @staticmethod
    def done_providing(token: contextvars.Token[bool]) -> None:
        _providing.reset(token)

    def metadata(self, extra: Metadata = (), token: str | None = None) -> tuple[tuple[str, str], ...]:
        if self.options.token_provider is None:
            return self._static + tuple(extra)
        bearer = (("authorization", f"Bearer {token}"),) if token else ()
        return bearer + self._tenant + tuple(extra)

    def timeout(self, timeout: float | None | _Default) -> float | None:
        return self.options.timeout if timeout is DEFAULT else timeout  # type: ignore[return-value]


def check_per_call_changes(changes: dict[str, Any]) -> None:
    bad = set(changes) - PER_CALL_OPTIONS
    if bad:
        raise ValueError(f"{sorted(bad)} are channel settings; create a new client to change them")


def replace_credential(options: ClientOptions, changes: dict[str, Any]) -> ClientOptions:
    """with_options(...): a new credential replaces the old one."""
    check_per_call_changes(changes)
    credentials = ("api_key", "access_token", "token_provider")
    if any(changes.get(c) for c in credentials):
        for other in credentials:
            changes.setdefault(other, None)
    return dataclasses.replace(options, **changes)
