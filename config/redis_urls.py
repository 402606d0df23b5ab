"""The forms ``SETTLEKEEPER_REDIS_URL`` may take, checked without ever repeating the URL (it may hold a password).

- ``redis://[user:password@]host[:port][/db]``: plain TCP;
- ``rediss://…``: TLS, with redis-py's query options (``?ssl_ca_certs=/path/ca.pem``, ``ssl_certfile``,
  ``ssl_keyfile``, ``ssl_cert_reqs``, ``ssl_check_hostname``), or the system CAs without ``ssl_ca_certs``;
- ``unix:///path/to/socket[?db=N]``;
- ``redis+sentinel://[user:password@]host1[:26379][,host2[:26379]…]/<master name>[/db]``: the master Redis
  Sentinel names, found through any of the sentinels listed and found again after a failover. The user and
  password are the master's (and its replicas'); ``?sentinel_username=…&sentinel_password=…`` authenticate to
  the sentinels when they ask for it. ``rediss+sentinel://…`` speaks TLS to the master and to the sentinels,
  with the same ``ssl_*`` options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

REDIS_URL_FORMS = (
    "redis://[user:password@]host[:port][/db], rediss://… (TLS), unix:///path/to/socket[?db=N] or "
    "redis+sentinel://[user:password@]host[:port][,host[:port]…]/master[/db] (rediss+sentinel: TLS)"
)
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
"""Sentinel URL schemes, each with whether it speaks TLS."""
SENTINEL_PORT = 26379
SSL_OPTIONS = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"})
SENTINEL_OPTIONS = frozenset({"sentinel_username", "sentinel_password"})


@dataclass(frozen=True)
class SentinelURL:
    """A ``redis+sentinel://`` URL, parsed."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ssl: dict[str, str] = field(default_factory=dict)
    """The ``ssl_*`` options given (for the master and the sentinels)."""
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def describe(self) -> str:
        """Where it points, never a password."""
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        user = f"{self.username}@" if self.username else ""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"{scheme}://{user}{hosts}/{self.master}/{self.db}"


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0] in SENTINEL_SCHEMES


def parse_sentinel(url: str) -> SentinelURL:
    """Parse a Sentinel URL; raises ValueError with a message that never quotes the URL."""
    scheme, _, rest = url.partition("://")
    if scheme not in SENTINEL_SCHEMES:
        raise ValueError("the scheme must be redis+sentinel or rediss+sentinel")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = tuple(_host_port(item) for item in hosts.split(",")) if hosts else ()
    if not sentinels:
        raise ValueError("no sentinel host")
    segments = [unquote(part) for part in path.split("/") if part]
    if not segments or len(segments) > 2:
        raise ValueError("the path must be /<master name>[/db]")
    if len(segments) == 2 and not segments[1].isdigit():
        raise ValueError("the database (the path after the master name) must be a number")
    options = dict(parse_qsl(query))
    unknown = set(options) - SSL_OPTIONS - SENTINEL_OPTIONS
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)} (known: ssl_*, sentinel_username, sentinel_password)")
    ssl = {name: value for name, value in options.items() if name in SSL_OPTIONS}
    if ssl and not SENTINEL_SCHEMES[scheme]:
        raise ValueError("ssl_* options need rediss+sentinel")
    return SentinelURL(
        sentinels=sentinels,
        master=segments[0],
        db=int(segments[1]) if len(segments) == 2 else 0,
        tls=SENTINEL_SCHEMES[scheme],
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=ssl,
        sentinel_username=options.get("sentinel_username"),
        sentinel_password=options.get("sentinel_password"),
    )


def _host_port(item: str) -> tuple[str, int]:
    item = item.strip()
    host, colon, port = item.rpartition(":")
    if not colon:
        host, port = item, ""
    if not host:
        raise ValueError("a sentinel host is empty")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError("a sentinel port is not a number from 1 to 65535")
    return host, int(port) if port else SENTINEL_PORT


def _at_after_host(url: str) -> bool:
    """An ``@`` after the host: the user or password holds an unescaped ``/``, ``?`` or ``#``, which ends the host
    early and makes the rest of the password the host (``redis://:p?w@h`` names host ``p``, which logs would show)."""
    rest = url.partition("://")[2]
    ends = [index for index in (rest.find(char) for char in "/?#") if index >= 0]
    return "@" in rest[min(ends, default=len(rest)) :]


def redis_url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL, in words that never repeat it (it may hold a password); None if fine.

    redis-py itself accepts a path that is not a database number (``/notadb``) and silently uses db 0."""
    if _at_after_host(url):
        return f"expected {REDIS_URL_FORMS}: an @ after the host (percent-encode / ? # @ in the user and password)"
    if is_sentinel(url):
        try:
            parse_sentinel(url)
        except ValueError as exc:
            return f"expected {REDIS_URL_FORMS}: {exc}"
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"expected {REDIS_URL_FORMS}: the port is not a number from 1 to 65535"
    # the scheme as redis-py reads it: urlsplit lower-cases it and drops leading control characters and spaces
    # (``REDIS://``, ``\x00redis://``), which redis-py refuses at the first connect
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return f"expected {REDIS_URL_FORMS}: the scheme must be redis, rediss, unix, redis+sentinel or rediss+sentinel"
    if parts.scheme == "unix":
        if not parts.path:
            return f"expected {REDIS_URL_FORMS}: no socket path"
    else:
        if not parts.hostname:
            return f"expected {REDIS_URL_FORMS}: no host"
        if port == 0:
            return f"expected {REDIS_URL_FORMS}: the port is not a number from 1 to 65535"
        if parts.path not in ("", "/") and not parts.path[1:].isdigit():
            return f"expected {REDIS_URL_FORMS}: the database (the path after the host) must be a number"
    db = [value for name, value in parse_qsl(parts.query) if name == "db"]
    if db and not db[-1].isdigit():
        return f"expected {REDIS_URL_FORMS}: the db parameter must be a number"
    return None
