"""twemproxy (nutcracker) processes for the proxy tests: one proxy per memcached, on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["Twemproxy", "find_nutcracker"]

_HOST = "127.0.0.1"
_CANDIDATES = ("/usr/sbin/nutcracker", "/usr/bin/nutcracker", "/usr/local/sbin/nutcracker")


def find_nutcracker() -> str | None:
    """The nutcracker binary: ``$NUTCRACKER``, then ``$PATH``, then Debian's /usr/sbin."""
    explicit = os.environ.get("NUTCRACKER")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("nutcracker")
    if found:
        return found
    return next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Twemproxy:
    """One nutcracker in front of one memcached (``backend``, ``"host:port"``): a pool of one
    server, set up as docs/memcache/proxies.md says (``auto_eject_hosts: false``, an explicit
    ``timeout`` in milliseconds)."""

    def __init__(self, binary: str, backend: str, workdir: Path, timeout_ms: int = 300) -> None:
        self.binary = binary
        self.backend = backend
        self.workdir = workdir
        self.timeout_ms = timeout_ms
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{_HOST}:{self.port}"

    def start(self) -> Twemproxy:
        """Start the proxy on a free port and wait until it accepts connections."""
        for _ in range(5):  # another process may take the free port first
            self.port, stats = _free_port(), _free_port()
            conf = self.workdir / f"nutcracker-{self.port}.yml"
            conf.write_text(
                "sessions:\n"
                f"  listen: {self.address}\n"
                "  hash: fnv1a_64\n"
                "  distribution: ketama\n"
                f"  timeout: {self.timeout_ms}\n"
                "  auto_eject_hosts: false\n"
                "  servers:\n"
                f"   - {self.backend}:1\n"
            )
            log = self.workdir / f"nutcracker-{self.port}.log"
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(conf), "-s", str(stats), "-a", _HOST, "-o", str(log)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"nutcracker did not start in front of {self.backend}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 10.0
        while self._proc is not None and self._proc.poll() is None:
            try:
                with socket.create_connection((_HOST, self.port), timeout=0.5):
                    return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
        return False

    def stop(self) -> None:
        """Kill the proxy and wait for it."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
