"""Start the real bot on a free port, as an operator would, for tests and benchmarks.

``python app.py`` by default; ``server="gunicorn"`` runs ``gunicorn -c deploy/gunicorn.conf.py``
(two workers unless ``WEB_CONCURRENCY`` says otherwise), the production setup.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

import state
from wechatsim import WeChatServer

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token"
# The official Tencent sample key and AppID (see ../shared/wechat-notes.md).
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wx2c2769f8efd9abc2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveApp:
    """``python app.py`` in a subprocess, exactly as an operator starts it."""

    process: subprocess.Popen
    port: int
    log: Path
    prefix: str = "xueji:"
    redis_url: str | None = None

    def store(self) -> state.Store:
        """A view of the app's own Redis keys, to check what it recorded."""
        return state.Store(client=state.connect(self.redis_url, 1.0), prefix=self.prefix)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wechat(self, safe: bool = True) -> WeChatServer:
        return WeChatServer(f"{self.base}/wechat", TOKEN, AES_KEY if safe else None, APP_ID if safe else None)

    def health(self) -> dict:
        return requests.get(f"{self.base}/healthz", timeout=5).json()

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_app(tmp: Path, server: str = "app", **env: str) -> LiveApp:
    """Start the bot on a free port and wait until /healthz answers (or its process dies)."""
    port = free_port()
    log = tmp / f"app-{port}.log"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "REDIS_", "FLASK_"))},
        "PORT": str(port),
        "WECHAT_TOKEN": TOKEN,
        "WECHAT_APP_ID": APP_ID,
        "WECHAT_ENCODING_AES_KEY": AES_KEY,
        # The test app serves all three modes at once, as during a switch-over (兼容模式).
        "ALLOW_PLAINTEXT": "1",
        "INSTANCE_PATH": str(tmp / "instance"),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    if server == "gunicorn":
        environment.setdefault("WEB_CONCURRENCY", "2")
        command = [str(Path(sys.executable).parent / "gunicorn"), "-c", "deploy/gunicorn.conf.py"]
    else:
        command = [sys.executable, "app.py"]
    handle = log.open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=handle, stderr=subprocess.STDOUT)
    app = LiveApp(process, port, log, env.get("REDIS_PREFIX", "xueji:"), env.get("REDIS_URL") or f"unix://{tmp}/instance/redis.sock")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with {process.returncode}:\n{app.log_text()}")
        try:
            if requests.get(f"{app.base}/healthz", timeout=1).status_code == 200:
                return app
        except (requests.ConnectionError, requests.Timeout):  # gunicorn's socket accepts before a worker is up
            pass
        time.sleep(0.05)
    app.stop()
    raise RuntimeError(f"app did not answer /healthz in time:\n{app.log_text()}")


