"""The provider adapter to a Wechaty puppet-service (the `wechaty.Puppet` gRPC service of npm
`wechaty-grpc`; docs/puppet-service.md), the protocol hosted WeCom providers serve.

One puppet per account: the account's token (write-only, stored encrypted, read through
`tokens(guid)`) names it and authorizes every call (`authorization: Wechaty <token>`).

- Unary calls (sends, Start, Logout, Ding) go out from any process.
- The event stream (`Event`) of an account is consumed by one process only: the one that
  `attach`es it (a login, a recovery, or the account lease of ownership.py). The reference
  server itself refuses a second stream of a puppet (ALREADY_EXISTS). Its events become
  ProviderCallbacks delivered to the sink (the durable callback inbox) in order; a delivery
  that fails is retried before the next event is read, so nothing read is dropped.
- A stream that breaks is reopened with backoff; if the account was logged in, OFFLINE is
  reported first (the heartbeat monitor's recovery then calls `reconnect`, which answers from
  the reopened stream: the server replays LOGIN to a new stream of a logged-in puppet).

Secrets: the token is never logged nor put in an error; the reference server echoes a refused
token in its UNAUTHENTICATED details, so those details are never passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import grpc
from wework.server.http_client import TRANSPORT_ERRORS, AnswerTooLarge, SharedSession, describe, read_body
from wework.server.providers.base import (
    CallbackSink,
    Liveness,
    LoginQr,
    NotifyType,
    ProviderCallback,
    ProviderError,
    ProviderUnavailable,
    SendResult,
)
from wework.server.providers.puppet_service import mapping
from wework.server.providers.puppet_service.config import PuppetServiceConfig
from wework.server.providers.puppet_service.gen.wechaty import puppet_pb2_grpc
from wework.server.providers.puppet_service.gen.wechaty.puppet import (
    base_pb2,
    contact_pb2,
    download_upload_pb2,
    event_pb2,
    message_pb2,
    room_pb2,
)

log = logging.getLogger(__name__)

TokenSource = Callable[[str], Awaitable[str | None]]


class SessionBoard(Protocol):
    """Account ownership across processes (workers/puppet_ownership.py)."""

    def owns(self, guid: str) -> bool: ...

    async def claim(self, guid: str) -> bool: ...

    async def publish(self, guid: str, state: dict[str, Any]) -> None: ...

    async def read(self, guid: str) -> dict[str, Any] | None: ...
BUNDLED_CA = Path(__file__).with_name("wechaty-root-ca.pem")
INSECURE_PREFIX = "insecure_"
ET = event_pb2
_IDEMPOTENCY_MEMORY = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC)


def token_sni(token: str) -> str | None:
    """The TLS server name a Wechaty token carries: its prefix before the last "_", lowercased."""
    i = token.rfind("_")
    return token[:i].lower() if i > 0 else None


def uses_tls(config: PuppetServiceConfig, token: str) -> bool:
    return config.tls and not token.startswith(INSECURE_PREFIX)


@dataclass(eq=False)
class _Session:
    guid: str
    token: str
    channel: grpc.aio.Channel
    stub: puppet_pb2_grpc.PuppetStub
    user_id: str | None = None
    scan: dict[str, Any] | None = None
    scan_seq: int = 0
    stream_task: asyncio.Task[None] | None = None
    stream_open: asyncio.Event = field(default_factory=asyncio.Event)
    stream_error: ProviderError | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Wechaty {self.token}"),)

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout), self.changed:
                await self.changed.wait_for(predicate)
                return True
        except TimeoutError:
            return predicate()


class PuppetServiceProvider:
    """Implements `wework.server.providers.base.Provider` over the Wechaty puppet-service protocol."""

    def __init__(self, config: PuppetServiceConfig, sink: CallbackSink, tokens: TokenSource, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self._sink = sink
        self._tokens = tokens
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._session_locks: dict[str, asyncio.Lock] = {}
        self._attach_locks: dict[str, asyncio.Lock] = {}
        self._endpoints: dict[str, str] = {}  # token -> discovered endpoint
        self._sent: OrderedDict[str, str] = OrderedDict()  # idempotency key -> provider message id
        self._ding_task: asyncio.Task[None] | None = None
        # Set when several processes share the accounts: only the owner of an account consumes
        # its stream; the others read its session state from the board. None: this process
        # consumes the stream of every account it logs in or recovers.
        self.board: SessionBoard | None = None
        self._closed = False
        self._root_ca = Path(config.ca_file).read_bytes() if config.ca_file else BUNDLED_CA.read_bytes()
        # Token discovery (a small JSON answer); proxies from HTTP(S)_PROXY / NO_PROXY apply.
        self._discovery = SharedSession(timeout_seconds=config.connect_timeout_seconds, trust_env=True)

    # ---- Provider ------------------------------------------------------------------------------

    async def create_instance(self, guid: str, *, config: dict[str, Any] | None = None) -> None:
        """Nothing to create: the provider made the puppet when it issued the token."""
        self._check_open()

    async def get_login_qr(self, guid: str) -> LoginQr:
        s = await self._session(guid, fresh_token=True)
        if not await self._consumed_here(guid):
            return await self._remote_qr(s)
        await self.attach(guid)
        if s.user_id is not None:
            raise ProviderError("the account is logged in at the provider already", code="ALREADY_ONLINE")
        seen = s.scan_seq if not self._waiting_qr(s) else s.scan_seq - 1
        await self._call(s, "Start", base_pb2.StartRequest())
        got = await s.wait_for(lambda: s.user_id is not None or (s.scan_seq > seen and self._waiting_qr(s)),
                               self.config.qr_wait_seconds)
        if s.stream_error is not None:
            raise s.stream_error
        if s.user_id is not None:
            raise ProviderError("the account logged in without a new QR code", code="ALREADY_ONLINE")
        if not got:
            raise ProviderUnavailable(f"the provider sent no QR code within {self.config.qr_wait_seconds:g}s")
        assert s.scan is not None
        return self._login_qr(s.scan)

    def _login_qr(self, scan: dict[str, Any]) -> LoginQr:
        _, data = mapping.scan_callback(scan, self._clock(), timedelta(seconds=self.config.qr_ttl_seconds))
        expire = datetime.fromisoformat(data["expire_time"])
        return LoginQr(qr_code_url=data["qr_code_url"], qr_payload=data["qr_payload"], expire_time=expire)

    async def _consumed_here(self, guid: str) -> bool:
        """Whether this process consumes the account's stream (claiming it if it is ours)."""
        board = self.board
        return board is None or board.owns(guid) or await board.claim(guid)

    async def _board_state(self, guid: str) -> dict[str, Any]:
        assert self.board is not None
        try:
            return await self.board.read(guid) or {}
        except Exception as exc:  # noqa: BLE001 - Redis down: the owner's state is unknown
            raise ProviderUnavailable(f"the account's session state is unreadable: {type(exc).__name__}") from None

    async def _wait_board(self, guid: str, done: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            state = await self._board_state(guid)
            if done(state) or asyncio.get_running_loop().time() >= deadline:
                return state
            await asyncio.sleep(0.2)

    @staticmethod
    def _board_waiting(state: dict[str, Any]) -> bool:
        scan = state.get("scan") or {}
        return int(scan.get("status") or 0) in (mapping.SCAN_WAITING, mapping.SCAN_UNKNOWN) and bool(scan.get("qrcode"))

    async def _remote_qr(self, s: _Session) -> LoginQr:
        """StartLogin in a process that does not consume the account's stream: Start the puppet
        here, read the QR code its owner publishes."""
        await self._call(s, "Start", base_pb2.StartRequest())
        state = await self._wait_board(s.guid, lambda st: bool(st.get("user_id")) or self._board_waiting(st),
                                       self.config.qr_wait_seconds)
        if state.get("user_id"):
            raise ProviderError("the account is logged in at the provider already", code="ALREADY_ONLINE")
        if not self._board_waiting(state):
            raise ProviderUnavailable(f"the provider sent no QR code within {self.config.qr_wait_seconds:g}s")
        return self._login_qr(state["scan"])

    async def submit_verification_code(self, guid: str, code: str) -> None:
        raise ProviderError("the puppet-service protocol has no verification codes", code="NOT_WAITING_VERIFICATION")

    async def send_message(self, guid: str, *, conversation_id: str, message_type: str,
                           content: dict[str, Any], idempotency_key: str) -> SendResult:
        if idempotency_key in self._sent:
            # A retry of a send this process completed: answered from the record, not sent again.
            return SendResult(wework_msg_id=self._sent[idempotency_key])
        s = await self._session(guid)
        data = mapping.upload_bytes(message_type, content)
        if data is not None:
            # The platform holds the bytes: upload them (the protocol's Upload stream), then send
            # the file box of the id the provider answers.
            uploaded = await self._call(s, "Upload", _chunks(data))
            method, request = "MessageSendFile", message_pb2.MessageSendFileRequest(
                conversation_id=conversation_id,
                file_box=mapping.file_box_uuid_json(uploaded.id, str(content.get("file_name") or "")))
        else:
            method, request = mapping.send_request(conversation_id, message_type, content)
        answer = await self._call(s, method, request, send=True)
        message_id = getattr(answer, "id", "") or ""
        self._sent[idempotency_key] = message_id
        while len(self._sent) > _IDEMPOTENCY_MEMORY:
            self._sent.popitem(last=False)
        # The protocol's answer is the only receipt it has: report it as the provider's "sent"
        # (delivery is never reported; docs/puppet-service.md). Outside the send's path.
        self._spawn(s, self._emit(s, NotifyType.MESSAGE_SENT,
                                  {"msg_id": idempotency_key, "idempotency_key": idempotency_key,
                                   "wework_msg_id": message_id},
                                  event_id=f"ps:{guid}:sent:{idempotency_key}"))
        return SendResult(wework_msg_id=message_id)

    async def logout(self, guid: str) -> None:
        s = await self._session(guid)
        try:
            await self._call(s, "Logout", base_pb2.LogoutRequest())
        except ProviderError as exc:
            if exc.retryable:
                raise
            # The puppet refuses a logout when nobody is logged in: the result we want.
            log.info("puppet-service logout of %s answered %s; treated as logged out", guid, exc.code)

    async def reconnect(self, guid: str, login_token: str | None) -> Liveness:
        """Restores the session without a QR when the puppet is still logged in (or logs in
        again by itself, as a provider that kept the session does after a restart)."""
        s = await self._session(guid, fresh_token=True)
        if not await self._consumed_here(guid):
            return await self._remote_reconnect(s)
        await self.attach(guid)
        if s.user_id is None:
            seen = s.scan_seq
            await self._call(s, "Start", base_pb2.StartRequest())
            await s.wait_for(lambda: s.user_id is not None or (s.scan_seq > seen and self._waiting_qr(s)),
                             self.config.login_wait_seconds)
        return self._reconnected(online=s.user_id is not None, waiting_qr=self._waiting_qr(s))

    async def _remote_reconnect(self, s: _Session) -> Liveness:
        state = await self._board_state(s.guid)
        if not state.get("user_id"):
            await self._call(s, "Start", base_pb2.StartRequest())
            state = await self._wait_board(s.guid, lambda st: bool(st.get("user_id")) or self._board_waiting(st),
                                           self.config.login_wait_seconds)
        return self._reconnected(online=bool(state.get("user_id")), waiting_qr=self._board_waiting(state))

    def _reconnected(self, *, online: bool, waiting_qr: bool) -> Liveness:
        """A reconnect's outcome: back online; the session is gone (the puppet shows a new QR
        code: a new login is needed); or not back yet (worth trying again)."""
        now = self._clock()
        if online:
            return Liveness(alive=True, online=True, last_seen=now, details={"reconnected": True})
        if waiting_qr:
            return Liveness(alive=True, online=False, last_seen=now,
                            details={"reason": "SESSION_LOST", "recoverable": False})
        return Liveness(alive=True, online=False, last_seen=now,
                        details={"reason": "RECONNECT_FAILED", "recoverable": True})

    async def check_liveness(self, guid: str) -> Liveness:
        s = await self._session(guid)
        await self._call(s, "Ding", base_pb2.DingRequest(data="liveness"))
        return Liveness(alive=True, online=s.user_id is not None, last_seen=self._clock(),
                        details={"streaming": self.streaming(guid)})

    async def close(self) -> None:
        self._closed = True
        task, self._ding_task = self._ding_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for guid in list(self._sessions):
            await self.detach(guid, close=True)
        await self._discovery.close()

    # ---- the event stream (one consumer per account) --------------------------------------------

    def streaming(self, guid: str) -> bool:
        s = self._sessions.get(guid)
        return s is not None and s.stream_task is not None and not s.stream_task.done()

    def attached(self) -> list[str]:
        return [g for g in self._sessions if self.streaming(g)]

    async def attach(self, guid: str) -> None:
        """Consumes the account's event stream in this process (idempotent). Raises the reason
        when the stream cannot be opened (wrong token, held by another consumer, unreachable)."""
        # One opener at a time per account: a login and the ownership tick may attach at once,
        # and a second stream would be refused by the provider (ALREADY_EXISTS).
        async with self._attach_locks.setdefault(guid, asyncio.Lock()):
            if not self.streaming(guid):
                s = await self._session(guid, fresh_token=True)  # a rotated token takes effect here
                s.stream_error = None
                s.stream_open.clear()
                s.stream_task = asyncio.create_task(self._consume(s), name=f"puppet-events-{guid}")
                if self._ding_task is None:
                    self._ding_task = asyncio.create_task(self._ding_loop(), name="puppet-ding")
        s = self._sessions[guid]
        assert s.stream_task is not None
        waiter = asyncio.create_task(s.stream_open.wait())
        try:
            await asyncio.wait({waiter, s.stream_task}, timeout=self.config.connect_timeout_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if s.stream_open.is_set():
            return
        if s.stream_error is not None:
            raise s.stream_error
        raise ProviderUnavailable(f"the event stream did not open within {self.config.connect_timeout_seconds:g}s")

    async def detach(self, guid: str, *, close: bool = False) -> None:
        """Stops consuming the account's stream here (its lease moved, or shutdown)."""
        s = self._sessions.get(guid)
        if s is None:
            return
        tasks = [t for t in (s.stream_task, *s.tasks) if t is not None]
        s.stream_task = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        s.user_id, s.scan = None, None
        await self._publish(s)  # nothing known here any more: the next consumer publishes anew
        if close:
            self._sessions.pop(guid, None)
            await s.channel.close()

    async def _consume(self, s: _Session) -> None:
        backoff = self.config.reconnect_backoff_initial_seconds
        while not self._closed:
            call = s.stub.Event(event_pb2.EventRequest(), metadata=s.metadata)
            try:
                async for event in call:
                    if not s.stream_open.is_set():
                        s.stream_open.set()
                        backoff = self.config.reconnect_backoff_initial_seconds
                    await self._handle(s, event)
                reason = "the provider ended the event stream"
            except asyncio.CancelledError:
                call.cancel()
                raise
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    s.stream_error = _refused_token(code)
                    if s.user_id is not None:  # revoked while online: recovery then ends in ERROR
                        s.user_id = None
                        await self._emit(s, NotifyType.OFFLINE, {"reason": "the provider refused the token"})
                    await self._publish(s)
                    await s.notify()
                    return
                if code == grpc.StatusCode.ALREADY_EXISTS:
                    s.stream_error = ProviderError("another consumer holds this account's event stream",
                                                   code="STREAM_HELD_ELSEWHERE", retryable=True)
                    await s.notify()
                    return
                s.stream_error = ProviderUnavailable(f"event stream: {code.name}")
                reason = f"the event stream was lost ({code.name})"
            s.stream_open.clear()
            if s.user_id is not None:
                s.user_id = None
                await self._emit(s, NotifyType.OFFLINE, {"reason": reason})
            s.scan = None
            await self._publish(s)
            await s.notify()
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.config.reconnect_backoff_max_seconds)

    async def _handle(self, s: _Session, event: event_pb2.EventResponse) -> None:
        """One event; the reads it needs are retried while the provider is unreachable, and an
        event that still cannot be translated is logged and skipped (never the stream's end)."""
        delay = 0.2
        for attempt in range(1, 6):
            try:
                await self._on_event(s, event)
                return
            except ProviderError as exc:
                if not exc.retryable or attempt == 5:
                    log.warning("puppet-service %s event of %s skipped: %s (%s)",
                                ET.EventType.Name(event.type), s.guid, exc.code, exc)
                    return
            await asyncio.sleep(delay)
            delay *= 2

    async def _on_event(self, s: _Session, event: event_pb2.EventResponse) -> None:
        payload = mapping.parse_payload(event.payload)
        kind = event.type
        if kind in (ET.EVENT_TYPE_HEARTBEAT, ET.EVENT_TYPE_DONG):
            await self._emit(s, NotifyType.HEARTBEAT, {"time": self._clock().isoformat()})
        elif kind == ET.EVENT_TYPE_SCAN:
            s.scan, s.scan_seq = payload, s.scan_seq + 1
            notify, data = mapping.scan_callback(payload, self._clock(),
                                                 timedelta(seconds=self.config.qr_ttl_seconds))
            await self._emit(s, notify, data)
        elif kind == ET.EVENT_TYPE_LOGIN:
            await self._on_login(s, str(payload.get("contactId") or ""))
        elif kind == ET.EVENT_TYPE_LOGOUT:
            s.user_id = None
            await self._emit(s, NotifyType.LOGGED_OUT, {"reason": str(payload.get("data") or "logged out")[:200]})
        elif kind == ET.EVENT_TYPE_MESSAGE:
            await self._on_message(s, str(payload.get("messageId") or ""))
        elif kind in (ET.EVENT_TYPE_ROOM_JOIN, ET.EVENT_TYPE_ROOM_LEAVE, ET.EVENT_TYPE_ROOM_TOPIC):
            left = kind == ET.EVENT_TYPE_ROOM_LEAVE and s.user_id in (payload.get("removeeIdList") or [])
            await self._room_changed(s, str(payload.get("roomId") or ""), is_active=not left)
        elif kind == ET.EVENT_TYPE_DIRTY:
            await self._on_dirty(s, payload)
        elif kind == ET.EVENT_TYPE_READY:
            self._spawn(s, self._sync(s))
        elif kind == ET.EVENT_TYPE_RESET:
            # The puppet asks to be restarted: Start again; its LOGIN/SCAN events follow.
            log.warning("puppet-service reset for %s: restarting the puppet", s.guid)
            self._spawn(s, self._call(s, "Start", base_pb2.StartRequest()))
        elif kind == ET.EVENT_TYPE_ERROR:
            log.warning("puppet-service error event for %s: %s", s.guid, self._scrub(s, str(payload)[:300]))
        else:  # FRIENDSHIP, ROOM_INVITE, POST: nothing in the platform consumes them yet
            log.debug("puppet-service event %s for %s ignored", ET.EventType.Name(kind), s.guid)
        if kind in (ET.EVENT_TYPE_SCAN, ET.EVENT_TYPE_LOGIN, ET.EVENT_TYPE_LOGOUT):
            await self._publish(s)
            await s.notify()

    async def _on_login(self, s: _Session, contact_id: str) -> None:
        info: dict[str, Any] = {"user_id": contact_id}
        try:
            info = mapping.contact_info(await self._call(s, "ContactPayload",
                                                         contact_pb2.ContactPayloadRequest(id=contact_id)))
        except ProviderError as exc:
            log.warning("puppet-service: the logged-in contact of %s could not be read (%s)", s.guid, exc.code)
        s.user_id = contact_id
        await self._emit(s, NotifyType.ONLINE, {"user_info": info})
        self._spawn(s, self._sync(s))

    async def _on_message(self, s: _Session, message_id: str) -> None:
        message = await self._call(s, "MessagePayload", message_pb2.MessagePayloadRequest(id=message_id))
        if s.user_id is not None and message.talker_id == s.user_id:
            return  # our own send, echoed back: recorded when it was sent
        room = talker = None
        if message.room_id:
            room = await self._optional(s, "RoomPayload", room_pb2.RoomPayloadRequest(id=message.room_id))
        if message.talker_id:
            talker = await self._optional(s, "ContactPayload", contact_pb2.ContactPayloadRequest(id=message.talker_id))
        content = await self._message_content(s, message)
        data = mapping.message_received(message, mapping.Incoming(room, talker, content), self._clock())
        # The provider's message id is the dedupe key: a stream replayed across a handover or
        # reconnect stores each message once.
        await self._emit(s, NotifyType.MESSAGE_RECEIVED, data, event_id=f"ps:{s.guid}:msg:{message.id}")

    async def _message_content(self, s: _Session, message: message_pb2.MessagePayloadResponse) -> dict[str, Any]:
        if message.type == mapping.WT_URL:
            answer = await self._optional(s, "MessageUrl", message_pb2.MessageUrlRequest(id=message.id))
            return mapping.url_content(answer.url_link) if answer is not None else {"text": message.text}
        if message.type == mapping.WT_MINI_PROGRAM:
            answer = await self._optional(s, "MessageMiniProgram", message_pb2.MessageMiniProgramRequest(id=message.id))
            return (mapping.mini_program_content(answer.mini_program) if answer is not None
                    else {"text": message.text})
        if message.type == mapping.WT_CONTACT:
            answer = await self._optional(s, "MessageContact", message_pb2.MessageContactRequest(id=message.id))
            return {"contact_id": answer.id if answer is not None else ""}
        if message.type in mapping.MEDIA_TYPES:
            # A reference, not the bytes: MessageFile/Download fetch them from the provider later.
            return {"file_name": message.filename, "media_ref": f"puppet-service:message:{message.id}"}
        return {"text": message.text}

    async def _on_dirty(self, s: _Session, payload: dict[str, Any]) -> None:
        kind, target = int(payload.get("payloadType") or 0), str(payload.get("payloadId") or "")
        if kind in (mapping.DIRTY_ROOM, mapping.DIRTY_ROOM_MEMBER) and target:
            await self._room_changed(s, target)
        elif kind == mapping.DIRTY_CONTACT and target:
            contact = await self._optional(s, "ContactPayload", contact_pb2.ContactPayloadRequest(id=target))
            if contact is not None and contact.id != s.user_id:
                await self._emit(s, NotifyType.CONVERSATION_CHANGED, mapping.contact_conversation(contact))

    async def _room_changed(self, s: _Session, room_id: str, *, is_active: bool = True) -> None:
        room = await self._optional(s, "RoomPayload", room_pb2.RoomPayloadRequest(id=room_id))
        if room is not None:
            await self._emit(s, NotifyType.CONVERSATION_CHANGED, mapping.room_conversation(room, is_active=is_active))

    async def _sync(self, s: _Session) -> None:
        """Contacts and rooms into conversations (after a login, on READY)."""
        budget = self.config.sync_max_conversations
        if budget <= 0:
            return
        rooms = await self._optional(s, "RoomList", room_pb2.RoomListRequest())
        for room_id in list(rooms.ids if rooms is not None else [])[:budget]:
            await self._room_changed(s, room_id)
        budget -= len(rooms.ids) if rooms is not None else 0
        contacts = await self._optional(s, "ContactList", contact_pb2.ContactListRequest())
        for contact_id in list(contacts.ids if contacts is not None else [])[:max(budget, 0)]:
            if contact_id == s.user_id:
                continue
            contact = await self._optional(s, "ContactPayload", contact_pb2.ContactPayloadRequest(id=contact_id))
            if contact is not None and contact.friend:
                await self._emit(s, NotifyType.CONVERSATION_CHANGED, mapping.contact_conversation(contact))

    async def _ding_loop(self) -> None:
        """Asks every logged-in attached puppet for a DONG (a heartbeat) now and then."""
        while not self._closed:
            await asyncio.sleep(self.config.ding_interval_seconds)
            await asyncio.gather(*(self._ding(s) for s in list(self._sessions.values())
                                   if s.user_id is not None and self.streaming(s.guid)))

    async def _ding(self, s: _Session) -> None:
        with contextlib.suppress(ProviderError):
            await self._call(s, "Ding", base_pb2.DingRequest(data="heartbeat"))

    async def _publish(self, s: _Session) -> None:
        if self.board is not None and (self.board.owns(s.guid) or self.streaming(s.guid)):
            await self.board.publish(s.guid, {"scan": s.scan, "user_id": s.user_id, "at": self._clock().isoformat()})

    def _spawn(self, s: _Session, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except ProviderError as exc:
                log.warning("puppet-service background call for %s failed: %s", s.guid, exc.code)

        task = asyncio.create_task(run())
        s.tasks.add(task)
        task.add_done_callback(s.tasks.discard)

    async def _emit(self, s: _Session, notify: NotifyType, data: dict[str, Any], *, event_id: str | None = None) -> None:
        """Delivers one callback, retrying until the sink takes it: the stream is not read on
        meanwhile, so an event read is never dropped (the provider buffers behind us)."""
        callback = ProviderCallback(guid=s.guid, notify_type=int(notify), data=data,
                                    event_id=event_id or f"ps:{uuid.uuid4().hex}", time=self._clock())
        delay = 0.1
        while True:
            try:
                await self._sink.deliver(callback)
                return
            except Exception as exc:  # noqa: BLE001 - the sink's outage: wait and deliver again
                log.warning("puppet-service: delivering %s of %s failed, retrying in %.1fs: %r",
                            notify.name, s.guid, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    # ---- channels and calls ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ProviderError("the provider adapter is closed", code="PROVIDER_CLOSED")

    @staticmethod
    def _waiting_qr(s: _Session) -> bool:
        return s.scan is not None and int(s.scan.get("status") or 0) in (mapping.SCAN_WAITING, mapping.SCAN_UNKNOWN) \
            and bool(s.scan.get("qrcode"))

    async def _session(self, guid: str, *, fresh_token: bool = False) -> _Session:
        self._check_open()
        lock = self._session_locks.setdefault(guid, asyncio.Lock())
        async with lock:
            s = self._sessions.get(guid)
            if s is not None and not fresh_token:
                return s
            token = await self._tokens(guid)
            if not token:
                raise ProviderError("the account has no puppet-service token: set provider_token with "
                                    "UpdateAccount", code="NO_TOKEN")
            if s is not None and s.token == token:
                return s
            if s is not None:  # the token changed: a new puppet
                await self.detach(guid, close=True)
            endpoint = await self._endpoint(token)
            channel = self._channel(endpoint, token)
            s = _Session(guid=guid, token=token, channel=channel, stub=puppet_pb2_grpc.PuppetStub(channel))
            self._sessions[guid] = s
            return s

    def _channel(self, endpoint: str, token: str) -> grpc.aio.Channel:
        options = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000),
                   ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        if not uses_tls(self.config, token):
            return grpc.aio.insecure_channel(endpoint, options=options)
        name = self.config.server_name or token_sni(token)
        if not name:
            raise ProviderError("the token has no server-name prefix (\"<name>_...\"); set "
                                "provider.puppet_service.server_name", code="TLS_SERVER_NAME_MISSING")
        options.append(("grpc.ssl_target_name_override", name))
        credentials = grpc.ssl_channel_credentials(root_certificates=self._root_ca)
        return grpc.aio.secure_channel(endpoint, credentials, options=options)

    async def _endpoint(self, token: str) -> str:
        if self.config.endpoint:
            return self.config.endpoint
        if token in self._endpoints:
            return self._endpoints[token]
        url = self.config.discovery_url.replace("{token}", token)
        try:
            async with self._discovery().get(url, allow_redirects=False) as answer:
                status = answer.status
                text = await read_body(answer, 64 * 1024) if status < 300 else b""
        except AnswerTooLarge:
            raise ProviderError("puppet-service discovery answered more than 64 KiB",
                                code="BAD_RESPONSE") from None
        except TRANSPORT_ERRORS as exc:
            # Never the URL: it carries the token.
            raise ProviderUnavailable(f"puppet-service discovery failed: {describe(exc)}") from None
        if 400 <= status < 500:
            raise ProviderError("puppet-service discovery does not know the account's token",
                                code="TOKEN_NOT_DISCOVERED", status=status)
        if status >= 300:
            raise ProviderUnavailable(f"puppet-service discovery answered HTTP {status}", status=status)
        try:
            body = json.loads(text)
            endpoint = f"{body['host']}:{int(body['port'])}"
        except (ValueError, KeyError, TypeError):
            raise ProviderError("puppet-service discovery answered without host and port",
                                code="BAD_RESPONSE") from None
        self._endpoints[token] = endpoint
        return endpoint

    async def _optional(self, s: _Session, method: str, request: Any) -> Any:
        """A read whose failure leaves a field empty instead of failing the event."""
        try:
            return await self._call(s, method, request)
        except ProviderError as exc:
            if exc.retryable:
                raise
            log.info("puppet-service %s for %s failed (%s); continuing without it", method, s.guid, exc.code)
            return None

    async def _call(self, s: _Session, method: str, request: Any, *, send: bool = False) -> Any:
        try:
            return await getattr(s.stub, method)(request, metadata=s.metadata,
                                                 timeout=self.config.call_timeout_seconds)
        except grpc.aio.AioRpcError as exc:
            raise self._error(s, method, exc, send=send) from None

    def _error(self, s: _Session, method: str, exc: grpc.aio.AioRpcError, *, send: bool) -> ProviderError:
        code = exc.code()
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return _refused_token(code)
        details = self._scrub(s, exc.details() or "")[:300]
        if code == grpc.StatusCode.UNAVAILABLE:
            return ProviderUnavailable(f"{method}: the puppet service is unreachable ({details})")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            if send:
                # The send may have gone out: retrying could send it twice, so it is not retried.
                return ProviderError(f"{method}: no answer within {self.config.call_timeout_seconds:g}s; the "
                                     "message may or may not have been sent", code="SEND_OUTCOME_UNKNOWN")
            return ProviderUnavailable(f"{method}: no answer within {self.config.call_timeout_seconds:g}s")
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return ProviderError(f"{method}: the provider does not implement it", code="UNSUPPORTED")
        return ProviderError(f"{method}: {details or code.name}", code=f"PUPPET_{code.name}")

    @staticmethod
    def _scrub(s: _Session, text: str) -> str:
        return text.replace(s.token, "<token>") if s.token else text


async def _chunks(data: bytes) -> AsyncIterator[download_upload_pb2.UploadRequest]:
    for i in range(0, len(data), mapping.UPLOAD_CHUNK_BYTES) or [0]:
        yield download_upload_pb2.UploadRequest(chunk=data[i:i + mapping.UPLOAD_CHUNK_BYTES])


def _refused_token(code: grpc.StatusCode) -> ProviderError:
    return ProviderError(f"the provider refused the account's puppet-service token ({code.name})",
                         code="TOKEN_REFUSED")
