"""Test hosts in network namespaces: reachable through the bridge, cut like a partition, gone afterwards.

A cut must make connections hang (as when a network drops packets), not be
refused, and must touch only the one host and the one port it names. Without
root, ``ip`` or ``iptables`` these tests skip and say why.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from typing import Iterator

import pytest

from devstack import netns
from devstack.netns import TestHosts

CONNECT_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except socket.timeout:
    print("hung")
except OSError as exc:
    print(f"failed: {exc}")
"""


@pytest.fixture(scope="module")
def usable() -> None:
    ok, reason = netns.available()
    if not ok:
        pytest.skip(f"network namespaces are not possible here: {reason}")


@contextmanager
def listening(address: str, count: int) -> Iterator[list[int]]:
    """``count`` TCP listeners on ``address``; their ports."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            listener = stack.enter_context(socket.socket())
            listener.bind((address, 0))
            listener.listen(16)
            ports.append(listener.getsockname()[1])
        yield ports


def connect_from(hosts: TestHosts, host: str, port: int, timeout_seconds: float = 1.0) -> str:
    """Try to open a TCP connection from ``host`` to the bridge address: connected, hung or failed."""
    argv = [*hosts.exec_prefix(host), sys.executable, "-c", CONNECT_PROBE, hosts.bridge_address, str(port),
            str(timeout_seconds)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()


def test_a_cut_hangs_one_host_on_one_port_and_heals(usable: None) -> None:
    with TestHosts(["a", "b"]) as hosts, listening(hosts.bridge_address, 2) as (cut_port, other_port):
        assert connect_from(hosts, "a", cut_port) == "connected"
        hosts.cut("a", hosts.bridge_address, cut_port)
        assert connect_from(hosts, "a", cut_port) == "hung"
        assert connect_from(hosts, "a", other_port) == "connected"
        assert connect_from(hosts, "b", cut_port) == "connected"
        hosts.heal("a")
        assert connect_from(hosts, "a", cut_port) == "connected"
        assert list(hosts.cuts()) == []


def test_hosts_get_their_own_subnet_and_leave_nothing_behind(usable: None) -> None:
    with TestHosts(["a"]) as first, TestHosts(["a"]) as second:
        assert first.subnet != second.subnet
        assert not first.subnet.overlaps(second.subnet)
        names = first.namespaces() + second.namespaces()
        bridges = [first.bridge, second.bridge]
        assert all(name.startswith("cq-") for name in names)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert not [name for name in names if name in listed]
    assert not [bridge for bridge in bridges if bridge in links]
