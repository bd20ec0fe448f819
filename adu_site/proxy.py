"""The address of the client behind a request, for lockouts and the audit trail alike.

X-Forwarded-For is whatever the client says, unless a proxy ADU trusts wrote it: it is
read only when the direct peer (REMOTE_ADDR) is in ADU_FORWARDED_ALLOW_IPS (addresses or
networks, comma-separated; empty, the default: never). Then the header is read from the
right, past every trusted proxy, to the first address no trusted proxy vouches for.
"""

import ipaddress
from functools import lru_cache

from django.conf import settings


def parse_allowed(entries) -> tuple:
    """The trusted proxies as networks ('*': every peer); ValueError on a bad entry."""
    networks = []
    for entry in entries:
        entry = str(entry).strip()
        if not entry:
            continue
        networks.append("*" if entry == "*" else ipaddress.ip_network(entry))
    return tuple(networks)


@lru_cache(maxsize=8)
def _allowed(entries: tuple) -> tuple:
    return parse_allowed(entries)


def _ip(text: str):
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(ip, allowed: tuple) -> bool:
    return ip is not None and any(n == "*" or ip in n for n in allowed)


def client_address(request) -> str | None:
    """The client's IP address: REMOTE_ADDR, or what trusted proxies forwarded."""
    if request is None:
        return None
    peer = request.META.get("REMOTE_ADDR") or None
    allowed = _allowed(tuple(getattr(settings, "FORWARDED_ALLOW_IPS", ())))
    if not peer or not allowed or not _trusted(_ip(peer), allowed):
        return peer
    address = peer
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed([h for h in hops if h.strip()]):
        ip = _ip(hop)
        if ip is None:
            break  # garbage: the last proxy that could be trusted is all that is known
        address = str(ip)
        if not _trusted(ip, allowed):
            break  # the first hop no trusted proxy vouches for: the client
    return address
