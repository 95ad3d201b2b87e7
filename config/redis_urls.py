"""Reading Redis Sentinel URLs (``sentinel://host:port/db;sentinel://host:port/db``).

Celery and kombu take a Sentinel broker or result backend as one URL per
sentinel, joined by ``;``; the name of the master the sentinels watch is a
setting of its own (``CALLQUEUE_REDIS_SENTINEL_MASTER``). Both read the
database number, user and password from the *first* address only, so a URL
whose addresses name different databases would quietly use the first one;
``parse_sentinel_url`` refuses it instead. Parsing never connects.

TLS (``rediss://host:port/db?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.pem``):
Celery's result backend refuses a ``rediss://`` URL without ``ssl_cert_reqs``,
while kombu's broker takes it and quietly stops checking the server's
certificate; a ``redis://`` URL with ``ssl_*`` options is TLS to kombu but
refused by the backend. ``check_tls_options`` refuses both at startup, with the
variable to fix, so that broker and backend agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from kombu.utils.url import maybe_sanitize_url

SENTINEL_SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379
ADDRESS_SEPARATOR = ";"
TLS_SCHEME = "rediss"
# The values Celery and kombu accept for ssl_cert_reqs in a rediss:// URL.
CERT_REQS_VALUES = ("required", "optional", "none", "CERT_REQUIRED", "CERT_OPTIONAL", "CERT_NONE")


@dataclass(frozen=True)
class SentinelUrl:
    """The sentinels to ask, and the database and credentials to use on the master they name."""

    sentinels: tuple[tuple[str, int], ...]
    db: int
    username: str | None = None
    password: str | None = None


def redacted_url(url: str) -> str:
    """The URL with its password masked, every address of a ``sentinel://`` URL included (for messages)."""
    return ADDRESS_SEPARATOR.join(maybe_sanitize_url(address) for address in url.split(ADDRESS_SEPARATOR))


def is_sentinel_url(url: str) -> bool:
    """True for a ``sentinel://`` URL (one or more addresses)."""
    return url.startswith(f"{SENTINEL_SCHEME}://")


def parse_sentinel_url(url: str) -> SentinelUrl:
    """The parts of a ``sentinel://`` URL; ValueError (without the URL, which may hold a password) if malformed."""
    parts = [urlsplit(chunk.strip()) for chunk in url.split(ADDRESS_SEPARATOR) if chunk.strip()]
    if not parts:
        raise ValueError("names no sentinel")
    sentinels, databases = [], set()
    for index, part in enumerate(parts, start=1):
        if part.scheme != SENTINEL_SCHEME or not part.hostname:
            raise ValueError(f"address {index} is not sentinel://host:port")
        sentinels.append((part.hostname, _port(part, index)))
        databases.add(_database(part.path, index))
    if len(databases) > 1:
        raise ValueError("every sentinel:// address must name the same database "
                         "(Celery and kombu use the first address's)")
    first = parts[0]
    return SentinelUrl(tuple(sentinels), databases.pop(), _unquoted(first.username), _unquoted(first.password))


def _port(part: SplitResult, index: int) -> int:
    """The port of one address (none means Sentinel's 26379)."""
    try:
        port = part.port
    except ValueError:
        raise ValueError(f"address {index} has no valid port") from None
    return DEFAULT_SENTINEL_PORT if port is None else port


def _database(path: str, index: int) -> int:
    """The database number of one address (``/3``; none means 0)."""
    text = path.strip("/")
    if not text:
        return 0
    if not text.isdigit():
        raise ValueError(f"address {index}: the database must be a number, as in /0")
    return int(text)


def _unquoted(value: str | None) -> str | None:
    return unquote(value) if value else None


def check_tls_options(url: str) -> None:
    """ValueError (without the URL, which may hold a password) for a ``rediss://`` URL without a valid
    ``ssl_cert_reqs``, or for ``ssl_*`` options on a ``redis://`` URL."""
    parts = urlsplit(url)
    options = {key: value for key, value in parse_qsl(parts.query) if key.startswith("ssl_")}
    if parts.scheme != TLS_SCHEME:
        if options:
            raise ValueError(f"{', '.join(sorted(options))}: TLS options need a {TLS_SCHEME}:// URL")
        return
    cert_reqs = options.get("ssl_cert_reqs")
    if cert_reqs is None:
        raise ValueError(f"a {TLS_SCHEME}:// URL needs ssl_cert_reqs=required (and ssl_ca_certs=/path/ca.pem "
                         "for a private CA)")
    if cert_reqs not in CERT_REQS_VALUES:
        raise ValueError(f"ssl_cert_reqs must be one of {', '.join(CERT_REQS_VALUES[:3])}")
