"""Pure translation between the Wechaty puppet-service protocol and the platform's provider
contract: event payloads -> callback data, platform message content -> send requests.

Event payloads are JSON strings (`EventResponse.payload`) of the wechaty-puppet event payloads:
scan {qrcode, status, data}, login/logout {contactId, data}, message {messageId},
room-join {roomId, inviteeIdList, inviterId}, room-leave {roomId, removeeIdList, removerId},
room-topic {roomId, newTopic, oldTopic, changerId}, dirty {payloadType, payloadId},
heartbeat/dong/error/ready/reset {data}.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from wework.server.providers.base import NotifyType, ProviderError
from wework.server.providers.puppet_service.gen.wechaty.puppet import (
    contact_pb2,
    message_pb2,
    mini_program_pb2,
    room_pb2,
    url_link_pb2,
)

# wechaty-puppet ScanStatus
SCAN_UNKNOWN, SCAN_CANCEL, SCAN_WAITING, SCAN_SCANNED, SCAN_CONFIRMED, SCAN_TIMEOUT = range(6)
# wechaty-puppet DirtyType
DIRTY_MESSAGE, DIRTY_CONTACT, DIRTY_ROOM, DIRTY_ROOM_MEMBER = 1, 2, 3, 4

# File boxes by URL, and by the id the protocol's Upload stream answers (file-box's FileBoxType
# Url and Uuid); `boxType` is the field name older readers use.
FILE_BOX_URL, FILE_BOX_UUID = 2, 7
UPLOAD_CHUNK_BYTES = 64 * 1024


class UnsupportedContent(ProviderError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="UNSUPPORTED_CONTENT")


def parse_payload(raw: str) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {"data": raw[:500]}
    return body if isinstance(body, dict) else {"data": body}


def scan_callback(payload: dict[str, Any], now: datetime, qr_ttl: timedelta) -> tuple[NotifyType, dict[str, Any]]:
    """SCAN -> the login callback its status means."""
    status = int(payload.get("status") or 0)
    qrcode = str(payload.get("qrcode") or "")
    if status in (SCAN_WAITING, SCAN_UNKNOWN) and qrcode:
        url = qrcode if urlparse(qrcode).scheme in ("http", "https") else ""
        return NotifyType.LOGIN_QR, {"qr_code_url": url, "qr_payload": qrcode,
                                     "expire_time": (now + qr_ttl).isoformat().replace("+00:00", "Z")}
    if status == SCAN_SCANNED:
        return NotifyType.QR_SCANNED, {}
    if status == SCAN_CONFIRMED:
        return NotifyType.LOGIN_CONFIRMED, {}
    if status == SCAN_TIMEOUT:
        return NotifyType.QR_EXPIRED, {}
    if status == SCAN_CANCEL:
        return NotifyType.LOGIN_FAILED, {"reason": "the login was cancelled on the phone"}
    return NotifyType.LOGIN_FAILED, {"reason": f"the provider reported scan status {status} without a QR code"}


def contact_info(contact: contact_pb2.ContactPayloadResponse) -> dict[str, Any]:
    """The contact as the account's user_info (no phone numbers: they are personal data)."""
    return {"user_id": contact.id, "name": contact.name, "alias": contact.alias, "avatar": contact.avatar,
            "corporation": contact.corporation, "title": contact.title,
            "contact_type": contact_pb2.ContactType.Name(contact.type).removeprefix("CONTACT_TYPE_").lower()}


def room_conversation(room: room_pb2.RoomPayloadResponse, *, is_active: bool = True) -> dict[str, Any]:
    return {"conversation_id": room.id, "conversation_name": room.topic or room.id, "conversation_type": "group",
            "member_count": len(room.member_ids), "is_active": is_active}


def contact_conversation(contact: contact_pb2.ContactPayloadResponse) -> dict[str, Any]:
    return {"conversation_id": contact.id, "conversation_name": contact.name or contact.id,
            "conversation_type": "single", "member_count": 2}


def message_time(message: message_pb2.MessagePayloadResponse, now: datetime) -> datetime:
    if message.HasField("receive_time") and message.receive_time.seconds:
        return message.receive_time.ToDatetime(tzinfo=UTC)
    if message.timestamp_deprecated:
        ts = message.timestamp_deprecated
        return datetime.fromtimestamp(ts / 1000 if ts > 1e11 else ts, UTC)
    return now


# Message types ON THE WIRE: the reference server (and its Node client) put wechaty-puppet's
# MessageType numbers into MessagePayloadResponse.type, not the proto enum's (which numbers
# them differently from 4 on: its 6 TEXT is wechaty-puppet's Image). The wire wins.
WT_UNKNOWN, WT_ATTACHMENT, WT_AUDIO, WT_CONTACT, WT_CHAT_HISTORY, WT_EMOTICON, WT_IMAGE, WT_TEXT = range(8)
WT_LOCATION, WT_MINI_PROGRAM, WT_GROUP_NOTE, WT_TRANSFER, WT_RED_ENVELOPE, WT_RECALLED, WT_URL, WT_VIDEO = range(8, 16)

MEDIA_TYPES = {WT_IMAGE: "image", WT_ATTACHMENT: "file", WT_VIDEO: "video", WT_AUDIO: "voice",
               WT_EMOTICON: "emoticon"}
_KINDS = {WT_TEXT: "text", WT_URL: "link", WT_MINI_PROGRAM: "miniprogram", WT_CONTACT: "contact_card",
          WT_LOCATION: "location", WT_CHAT_HISTORY: "chat_history", WT_GROUP_NOTE: "group_note",
          WT_TRANSFER: "transfer", WT_RED_ENVELOPE: "red_envelope", WT_RECALLED: "recalled"}


