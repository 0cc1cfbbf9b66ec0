#!/usr/bin/env bash
# Install everything into .venv and start the bot on this machine with the embedded
# defaults: embedded Redis under instance/, a development token unless WECHAT_TOKEN is set.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
exec .venv/bin/python app.py
