"""Test hosts: Linux network namespaces joined to the root namespace by a bridge.

``TestHosts`` gives each named host a network namespace of its own (``cq-``
plus a random suffix plus the host's name), joined by a veth pair to one
bridge in the root namespace. Servers run in the root namespace and listen on
the bridge's address; processes started with ``exec_prefix(host)`` run on
that host and reach the servers only through their veth, so ``cut`` can drop
one host's traffic to one server (a partition) while the others keep going.

Everything lives on a private /24 from 10.203.0.0/16 that no route or address
of this machine uses, and is deleted on exit, also on failure and Ctrl-C.
Creating namespaces needs root, ``ip`` and ``iptables``; ``available()``
says why not when they are missing, so tests can skip with that reason.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import random
import secrets
import shutil
import signal
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Iterator, Sequence

SUPERNET = ipaddress.ip_network("10.203.0.0/16")
LOCK_PATH = Path("/run/lock/callqueue-netns.lock")
COMMAND_TIMEOUT_SECONDS = 15.0
ROUTE_TYPES = ("unicast", "local", "broadcast", "multicast", "anycast", "blackhole", "unreachable",
               "prohibit", "throw", "nat")


class NetnsError(RuntimeError):
    """An ``ip`` or ``iptables`` command failed; the message carries its output."""


def run(argv: Sequence[str]) -> str:
    """Run one network command; its stdout, or NetnsError with stderr."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def available() -> tuple[bool, str]:
    """(True, "") when this process can make test hosts, else (False, why not)."""
    if os.geteuid() != 0:
        return False, "network namespaces need root (running as uid %d)" % os.geteuid()
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return False, f"`{tool}` is not installed (make system installs it)"
    probe = f"cq-probe-{secrets.token_hex(3)}"
    try:
        run(["ip", "netns", "add", probe])
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return False, f"cannot create a network namespace: {exc}"
    try:
        run(["ip", "netns", "exec", probe, "iptables", "-w", "-S", "OUTPUT"])
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return False, f"iptables does not work inside a network namespace: {exc}"
    finally:
        _quietly(["ip", "netns", "delete", probe])
    return True, ""


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine has a route to or an address in."""
    networks = []
    for line in run(["ip", "-4", "-o", "addr", "show"]).splitlines():
        fields = line.split()
        if "inet" in fields:
            networks.append(ipaddress.ip_interface(fields[fields.index("inet") + 1]).network)
    for line in run(["ip", "-4", "route", "show", "table", "all"]).splitlines():
        fields = line.split()
        if fields and fields[0] in ROUTE_TYPES:
            fields = fields[1:]
        if fields and fields[0][0].isdigit():
            networks.append(ipaddress.ip_network(fields[0], strict=False))
    return networks


def free_subnet(rng: random.Random | None = None) -> ipaddress.IPv4Network:
    """A /24 of 10.203.0.0/16 that overlaps nothing this machine routes or owns."""
    used = [network for network in used_networks() if network.prefixlen > 0]
    candidates = [net for net in SUPERNET.subnets(new_prefix=24) if not any(net.overlaps(u) for u in used)]
    if not candidates:
        raise NetnsError(f"no free /24 left in {SUPERNET}")
    return (rng or random.SystemRandom()).choice(candidates)


class TestHosts:
    """Named test hosts (network namespaces) on one bridge; a context manager.

    ``bridge_address`` is the root namespace's address on the bridge: servers
    that the hosts must reach listen there. ``address(host)`` is the host's
    own address.
    """

    __test__ = False  # a helper, not a pytest test class

    def __init__(self, hosts: Sequence[str]) -> None:
        if not hosts or len(set(hosts)) != len(hosts):
            raise ValueError("test hosts need distinct names")
        self.hosts = list(hosts)
        self.suffix = secrets.token_hex(3)
        self.bridge = f"cqbr{self.suffix}"
        self.subnet: ipaddress.IPv4Network | None = None
        self._made_bridge = False
        self._namespaces: list[str] = []
        self._cuts: set[tuple[str, str, int]] = set()
        self._previous_sigterm: Any = None

    # -- names and addresses ------------------------------------------------

    def namespace(self, host: str) -> str:
        self._check_host(host)
        return f"cq-{self.suffix}-{host}"

    def _veth(self, host: str) -> str:
        return f"cqv{self.suffix}{self.hosts.index(host)}"

    @property
    def bridge_address(self) -> str:
        return str(self._subnet_hosts()[0])

    def address(self, host: str) -> str:
        self._check_host(host)
        return str(self._subnet_hosts()[10 + self.hosts.index(host)])

    def exec_prefix(self, host: str) -> list[str]:
        """Put this in front of a command to run it on ``host`` (``ip netns exec`` execs it: same PID)."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def _subnet_hosts(self) -> list[ipaddress.IPv4Address]:
        if self.subnet is None:
            raise NetnsError("test hosts are not set up yet")
        return list(self.subnet.hosts())

    def _check_host(self, host: str) -> None:
        if host not in self.hosts:
            raise KeyError(f"no test host named {host!r} (hosts: {self.hosts})")

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> "TestHosts":
        """Set up; until exit, SIGTERM unwinds like Ctrl-C, so the hosts are deleted then too."""
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self.setup()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def setup(self) -> None:
        """Make the bridge on a free /24, then each host with its veth and loopback up."""
        with _subnet_lock():
            self.subnet = free_subnet()
            run(["ip", "link", "add", self.bridge, "type", "bridge"])
            self._made_bridge = True
            run(["ip", "addr", "add", f"{self.bridge_address}/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        for host in self.hosts:
            self._add_host(host)

    def _add_host(self, host: str) -> None:
        namespace, veth, peer = self.namespace(host), self._veth(host), f"cqp{self.suffix}{self.hosts.index(host)}"
        run(["ip", "netns", "add", namespace])
        self._namespaces.append(namespace)
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
        run(["ip", "link", "set", peer, "netns", namespace])
        run(["ip", "link", "set", veth, "master", self.bridge])
        run(["ip", "link", "set", veth, "up"])
        inside = self.exec_prefix(host)
        run([*inside, "ip", "link", "set", peer, "name", "eth0"])
        run([*inside, "ip", "addr", "add", f"{self.address(host)}/24", "dev", "eth0"])
        run([*inside, "ip", "link", "set", "eth0", "up"])
        run([*inside, "ip", "link", "set", "lo", "up"])

    def teardown(self) -> None:
        """Delete the namespaces (their veth pairs go with them) and the bridge; never raises."""
        for namespace in reversed(self._namespaces):
            _quietly(["ip", "netns", "delete", namespace])
        self._namespaces.clear()
        for host in self.hosts:
            _quietly(["ip", "link", "delete", self._veth(host)])
        if self._made_bridge:
            _quietly(["ip", "link", "delete", self.bridge])
            self._made_bridge = False
        self._cuts.clear()

    def namespaces(self) -> list[str]:
        """The namespaces this object made and has not deleted yet."""
        return list(self._namespaces)

    # -- partitions -----------------------------------------------------------

    def cut(self, host: str, address: str, port: int) -> None:
        """Drop ``host``'s TCP traffic to ``address:port`` and the replies: connections hang, as in a partition."""
        if (host, address, port) not in self._cuts:
            for rule in _partition_rules(address, port):
                run([*self.exec_prefix(host), "iptables", "-w", "-I", *rule])
            self._cuts.add((host, address, port))

    def heal(self, host: str, address: str | None = None, port: int | None = None) -> None:
        """Remove the cut of ``host`` to ``address:port``, or every cut of ``host`` when none is named."""
        for cut in sorted(self._cuts):
            if cut[0] == host and address in (None, cut[1]) and port in (None, cut[2]):
                for rule in _partition_rules(cut[1], cut[2]):
                    run([*self.exec_prefix(host), "iptables", "-w", "-D", *rule])
                self._cuts.discard(cut)

    def cuts(self) -> Iterator[tuple[str, str, int]]:
        """The cuts in force: (host, address, port)."""
        return iter(sorted(self._cuts))


def _partition_rules(address: str, port: int) -> list[list[str]]:
    """iptables rules (chain first) that drop packets to ``address:port`` and the packets coming back."""
    return [["OUTPUT", "-p", "tcp", "-d", address, "--dport", str(port), "-j", "DROP"],
            ["INPUT", "-p", "tcp", "-s", address, "--sport", str(port), "-j", "DROP"]]


@contextmanager
def _subnet_lock() -> Iterator[None]:
    """An exclusive file lock while a /24 is chosen and taken, so parallel runs pick different ones."""
    LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_PATH, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _quietly(argv: Sequence[str]) -> None:
    """Run a clean-up command, ignoring failure (the thing may be gone already)."""
    try:
        subprocess.run(list(argv), capture_output=True, timeout=COMMAND_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        pass
