"""The floor for bench/load.py: the least a WeChat webhook can do with Flask and wechatpy.

Checks the signature, parses the message and echoes its text back as a reply:
no knowledge, no Redis. The bot's throughput is measured against this app
under the same gunicorn settings (``gunicorn -c deploy/gunicorn.conf.py
bench.floor:app``) and under plain sync workers.
"""
from __future__ import annotations

import os

from flask import Flask, Response, request
from wechatpy import parse_message
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

app = Flask(__name__)
TOKEN = os.environ.get("WECHAT_TOKEN", "")


@app.post("/wechat")
def echo() -> Response:
    args = request.args
    try:
        check_signature(TOKEN, args.get("signature", ""), args.get("timestamp", ""), args.get("nonce", ""))
    except InvalidSignatureException:
        return Response("invalid signature", status=403)
    message = parse_message(request.get_data())
    reply = TextReply(message=message, content=getattr(message, "content", "") or "").render()
    return Response(reply, mimetype="application/xml")


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok")
