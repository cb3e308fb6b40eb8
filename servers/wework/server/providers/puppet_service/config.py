"""Settings of the puppet-service provider (`provider.puppet_service`, docs/puppet-service.md)."""

from __future__ import annotations

from pydantic import BaseModel, Field

# The discovery service Wechaty clients ask when no endpoint is configured: {token} is replaced
# by the account's token, the answer is {"host": ..., "port": ...} (404: unknown token).
DEFAULT_DISCOVERY_URL = "https://api.chatie.io/v0/hosties/{token}"


class PuppetServiceConfig(BaseModel):
    # host:port of the provider's puppet service; unset: resolve each token through discovery_url.
    endpoint: str | None = None
    # Wechaty token discovery: {token} is replaced; the answer is {"host": ..., "port": ...}.
    discovery_url: str = DEFAULT_DISCOVERY_URL
    # TLS is on unless this is false or the token starts with "insecure_" (the protocol's convention).
    tls: bool = True
    # PEM file of the CA that signed the provider's certificate; unset: the Wechaty community root
    # CA that puppet-service servers use by default (bundled, as Wechaty clients do).
    ca_file: str | None = None
    # The name the certificate must carry; unset: the token's prefix before its last "_" (its SNI).
    server_name: str | None = None
    # How long opening an account's event stream may take.
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    # Deadline of each call (a send past it is SEND_OUTCOME_UNKNOWN and not retried).
    call_timeout_seconds: float = Field(default=15.0, gt=0)
    # How long StartLogin waits for the provider's first QR code.
    qr_wait_seconds: float = Field(default=30.0, gt=0)
    # How long a recovery waits for the puppet's LOGIN.
    login_wait_seconds: float = Field(default=15.0, gt=0)
    # The protocol gives QR codes no expiry (a SCAN timeout event ends them): the expiry shown.
    qr_ttl_seconds: float = Field(default=120.0, gt=0)
    # A lost event stream is reopened after initial * 2^(n-1) seconds, capped.
    reconnect_backoff_initial_seconds: float = Field(default=0.5, gt=0)
    # The longest wait before a lost event stream is reopened.
    reconnect_backoff_max_seconds: float = Field(default=30.0, gt=0)
    # Ding (answered by a DONG event, a heartbeat) this often per logged-in account: the
    # heartbeat monitor's proof of life. Keep it well under account.heartbeat_timeout_seconds.
    ding_interval_seconds: float = Field(default=15.0, gt=0)
    # Contacts and rooms read into conversations after each login and READY (0: no sync).
    sync_max_conversations: int = Field(default=5000, ge=0)
    # Account ownership across processes (Redis leases; not in the embedded single process): a
    # dead process's accounts are streamed again within lease + tick + the stream's opening.
    ownership_lease_seconds: float = Field(default=15.0, gt=0)
    # How often each process renews its leases and rebalances the accounts.
    ownership_tick_seconds: float = Field(default=2.0, gt=0)
