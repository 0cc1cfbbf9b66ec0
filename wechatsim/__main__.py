"""Send one signed text message to a bot and print its reply: ``python -m wechatsim URL TOKEN 问题``."""
from __future__ import annotations

import argparse

from . import WeChatServer, text_message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="the bot's /wechat URL")
    parser.add_argument("token", help="WECHAT_TOKEN")
    parser.add_argument("question")
    parser.add_argument("--aes-key", help="WECHAT_ENCODING_AES_KEY, for safe mode")
    parser.add_argument("--app-id", help="WECHAT_APP_ID, for safe mode")
    parser.add_argument("--openid", default="o-smoke-test")
    args = parser.parse_args()
    server = WeChatServer(args.url, args.token, args.aes_key, args.app_id)
    reply = server.send(text_message(args.question, openid=args.openid), mode="safe" if args.aes_key else "plain")
    print(f"HTTP {reply.status}")
    print(reply.content if reply.content is not None else reply.body.decode("utf-8", "replace"))


if __name__ == "__main__":
    main()
