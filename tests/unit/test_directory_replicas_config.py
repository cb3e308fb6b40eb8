"""database.directory_replicas: what the settings accept (docs/failover.md, "The directory database")."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from wework.persistence.config import DatabaseConfig, ShardSpec

PRIMARY = "mysql+aiomysql://u:p@dir-a:3306/wework_directory"
SHARD = [ShardSpec(name="s0", buckets="0-1023", dsn="mysql+aiomysql://u:p@db-0:3306/wework_{db}_0")]


def test_a_mariadb_directory_takes_replicas():
    config = DatabaseConfig(directory_dsn=PRIMARY, directory_replicas=["mysql+aiomysql://u:p@dir-b:3306/wework_directory"],
                            shards=SHARD)
    assert config.directory_replicas == ["mysql+aiomysql://u:p@dir-b:3306/wework_directory"]


@pytest.mark.parametrize("directory, replica", [
    (PRIMARY, PRIMARY),  # the primary itself
    (PRIMARY, "mysql+aiomysql://u:p@dir-b:3306/wework_{db}"),  # a template, not a database
    ("sqlite+aiosqlite:///var/data/directory.db", "sqlite+aiosqlite:///var/data/directory-b.db"),  # no replication
])
def test_bad_directory_replicas_are_refused(directory, replica):
    with pytest.raises(ValidationError, match="directory"):
        DatabaseConfig(directory_dsn=directory, directory_replicas=[replica], shards=SHARD)
