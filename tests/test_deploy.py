"""The files in deploy/ work as shipped: nginx accepts the site, compose parses, the image is built right."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=bot.example.edu.cn",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _nginx() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if not found:
        pytest.skip("nginx is not installed (scripts/test.sh installs Debian's nginx)")
    return found


def test_nginx_accepts_the_shipped_site(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    nginx = _nginx()
    cert, key = certificate
    site = (DEPLOY / "nginx-site.conf").read_text(encoding="utf-8")
    assert "/etc/ssl/xueji-bot/fullchain.pem" in site and "/etc/ssl/xueji-bot/privkey.pem" in site
    site = site.replace("/etc/ssl/xueji-bot/fullchain.pem", str(cert)).replace("/etc/ssl/xueji-bot/privkey.pem", str(key))
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(site, encoding="utf-8")
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log {tmp_path}/access.log;\n  client_body_temp_path {tmp_path};\n  proxy_temp_path {tmp_path};\n"
        f"  fastcgi_temp_path {tmp_path};\n  uwsgi_temp_path {tmp_path};\n  scgi_temp_path {tmp_path};\n  include {tmp_path}/site.conf;\n}}\n",
        encoding="utf-8",
    )
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_nginx_site_terminates_tls_limits_bodies_and_logs_no_query() -> None:
    site = (DEPLOY / "nginx-site.conf").read_text(encoding="utf-8")
    assert re.search(r"listen 443 ssl\b", site) and re.search(r"listen 80;", site)
    assert "client_max_body_size 64k;" in site
    log_format = site[site.index("log_format"):site.index(";", site.index("log_format"))]
    assert "$args" not in log_format and "$request_uri" not in log_format and "$request " not in log_format and "$query_string" not in log_format
    assert "location /admin" in site and "proxy_pass http://xueji_bot;" in site


def test_compose_file_has_the_bot_and_a_persistent_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    bot, redis = compose["services"]["bot"], compose["services"]["redis"]
    assert bot["build"]["dockerfile"] == "deploy/Dockerfile" and bot["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert "--appendonly" in redis["command"] and redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    volume = redis["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in compose["volumes"]


def test_docker_compose_config_parses() -> None:
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("the docker CLI is not installed")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the docker CLI has no compose plugin here: {probe.stderr.strip()[:120]}")
    result = subprocess.run([docker, "compose", "-f", str(DEPLOY / "docker-compose.yml"), "config", "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_dockerfile_is_slim_non_root_layered_and_health_checked() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
    assert re.fullmatch(r"FROM python:3\.11-slim\S*", lines[0])
    copies = [i for i, line in enumerate(lines) if line.startswith("COPY")]
    install = next(i for i, line in enumerate(lines) if "pip install -r requirements.txt" in line)
    assert lines[copies[0]] == "COPY requirements.txt ." and copies[0] < install < copies[1], "dependencies in their own layer"
    user = next(line for line in lines if line.startswith("USER"))
    assert user.split()[1] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK") for line in lines) and "/healthz" in (DEPLOY / "Dockerfile").read_text()
    cache_dir = next(line.split("=", 1)[1] for line in lines if line.startswith("ENV CACHE_DIR="))
    train = next(i for i, line in enumerate(lines) if "flask --app app kb validate" in line)
    assert copies[1] < train < lines.index(user), "the model is trained into the image, before it drops root"
    assert cache_dir in lines[train] and f"chown -R xueji:xueji /app/instance {cache_dir}" in lines[train]
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        assert line in (".venv", ".git", "instance", ".env", "**/__pycache__", ".pytest_cache", "bench/out")


def _gunicorn_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    for name in [n for n in os.environ if n.startswith("GUNICORN_") or n == "WEB_CONCURRENCY"]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    namespace: dict = {"__file__": str(DEPLOY / "gunicorn.conf.py")}
    exec(compile((DEPLOY / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), namespace)
    return namespace


def test_gunicorn_settings_fit_wechats_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    import config

    namespace = _gunicorn_settings(monkeypatch)
    defaults = {name: default for name, (default, _) in config.SETTINGS.items()}
    slowest_webhook = defaults["RETRY_WAIT"] + 2 * defaults["REDIS_TIMEOUT"]
    admin_read_timeout = int(re.search(r"location /admin \{[^}]*proxy_read_timeout (\d+)s;", (DEPLOY / "nginx-site.conf").read_text()).group(1))
    assert slowest_webhook < 5 < namespace["timeout"] < admin_read_timeout, \
        "a worker is killed only after the slowest webhook path, and before nginx gives up on a staff save"
    if namespace["worker_class"] == "sync":  # the timeout bounds each request: a save that trains takes seconds
        assert namespace["timeout"] >= 10
    assert "%(r)s" not in namespace["access_log_format"] and "%(q)s" not in namespace["access_log_format"]
    assert not namespace.get("preload_app", False), "HUP must reload the code"
    if namespace["worker_class"] == "gthread" and namespace["keepalive"] == 0:
        assert namespace["worker_connections"] == namespace["threads"], "a worker with no free thread must leave new connections to the others"


def test_gunicorn_runs_one_sync_process_more_than_cores_and_leaves_the_access_log_to_nginx(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measured worker model (deploy/gunicorn.conf.py): sync, cores + 1, no access log unless asked for."""
    namespace = _gunicorn_settings(monkeypatch)
    assert (namespace["worker_class"], namespace["threads"], namespace["keepalive"]) == ("sync", 1, 0)
    assert namespace["workers"] == (os.cpu_count() or 1) + 1
    assert namespace["accesslog"] is None
    assert "access_log /var/log/nginx/" in (DEPLOY / "nginx-site.conf").read_text(), "nginx logs every request instead"
    chosen = _gunicorn_settings(monkeypatch, GUNICORN_ACCESSLOG="-", GUNICORN_WORKER_CLASS="gthread", WEB_CONCURRENCY="2")
    assert (chosen["accesslog"], chosen["worker_class"], chosen["workers"], chosen["threads"]) == ("-", "gthread", 2, 4)
    assert chosen["worker_connections"] == chosen["threads"]


