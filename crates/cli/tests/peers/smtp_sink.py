"""A real SMTP server (aiosmtpd) that the e-mail tests send alarm mail to.

Usage:
  smtp_sink.py PORT REJECT_FIRST [REFUSE_ONCE_TO]
      Listens on 127.0.0.1:PORT; prints {"ready": PORT} once listening, then
      one JSON line per message: {"from", "to", "subject", "body", "headers"}.
      The message is parsed by Python's email package with the strict policy
      (any defect is an error): "subject" and "body" are decoded (RFC 2047
      words, transfer encoding, charset), "headers" holds MIME-Version,
      Message-ID, Date, the content type, its charset and the
      Content-Transfer-Encoding, and "to_name" the recipient's display name.
      A message that fails strict parsing is printed as {"parse_error": ...}.
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
        try:
            msg = email.message_from_bytes(envelope.content, policy=email.policy.strict)
            heard = {
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "subject": str(msg["subject"]),
                "body": msg.get_content(),
                "to_name": msg["to"].addresses[0].display_name,
                "headers": {
                    "mime_version": msg.get("mime-version"),
                    "message_id": msg.get("message-id"),
                    "date": msg.get("date") and msg["date"].datetime.isoformat(),
                    "content_type": msg.get_content_type(),
                    "charset": msg.get_content_charset(),
                    "transfer_encoding": msg.get("content-transfer-encoding"),
                },
                "defects": [str(d) for d in msg.defects],
            }
        except Exception as e:  # strict parsing refused it: report, do not retry
            heard = {"parse_error": repr(e), "to": envelope.rcpt_tos}
        print(json.dumps(heard), flush=True)
        return "250 OK"


port, reject_first = int(sys.argv[1]), int(sys.argv[2])
refuse_once_to = sys.argv[3] if len(sys.argv) > 3 else None
controller = Controller(Sink(reject_first, refuse_once_to), hostname="127.0.0.1", port=port)
controller.start()
print(json.dumps({"ready": port}), flush=True)
threading.Event().wait()
