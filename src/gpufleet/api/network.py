"""Which clients may connect: CIDR allow and deny lists, and trusted proxies.

The client is the connecting address, unless that address is a trusted
proxy: then it is the right-most X-Forwarded-For entry that is not a trusted
proxy itself (entries further left are whatever the client chose to send).
The deny list wins over the allow list; an empty allow list allows anyone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from gpufleet.api.limits import send_json
from gpufleet.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(text: str, *, setting: str) -> tuple[Network, ...]:
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"{setting}: {part!r} is not an IP address or CIDR range"
                              ) from None
    return tuple(networks)


def _address(text: str) -> Address:
    """An address, an IPv4-mapped IPv6 one (``::ffff:203.0.113.7``) as the IPv4 it is, so
    IPv4 rules hold whichever way a proxy or a dual-stack socket reports the client."""
    address = ipaddress.ip_address(text)
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _within(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


class ClientFilter:
    def __init__(self, app: ASGIApp, *, allow: Sequence[Network], deny: Sequence[Network],
                 trusted_proxies: Sequence[Network]) -> None:
        self.app, self.allow, self.deny, self.proxies = app, allow, deny, trusted_proxies

    def client_address(self, scope: Scope) -> Address | None:
        peer = scope.get("client")
        try:
            address = _address(peer[0]) if peer else None
        except ValueError:  # a Unix socket or test transport: no address
            return None
        if address is None or not _within(address, self.proxies):
            return address
        forwarded = [h.decode("latin-1") for n, h in scope["headers"]
                     if n == b"x-forwarded-for"]
        hops = [h.strip() for line in forwarded for h in line.split(",") if h.strip()]
        for hop in reversed(hops):
            try:
                address = _address(hop)
            except ValueError:
                return None  # garbage from a trusted proxy: treat the client as unknown
            if not _within(address, self.proxies):
                return address
        return address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = self.client_address(scope)
        refused = (address is None and bool(self.allow or self.deny)) or (
            address is not None and (_within(address, self.deny)
                                     or (bool(self.allow) and not _within(address, self.allow))))
        if refused:
            await send_json(send, 403, {"detail": "client address not allowed"})
            return
        peer = scope.get("client")
        if address is not None and peer and str(address) != peer[0]:
            # Behind a trusted proxy: downstream sees the real client, and its scheme.
            scope["client"] = (str(address), 0)
            for name, value in scope["headers"]:
                if name == b"x-forwarded-proto" and value in (b"http", b"https"):
                    scope["scheme"] = value.decode()
        await self.app(scope, receive, send)
