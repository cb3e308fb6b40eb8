"""Request plumbing shared by the sync and asyncio clients (no I/O here)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from google.protobuf import field_mask_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from .config import ClientOptions

M = TypeVar("M", bound=Message)
Metadata = Sequence[tuple[str, str]]

# Channel-level settings cannot change on a client that shares its channel.
PER_CALL_OPTIONS = frozenset({"api_key", "access_token", "tenant_id", "timeout"})


def build_request(cls: type[M], request: Any, fields: dict[str, Any], shortcut: str | None = None) -> M:
    """The request message from either a ready message, or a shortcut value plus keyword fields.

    `shortcut` names the field a non-message positional argument fills, e.g. "id"
    for get_tenant("0191...") or "tenant" for create_tenant(Tenant(...)).
    """
    if isinstance(request, cls):
        if fields:
            raise TypeError(f"pass a {cls.__name__} or keyword fields, not both")
        return request
    if request is not None:
        if shortcut is None:
            raise TypeError(f"expected a {cls.__name__}, got {type(request).__name__}")
        fields = {shortcut: request, **fields}
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


@functools.cache
def _has_request_id(descriptor: Descriptor) -> bool:
    fd = descriptor.fields_by_name.get("request_id")
    return fd is not None and fd.type == FieldDescriptor.TYPE_STRING


def with_request_id(request: M) -> M:
    """A copy of `request` with a fresh uuid4 request_id if it has an empty one.

    Done once, before the call, so the channel's transparent retries resend the
    same id and the server deduplicates them (AIP-155). The caller's message is
    not changed: reusing it as a template must not reuse the id.
    """
    if not _has_request_id(request.DESCRIPTOR) or request.request_id:
        return request
    copy = type(request)()
    copy.CopyFrom(request)
    copy.request_id = str(uuid.uuid4())  # type: ignore[attr-defined]
    return copy


def with_page_token(request: M, token: str) -> M:
    """A copy asking for the page at `token`; the caller's and earlier requests stay as sent
    (in-process channels and interceptors may keep a reference to them)."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.page_token = token  # type: ignore[attr-defined]
    return copy


def next_page_token(request: Message, response: Message) -> str:
    """The next token, or "" when done. A repeated token would loop forever: fail instead."""
    token: str = response.next_page_token
    if token and token == request.page_token:
        raise RuntimeError(f"server returned page_token {token!r} twice; stopping to avoid a loop")
    return token


class CallSettings:
    """Credential metadata and default deadline attached to every call."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self._metadata = options.credential_metadata()

    def metadata(self, extra: Metadata = ()) -> tuple[tuple[str, str], ...]:
        return self._metadata + tuple(extra)

    def timeout(self, timeout: float | None) -> float | None:
        return self.options.timeout if timeout is None else timeout


def check_per_call_changes(changes: dict[str, Any]) -> None:
    bad = set(changes) - PER_CALL_OPTIONS
    if bad:
        raise ValueError(f"{sorted(bad)} are channel settings; create a new client to change them")
