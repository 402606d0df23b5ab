"""Redis behind Sentinel, as a production deployment runs it: a primary, a replica and a sentinel watching them.

Debian's redis-server (``redis-sentinel`` is the same binary in sentinel mode). Both data nodes need the
password (``requirepass``, and ``masterauth`` so either can replicate from the other after a failover); AOF
``everysec`` as settlekeeper expects. The sentinel decides a primary is down after one second and promotes
the replica; with one sentinel its quorum is 1 (a real deployment runs three).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.redis_server import START_SECONDS, free_port

MASTER = "settlekeeper"
FAILOVER_SECONDS = 30.0


@dataclass
class SentinelCluster:
    data_dir: Path
    password: str = "t3st-sentinel-pass"
    primary_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    sentinel_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """What settlekeeper is given: the sentinel, the master's name and its password."""
        return f"redis+sentinel://:{self.password}@127.0.0.1:{self.sentinel_port}/{MASTER}/0"

    def start(self) -> None:
        self._node("primary", self.primary_port)
        self._node("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        self._until(lambda: self._node_info(self.replica_port).get("master_link_status") == "up", "replication")
        conf = self.data_dir / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {self.sentinel_port}",
                    "bind 127.0.0.1",
                    f"dir {self.data_dir}",
                    f"logfile {self.data_dir / 'sentinel.log'}",
                    f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 1",
                    f"sentinel auth-pass {MASTER} {self.password}",
                    f"sentinel down-after-milliseconds {MASTER} 1000",
                    f"sentinel failover-timeout {MASTER} 10000",
                    "",
                ]
            )
        )
        self.procs["sentinel"] = subprocess.Popen(
            [self._binary(), str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._until(lambda: len(self._sentinel().sentinel_slaves(MASTER)) == 1, "the sentinel sees the replica")

    def master_port(self) -> int:
        _, port = self._sentinel().sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def kill_primary(self) -> None:
        """SIGKILL the node that is primary now (no AOF flush: what a crashed host does)."""
        name = "primary" if self.master_port() == self.primary_port else "replica"
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(START_SECONDS)

    def wait_for_promotion(self, old_port: int) -> float:
        """Block until the sentinel names another master and it answers as one; the seconds it took."""
        began = time.monotonic()

        def promoted() -> bool:
            port = self.master_port()
            return port != old_port and self._node_info(port).get("role") == "master"

        self._until(promoted, "the sentinel promotes the replica", FAILOVER_SECONDS)
        return time.monotonic() - began

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(START_SECONDS)

    def _binary(self) -> str:
        return shutil.which("redis-server") or "redis-server"

    def _node(self, name: str, port: int, *extra: str) -> None:
        folder = self.data_dir / name
        folder.mkdir()
        self.procs[name] = subprocess.Popen(
            [
                self._binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                self.password,
                "--masterauth",
                self.password,
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--dir",
                str(folder),
                "--logfile",
                str(folder / "redis.log"),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._until(lambda: self._node_info(port).get("role") is not None, f"the {name} answers")

    def _node_info(self, port: int) -> dict[str, object]:
        client = redis.Redis(port=port, password=self.password, socket_timeout=1, socket_connect_timeout=1)
        try:
            return dict(client.info("replication"))
        except redis.RedisError:
            return {}
        finally:
            client.close()

    def _sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)

    def _until(self, check: Callable[[], bool], what: str, within: float = START_SECONDS) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                if check():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within} s: {what}")
            time.sleep(0.1)


@contextlib.contextmanager
def sentinel_cluster(data_dir: Path) -> Iterator[SentinelCluster]:
    cluster = SentinelCluster(data_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
