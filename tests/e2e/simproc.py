"""The provider simulator served over HTTP (`python -m wework.server.providers.sim_server`), shared
by several server processes; its /_requests record shows how often the provider was called."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness import httpcall

SIM_CONFIG = {"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1, "heartbeat_interval_seconds": 1,
              "delivery_delay_seconds": 0.01}


@dataclass
class SimServer:
    proc: subprocess.Popen
    url: str

    def send_requests(self) -> int:
        """SendMessage calls the provider received (re-sends with the same key included)."""
        return sum(1 for r in httpcall.get(self.url + "/_requests").json() if r["path"].endswith("/messages"))

    def clear_requests(self) -> None:
        httpcall.delete(self.url + "/_requests")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


def start_sim_server(workdir: Path, port: int, callback_url: str, secret: str) -> SimServer:
    log = open(workdir / f"sim-{port}.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "wework.server.providers.sim_server", "--port", str(port),
         "--callback-url", callback_url, "--callback-secret", secret, "--config", json.dumps(SIM_CONFIG)],
        stdout=log, stderr=subprocess.STDOUT)
    sim = SimServer(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while True:
        try:
            httpcall.get(sim.url + "/_requests", timeout=1)
            return sim
        except httpcall.TRANSPORT_ERRORS:
            if time.monotonic() > deadline or proc.poll() is not None:
                sim.stop()
                raise RuntimeError(f"the simulator did not come up:\n{(workdir / f'sim-{port}.log').read_text()}")
            time.sleep(0.1)
