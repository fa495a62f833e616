"""SMS provider simulator: webhook-style HTTP API with signed delivery-status callbacks.

    provider = SmsProvider(SmsConfig(seed=7, reject_rate=0.2, fail_rate=0.1,
                                     callback_url="http://…/callbacks/sms", secret=b"…"))
    async with serving(create_app(provider)) as base_url:   # free port, running loop
        ...                                  # or ThreadedServer(create_app(provider)).start()
    provider.fail_next(2)                    # next two requests: 503
    provider.block("+4915100000000")         # that number: 400

As a process: python -m sim.sms --port 8026 --callback-url URL (secret: $TAILOR_SIM_SMS_SECRET)
"""

from .provider import SendRequest, SmsConfig, SmsMessage, SmsProvider, create_app, sign
from .server import ThreadedServer, serving

__all__ = ["SendRequest", "SmsConfig", "SmsMessage", "SmsProvider", "ThreadedServer",
           "create_app", "serving", "sign"]
