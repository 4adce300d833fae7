"""The client's IP address behind reverse proxies, without trusting what a client can forge.

``X-Forwarded-For`` and ``Forwarded`` are lists that every proxy *appends* to, so only their
right-hand end is trustworthy: it was written by the proxy in front of the app. The resolver
starts from the socket peer and walks the list right to left while the address it holds belongs
to a trusted proxy; the first address that is not a trusted proxy is the client. With no trusted
proxies (the default) the headers are ignored and the socket peer is the client, so a spoofed
header changes nothing.

Rate limiting keys and idempotency scopes both use it (``kit.client_ip``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Union

__all__ = ["ClientIP", "IPAddress", "network_key"]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]  # noqa: UP007
Headers = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]

_HEADERS = ("x-forwarded-for", "forwarded")
_MAX_ENTRIES = 64  # a longer chain is not walked further (a client could send thousands)


def _parse_ip(text: str) -> IPAddress | None:
    """An address from a header entry or a socket peer: ``1.2.3.4``, ``1.2.3.4:80``,
    ``[2001:db8::1]:443``, ``2001:db8::1``; IPv4-mapped IPv6 becomes IPv4. None if invalid."""
    text = text.strip().strip('"').strip()
    if not text or len(text) > 100:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` values of an RFC 7239 ``Forwarded`` field, in order (one per element; an
    element without ``for=`` yields ``""``, which is not an address)."""
    out = []
    for element in _split_quoted(value, ","):
        found = ""
        for pair in _split_quoted(element, ";"):
            name, _, val = pair.partition("=")
            if name.strip().lower() == "for":
                found = val.strip()
        out.append(found)
    return out


def _split_quoted(value: str, sep: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            current.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            current.append(ch)
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


class ClientIP:
    """Resolves the client address of a request from its socket peer and forwarding headers.

    ``trusted_proxies``: addresses or CIDR networks of your own proxies (``"10.0.0.0/8"``,
    ``"127.0.0.1"``), and ``"unix"`` for a proxy on a unix socket (a request without a peer
    address); ``header``: ``"x-forwarded-for"`` (default) or ``"forwarded"`` (RFC 7239). Only
    the header you name is read.
    """

    def __init__(
        self, trusted_proxies: Iterable[str] = (), *, header: str = "x-forwarded-for"
    ) -> None:
        if isinstance(trusted_proxies, str):
            trusted_proxies = [p for p in trusted_proxies.split(",") if p.strip()]
        names = [p.strip() for p in trusted_proxies]
        self.unix = "unix" in names
        self.networks = tuple(ipaddress.ip_network(p, strict=False) for p in names if p != "unix")
        header = header.lower()
        if header not in _HEADERS:
            raise ValueError(f"header must be one of {', '.join(_HEADERS)}, not {header!r}")
        self.header = header

    def is_trusted(self, ip: IPAddress) -> bool:
        """Whether ``ip`` is one of the trusted proxies."""
        return any(ip.version == net.version and ip in net for net in self.networks)

    def resolve(self, peer: str | None, headers: Headers = ()) -> str | None:
        """The client address (normalized text) for a request whose socket peer is ``peer``,
        or None when the peer itself is missing or not an address (a unix socket)."""
        ip = self.resolve_ip(peer, headers)
        return None if ip is None else str(ip)

    def resolve_ip(self, peer: str | None, headers: Headers = ()) -> IPAddress | None:
        """Like :meth:`resolve`, as an ``ipaddress`` object."""
        current = _parse_ip(peer) if peer else None
        if current is None:
            if not self.unix:
                return None
        elif not self.networks or not self.is_trusted(current):
            return current
        chain = self._chain(headers)
        for entry in reversed(chain[-_MAX_ENTRIES:]):
            ip = _parse_ip(entry)
            if ip is None:  # "unknown", an obfuscated name, garbage: stop at the last proxy
                return current
            current = ip
            if not self.is_trusted(ip):
                return ip
        return current

    def _chain(self, headers: Headers) -> list[str]:
        items = headers.items() if isinstance(headers, Mapping) else headers
        values = [_text(v) for k, v in items if _text(k).lower() == self.header]
        chain: list[str] = []
        for line in values:  # repeated header lines form one list, in order
            if self.header == "forwarded":
                # each line is parsed alone: a quote left open by the client must not swallow
                # the elements a proxy appended. A line that does not parse ends the walk there.
                chain.extend(_forwarded_for(line) if _balanced(line) else [""])
            else:
                chain.extend(line.split(","))
        return chain


def _text(value: str | bytes) -> str:
    # raw ASGI/WSGI headers may be bytes (latin-1 by the HTTP spec)
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _balanced(line: str) -> bool:
    quoted = escaped = False
    for ch in line:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
    return not quoted


def network_key(ip: str | IPAddress, ipv6_prefix: int = 64) -> str:
    """A rate-limit key for an address: IPv4 as is, IPv6 by its ``/ipv6_prefix`` network (one
    subscriber usually owns a whole /64 and can rotate addresses inside it)."""
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, ipv6_prefix), strict=False))
    return str(addr)
