"""A small network of the test's own making: Linux network namespaces joined by veth pairs.

    root (pytest) ---- app (wework-server, its dispatcher and callback ingress)
       |  |  |          |  |  |
       |  |  +---- db --+  |  |       db: a private mariadbd
       |  +------- redis --+  |       redis: a private redis-server
       +---------- prov ------+       prov: the provider simulator over HTTP

The links app<->db, app<->redis and app<->prov are the ones the drills cut (`cut`: the far end
goes down, so packets are silently dropped, as in a real partition: connects and reads time
out) and slow down (`netem`, tc's network emulator; `throttle`, a token bucket). The root<->X
links are the test's own view (its gRPC client, its checks in the database and the
simulator) and are never touched.

Everything is created with iproute2 (`ip netns`, `ip link`) and removed on close(); names and
addresses are random per lab, so concurrent runs do not collide. Needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class LabUnavailable(RuntimeError):
    """The kernel or the machine refuses something the lab needs; the message says what."""


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=30)
    if check and res.returncode != 0:
        raise LabUnavailable(f"`{' '.join(args)}` failed ({res.returncode}): {res.stderr.strip()}")
    return res


def ensure_iproute2() -> str:
    """`ip`, installed by scripts/install-iproute2.sh (apt) when missing. Raises LabUnavailable."""
    found = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin")
    if found:
        return found
    res = subprocess.run([str(ROOT / "scripts" / "install-iproute2.sh")], capture_output=True, text=True,
                         check=False, timeout=600)
    found = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin")
    if not found:
        raise LabUnavailable(f"iproute2 is missing and scripts/install-iproute2.sh could not install it: "
                             f"{res.stdout}{res.stderr}")
    return found


@dataclass
class Link:
    """A veth pair: `a_dev` (with `a_ip`) in namespace `a`, `b_dev` (with `b_ip`) in `b`;
    a namespace of None is the test's own (root) namespace."""

    a: str | None
    b: str
    a_dev: str
    b_dev: str
    a_ip: str
    b_ip: str


