"""Every request is decoded and checked against its descriptor before a handler sees it
(issue 17, items 5 and 6): undecodable bodies, undefined enum numbers, out-of-range Timestamps,
NaN in a Struct and deep nesting answer INVALID_ARGUMENT naming the field, never UNKNOWN or
INTERNAL, and change nothing."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from harness.embedded import embedded_stack
from harness.rpcs import call_raw, enum_paths, methods_of, path_of, request_class, with_undefined_enum
from wework.v1 import account_pb2, message_pb2, report_pb2

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
async def stack(tmp_path_factory):
    async with embedded_stack(tmp_path_factory.mktemp("request-validation")) as stack:
        yield stack


@pytest.fixture(scope="module")
async def channel(stack):
    async with grpc.aio.insecure_channel(stack.target) as channel:
        yield channel


def all_methods(stack):
    return methods_of(r.service_full_name for r in stack.app.registrations)


def method(stack, name: str):
    return next(m for m in all_methods(stack) if m.name == name)


async def send(stack, channel, name: str, request) -> object:
    return await call_raw(channel, method(stack, name), [request.SerializeToString()], stack.tenant_metadata())


async def test_undecodable_bodies_are_invalid_argument_on_every_rpc(stack, channel):
    garbage = b"\xff\xff\xff\xff\x0f"  # a field tag that no message has
    metadata = (*stack.admin_metadata(), ("x-wework-tenant", stack.tenant_id))
    for m in all_methods(stack):
        outcome = await call_raw(channel, m, [garbage], metadata)
        assert outcome.code is INVALID, (path_of(m), str(outcome))
        assert "DecodeError" not in outcome.details and "google.protobuf" not in outcome.details


async def test_an_undefined_number_on_any_enum_field_of_any_request_names_the_field(stack, channel):
    # Platform admin acting in the tenant: every method admits the caller, so the check is reached.
    metadata = (*stack.admin_metadata(), ("x-wework-tenant", stack.tenant_id))
    checked = 0
    for m in all_methods(stack):
        for _, chain in enum_paths(m.input_type):
            request, path = with_undefined_enum(request_class(m), chain)
            outcome = await call_raw(channel, m, [request.SerializeToString()], metadata)
            assert outcome.code is INVALID and path in outcome.violations, (path_of(m), path, str(outcome))
            checked += 1
    assert checked >= 20  # the walk found the enums (status filters, types, strategies...)


@pytest.mark.parametrize(("rpc", "request_", "field"), [
    ("ListMessages", message_pb2.ListMessagesRequest(status=99), "status"),
    ("ListAccounts", account_pb2.ListAccountsRequest(status=99), "status"),
    ("ListBatchTasks", message_pb2.ListBatchTasksRequest(status=99), "status"),
])
async def test_an_unknown_status_filter_is_refused_not_dropped(stack, channel, rpc, request_, field):
    outcome = await send(stack, channel, rpc, request_)
    assert outcome.code is INVALID and outcome.violations == [field], str(outcome)


async def test_a_template_of_an_unknown_type_is_refused_and_not_stored(stack, channel):
    template = message_pb2.MessageTemplate(template_name="t99", template_type=99,
                                           template_content=message_pb2.MessageContent(text=message_pb2.TextContent(
                                               text="hi")))
    outcome = await send(stack, channel, "CreateTemplate", message_pb2.CreateTemplateRequest(template=template))
    assert outcome.code is INVALID and outcome.violations == ["template.template_type"], str(outcome)
    from wework.v1 import message_pb2_grpc
    names = [t.template_name for t in (await message_pb2_grpc.MessageServiceStub(channel).ListTemplates(
        message_pb2.ListTemplatesRequest(), metadata=stack.tenant_metadata())).templates]
    assert "t99" not in names


@pytest.mark.parametrize("seconds", [2**40, -(2**40), 253_402_300_800])
async def test_out_of_range_timestamps_are_invalid_argument(stack, channel, seconds):
    request = report_pb2.GetMessageStatsRequest(start_time=timestamp_pb2.Timestamp(seconds=seconds))
    outcome = await send(stack, channel, "GetMessageStats", request)
    assert outcome.code is INVALID and outcome.violations == ["start_time"], str(outcome)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
async def test_non_finite_numbers_in_a_struct_are_invalid_argument(stack, channel, number):
    variables = struct_pb2.Struct()
    variables.update({"a": {"b": number}})
    outcome = await send(stack, channel, "RenderTemplatePreview",
                         message_pb2.RenderTemplatePreviewRequest(id="x", variables=variables))
    assert outcome.code is INVALID and outcome.violations == ["variables.a.b"], str(outcome)


async def test_deep_nesting_is_invalid_argument(stack, channel):
    nested: dict = {"leaf": 1}
    for _ in range(20):  # 40 message levels (Struct, Value, Struct...)
        nested = {"n": nested}
    variables = struct_pb2.Struct()
    variables.update(nested)
    outcome = await send(stack, channel, "RenderTemplatePreview",
                         message_pb2.RenderTemplatePreviewRequest(id="x", variables=variables))
    assert outcome.code is INVALID and len(outcome.violations) == 1, str(outcome)
    assert outcome.violations[0].startswith("variables.n.n.n"), str(outcome)


async def test_an_undecodable_chunk_mid_import_is_invalid_argument(stack, channel):
    from harness.batches import add_created_task
    task_id = await add_created_task(stack.app.db, stack.tenant_id)
    good = message_pb2.ImportBatchTargetsRequest(task_id=task_id, targets=[
        message_pb2.BatchTarget(conversation_id="c1")]).SerializeToString()
    outcome = await call_raw(channel, method(stack, "ImportBatchTargets"), [good, good, b"\x0a\xff\xff"],
                             stack.tenant_metadata())
    assert outcome.code is INVALID, str(outcome)
    assert "message 2 of the stream" in outcome.details or outcome.violations == ["request"], str(outcome)
