"""In-process profile of the call-info SUBSCRIBE path (no sockets).

Feeds N SUBSCRIBE datagrams for distinct lines into a SipApplication whose transport send
is captured; a fake phone answers every NOTIFY with 200. Prints the server's microseconds
per SUBSCRIBE+202+NOTIFY+200 cycle (the phone's own work is timed apart). With
``--profile`` it prints the top functions. Bounded by ``--count``.

    .venv/bin/python bench/profile_subscribe.py --count 5000 [--repeat 3] [--profile]
"""

from __future__ import annotations

from profile_common import Harness, Phone, arguments, measure, start_app

TEMPLATE = (
    "SUBSCRIBE sip:{u}@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:15082;branch=z9hG4bK{u}x;rport\r\n"
    "From: <sip:{u}@127.0.0.1>;tag=a{u}\r\n"
    "To: <sip:{u}@127.0.0.1>\r\n"
    "Call-ID: sub{u}\r\n"
    "CSeq: 1 SUBSCRIBE\r\n"
    "Contact: <sip:{u}@127.0.0.1:15082>\r\n"
    "Event: call-info\r\n"
    "Expires: 3600\r\n"
    "Max-Forwards: 70\r\n"
    "User-Agent: SIPp benchmark phone 3.7\r\n"
    "Accept: application/sdp\r\n"
    "Content-Length: 0\r\n\r\n"
)


def main() -> None:
    args = arguments(__doc__, 5000)

    async def setup() -> tuple[Harness, Phone, list[bytes]]:
        harness = Harness(await start_app())
        phone = harness.add(Phone("phones", 15082))
        messages = [TEMPLATE.format(u=100000 + i).encode() for i in range(args.count)]
        return harness, phone, messages

    def body(state: tuple[Harness, Phone, list[bytes]]) -> None:
        harness, phone, messages = state
        for message in messages:
            harness.send(phone, message)
            harness.tick()
        assert harness.messages_out == 2 * len(messages), harness.messages_out

    async def teardown(state: tuple[Harness, Phone, list[bytes]]) -> None:
        await state[0].app.stop()

    measure(
        args,
        "SUBSCRIBE+202+NOTIFY+200",
        setup,
        body,
        teardown,
        phone_seconds=lambda state: state[0].phone_seconds,
    )


if __name__ == "__main__":
    main()
