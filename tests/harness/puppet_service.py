"""The Wechaty puppet-service reference server (npm wechaty-puppet-service's PuppetServer with
wechaty-puppet-mock behind it) on a free loopback port, driven by scripts/puppet-service-reference/
server.cjs. `install_reference_server()` runs scripts/install-puppet-service-reference.sh (pinned
versions, into .cache/), so a fresh machine with Node 20 and npm needs nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .servers import ServerUnavailable, free_port

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install-puppet-service-reference.sh"


@functools.cache
def install_reference_server() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise ServerUnavailable("the puppet-service tests need Node 20 and npm (apt-get install nodejs npm)")
    done = subprocess.run([str(INSTALL)], check=True, capture_output=True, text=True, timeout=600)
    return Path(done.stdout.strip().splitlines()[-1])


def reference_ca() -> bytes:
    """The reference server's CA certificate, read from the installed package itself."""
    folder = install_reference_server()
    out = subprocess.run(
        ["node", "-e", "process.stdout.write(require('./node_modules/wechaty-puppet-service/dist/cjs/src/auth/ca.js').TLS_CA_CERT)"],
        cwd=folder, check=True, capture_output=True, timeout=60)
    return out.stdout


class ReferenceServer:
    """One reference server process; `restart()` starts a new one on the same port and state."""

    def __init__(self, token: str, *, tls: bool = True, keep_session: bool = False) -> None:
        self.token, self.tls = token, tls
        self.port = free_port()
        self.folder = install_reference_server()
        self.workdir = Path(tempfile.mkdtemp(prefix="wwt-puppet-"))
        self.state_file = self.workdir / "state.json" if keep_session else None
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self._answers: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> ReferenceServer:
        args = ["node", str(self.folder / "server.cjs"), "--port", str(self.port), "--token", self.token]
        if not self.tls:
            args.append("--no-tls")
        if self.state_file is not None:
            args += ["--state", str(self.state_file)]
        log = open(self.workdir / "server.log", "ab")  # noqa: ASYNC230, SIM115 - a local file, the child owns it
        self.proc = await asyncio.create_subprocess_exec(
            *args, cwd=self.folder, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
            env={**os.environ, "WECHATY_LOG": "warn"})
        self._reader = asyncio.create_task(self._read(self.proc))
        ready = asyncio.create_task(self.wait_event("ready", timeout=60))
        exited = asyncio.create_task(self.proc.wait())
        await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        exited.cancel()
        if not ready.done():
            ready.cancel()
            log_tail = (self.workdir / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the reference server exited before it was ready:\n{log_tail}")
        ready.result()
        return self

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            msg = json.loads(line)
            if "event" in msg:
                async with self._changed:
                    self.events.append(msg)
                    self._changed.notify_all()
            elif msg.get("id") in self._answers:
                self._answers.pop(msg["id"]).set_result(msg)

    async def wait_event(self, name: str, *, count: int = 1, timeout: float = 30) -> dict[str, Any]:
        def found() -> list[dict[str, Any]]:
            return [e for e in self.events if e["event"] == name]

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(found()) >= count)
            return found()[count - 1]

    async def command(self, cmd: str, **args: Any) -> Any:
        assert self.proc is not None and self.proc.stdin is not None
        cid = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._answers[cid] = future
        self.proc.stdin.write((json.dumps({"id": cid, "cmd": cmd, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        answer = await asyncio.wait_for(future, 30)
        if not answer["ok"]:
            raise RuntimeError(f"reference server {cmd}: {answer['error']}")
        return answer["result"]

    async def calls(self) -> list[dict[str, Any]]:
        return await self.command("calls")

    async def kill(self) -> None:
        """SIGKILL: the provider's process dies without a goodbye."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self.events.clear()

    async def restart(self) -> ReferenceServer:
        await self.kill()
        return await self.start()

    async def stop(self) -> None:
        await self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