def message_kind(message: message_pb2.MessagePayloadResponse) -> str:
    """The platform's name of an incoming message's type."""
    return MEDIA_TYPES.get(message.type) or _KINDS.get(message.type) or "unknown"


def url_content(url: url_link_pb2.UrlLinkPayload) -> dict[str, Any]:
    return {"title": url.title, "description": url.description, "url": url.url, "thumb_url": url.thumbnail_url}


def mini_program_content(mp: mini_program_pb2.MiniProgramPayload) -> dict[str, Any]:
    return {"app_id": mp.appid, "title": mp.title, "page_path": mp.page_path, "description": mp.description,
            "thumb_url": mp.thumb_url, "username": mp.username}


@dataclass(frozen=True)
class Incoming:
    """What MESSAGE_RECEIVED needs beyond the message payload: names of the room and the talker."""

    room: room_pb2.RoomPayloadResponse | None
    talker: contact_pb2.ContactPayloadResponse | None
    content: dict[str, Any]


def message_received(message: message_pb2.MessagePayloadResponse, incoming: Incoming,
                     now: datetime) -> dict[str, Any]:
    talker_name = incoming.talker.name if incoming.talker is not None else message.talker_id
    if message.room_id:
        conversation = {"conversation_id": message.room_id, "conversation_type": "group",
                        "conversation_name": (incoming.room.topic if incoming.room is not None else "") or message.room_id}
    else:
        conversation = {"conversation_id": message.talker_id, "conversation_type": "single",
                        "conversation_name": talker_name or message.talker_id}
    return {**conversation,
            "sender": {"user_id": message.talker_id, "name": talker_name},
            "message_type": message_kind(message),
            "content": incoming.content,
            "mentions": list(message.mention_ids),
            "wework_msg_id": message.id,
            "time": message_time(message, now).isoformat().replace("+00:00", "Z")}


def _text(content: dict[str, Any], name: str) -> str:
    value = content.get(name)
    return value if isinstance(value, str) else ""


def file_box_json(url: str, name: str) -> str:
    """A FileBox (npm file-box) by URL, in the JSON the protocol's file_box fields carry."""
    if not name:
        name = urlparse(url).path.rsplit("/", 1)[-1] or "file"
    return json.dumps({"type": FILE_BOX_URL, "boxType": FILE_BOX_URL, "name": name, "url": url, "headers": {}},
                      separators=(",", ":"))


def file_box_uuid_json(uuid: str, name: str) -> str:
    """A FileBox of bytes uploaded through the protocol's Upload stream."""
    return json.dumps({"type": FILE_BOX_UUID, "boxType": FILE_BOX_UUID, "name": name or "file", "uuid": uuid},
                      separators=(",", ":"))


def upload_bytes(message_type: str, content: dict[str, Any]) -> bytes | None:
    """The bytes of an image or file the platform holds itself (content.data_base64, no url)."""
    if message_type not in ("image", "file") or _text(content, "url") or not _text(content, "data_base64"):
        return None
    try:
        return base64.b64decode(_text(content, "data_base64"), validate=True)
    except ValueError:
        raise UnsupportedContent("content.data_base64 is not base64") from None


def send_request(conversation_id: str, message_type: str, content: dict[str, Any]) -> tuple[str, Any]:
    """(the Puppet RPC's name, its request) of one platform message. UnsupportedContent when the
    protocol cannot carry it."""
    if message_type == "text":
        return "MessageSendText", message_pb2.MessageSendTextRequest(conversation_id=conversation_id,
                                                                     text=_text(content, "text"))
    if message_type == "at":
        if content.get("at_all") and not content.get("user_ids"):
            raise UnsupportedContent("the puppet-service protocol has no @all; mention members by user_ids")
        return "MessageSendText", message_pb2.MessageSendTextRequest(
            conversation_id=conversation_id, text=_text(content, "text"),
            mentional_ids=[str(u) for u in content.get("user_ids") or []])
    if message_type == "link":
        return "MessageSendUrl", message_pb2.MessageSendUrlRequest(
            conversation_id=conversation_id, url_link=url_link_pb2.UrlLinkPayload(
                title=_text(content, "title"), url=_text(content, "url"),
                description=_text(content, "description"), thumbnail_url=_text(content, "thumb_url")))
    if message_type == "miniprogram":
        return "MessageSendMiniProgram", message_pb2.MessageSendMiniProgramRequest(
            conversation_id=conversation_id, mini_program=mini_program_pb2.MiniProgramPayload(
                appid=_text(content, "app_id"), title=_text(content, "title"),
                page_path=_text(content, "page_path"), description=_text(content, "description"),
                thumb_key=_text(content, "thumb_media_id"), thumb_url=_text(content, "thumb_url"),
                username=_text(content, "username")))
    if message_type in ("image", "file"):
        url = _text(content, "url")
        if not url:
            raise UnsupportedContent("this provider sends images and files by URL: content.url is required "
                                     "(a WeCom media_id means nothing to a puppet-service provider)")
        return "MessageSendFile", message_pb2.MessageSendFileRequest(
            conversation_id=conversation_id, file_box=file_box_json(url, _text(content, "file_name")))
    if message_type == "contact_card":
        contact_id = _text(content, "contact_id")
        if not contact_id:
            raise UnsupportedContent("a contact card needs content.contact_id")
        return "MessageSendContact", message_pb2.MessageSendContactRequest(conversation_id=conversation_id,
                                                                           contact_id=contact_id)
    raise UnsupportedContent(f"message type {message_type!r} cannot be sent through the puppet-service protocol")
