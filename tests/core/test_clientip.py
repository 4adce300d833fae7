"""The client-IP resolver: forwarded headers are believed only from trusted proxies, right to
left, so a client cannot choose the address its requests are limited or scoped by."""

from __future__ import annotations

import pytest

import redkit
from redkit import ConfigurationError
from redkit._clientip import ClientIP, network_key
from redkit.settings import Settings

SPOOF = {"X-Forwarded-For": "1.2.3.4", "Forwarded": "for=1.2.3.4"}


def test_without_trusted_proxies_headers_are_ignored() -> None:
    resolver = ClientIP()
    assert resolver.resolve("203.0.113.9", SPOOF) == "203.0.113.9"
    assert resolver.resolve("203.0.113.9:51234") == "203.0.113.9"
    assert resolver.resolve("[2001:db8::1]:443") == "2001:db8::1"
    assert resolver.resolve("::ffff:198.51.100.7") == "198.51.100.7"
    assert resolver.resolve(None) is None
    assert resolver.resolve("/run/app.sock") is None


def test_an_untrusted_peer_cannot_forward() -> None:
    resolver = ClientIP(["10.0.0.0/8"])
    assert resolver.resolve("203.0.113.9", SPOOF) == "203.0.113.9"


def test_the_chain_is_walked_right_to_left_over_trusted_proxies() -> None:
    resolver = ClientIP(["10.0.0.0/8", "192.168.1.1"])
    # the client forged the left part; the proxies appended the rest
    headers = {"X-Forwarded-For": "6.6.6.6, 198.51.100.20, 192.168.1.1"}
    assert resolver.resolve("10.1.2.3", headers) == "198.51.100.20"
    # several header lines form one list, in order
    lines = [("X-Forwarded-For", "6.6.6.6"), ("x-forwarded-for", "198.51.100.20, 10.0.0.5")]
    assert resolver.resolve("10.1.2.3", lines) == "198.51.100.20"
    # every hop trusted: the leftmost is the client
    assert resolver.resolve("10.1.2.3", {"X-Forwarded-For": "10.9.9.9, 10.0.0.1"}) == "10.9.9.9"
    # no header at all: the proxy itself
    assert resolver.resolve("10.1.2.3", {}) == "10.1.2.3"


def test_garbage_stops_the_walk_at_the_last_trusted_hop() -> None:
    resolver = ClientIP(["10.0.0.0/8"])
    for bad in ("unknown", "not-an-ip", "", "1.2.3.4.5", "x" * 5000):
        headers = {"X-Forwarded-For": f"6.6.6.6, {bad}, 10.0.0.2"}
        assert resolver.resolve("10.1.2.3", headers) == "10.0.0.2", bad


def test_rfc_7239_forwarded() -> None:
    resolver = ClientIP(["10.0.0.0/8"], header="forwarded")
    headers = {
        "Forwarded": 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, '
        "for=10.0.0.7;by=10.0.0.1",
        "X-Forwarded-For": "9.9.9.9",  # not the configured header: ignored
    }
    assert resolver.resolve("10.0.0.1", headers) == "2001:db8:cafe::17"
    assert resolver.resolve("10.0.0.1", {"Forwarded": 'for="_hidden", for=10.0.0.3'}) == "10.0.0.3"
    quoted = {"Forwarded": 'for=198.51.100.1;host="a,b;c", for=10.0.0.4'}
    assert resolver.resolve("10.0.0.1", quoted) == "198.51.100.1"
    with pytest.raises(ValueError, match="header"):
        ClientIP(header="x-real-ip")


def test_an_endless_chain_is_not_walked_to_its_end() -> None:
    resolver = ClientIP(["10.0.0.0/8"])
    chain = ", ".join(["10.0.0.9"] * 10_000)
    assert resolver.resolve("10.0.0.1", {"X-Forwarded-For": f"6.6.6.6, {chain}"}) == "10.0.0.9"


def test_network_key_groups_ipv6_by_prefix() -> None:
    assert network_key("203.0.113.9") == "203.0.113.9"
    assert network_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert network_key("2001:db8:1:2:3:4:5:6", ipv6_prefix=48) == "2001:db8:1::/48"
    assert network_key("::ffff:203.0.113.9") == "203.0.113.9"


def test_the_kit_resolver_follows_the_trusted_proxies_setting() -> None:
    with redkit.Redkit(trusted_proxies=("127.0.0.1", "10.0.0.0/8")) as kit:
        assert kit.client_ip.resolve("127.0.0.1", {"X-Forwarded-For": "198.51.100.3"}) == (
            "198.51.100.3"
        )
    with redkit.Redkit.from_settings({"TRUSTED_PROXIES": "10.0.0.0/8, ::1"}) as kit:
        assert kit.client_ip.resolve("::1", {"X-Forwarded-For": "2001:db8::5"}) == "2001:db8::5"
    with redkit.Redkit() as kit:
        assert kit.client_ip.resolve("127.0.0.1", SPOOF) == "127.0.0.1"
    with pytest.raises(ConfigurationError):
        redkit.Redkit(trusted_proxies=("10.0.0.0/33",))
    with pytest.raises(ConfigurationError):
        redkit.Settings(trusted_proxies="10.0.0.1")  # type: ignore[arg-type]
    assert redkit.Settings.from_mapping({"trusted_proxies": "10.0.0.1"}).trusted_proxies == (
        "10.0.0.1",
    )


def test_an_open_quote_from_the_client_cannot_swallow_the_proxys_entry() -> None:
    resolver = ClientIP(["10.0.0.1"], header="forwarded")
    # the proxy appended its own line: the client's broken line ends the walk before it
    lines = [("Forwarded", 'for=1.1.1.1;x="'), ("Forwarded", "for=203.0.113.5")]
    assert resolver.resolve("10.0.0.1", lines) == "203.0.113.5"
    # the proxy appended to the same line: nothing in it can be trusted, the proxy is the answer
    one = {"Forwarded": 'for=1.1.1.1;x=", for=203.0.113.5'}
    assert resolver.resolve("10.0.0.1", one) == "10.0.0.1"
    escaped = [("Forwarded", 'for=1.1.1.1;x="a\\"b"'), ("Forwarded", "for=203.0.113.5")]
    assert resolver.resolve("10.0.0.1", escaped) == "203.0.113.5"


def test_raw_byte_headers_are_read() -> None:
    resolver = ClientIP(["10.0.0.0/8"])
    assert resolver.resolve("10.0.0.1", [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.8")]) == (
        "198.51.100.8"
    )


def test_a_proxy_on_a_unix_socket_is_trusted_only_when_named() -> None:
    chain = {"X-Forwarded-For": "203.0.113.9, 10.0.0.2"}
    assert ClientIP(["10.0.0.0/8"]).resolve("", chain) is None  # no peer: nobody to believe
    both = ClientIP(["unix", "10.0.0.0/8"])
    assert both.resolve("", chain) == "203.0.113.9"
    assert both.resolve(None, {"X-Forwarded-For": "198.51.100.7"}) == "198.51.100.7"
    assert both.resolve("", {}) is None
    assert ClientIP(["unix"]).resolve("192.0.2.1", chain) == "192.0.2.1"  # a TCP peer: itself
    assert Settings.from_url("memory://", trusted_proxies=("unix",)).trusted_proxies == ("unix",)
