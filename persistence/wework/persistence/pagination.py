"""Keyset pagination (AIP-158): opaque page tokens that encode a cursor, never an OFFSET.

A token is `<body>.<mac>`: the body is URL-safe base64 of JSON {"k": kind, "v": version, ...
payload}, the mac an HMAC-SHA256 of the body under a server key and the caller's scope (its
tenant, or "" for platform-wide listings). So a token is only accepted by the listing (kind)
and the tenant it was issued for, and a forged or altered one is refused before any of its
values reaches a query. Every listing decodes through PageTokens.decode, which also checks
that the payload holds the fields the listing expects, with their types: anything else is
INVALID_ARGUMENT on page_token, never a KeyError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression
from wework.domain.errors import FieldViolation, InvalidArgument


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


_Row = TypeVar("_Row", bound=_HasId)

TOKEN_VERSION = 2  # 2: signed and scoped; version 1 tokens (unsigned) are refused
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_TOKEN_LENGTH = 4096
_KEY_LABEL = b"wework page tokens v2"


def _default(value: Any) -> Any:
    # Tagged so that decoding restores the exact type used in the comparison.
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    raise TypeError(f"cannot put {type(value).__name__} into a page token")


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        ((key, raw),) = obj.items()
        if key == "$dt":
            return datetime.fromisoformat(raw)
        if key == "$d":
            return date.fromisoformat(raw)
        if key == "$dec":
            return Decimal(raw)
    return obj


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _invalid(description: str) -> InvalidArgument:
    return InvalidArgument(FieldViolation("page_token", description))


def _has_type(value: Any, expected: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and not (expected is bool or (isinstance(expected, tuple) and bool in expected)):
        return False  # JSON true is no int here
    return isinstance(value, expected)


class PageTokens:
    """Issues and opens the page tokens of every listing (one implementation, one key).

    The key is derived from a server secret (wework-server uses security.token_secret), so
    every replica and worker process accepts the tokens of the others, and rotating that
    secret only ends the page tokens in flight (callers start their listing again).
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the page token secret must be at least 16 bytes")
        self._key = hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()

    @classmethod
    def with_random_key(cls) -> PageTokens:
        """For a process that serves alone (tests): its tokens die with it."""
        return cls(secrets.token_bytes(32))

    def _mac(self, scope: str, body: str) -> str:
        message = scope.encode() + b"\0" + body.encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def encode(self, payload: Mapping[str, Any], kind: str, scope: str) -> str:
        """A token of listing `kind` for the caller's `scope` (tenant id, or "" platform-wide).

        Datetimes, dates and Decimals in the payload come back with their types.
        """
        if not kind:
            raise ValueError("a page token needs a kind")
        data = json.dumps({**payload, "k": kind, "v": TOKEN_VERSION}, default=_default,
                          separators=(",", ":"), sort_keys=True)
        body = _b64(data.encode())
        return f"{body}.{self._mac(scope, body)}"

    def decode(self, token: str, kind: str, scope: str,
               fields: Mapping[str, type | tuple[type, ...]]) -> dict[str, Any]:
        """The payload of a token this server issued for listing `kind` and `scope`, holding
        `fields` (name -> expected type); InvalidArgument on page_token otherwise."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise _invalid("the page token is not valid; pass next_page_token unchanged")
        body, mac = token.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(scope, body).encode()):
            raise _invalid("the page token is not valid for this caller; pass next_page_token unchanged")
        try:
            payload = json.loads(_unb64(body), object_hook=_hook)
        except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
            raise _invalid("the page token is not valid; pass next_page_token unchanged") from None
        if not isinstance(payload, dict) or payload.get("v") != TOKEN_VERSION:
            raise _invalid("the page token comes from another version; start the listing again")
        if payload.get("k") != kind:
            raise _invalid("the page token belongs to a different listing")
        for name, expected in fields.items():
            if not _has_type(payload.get(name), expected):
                raise _invalid("the page token comes from another version; start the listing again")
        return {name: payload[name] for name in fields}

    # Listings ordered by id (UUIDv7): the token holds the last id answered.

    def after_id(self, token: str, kind: str, scope: str) -> str | None:
        """The id the page of `token` continues after; None for the first page (no token)."""
        return self.decode(token, kind, scope, {"after": str})["after"] if token else None

    def id_page(self, rows: Sequence[_Row], limit: int, kind: str, scope: str) -> tuple[list[_Row], str]:
        """The first `limit` of `rows` (read with limit + 1) and the token of the page after
        them, "" when there is none."""
        page = list(rows[:limit])
        return page, (self.encode({"after": page[-1].id}, kind, scope) if len(rows) > limit else "")


def normalize_page_size(page_size: int | None) -> int:
    """AIP-158: 0 (unset) -> 50, above 1000 -> 1000, negative -> InvalidArgument."""
    if page_size is None or page_size == 0:
        return DEFAULT_PAGE_SIZE
    if page_size < 0:
        raise InvalidArgument(FieldViolation("page_size", "page_size must not be negative"))
    return min(page_size, MAX_PAGE_SIZE)


def _split(order: Any) -> tuple[sa.ColumnElement[Any], bool]:
    """(column, descending) from `col`, `col.asc()` or `col.desc()`."""
    if isinstance(order, UnaryExpression) and order.modifier in (operators.desc_op, operators.asc_op):
        return order.element, order.modifier is operators.desc_op
    return order, False


def keyset_after(columns: Sequence[Any], after: Sequence[Any]) -> sa.ColumnElement[bool]:
    """The condition "strictly after `after` in the order `columns`" (columns must be NOT NULL).

    Uniform direction: a row-value comparison `(a, b) > (x, y)` (SQLite >= 3.15, MariaDB, MySQL),
    plus a redundant `a >= x` so that every optimizer sees an index range on the leading column.
    Mixed directions: the expanded form `a > x OR (a = x AND b < y)`, with the same leading bound.
    """
    split = [_split(c) for c in columns]
    for col, _ in split:
        if isinstance(col.type, sa.Enum):
            # MySQL sorts an ENUM by declaration order but compares it with a string as text,
            # so a cursor on it would skip rows. Filter on status instead of sorting by it.
            raise TypeError(f"cannot page by the enum column {col.key!r}")
    if len(split) != len(after):
        raise ValueError("after values do not match the order columns")
    cols = [c for c, _ in split]
    descs = [d for _, d in split]
    lead, lead_desc = cols[0], descs[0]
    lead_bound = lead <= after[0] if lead_desc else lead >= after[0]
    if len(cols) == 1:
        return lead < after[0] if lead_desc else lead > after[0]
    if all(descs) or not any(descs):
        left = sa.tuple_(*cols)
        right = sa.tuple_(*[sa.literal(v, type_=c.type) for c, v in zip(cols, after, strict=True)])
        return sa.and_(lead_bound, left < right if lead_desc else left > right)
    ors = []
    for i, (col, desc) in enumerate(split):
        eqs = [cols[j] == after[j] for j in range(i)]
        ors.append(sa.and_(*eqs, col < after[i] if desc else col > after[i]))
    return sa.and_(lead_bound, sa.or_(*ors))


def _value(row: Any, column: Any) -> Any:
    mapping = getattr(row, "_mapping", None)
    if mapping is not None:
        try:
            return mapping[column]
        except KeyError:
            pass
    return getattr(row, column.key)


async def keyset_page(session: AsyncSession, stmt: sa.Select[Any], order_columns: Sequence[Any],
                      after_values: Sequence[Any] | None, page_size: int) -> tuple[list[Any], list[Any] | None]:
    """One page of `stmt` in the order of `order_columns`, starting after `after_values`.

    `stmt` carries the filters (tenant first) and no ORDER BY/LIMIT. The last order column must
    make the order total (e.g. the id). Returns the rows (entities for a single-entity select)
    and the sort-key values to continue from, or None on the last page.
    """
    if after_values is not None:
        stmt = stmt.where(keyset_after(order_columns, after_values))
    elif any(isinstance(_split(c)[0].type, sa.Enum) for c in order_columns):
        keyset_after(order_columns, [None] * len(order_columns))  # fail on the first page already
    stmt = stmt.order_by(*order_columns).limit(page_size + 1)
    result = await session.execute(stmt)
    single = len(stmt.column_descriptions) == 1
    rows = list(result.scalars().all() if single else result.all())
    if len(rows) <= page_size:
        return rows, None
    rows = rows[:page_size]
    last = rows[-1]
    return rows, [_value(last, _split(c)[0]) for c in order_columns]
