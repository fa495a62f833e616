"""python -m sim.sms --port P: run the SMS provider simulator until interrupted."""

from __future__ import annotations

import argparse
import os

import uvicorn

from .provider import SmsConfig, SmsProvider, create_app


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m sim.sms", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8026)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reject-rate", type=float, default=0.0, help="share answered 503")
    ap.add_argument("--fail-rate", type=float, default=0.0, help="share reported failed")
    ap.add_argument("--delay-min", type=float, default=0.5, help="seconds to the callback")
    ap.add_argument("--delay-max", type=float, default=3.0)
    ap.add_argument("--callback-url", help="where status callbacks go by default")
    ap.add_argument("--duplicate-callbacks", action="store_true")
    args = ap.parse_args()
    config = SmsConfig(
        seed=args.seed, reject_rate=args.reject_rate, fail_rate=args.fail_rate,
        delay=(args.delay_min, args.delay_max), callback_url=args.callback_url,
        secret=os.environ.get("TAILOR_SIM_SMS_SECRET", "sim-sms-secret").encode(),
        api_key=os.environ.get("TAILOR_SIM_SMS_API_KEY") or None,
        duplicate_callbacks=args.duplicate_callbacks)
    uvicorn.run(create_app(SmsProvider(config)), host=args.host, port=args.port,
                log_level="info")


if __name__ == "__main__":
    main()
