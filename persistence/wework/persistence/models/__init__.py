"""SQLAlchemy models, one declarative base and MetaData per database.

Service databases (user, account, message, callback) exist once per shard; `directory` is
unsharded. Partitioned tables carry `table.info["partition"] = (column, "year" | "month")`,
which the migrations and the partition maintenance read.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from . import account, callback, directory, message, user
from . import webhook as webhook  # registers the webhook tables on callback.metadata
from .account import AccountStatusHistory, Conversation, WeworkAccount
from .base import UtcDateTime, utcnow
from .callback import CallbackEvent
from .directory import PLATFORM_TENANT_ID, AccountGuid, TenantCode
from .message import BatchSendTask, Message, MessageStatistic, MessageTemplate
from .user import ApiKey, Role, Tenant, User, UserRole

METADATA: dict[str, MetaData] = {
    "directory": directory.metadata,
    "user": user.metadata,
    "account": account.metadata,
    "message": message.metadata,
    "callback": callback.metadata,
}

__all__ = [
    "METADATA", "PLATFORM_TENANT_ID", "AccountGuid", "AccountStatusHistory", "ApiKey", "BatchSendTask",
    "CallbackEvent", "Conversation", "Message", "MessageStatistic", "MessageTemplate", "Role", "Tenant",
    "TenantCode", "User", "UserRole", "UtcDateTime", "WeworkAccount", "account", "callback", "directory",
    "message", "user", "utcnow",
]
