"""Where a webhook may be sent: the rules for a subscription's URL and for the addresses
the worker may connect to.

Partners choose the URLs and the platform's worker POSTs to them, so a URL must not
reach into the platform's own network (server-side request forgery): a database, a
cloud metadata service at 169.254.169.254, an admin port on 127.0.0.1. In production
(``dev_targets`` off, the default) a URL is ``https://`` and every address its host
resolves to must be public (:func:`public_address`). A host's addresses can change at
any time (DNS rebinding), so a subscription refuses only what it can know without
asking DNS -- a literal address that is not public, ``localhost`` -- and the worker
resolves and vets the host at every attempt, then connects to the address it vetted
(:mod:`app.webhooks.transport`). With ``dev_targets`` on (the demo, tests), ``http://``
and private or loopback addresses are allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from .errors import InvalidSubscription

MAX_URL = 2000


def public_address(address: str) -> bool:
    """Is ``address`` (an IP address as text) a public, globally routable one? An
    IPv4-mapped IPv6 address (``::ffff:10.0.0.1``) is judged as the IPv4 address it
    carries; anything that does not parse is not public."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def literal_address(host: str) -> str | None:
    """The IP address ``host`` spells, in canonical form, or None for a host name.
    Legacy IPv4 spellings that resolvers accept (``127.1``, ``0x7f000001``,
    ``2130706433``) count as the address they spell."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


def allowed_scheme(scheme: str, *, dev_targets: bool) -> bool:
    return scheme == "https" or (dev_targets and scheme == "http")


def check_url(url, *, dev_targets: bool = False) -> str:
    """An absolute URL with a host, no credentials, no fragment; ``https://`` to a host
    that is not a non-public literal address or ``localhost`` (both relaxed by
    ``dev_targets``). Refused with the rule it breaks."""
    def refuse(why: str):
        raise InvalidSubscription(f"url {why}", field="url")

    if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL:
        refuse(f"must be 1-{MAX_URL} characters")
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        refuse("must be ASCII without spaces or control characters (percent-encode it)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port out of range)
    except ValueError:
        refuse("is not a valid URL")
    if parts.scheme not in ("http", "https"):
        refuse("must be https://" + (" or http://" if dev_targets else ""))
    if not allowed_scheme(parts.scheme, dev_targets=dev_targets):
        refuse("must be https:// (webhooks are not sent in clear text)")
    if "@" in parts.netloc:
        refuse("must not carry credentials (user:password@)")
    if not parts.hostname:
        refuse("must name a host")
    if parts.fragment or url.endswith("#"):
        refuse("must not have a #fragment")
    if not dev_targets:
        host = parts.hostname.rstrip(".")
        address = literal_address(host)
        if address is not None and not public_address(address):
            refuse(f"must not name a private, loopback or reserved address ({address})")
        if host == "localhost" or host.endswith(".localhost"):
            refuse("must not name localhost")
    return url
