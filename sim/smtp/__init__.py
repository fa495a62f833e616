"""SMTP sink: a real SMTP server (aiosmtpd) that records what it receives.

    sink = SmtpSink()                       # optionally folder=..., sqlite_path=...
    async with sink.serving() as s:         # free port on the running loop: s.port
        ...                                 # or sink.start_in_thread() / sink.stop_thread()
    sink.fail_next(2)                       # next two messages: 451 4.3.0
    sink.reject("bounce@x.example")         # that recipient: 550 5.1.1 at RCPT
    sink.messages                           # list[ReceivedMessage]

As a process: python -m sim.smtp --port 8025 [--folder DIR] [--sqlite FILE]
"""

from .sink import ReceivedMessage, SmtpSink, wait_until_listening

__all__ = ["ReceivedMessage", "SmtpSink", "wait_until_listening"]