def test_systemd_unit_reloads_gracefully() -> None:
    unit = (DEPLOY / "xueji-bot.service").read_text(encoding="utf-8")
    folder = re.search(r"^CacheDirectory=(\S+)$", unit, re.MULTILINE).group(1)
    assert f"Environment=CACHE_DIR=/var/cache/{folder}" in unit, "PrivateTmp empties /tmp at every start: the cache lives elsewhere"
    assert "ExecStart=/srv/xueji-bot/.venv/bin/gunicorn -c deploy/gunicorn.conf.py" in unit
    assert "ExecReload=/bin/kill -s HUP $MAINPID" in unit and re.search(r"^User=(?!root)\w+", unit, re.MULTILINE)


def test_the_deploy_steps_training_fills_the_cache_the_next_start_loads(tmp_path: Path) -> None:
    """What the image build and a systemd start rely on: ``flask kb validate`` trains into CACHE_DIR, a start then trains nothing."""
    cache = tmp_path / "cache"
    env = {**os.environ, "CACHE_DIR": str(cache), "FLASK_APP": "app"}
    env.pop("WECHAT_TOKEN", None)
    validate = subprocess.run([sys.executable, "-m", "flask", "kb", "validate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert validate.returncode == 0, validate.stderr
    assert {p.name.split("-")[1] for p in cache.iterdir() if not p.name.endswith(".lock")} == {"jieba", "terms", "matcher"}
    start = "import bot, config; kb, matcher = bot.knowledge(config.load()); print(matcher.trained)"
    started = subprocess.run([sys.executable, "-c", start], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    assert started.stdout.split() == ["False"]
