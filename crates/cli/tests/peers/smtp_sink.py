"""A real SMTP server (aiosmtpd) that the e-mail tests send alarm mail to.

Usage:
  smtp_sink.py PORT REJECT_FIRST [REFUSE_ONCE_TO]
      Listens on 127.0.0.1:PORT; prints {"ready": PORT} once listening, then
      one JSON line per message: {"from", "to", "subject", "body"}.
      The first REJECT_FIRST messages are refused with 451 (try again
      later) and printed as {"rejected": [...]}, so senders must retry.
      With REFUSE_ONCE_TO, the first message to that address is refused
      the same way, whenever it comes.
Runs until killed.
"""
import email
import email.policy
import json
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, reject_first, refuse_once_to):
        self.reject_left = reject_first
        self.refuse_once_to = refuse_once_to

    async def handle_DATA(self, server, session, envelope):
        refuse_this = self.refuse_once_to in envelope.rcpt_tos
        if refuse_this:
            self.refuse_once_to = None
        if self.reject_left > 0 or refuse_this:
            if not refuse_this:
                self.reject_left -= 1
            print(json.dumps({"rejected": envelope.rcpt_tos}), flush=True)
            return "451 4.3.0 Mailbox busy, try again later"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        print(
            json.dumps(
                {
                    "from": envelope.mail_from,
                    "to": envelope.rcpt_tos,
                    "subject": str(msg["subject"]),
                    "body": msg.get_content(),
                }
            ),
            flush=True,
        )
        return "250 OK"


port, reject_first = int(sys.argv[1]), int(sys.argv[2])
refuse_once_to = sys.argv[3] if len(sys.argv) > 3 else None
controller = Controller(Sink(reject_first, refuse_once_to), hostname="127.0.0.1", port=port)
controller.start()
print(json.dumps({"ready": port}), flush=True)
threading.Event().wait()
