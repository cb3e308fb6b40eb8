"""SimulatorService use cases: act as the phone, the network or a chat partner of an account,
through the in-process provider simulator (development and demos; docs/providers.md)."""

from __future__ import annotations

from wework.domain.access import Principal
from wework.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, PreconditionViolation
from wework.server.application.accounts import AccountStore, provider_failure
from wework.server.application.context import require_id
from wework.server.providers.base import ProviderError
from wework.server.providers.simulator import SimState, SimulatorProvider

# The setting that decides it, named in every refusal.
PROVIDER_SETTING = "provider.kind (env WEWORK_PROVIDER__KIND)"


class SimulatorUseCases:
    def __init__(self, store: AccountStore) -> None:
        self._store = store

    async def scan(self, principal: Principal, account_id: str, *, scan_only: bool) -> None:
        simulator, guid = await self._instance(principal, account_id)
        try:
            if simulator.state(guid) == SimState.WAITING_SCAN:
                await simulator.scan(guid)
                if scan_only:
                    return
            await simulator.confirm(guid)
        except ProviderError as exc:
            raise provider_failure(exc, f"accounts/{account_id}") from None

    async def disconnect(self, principal: Principal, account_id: str, reason: str) -> None:
        if len(reason) > 100:
            raise InvalidArgument(FieldViolation("reason", "at most 100 characters"))
        simulator, guid = await self._instance(principal, account_id)
        try:
            await simulator.disconnect(guid, reason or "connection_lost")
        except ProviderError as exc:
            raise provider_failure(exc, f"accounts/{account_id}") from None

    async def incoming_message(self, principal: Principal, account_id: str, conversation_id: str, text: str,
                               sender_name: str, conversation_name: str) -> str:
        """The provider's message id of the simulated incoming message."""
        violations = [FieldViolation(path, f"{path} is 1 to {limit} characters")
                      for path, value, limit in (("conversation_id", conversation_id, 100), ("text", text, 2000))
                      if not value or len(value) > limit]
        violations += [FieldViolation(path, f"at most {limit} characters")
                       for path, value, limit in (("sender_name", sender_name, 100),
                                                  ("conversation_name", conversation_name, 100))
                       if len(value) > limit]
        if violations:
            raise InvalidArgument(violations)
        simulator, guid = await self._instance(principal, account_id)
        sender = {"user_id": "sim-peer", "name": sender_name} if sender_name else None
        try:
            callback = await simulator.incoming_message(guid, conversation_id, content=text, sender=sender,
                                                        conversation_name=conversation_name or None)
        except ProviderError as exc:
            raise provider_failure(exc, f"accounts/{account_id}") from None
        return str(callback.data["wework_msg_id"])

    async def _instance(self, principal: Principal, account_id: str) -> tuple[SimulatorProvider, str]:
        tenant_id = principal.require_tenant()
        require_id(account_id, "account_id")
        provider = self._store.require_provider()
        if not isinstance(provider, SimulatorProvider):
            raise FailedPrecondition(
                f"the provider is not the simulator: {PROVIDER_SETTING} is not \"simulator\"",
                [PreconditionViolation("PROVIDER_NOT_SIMULATOR", "provider.kind",
                                       "set provider.kind (WEWORK_PROVIDER__KIND) to simulator")],
                reason="PROVIDER_NOT_SIMULATOR")
        account = await self._store.require(tenant_id, account_id)  # another tenant's: NOT_FOUND
        return provider, account.guid or ""
