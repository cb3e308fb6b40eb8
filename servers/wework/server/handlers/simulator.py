"""SimulatorService handler: drives the in-process provider simulator (development only)."""

from __future__ import annotations

from wework.domain.access import Permissions as P
from wework.server.application.simulator import SimulatorUseCases
from wework.server.runtime.context import current_principal
from wework.server.runtime.registry import ServiceRegistration
from wework.v1 import simulator_pb2 as pb
from wework.v1 import simulator_pb2_grpc as pb_grpc

METHOD_PERMISSIONS: dict[str, str | None] = {
    "SimulateScan": P.SIMULATOR_CONTROL,
    "SimulateDisconnect": P.SIMULATOR_CONTROL,
    "SimulateIncomingMessage": P.SIMULATOR_CONTROL,
}


class SimulatorServiceHandler(pb_grpc.SimulatorServiceServicer):
    def __init__(self, simulator: SimulatorUseCases) -> None:
        self._simulator = simulator

    async def SimulateScan(self, request, context):
        await self._simulator.scan(current_principal(), request.account_id, scan_only=request.scan_only)
        return pb.SimulateScanResponse()

    async def SimulateDisconnect(self, request, context):
        await self._simulator.disconnect(current_principal(), request.account_id, request.reason)
        return pb.SimulateDisconnectResponse()

    async def SimulateIncomingMessage(self, request, context):
        msg_id = await self._simulator.incoming_message(
            current_principal(), request.account_id, request.conversation_id, request.text, request.sender_name,
            request.conversation_name)
        return pb.SimulateIncomingMessageResponse(wework_msg_id=msg_id)


def registration(handler: SimulatorServiceHandler) -> ServiceRegistration:
    # Served with AccountService (the "account" service setting): it acts on its accounts.
    return ServiceRegistration(
        name="account",
        service_full_name="wework.v1.SimulatorService",
        servicer=handler,
        add_to_server=pb_grpc.add_SimulatorServiceServicer_to_server,
        method_permissions=METHOD_PERMISSIONS,
    )
