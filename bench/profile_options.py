"""In-process profile of OPTIONS to the server itself (answered statelessly, no sockets).

Feeds N OPTIONS datagrams (as ``bench/sipp/options.xml`` sends them) into a SipApplication
whose transport send is captured, and prints the server's microseconds per OPTIONS -> 200.
With ``--profile`` it prints the top functions. Bounded by ``--count``.

    .venv/bin/python bench/profile_options.py --count 20000 [--repeat 3] [--profile]
"""

from __future__ import annotations

from profile_common import HOST, Harness, Phone, arguments, measure_replies

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

    def build(harness: Harness) -> list[bytes]:
        port = harness.app.transports.listeners[0].port
        return [TEMPLATE.format(host=HOST, port=port, n=n).encode() for n in range(args.count)]

    measure_replies(args, "OPTIONS -> 200", Phone("ping", 15090), build)


if __name__ == "__main__":
    main()
