"""The SSRF guard: a webhook may only reach a public address over HTTPS.

A URL is checked when it is registered and again at every delivery, since what
a name resolves to can change (DNS rebinding). Every address the name resolves
to must be public: loopback, private, link-local (169.254.169.254, the cloud
metadata service), multicast, reserved and unspecified addresses are refused,
IPv4-mapped IPv6 ones judged by the IPv4 address inside. Delivery then connects
to the address checked here, not to a fresh lookup, and never follows a redirect.
``GPUFLEET_NOTIFY_ALLOW_HTTP`` and ``GPUFLEET_NOTIFY_ALLOW_PRIVATE`` lift the rules
for local testing.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from gpufleet.errors import ConfigError


class TargetRefused(ConfigError):
    """A notification target that may not be used: not HTTPS, or not a public address."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """A checked webhook URL and the address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]  # the IP addresses checked, in the resolver's order

    @property
    def address(self) -> str:
        return self.addresses[0]


def refused_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why the address may not be reached, or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for what, bad in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                      ("multicast", ip.is_multicast), ("unspecified", ip.is_unspecified),
                      ("reserved", ip.is_reserved), ("private", ip.is_private),
                      ("not globally routable", not ip.is_global)):
        if bad:
            return what
    return None


def check_url(url: str, *, allow_http: bool = False, allow_private: bool = False) -> Resolved:
    """The URL resolved to an address it may reach; TargetRefused with the reason if none."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise TargetRefused(f"webhook {url!r}: expected an https:// URL")
    if parts.scheme == "http" and not allow_http:
        raise TargetRefused(f"webhook {url!r}: http is refused, use https "
                            "(GPUFLEET_NOTIFY_ALLOW_HTTP=1 allows it for local testing)")
    if parts.username or parts.password:
        raise TargetRefused(f"webhook {parts.hostname}: credentials in the URL are refused")
    host = parts.hostname
    if not host:
        raise TargetRefused(f"webhook {url!r}: no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused(f"webhook {url!r}: invalid port") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"webhook host {host!r} does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not addresses:
        raise TargetRefused(f"webhook host {host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            why = refused_address(ipaddress.ip_address(address))
            if why:
                raise TargetRefused(
                    f"webhook host {host!r} resolves to {address}, a {why} address: refused "
                    "(GPUFLEET_NOTIFY_ALLOW_PRIVATE=1 allows it for local testing)")
    return Resolved(url=url, scheme=parts.scheme, host=host, port=port,
                    addresses=tuple(addresses))
