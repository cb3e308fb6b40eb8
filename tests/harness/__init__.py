"""Test harness shared by every integration test: real servers, unique databases, shard maps.

Imported as `harness` (tests/conftest.py puts tests/ on sys.path).
"""

from .databases import (
    ISSUED_PREFIXES,
    bucket_ranges,
    create_scratch_database,
    kill_connection,
    make_database_config,
    make_sqlite_config,
    new_db_prefix,
    physical_database_names,
    single_connection_engine,
)
from .servers import (
    INSTALL_HINT,
    MariaDBServer,
    RedisServer,
    ServerUnavailable,
    find_or_start_mariadb,
    find_or_start_redis,
    free_port,
    private_mariadb,
    start_private_mariadb,
    start_private_redis,
)

__all__ = [
    "INSTALL_HINT", "ISSUED_PREFIXES", "MariaDBServer", "RedisServer", "ServerUnavailable", "bucket_ranges",
    "create_scratch_database", "find_or_start_mariadb", "find_or_start_redis", "free_port",
    "kill_connection", "make_database_config", "make_sqlite_config", "new_db_prefix",
    "physical_database_names", "private_mariadb", "single_connection_engine", "start_private_mariadb",
    "start_private_redis",
]
