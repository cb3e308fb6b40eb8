"""Persistence layer: models, migrations, shard router, repositories, Redis helpers."""
