"""Blocking client: `with WeworkClient(options) as client: client.tenants.get_tenant(...)`.

Each method takes the request message (or a shortcut value plus keyword fields), attaches the
credential and one deadline, fills request_id, retries where that is safe, and raises
WeworkError subclasses instead of grpc.RpcError. List methods return a Pager (iterate it for
every item, `.pages` for the responses). Generated, with wework.client.aio, from one source:
_async/ (docs/decisions/0029-client-from-one-source.md).
"""

from ._sync import services as _services
from ._sync.core import ClientBase, Pager, ServiceClient, Transport
from ._sync.services import *  # every generated service client

__all__ = ["ClientBase", "Pager", "ServiceClient", "Transport"]
__all__ += _services.__all__