@dataclass
class NetLab:
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: dict[str, str] = field(default_factory=dict)  # role -> namespace name
    links: dict[tuple[str | None, str], Link] = field(default_factory=dict)
    _octet: int = field(default_factory=lambda: random.randrange(100, 250))

    def ns(self, role: str) -> str:
        return self.namespaces[role]

    def create(self, roles: list[str]) -> None:
        ensure_iproute2()
        routes = _run("ip", "-4", "route", "show", "table", "all").stdout
        while f"10.{self._octet}." in routes:  # an address range this machine already uses
            self._octet = random.randrange(100, 250)
        for role in roles:
            name = f"wwt{self.tag}{role}"
            _run("ip", "netns", "add", name)
            self.namespaces[role] = name
            _run("ip", "-n", name, "link", "set", "lo", "up")

    def _subnet(self, index: int) -> ipaddress.IPv4Network:
        return ipaddress.ip_network(f"10.{self._octet}.{index}.0/24")

    def connect(self, a: str | None, b: str) -> Link:
        """A veth pair between role `a` (None: root) and role `b`, with addresses on its own /24."""
        index = len(self.links) + 1
        net = self._subnet(index)
        a_ip, b_ip = str(net.network_address + 1), str(net.network_address + 2)
        a_dev, b_dev = f"wwt{self.tag}{index}a", f"wwt{self.tag}{index}b"  # <= 15 characters
        _run("ip", "link", "add", a_dev, "type", "veth", "peer", "name", b_dev)
        _run("ip", "link", "set", b_dev, "netns", self.ns(b))
        if a is not None:
            _run("ip", "link", "set", a_dev, "netns", self.ns(a))
        link = Link(a, b, a_dev, b_dev, a_ip, b_ip)
        for ns, dev, ip in ((a, a_dev, a_ip), (b, b_dev, b_ip)):
            _run(*self._ip(ns), "addr", "add", f"{ip}/24", "dev", dev)
            _run(*self._ip(ns), "link", "set", dev, "up")
        self.links[(a, b)] = link
        return link

    def _ip(self, role: str | None) -> list[str]:
        return ["ip"] if role is None else ["ip", "-n", self.ns(role)]

    def exec_prefix(self, role: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(role)]

    def cut(self, a: str, b: str) -> None:
        """Partition: `b`'s end goes down; what `a` sends is dropped without an answer."""
        link = self.links[(a, b)]
        _run(*self._ip(b), "link", "set", link.b_dev, "down")

    def heal(self, a: str, b: str) -> None:
        link = self.links[(a, b)]
        _run(*self._ip(b), "link", "set", link.b_dev, "up")

    def netem_refusal(self) -> str | None:
        """Why `tc ... netem` cannot run here (None when it can): the kernel needs sch_netem."""
        if not shutil.which("tc") and not shutil.which("tc", path="/usr/sbin:/sbin"):
            return "tc (iproute2) is not installed"
        link = next(iter(self.links.values()))
        res = _run("ip", "netns", "exec", self.ns(link.b), "tc", "qdisc", "add", "dev", link.b_dev, "root",
                   "netem", "delay", "1ms", check=False)
        if res.returncode != 0:
            return (f"the kernel refuses tc netem ({res.stderr.strip()}): module sch_netem is not "
                    "available (modprobe sch_netem, or a kernel built with CONFIG_NET_SCH_NETEM)")
        _run("ip", "netns", "exec", self.ns(link.b), "tc", "qdisc", "del", "dev", link.b_dev, "root", check=False)
        return None

    def netem(self, a: str, b: str, *, delay_ms: int, jitter_ms: int = 0, loss_percent: float = 0) -> None:
        """Latency and loss on both directions of the a<->b link."""
        link = self.links[(a, b)]
        spec = ["delay", f"{delay_ms}ms", f"{jitter_ms}ms", "loss", f"{loss_percent}%"]
        for role, dev in ((a, link.a_dev), (b, link.b_dev)):
            prefix = [] if role is None else self.exec_prefix(role)
            _run(*prefix, "tc", "qdisc", "replace", "dev", dev, "root", "netem", *spec)

    def throttle(self, a: str, b: str, *, rate_kbit: int) -> None:
        """A slow link without netem: both directions of a<->b limited to `rate_kbit` by a token
        bucket (tc tbf), packets beyond its 500 ms queue dropped."""
        link = self.links[(a, b)]
        for role, dev in ((a, link.a_dev), (b, link.b_dev)):
            prefix = [] if role is None else self.exec_prefix(role)
            _run(*prefix, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{rate_kbit}kbit",
                 "burst", "4kb", "latency", "500ms")

    def clear_qdisc(self, a: str, b: str) -> None:
        """Removes netem or tbf from both ends of the a<->b link."""
        link = self.links[(a, b)]
        for role, dev in ((a, link.a_dev), (b, link.b_dev)):
            prefix = [] if role is None else self.exec_prefix(role)
            _run(*prefix, "tc", "qdisc", "del", "dev", dev, "root", check=False)

    def close(self) -> None:
        """Deletes the namespaces (their veth ends go, and with them the peers in root)."""
        for (a, _b), link in self.links.items():
            if a is None:
                _run("ip", "link", "del", link.a_dev, check=False)
        for name in self.namespaces.values():
            _run("ip", "netns", "del", name, check=False)
        self.namespaces.clear()
        self.links.clear()


@contextlib.contextmanager
def netlab(roles: list[str]):
    """A NetLab with `roles` created, closed on exit. Raises LabUnavailable (with the kernel's
    refusal) when namespaces cannot be made here."""
    lab = NetLab()
    try:
        lab.create(roles)
        yield lab
    finally:
        lab.close()
