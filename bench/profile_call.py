"""In-process profile of a proxied call (no sockets).

A caller (``udp:127.0.0.1:15060``) and a callee registered as ``bob``
(``udp:127.0.0.1:15070``) talk through a SipApplication whose transport send is captured.
One cycle is what ``bench/sipp/call_uac.xml`` + ``call_uas.xml`` do per call:

    INVITE -> 100 (to the caller) + INVITE (to bob) -> 180, 200 -> 180, 200 (to the caller)
    ACK (along the Record-Route set) -> ACK; BYE -> BYE -> 200 -> 200

With ``--sca`` a cycle is ``bench/sipp/sca_call.xml`` instead (a full SCA call of line
``lineN``, a distinct line per cycle): call-info SUBSCRIBE, line-seize SUBSCRIBE, INVITE with
Call-Info, 180/200/ACK, BYE, call-info unsubscribe, every NOTIFY answered 200.

Prints the server's microseconds per call (the fake phones' work is timed apart). With
``--profile`` it prints the top functions. Bounded by ``--count``.

    .venv/bin/python bench/profile_call.py --count 2000 [--sca] [--repeat 3] [--profile]
"""

from __future__ import annotations

from profile_common import (
    HOST,
    Harness,
    Head,
    Phone,
    arguments,
    measure,
    response_to,
    start_app,
    value,
)

CALLER_PORT = 15060
CALLEE_PORT = 15070

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
)


class Callee(Phone):
    """bob: INVITE -> 180 + 200 (SDP), BYE -> 200, ACK absorbed, NOTIFY -> 200."""

    def on_message(self, msg: Head) -> list[bytes]:
        start = msg[0]
        if start.startswith("INVITE "):
            tag = "b" + value(msg[1]["call-id"][0])
            contact = f"Contact: <sip:bob@{HOST}:{self.port}>"
            return [
                response_to(msg, "180 Ringing", to_tag=tag, extra=contact),
                response_to(msg, "200 OK", to_tag=tag, extra=contact, body=SDP),
            ]
        if start.startswith("BYE "):
            return [response_to(msg, "200 OK")]
        return super().on_message(msg)


class Caller(Phone):
    """The calling phone: keeps the final responses it gets, answers NOTIFYs with 200."""

    def __init__(self, user: str, port: int) -> None:
        super().__init__(user, port)
        self.finals: dict[str, Head] = {}
        """Call-ID -> last final response received."""

    def on_message(self, msg: Head) -> list[bytes]:
        start = msg[0]
        if start.startswith("SIP/2.0 ") and start[8:9] != "1":
            self.finals[value(msg[1]["call-id"][0])] = msg
            return []
        return super().on_message(msg)


def request(
    method: str,
    ruri: str,
    *,
    branch: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    routes: list[str] = (),  # type: ignore[assignment]
    extra: tuple[str, ...] = (),
    body: str = "",
) -> bytes:
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP {HOST}:{CALLER_PORT};branch=z9hG4bK{branch};rport",
        "Max-Forwards: 70",
        *routes,
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method.split()[0]}",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def dialog(final: Head) -> tuple[str, list[str], str]:
    """(remote target, Route lines, To value) of the dialog a 2xx created (RFC 3261 12.1.2)."""
    h = final[1]
    target = value(h["contact"][0]).strip("<>") if "contact" in h else ""
    rr = [value(line) for line in h.get("record-route", ())]
    routes = [f"Route: {r}" for r in reversed(rr)]
    return target, routes, value(h["to"][0])


def register(harness: Harness, phone: Phone) -> None:
    aor = f"<sip:{phone.user}@{HOST}>"
    harness.send(
        phone,
        request(
            "REGISTER",
            f"sip:{HOST}",
            branch=f"reg{phone.user}",
            from_=f"{aor};tag=r",
            to=aor,
            call_id=f"reg-{phone.user}",
            cseq=1,
            extra=(f"Contact: <sip:{phone.user}@{HOST}:{phone.port}>", "Expires: 3600"),
        ),
    )


