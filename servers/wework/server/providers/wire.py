"""JSON shapes of the provider REST API (docs/provider-http-api.md), shared by the HTTP adapter,
the simulator's HTTP server and the callback poster, so that both ends agree by construction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from wework.server.providers.base import Liveness, LoginQr, ProviderCallback, ProviderError, SendResult


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


def parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 time, got {value!r}")
    t = datetime.fromisoformat(value)  # 3.11+ reads "Z"
    if t.tzinfo is None:
        raise ValueError(f"time {value!r} has no UTC offset")
    return t


def login_qr_to_json(qr: LoginQr) -> dict[str, Any]:
    return {"qr_code_url": qr.qr_code_url, "qr_payload": qr.qr_payload, "expire_time": iso(qr.expire_time)}


def login_qr_from_json(body: dict[str, Any]) -> LoginQr:
    expire = parse_time(body["expire_time"])
    assert expire is not None
    return LoginQr(qr_code_url=body["qr_code_url"], qr_payload=body["qr_payload"], expire_time=expire)


def send_result_to_json(result: SendResult) -> dict[str, Any]:
    return {"wework_msg_id": result.wework_msg_id}


def send_result_from_json(body: dict[str, Any]) -> SendResult:
    return SendResult(wework_msg_id=body["wework_msg_id"])


def liveness_to_json(live: Liveness) -> dict[str, Any]:
    return {"alive": live.alive, "online": live.online, "last_seen": iso(live.last_seen),
            "details": live.details}


def liveness_from_json(body: dict[str, Any]) -> Liveness:
    return Liveness(alive=bool(body["alive"]), online=bool(body["online"]),
                    last_seen=parse_time(body.get("last_seen")), details=dict(body.get("details") or {}))


def callback_to_json(cb: ProviderCallback) -> dict[str, Any]:
    return {"event_id": cb.event_id, "guid": cb.guid, "notify_type": cb.notify_type, "data": cb.data,
            "time": iso(cb.time)}


def callback_from_json(body: dict[str, Any]) -> ProviderCallback:
    t = parse_time(body["time"])
    assert t is not None
    return ProviderCallback(guid=str(body["guid"]), notify_type=int(body["notify_type"]),
                            data=dict(body.get("data") or {}), event_id=str(body["event_id"]), time=t)


def error_to_json(err: ProviderError) -> dict[str, Any]:
    return {"error": {"code": err.code, "message": str(err)}}
