"""Keyset pagination (AIP-158): opaque page tokens that encode a cursor, never an OFFSET.

A token is URL-safe base64 of JSON {"k": kind, "v": version, ...payload}. It is not signed:
it carries only sort-key values of rows the caller could already see, and every query keeps
its tenant filter, so a forged token can at worst skip rows of the caller's own listing.
The kind stops a token of one listing from being replayed against another.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression
from wework.domain.errors import FieldViolation, InvalidArgument

TOKEN_VERSION = 1
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_TOKEN_LENGTH = 4096


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


def encode_page_token(payload: dict[str, Any], kind: str | None = None) -> str:
    """A token for `payload`; its kind comes from `kind` or from payload["kind"].

    Datetimes, dates and Decimals in the payload come back with their types.
    """
    body = dict(payload)
    k = kind if kind is not None else body.get("kind")
    body.pop("kind", None)
    if not k:
        raise ValueError("a page token needs a kind")
    data = json.dumps({"k": k, "v": TOKEN_VERSION, **body}, default=_default, separators=(",", ":"),
                      sort_keys=True)
    return base64.urlsafe_b64encode(data.encode()).rstrip(b"=").decode()


def _invalid(description: str) -> InvalidArgument:
    return InvalidArgument(FieldViolation("page_token", description))


def decode_page_token(token: str, expected_kind: str) -> dict[str, Any]:
    """The payload (with "kind") of a token made by encode_page_token; InvalidArgument otherwise."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise _invalid("the page token is not valid")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw, object_hook=_hook)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _invalid("the page token is not valid; pass next_page_token unchanged") from None
    if not isinstance(body, dict) or body.get("v") != TOKEN_VERSION or "k" not in body:
        raise _invalid("the page token is not valid or comes from another version")
    if body["k"] != expected_kind:
        raise _invalid("the page token belongs to a different listing")
    kind = body.pop("k")
    body.pop("v")
    body["kind"] = kind
    return body


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
