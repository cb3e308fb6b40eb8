"""settle_after_startup(): what start-up made is frozen, so a full collection walks only what the
process made since; the young generation is collected every 10,000 allocations. Run in a child
interpreter: freezing the test process itself would change every later test."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import gc, json
import wework.server.app  # the server's modules, as a started server has them
before = len(gc.get_objects())
from wework.server.runtime.gc_tuning import settle_after_startup
frozen = settle_after_startup()
print(json.dumps({"before": before, "frozen": frozen, "after": len(gc.get_objects()),
                  "threshold": gc.get_threshold()}))
"""


def test_start_up_objects_are_frozen_and_the_young_generation_is_larger():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["frozen"] >= result["before"] // 2 > 10_000
    assert result["after"] < result["before"] // 100  # what a full collection still has to walk
    assert result["threshold"][0] == 10_000
