"""The embedded Redis (memory://, fakeredis[lua]): loaded only by the processes that use it, and it
runs the same Lua scripts as a real Redis, so no code path exists only for it (issue 22)."""

from __future__ import annotations

import subprocess
import sys
import uuid

from wework.persistence.config import RedisConfig
from wework.persistence.redis.client import create_redis


def test_processes_on_a_real_redis_never_load_fakeredis():
    code = (
        "import sys\n"
        "import wework.server.app, wework.server.cli, wework.server.worker_cli, wework.server.admin\n"
        "from wework.persistence.config import RedisConfig\n"
        "from wework.persistence.redis.client import create_redis\n"
        "create_redis(RedisConfig(url='redis://127.0.0.1:1'))\n"
        "assert 'fakeredis' not in sys.modules, 'fakeredis imported'\n"
        "create_redis(RedisConfig(url='memory://'))\n"
        "assert 'fakeredis' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


async def test_the_embedded_redis_runs_lua_scripts():
    client = create_redis(RedisConfig(url="memory://"))
    key = f"wwtest:lua:{uuid.uuid4().hex}"
    try:
        script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        assert await script(keys=[key], args=[5]) == 5
        assert await script(keys=[key], args=[2]) == 7
    finally:
        await client.delete(key)
        await client.aclose()
