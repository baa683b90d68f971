"""Holds a test's process to loopback: any attempt to resolve a name other
than a loopback one or to connect to a non-loopback address fails at once and
is recorded, so a client library that phones home (a time sync, a currency
list, a default URL left in place) fails its test instead of leaving the
machine."""
import contextlib
import ipaddress
import socket

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


def _is_loopback(host) -> bool:
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def loopback_only():
    """Yields the list of refused destinations (empty if the code under test stayed on loopback)."""
    refused: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            refused.append(f"connect {address!r}")
            raise ConnectionRefusedError(f"loopback_only: refused a connection to {address!r}")

    def connect(sock, address):
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        check(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            refused.append(f"resolve {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"loopback_only: refused to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    try:
        yield refused
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = real_connect, real_connect_ex, \
            real_getaddrinfo
