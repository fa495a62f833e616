"""python -m sim.smtp --port P: run the SMTP sink until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from .sink import SmtpSink


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m sim.smtp", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8025, help="0 picks a free port")
    ap.add_argument("--folder", type=Path, help="also write each message as NNNNNN.eml here")
    ap.add_argument("--sqlite", type=Path, help="also record messages in this SQLite file")
    ap.add_argument("--fail-next", type=int, default=0, help="answer 451 to the first N")
    ap.add_argument("--reply-delay", type=float, default=0.0,
                    help="seconds to wait before answering each message (a slow server)")
    ap.add_argument("--reject", action="append", default=[], help="answer 550 to this rcpt")
    ap.add_argument("--user", help="require AUTH with this user; password from "
                    "$TAILOR_SIM_SMTP_PASSWORD")
    return ap.parse_args()


async def _main(args: argparse.Namespace) -> None:
    creds = None
    if args.user:
        creds = (args.user, os.environ.get("TAILOR_SIM_SMTP_PASSWORD", ""))
    sink = SmtpSink(folder=args.folder, sqlite_path=args.sqlite, credentials=creds,
                    reply_delay=args.reply_delay)
    if args.fail_next:
        sink.fail_next(args.fail_next)
    if args.reject:
        sink.reject(*args.reject)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with sink.serving(args.host, args.port) as s:
        print(f"SMTP sink listening on {s.host}:{s.port}", flush=True)
        await stop.wait()
    print(f"SMTP sink stopped after {len(sink.messages)} messages", flush=True)


if __name__ == "__main__":
    asyncio.run(_main(_args()))
