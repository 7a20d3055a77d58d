"""In-process profile of OPTIONS to the server itself (answered statelessly, no sockets).

Feeds N OPTIONS datagrams (as ``bench/sipp/options.xml`` sends them) into a SipApplication
whose transport send is captured, and prints the server's microseconds per OPTIONS -> 200.
With ``--profile`` it prints the top functions. Bounded by ``--count``.

    .venv/bin/python bench/profile_options.py --count 20000 [--repeat 3] [--profile]
"""

from __future__ import annotations

from profile_common import HOST, Harness, Phone, arguments, measure, start_app

TEMPLATE = (
    "OPTIONS sip:{host}:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:15090;branch=z9hG4bK-{n}-opt;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:ping@127.0.0.1:15090>;tag=4242-opt-{n}\r\n"
    "To: <sip:{host}:{port}>\r\n"
    "Call-ID: {n}-4242@127.0.0.1\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Accept: application/sdp\r\n"
    "User-Agent: sipsca-bench\r\n"
    "Content-Length: 0\r\n\r\n"
)


def main() -> None:
    args = arguments(__doc__, 20000)

    async def setup() -> tuple[Harness, Phone, list[bytes]]:
        harness = Harness(await start_app())
        phone = harness.add(Phone("ping", 15090))
        port = harness.app.transports.listeners[0].port
        messages = [TEMPLATE.format(host=HOST, port=port, n=n).encode() for n in range(args.count)]
        return harness, phone, messages

    def body(state: tuple[Harness, Phone, list[bytes]]) -> None:
        harness, phone, messages = state
        app = harness.app
        flow = phone.flow
        for message in messages:
            app.on_bytes(message, flow)
            harness.tick()
        assert len(harness._sent) == len(messages), len(harness._sent)
        assert harness._sent[-1][0].startswith(b"SIP/2.0 200 OK\r\n")

    async def teardown(state: tuple[Harness, Phone, list[bytes]]) -> None:
        await state[0].app.stop()

    measure(args, "OPTIONS -> 200", setup, body, teardown, phone_seconds=lambda state: 0.0)


if __name__ == "__main__":
    main()
