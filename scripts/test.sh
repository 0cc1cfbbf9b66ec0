#!/usr/bin/env bash
# Install everything into .venv and run the whole test suite:
#   1. the knowledge base check (flask kb validate);
#   2. every test, with the embedded Redis server;
#   3. the Redis-backed tests again against the Redis server at REDIS_URL
#      (default redis://127.0.0.1:6379), in database TEST_REDIS_DB (default 13),
#      when one answers. Tests write under their own key prefix and delete it.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
export PYTHONDONTWRITEBYTECODE=1
# The console's browser test drives Debian's chromium (Playwright never downloads a browser here);
# a CJK font makes its screenshots readable.
if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-wqy-microhei >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
  fi
fi

# tests/test_deploy.py runs `nginx -t` on deploy/nginx-site.conf with a self-signed certificate (openssl).
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing ${missing[*]} (Debian) =="
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== knowledge base =="
.venv/bin/flask --app app kb validate

echo "== test suite (embedded Redis) =="
.venv/bin/python -m pytest -p no:cacheprovider "$@"

server_url="${REDIS_URL:-redis://127.0.0.1:6379}"
test_url=$(.venv/bin/python - "$server_url" "${TEST_REDIS_DB:-13}" <<'PY'
import sys, urllib.parse, redis
url, db = sys.argv[1], sys.argv[2]
parts = urllib.parse.urlsplit(url)
if parts.scheme in ("redis", "rediss"):
    url = urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))
try:
    redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
except (redis.RedisError, OSError):
    sys.exit(0)
print(url)
PY
)
if [ -n "$test_url" ]; then
  echo "== Redis-backed tests against $test_url =="
  TEST_REDIS_URL="$test_url" .venv/bin/python -m pytest -p no:cacheprovider -m redis "$@"
else
  echo "== no Redis server answers at $server_url: Redis-server run skipped =="
fi
