"""Streaming RPCs through both clients, against a real in-process gRPC server (127.0.0.1, port 0)
that serves scripted AccountService and MessageService streams. A thread-pool server, so the
blocking client (which blocks its thread) and the asyncio client can both call it."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from wework.client import AsyncWeworkClient, ClientOptions, NotFoundError, UnavailableError, WeworkClient
from wework.client._base import describe
from wework.v1 import account_pb2, account_pb2_grpc, message_pb2, message_pb2_grpc, tenant_pb2


def change(n: int) -> account_pb2.WatchAccountsResponse:
    return account_pb2.WatchAccountsResponse(
        change=account_pb2.AccountStatusChange(account_id=f"a-{n}"), cursor=str(n))


class ScriptedAccounts(account_pb2_grpc.AccountServiceServicer):
    """WatchAccounts from a cursor: the start response, then changes; the first stream breaks
    (UNAVAILABLE) after `break_after` changes, as a server restart would."""

    def __init__(self) -> None:
        self.break_after: int | None = 2
        self.cursors: list[str] = []
        self.authorizations: list[str] = []

    def WatchAccounts(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.cursors.append(request.cursor)
        self.authorizations.append(dict(context.invocation_metadata()).get("authorization", ""))
        start = int(request.cursor or 0)
        yield account_pb2.WatchAccountsResponse(cursor=str(start))
        for n in range(start + 1, 6):
            if self.break_after is not None and n > self.break_after:
                self.break_after = None
                context.abort(grpc.StatusCode.UNAVAILABLE, "server shutting down")
            yield change(n)


class ScriptedMessages(message_pb2_grpc.MessageServiceServicer):
    def ImportBatchTargets(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:
        requests = list(request_iterator)
        if requests[0].task_id == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "batch task 'missing' not found")
        return message_pb2.ImportBatchTargetsResponse(imported_count=sum(len(r.targets) for r in requests))

    def WatchBatchTask(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        for percent in (50, 100):
            yield message_pb2.BatchTaskProgress(task=message_pb2.BatchSendTask(id=request.id,
                                                                               progress_percent=percent))


def echo(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    for request in requests:
        if request.id == "boom":
            context.abort(grpc.StatusCode.NOT_FOUND, "no boom")
        yield tenant_pb2.Tenant(id=request.id)


# No wework.v1 RPC streams both ways yet: a bidirectional method as the descriptors would describe it.
GET_TENANT = tenant_pb2.DESCRIPTOR.services_by_name["TenantService"].methods_by_name["GetTenant"]
ECHO = dataclasses.replace(describe(GET_TENANT), name="Echo", path="/wework.v1.EchoService/Echo",
                           client_streaming=True, server_streaming=True)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ScriptedAccounts, str]]:
    accounts = ScriptedAccounts()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    account_pb2_grpc.add_AccountServiceServicer_to_server(accounts, server)
    message_pb2_grpc.add_MessageServiceServicer_to_server(ScriptedMessages(), server)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("wework.v1.EchoService", {
        "Echo": grpc.stream_stream_rpc_method_handler(
            echo, request_deserializer=tenant_pb2.GetTenantRequest.FromString,
            response_serializer=tenant_pb2.Tenant.SerializeToString)})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield accounts, f"127.0.0.1:{port}"
    server.stop(None)


def imports() -> Iterator[message_pb2.ImportBatchTargetsRequest]:
    yield message_pb2.ImportBatchTargetsRequest(task_id="task-1", targets=[message_pb2.BatchTarget()] * 2)
    yield message_pb2.ImportBatchTargetsRequest(targets=[message_pb2.BatchTarget()] * 3)


def test_blocking_streams(served: tuple[ScriptedAccounts, str]) -> None:
    accounts, target = served
    accounts.break_after, accounts.cursors = 2, []
    with WeworkClient(ClientOptions(target, access_token="tok")) as client:
        watched = []
        for response in client.accounts.watch_accounts(reconnect_delay=0.01):
            watched.append(response.cursor)
            if response.cursor == "5":
                break
        assert client.messages.import_batch_targets(imports()).imported_count == 5
        with pytest.raises(NotFoundError):
            client.messages.import_batch_targets([message_pb2.ImportBatchTargetsRequest(task_id="missing")])
        progress = [p.task.progress_percent for p in client.messages.watch_batch_task("task-1")]
    # The broken stream was reopened from the last cursor; its start response was not repeated.
    assert watched == ["0", "1", "2", "3", "4", "5"]
    assert accounts.cursors == ["", "2"]
    assert accounts.authorizations[-1] == "Bearer tok"
    assert progress == [50, 100]


async def test_asyncio_streams(served: tuple[ScriptedAccounts, str]) -> None:
    accounts, target = served
    accounts.break_after, accounts.cursors = 2, []
    refreshes = []

    async def provider() -> str:  # a coroutine function: the asyncio client awaits it
        refreshes.append(threading.get_ident())
        return f"tok-{len(refreshes)}"

    async with AsyncWeworkClient(ClientOptions(target, token_provider=provider)) as client:
        watched = []
        async for response in client.accounts.watch_accounts(reconnect_delay=0.01):
            watched.append(response.cursor)
            if response.cursor == "5":
                break
        assert (await client.messages.import_batch_targets(imports())).imported_count == 5
        with pytest.raises(NotFoundError):
            await client.messages.import_batch_targets([message_pb2.ImportBatchTargetsRequest(task_id="missing")])
        progress = [p.task.progress_percent async for p in client.messages.watch_batch_task("task-1")]
    assert watched == ["0", "1", "2", "3", "4", "5"]
    assert accounts.cursors == ["", "2"]
    assert accounts.authorizations[-2:] == ["Bearer tok-1", "Bearer tok-2"]  # asked again at the reopen
    assert progress == [50, 100]


def test_without_resume_a_broken_stream_raises(served: tuple[ScriptedAccounts, str]) -> None:
    accounts, target = served
    accounts.break_after = 0
    with WeworkClient(ClientOptions(target)) as client:
        stream = client.accounts.watch_accounts(resume=False)
        assert next(stream).cursor == "0"
        with pytest.raises(UnavailableError):
            next(stream)


async def test_bidirectional_streams_in_both_clients(served: tuple[ScriptedAccounts, str]) -> None:
    _, target = served
    requests = [tenant_pb2.GetTenantRequest(id=i) for i in ("a", "b", "boom")]
    with WeworkClient(ClientOptions(target)) as client:
        received = []
        with pytest.raises(NotFoundError):
            for tenant in client._transport.bidi_stream(ECHO, requests, None, ()):
                received.append(tenant.id)
    async with AsyncWeworkClient(ClientOptions(target)) as aclient:
        areceived = []
        with pytest.raises(NotFoundError):
            async for tenant in aclient._transport.bidi_stream(ECHO, requests, None, ()):
                areceived.append(tenant.id)
    assert received == areceived == ["a", "b"]
