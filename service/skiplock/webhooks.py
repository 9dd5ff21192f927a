"""Completion webhooks: what the API, the worker and the client share (SPEC §7).

Signing follows the Standard Webhooks specification (standardwebhooks.com), so its reference
libraries verify what skiplock sends: the secret is `whsec_` + base64 of random bytes, and
`webhook-signature` is `v1,` + base64 of HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.
{body}`, keyed with the secret's decoded bytes.

Targets: a URL is checked when a webhook is made (its form, and its host when that is a
literal address) and again at every attempt, after DNS, against `refusal()`: loopback,
private, link-local, multicast and other non-public addresses are refused unless
SKIPLOCK_WEBHOOK_ALLOW_PRIVATE=true, so a tenant cannot make skiplock's workers call into
the network they run in (SSRF).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

EVENT_TYPES = (
    "content_job.queued",
    "content_job.running",
    "content_job.progress",
    "content_job.done",
    "content_job.failed",
    "content_job.canceled",
)
DEFAULT_EVENTS = ("content_job.done", "content_job.failed", "content_job.canceled")
SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix every secret has, not a secret)
SECRET_BYTES = 32  # Standard Webhooks: 24 to 64 bytes
MAX_URL_LENGTH = 2048
ALLOW_PRIVATE_HINT = "set SKIPLOCK_WEBHOOK_ALLOW_PRIVATE=true to allow it"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidWebhookUrl(ValueError):
    """The URL cannot be a webhook target; the message says why."""


# ------------------------------------------------------------------------------------------
# Secrets and signatures
# ------------------------------------------------------------------------------------------


def new_secret() -> str:
    """`whsec_` + standard, padded base64 of SECRET_BYTES random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded part after `whsec_` (the prefix is optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a webhook secret cannot be empty")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">."""
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, body),
    }


# ------------------------------------------------------------------------------------------
# Targets
# ------------------------------------------------------------------------------------------

_PRINTABLE_ASCII = re.compile(r"[!-~]+")  # no spaces, no control characters, ASCII only
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?")


@dataclass(frozen=True)
class Target:
    """Where a delivery goes: what to connect to, and what to send in the request line."""

    scheme: str  # http or https
    host: str  # a DNS name (lower case) or a literal address, without brackets
    port: int
    host_header: str  # the URL's host[:port], as the Host header
    path: str  # path and query, as the request target

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def parse_url(url: object) -> Target:
    """The target of a webhook URL, or InvalidWebhookUrl saying what is wrong with it."""
    if not isinstance(url, str) or not url:
        raise InvalidWebhookUrl("url is required: an http or https URL")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(f"url is longer than {MAX_URL_LENGTH} characters")
    if not _PRINTABLE_ASCII.fullmatch(url):
        raise InvalidWebhookUrl(
            "url must be ASCII without spaces (percent-encode the path; write an "
            "international domain name in its xn-- form)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidWebhookUrl(f"url is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidWebhookUrl("url must start with http:// or https://")
    if "@" in parts.netloc:
        raise InvalidWebhookUrl("url cannot carry a user name or password")
    if parts.fragment or url.endswith("#"):
        raise InvalidWebhookUrl("url cannot have a #fragment")
    return Target(
        scheme=scheme,
        host=_host(parts.hostname or ""),
        port=_port(port, scheme),
        host_header=parts.netloc,
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
    )


def _host(host: str) -> str:
    if literal_address(host) is not None:
        return host
    if not _HOSTNAME.fullmatch(host):
        raise InvalidWebhookUrl(f"url has no valid host name ({host!r})")
    return host.rstrip(".")


def _port(port: int | None, scheme: str) -> int:
    if port == 0:
        raise InvalidWebhookUrl("url has port 0")
    return port or (443 if scheme == "https" else 80)


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# An address inside these IPv6 ranges stands for an IPv4 address, which is what to judge.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def refusal(address: Address) -> str | None:
    """Why a delivery may not connect to this address, or None when it is a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            kind = _kind(embedded)
            return f"{address} stands for {embedded}, {kind}" if kind else None
    kind = _kind(address)
    return f"{address} is {kind}" if kind else None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo, NAT64), if any."""
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is None and address.teredo is not None:
        embedded = address.teredo[1]
    if embedded is None and address in _NAT64:
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return embedded


def _kind(address: Address) -> str | None:
    for kind, test in (
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("a multicast address", address.is_multicast),
        ("an unspecified address", address.is_unspecified),
        ("a private address", address.is_private),
        ("a reserved address", address.is_reserved),
        ("not a public address", not address.is_global),
    ):
        if test:
            return kind
    return None


def literal_refusal(target: Target) -> str | None:
    """At creation: the refusal of a URL whose host is a literal address (a name is only
    resolved, and judged, when a delivery is made)."""
    address = literal_address(target.host)
    return refusal(address) if address is not None else None
