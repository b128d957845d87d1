"""A blocklist, as a sipgrid processor in Python: calls and messages from blocked callers
get 403; everything else goes on to the next in the chain, unchanged.

    BLOCKLIST=1666,+15550100 python examples/blocklist.py 127.0.0.1:51905

and, in dispatcher.yaml, before the Connect processor:

    middlewares:
      - ref: blocklist
        addr: 127.0.0.1:51905
"""

from __future__ import annotations

import os
import sys

from sipgrid.processor import Decision, Message, Processor

BLOCKED = {user.strip() for user in os.environ.get("BLOCKLIST", "").split(",") if user.strip()}


@Processor
def blocklist(msg: Message) -> Decision | None:
    if msg.method in ("INVITE", "MESSAGE") and msg.from_user in BLOCKED:
        return msg.reply(403, "Forbidden (Blocked)")
    return None


if __name__ == "__main__":
    blocklist.run(sys.argv[1] if len(sys.argv) > 1 else "0.0.0.0:51905")