def plain_call(harness: Harness, caller: Caller, n: int) -> None:
    call_id = f"call{n}"
    from_ = f"<sip:alice@{HOST}>;tag=a{n}"
    harness.send(
        caller,
        request(
            "INVITE",
            f"sip:bob@{HOST}",
            branch=f"inv{n}",
            from_=from_,
            to=f"<sip:bob@{HOST}>",
            call_id=call_id,
            cseq=1,
            extra=(f"Contact: <sip:alice@{HOST}:{CALLER_PORT}>", "User-Agent: sipsca-bench"),
            body=SDP,
        ),
    )
    target, routes, to = dialog(caller.finals.pop(call_id))
    common = {"from_": from_, "to": to, "call_id": call_id, "routes": routes}
    harness.send(caller, request("ACK", target, branch=f"ack{n}", cseq=1, **common))  # type: ignore[arg-type]
    harness.send(caller, request("BYE", target, branch=f"bye{n}", cseq=2, **common))  # type: ignore[arg-type]
    final = caller.finals.pop(call_id)
    assert final[0] == "SIP/2.0 200 OK", final[0]


def sca_call(harness: Harness, caller: Caller, n: int) -> None:
    """bench/sipp/sca_call.xml for line ``line<n>``."""
    line = f"line{n:05d}"
    aor = f"<sip:{line}@{HOST}>"
    contact = f"Contact: <sip:{line}@{HOST}:{CALLER_PORT}>"
    ci_call = f"ci///{n}"
    harness.send(
        caller,
        request(
            "SUBSCRIBE",
            f"sip:{line}@{HOST}",
            branch=f"ci{n}",
            from_=f"{aor};tag=ci{n}",
            to=aor,
            call_id=ci_call,
            cseq=1,
            extra=(contact, "Event: call-info", "Expires: 3600"),
        ),
    )
    ci_to = value(caller.finals.pop(ci_call)[1]["to"][0])
    call_info = f"Call-Info: <sip:{line}@{HOST}>;appearance-index=1"
    harness.send(
        caller,
        request(
            "SUBSCRIBE",
            f"sip:{line}@{HOST}",
            branch=f"ls{n}",
            from_=f"{aor};tag=ls{n}",
            to=aor,
            call_id=f"ls///{n}",
            cseq=1,
            extra=(contact, "Event: line-seize", "Expires: 15", call_info),
        ),
    )
    assert caller.finals.pop(f"ls///{n}")[0] == "SIP/2.0 200 OK"
    call_id = f"inv///{n}"
    from_ = f"{aor};tag=inv{n}"
    harness.send(
        caller,
        request(
            "INVITE",
            f"sip:bob@{HOST}",
            branch=f"inv{n}",
            from_=from_,
            to=f"<sip:bob@{HOST}>",
            call_id=call_id,
            cseq=1,
            extra=(contact, call_info),
            body=SDP,
        ),
    )
    target, routes, to = dialog(caller.finals.pop(call_id))
    common = {"from_": from_, "to": to, "call_id": call_id, "routes": routes}
    harness.send(caller, request("ACK", target, branch=f"ack{n}", cseq=1, **common))  # type: ignore[arg-type]
    harness.send(caller, request("BYE", target, branch=f"bye{n}", cseq=2, **common))  # type: ignore[arg-type]
    assert caller.finals.pop(call_id)[0] == "SIP/2.0 200 OK"
    harness.send(
        caller,
        request(
            "SUBSCRIBE",
            f"sip:{line}@{HOST}",
            branch=f"ciu{n}",
            from_=f"{aor};tag=ci{n}",
            to=ci_to,
            call_id=ci_call,
            cseq=2,
            extra=(contact, "Event: call-info", "Expires: 0"),
        ),
    )
    assert caller.finals.pop(ci_call)[0] == "SIP/2.0 202 Accepted"


def main() -> None:
    import sys

    sca = "--sca" in sys.argv
    if sca:
        sys.argv.remove("--sca")
    args = arguments(__doc__, 2000)

    async def setup() -> tuple[Harness, Caller]:
        harness = Harness(await start_app())
        caller = harness.add(Caller("alice", CALLER_PORT))
        callee = harness.add(Callee("bob", CALLEE_PORT))
        register(harness, callee)
        harness.phone_seconds = 0.0
        harness.messages_in = harness.messages_out = 0
        return harness, caller

    def body(state: tuple[Harness, Caller]) -> None:
        harness, caller = state
        run = sca_call if sca else plain_call
        for n in range(args.count):
            run(harness, caller, n)
            harness.tick()

    async def teardown(state: tuple[Harness, Caller]) -> None:
        harness = state[0]
        print(
            f"  ({harness.messages_in / args.count:.0f} messages in and "
            f"{harness.messages_out / args.count:.0f} out per call)"
        )
        await harness.app.stop()

    measure(
        args,
        "SCA call" if sca else "call INVITE/180/200/ACK/BYE",
        setup,
        body,
        teardown,
        phone_seconds=lambda state: state[0].phone_seconds,
    )


if __name__ == "__main__":
    main()
