"""In-process profile of REGISTER -> 200 as ``bench/sipp/register.xml`` sends it (register,
then unregister with Expires 0; no auth; no sockets).

Feeds N REGISTER pairs for distinct AoRs into a SipApplication whose transport send is
captured, and prints the server's microseconds per REGISTER -> 200. With ``--profile`` it
prints the top functions. Bounded by ``--count``.

    .venv/bin/python bench/profile_register.py --count 10000 [--repeat 3] [--profile]
"""

from __future__ import annotations

from profile_common import HOST, Harness, Phone, arguments, measure_replies

TEMPLATE = (
    "REGISTER sip:{host} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:15091;branch=z9hG4bK-{n}-{cseq}-reg;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:{user}@{host}>;tag=4242-reg-{n}\r\n"
    "To: <sip:{user}@{host}>\r\n"
    "Call-ID: {n}-reg@127.0.0.1\r\n"
    "CSeq: {cseq} REGISTER\r\n"
    "Contact: <sip:{user}@127.0.0.1:15091>;expires={expires}\r\n"
    "User-Agent: sipsca-bench\r\n"
    "Content-Length: 0\r\n\r\n"
)


def main() -> None:
    args = arguments(__doc__, 10000)

    def build(harness: Harness) -> list[bytes]:
        messages = []
        for n in range(args.count // 2):
            user = f"u{100000 + n % 10000}"
            for cseq, expires in ((1, 300), (3, 0)):
                text = TEMPLATE.format(host=HOST, n=n, user=user, cseq=cseq, expires=expires)
                messages.append(text.encode())
        return messages

    measure_replies(args, "REGISTER -> 200", Phone("reg", 15091), build)


if __name__ == "__main__":
    main()
