"""asyncio client: `async with AsyncWeworkClient(options) as client: await client.tenants.get_tenant(...)`.

Unary methods are coroutines; List methods return an AsyncPager (`async for` over every item,
`.pages` for the responses); iter_* and server-streaming methods return async iterators.
The service classes are generated from the proto descriptors (_async/services.py); the
blocking client (wework.client.sync) is derived from the same files.
"""

from ._async import services as _services
from ._async.core import AsyncClientBase, AsyncPager, AsyncServiceClient, AsyncTransport
from ._async.services import *  # every generated service client

__all__ = ["AsyncClientBase", "AsyncPager", "AsyncServiceClient", "AsyncTransport"]
__all__ += _services.__all__
