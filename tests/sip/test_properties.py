"""Hypothesis: parse/serialise round trips, and the only-RemoteProtocolError invariant.

The invariant is h11's fuzz rule: whatever bytes a peer sends, ``parse_message``, every
typed accessor on its result, the validators and ``StreamFramer.feed`` either succeed or
raise :class:`RemoteProtocolError`; nothing else escapes and nothing hangs. Example counts
are modest so the suite stays fast (``SIPSCA_EXAMPLES=N`` raises them);
``fuzz/fuzz_parser.py`` runs the same checks for longer.
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipsca.errors import RemoteProtocolError
from sipsca.sip import (
    Headers,
    NameAddr,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamFramer,
    Via,
    check_message,
    make_response,
    parse_auth_params,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_value_params,
    parse_via,
    response_bytes,
    uri_equal,
    validate_request,
    validate_response,
)

from .make_conformance import DATA_DIR, manifest

# SIPSCA_EXAMPLES=5000 pytest tests/sip/test_properties.py runs a deeper search locally.
_SCALE = int(os.environ.get("SIPSCA_EXAMPLES", "0"))
FAST = settings(
    max_examples=_SCALE or 60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
FUZZ = settings(
    max_examples=_SCALE or 150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
UNRESERVED = string.ascii_letters + string.digits + "-_.!~*'()"

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
alnum = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)


@st.composite
def escaped(draw: st.DrawFn, alphabet: str, min_size: int = 1) -> str:
    parts = draw(
        st.lists(
            st.one_of(
                st.text(alphabet, min_size=1, max_size=6),
                st.sampled_from(["%20", "%40", "%3B", "%25", "%00"]),
            ),
            min_size=min_size,
            max_size=4,
        )
    )
    return "".join(parts)


@st.composite
def hostnames(draw: st.DrawFn) -> str:
    labels = draw(st.lists(alnum, min_size=0, max_size=3))
    top = draw(st.text(string.ascii_lowercase, min_size=1, max_size=1)) + draw(
        st.text(string.ascii_lowercase + string.digits, max_size=5)
    )
    return ".".join([*labels, top])


hosts = st.one_of(
    hostnames(),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.sampled_from(["[::1]", "[2001:db8::10]", "[fe80::1:2]", "[::ffff:192.0.2.1]"]),
)
uri_params = st.lists(
    st.tuples(
        escaped(UNRESERVED + "[]/:&+$"), st.one_of(st.none(), escaped(UNRESERVED + "[]/:&+$"))
    ),
    max_size=3,
)


@st.composite
def sip_uris(draw: st.DrawFn, *, headers: bool = False) -> str:
    scheme = draw(st.sampled_from(["sip", "sips", "SIP"]))
    user = draw(st.one_of(st.just(""), escaped(UNRESERVED + "&=+$,;?/")))
    password = (
        draw(st.one_of(st.none(), escaped(UNRESERVED + "&=+$,", min_size=0))) if user else None
    )
    userinfo = f"{user}:{password}@" if password is not None else (f"{user}@" if user else "")
    port = draw(st.one_of(st.none(), st.integers(0, 65535)))
    text = f"{scheme}:{userinfo}{draw(hosts)}" + (f":{port}" if port is not None else "")
    text += "".join(f";{k}" if v is None else f";{k}={v}" for k, v in draw(uri_params))
    if headers and draw(st.booleans()):
        pairs = draw(
            st.lists(
                st.tuples(escaped(UNRESERVED), escaped(UNRESERVED, min_size=0)),
                min_size=1,
                max_size=2,
            )
        )
        text += "?" + "&".join(f"{k}={v}" for k, v in pairs)
    return text


header_params = st.lists(
    st.tuples(tokens, st.one_of(st.none(), tokens, st.just('"quoted, ;<x> \\" value"'))),
    max_size=3,
)


@st.composite
def name_addrs(draw: st.DrawFn) -> str:
    uri = draw(sip_uris(headers=True))
    display = draw(st.sampled_from(["", "Alice", '"Bob Smith"', '"Q \\"x\\", y"', '"Jürgen"']))
    params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in draw(header_params))
    return (f"{display} <{uri}>" if display else f"<{uri}>") + params


@st.composite
def vias(draw: st.DrawFn) -> str:
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "X-NEW"]))
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    branch = "z9hG4bK" + draw(st.text(TOKEN_CHARS, max_size=10))
    params = draw(
        st.sampled_from(["", ";rport", ";rport=5060;received=192.0.2.1", ";maddr=239.0.0.1;ttl=1"])
    )
    host = draw(hosts)
    return (
        f"SIP/2.0/{transport} {host}" + (f":{port}" if port else "") + f";branch={branch}{params}"
    )


# Values that are not interpreted by the parser: any text without CR/LF and without
# surrounding white space (the parser strips it, RFC 3261 7.3.1).
raw_values = st.text(st.characters(codec="utf-8", blacklist_characters="\r\n"), max_size=30).map(
    lambda s: s.strip(" \t")
)
extra_names = st.sampled_from(
    [
        "Subject",
        "s",
        "User-Agent",
        "X-Custom",
        "x-lower",
        "Accept",
        "Supported",
        "k",
        "Allow-Events",
        "u",
        "Call-Info",
        "Event",
        "o",
        "P-Asserted-Identity",
        "Warning",
        "Organization",
    ]
)


@st.composite
def requests(draw: st.DrawFn) -> SipRequest:
    method = draw(
        st.one_of(st.sampled_from(["INVITE", "REGISTER", "SUBSCRIBE", "NOTIFY", "OPTIONS"]), tokens)
    )
    fields: list[tuple[str, str]] = [(draw(st.sampled_from(["Via", "v", "VIA"])), draw(vias()))]
    fields += [(draw(st.sampled_from(["From", "f"])), draw(name_addrs()))]
    fields += [(draw(st.sampled_from(["To", "t"])), draw(name_addrs()))]
    fields += [(draw(st.sampled_from(["Call-ID", "i"])), draw(tokens) + "@" + draw(hostnames()))]
    fields += [("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")]
    fields += [("Max-Forwards", str(draw(st.integers(0, 255))))]
    fields += draw(st.lists(st.tuples(st.sampled_from(["Contact", "m"]), name_addrs()), max_size=2))
    fields += draw(st.lists(st.tuples(extra_names, raw_values), max_size=5))
    order = draw(st.permutations(range(len(fields))))
    headers = Headers([fields[i] for i in order])
    body = draw(st.binary(max_size=200))
    return SipRequest(method, draw(sip_uris()), headers, body)


@st.composite
def responses(draw: st.DrawFn) -> SipResponse:
    status = draw(st.integers(100, 699))
    reason = draw(st.text(st.characters(codec="utf-8", blacklist_characters="\r\n"), max_size=20))
    fields = [
        ("Via", draw(vias())),
        ("From", draw(name_addrs())),
        ("To", draw(name_addrs())),
        ("Call-ID", draw(tokens)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {draw(tokens)}"),
    ]
    fields += draw(st.lists(st.tuples(extra_names, raw_values), max_size=4))
    return SipResponse(status, reason, Headers(fields), draw(st.binary(max_size=100)))


def start_line(msg: SipMessage) -> tuple[object, ...]:
    if isinstance(msg, SipRequest):
        return ("request", msg.method, msg.uri)
    assert isinstance(msg, SipResponse)
    return ("response", msg.status, msg.reason)


# --- round trips -------------------------------------------------------------------------------


@FAST
@given(st.one_of(requests(), responses()))
def test_round_trip(msg: SipMessage) -> None:
    data = msg.to_bytes()
    parsed = parse_message(data)
    assert start_line(parsed) == start_line(msg)
    assert list(parsed.headers) == list(msg.headers)
    assert parsed.body == msg.body
    assert parsed.to_bytes() == data
    # The same over a stream, split at an arbitrary point.
    framer = StreamFramer()
    cut = len(data) // 2
    assert framer.feed(data[:cut]) + framer.feed(data[cut:]) == [data]
    assert list(parse_message(data, stream=True).headers) == list(msg.headers)


@FAST
@given(requests(), st.sampled_from([100, 200, 503]), st.sampled_from(["", "Retry-After: 5\r\n"]))
def test_response_bytes_equals_make_response(msg: SipRequest, status: int, tail: str) -> None:
    """The stateless fast path writes exactly what make_response + to_bytes would."""
    parsed = parse_message(msg.to_bytes())
    assert isinstance(parsed, SipRequest)
    extra = [tuple(line.split(": ", 1)) for line in tail.splitlines()]
    slow = make_response(parsed, status, "Reason", to_tag="t1", extra=extra).to_bytes()  # type: ignore[arg-type]
    assert response_bytes(parsed, status, "Reason", to_tag="t1", tail=tail) == slow


@FAST
@given(requests())
def test_typed_values_of_generated_requests(msg: SipRequest) -> None:
    parsed = parse_message(msg.to_bytes())
    assert isinstance(parsed, SipRequest)
    assert validate_request(parsed) is None
    assert parsed.cseq.method == msg.method
    assert [str(v) for v in parsed.vias] == [str(parse_via(v)) for v in msg.headers.values("via")]
    assert parsed.from_ == parse_name_addr(msg.headers.get("from") or "")
    assert len(parsed.contacts) == len(msg.headers.values("contact"))
    assert uri_equal(parsed.ruri, parse_uri(msg.uri))


@FAST
@given(name_addrs())
def test_name_addr_round_trip(text: str) -> None:
    value = parse_name_addr(text)
    assert str(value) == text
    assert parse_name_addr(str(value)) == value
    uri = value.uri
    assert str(uri).lower() == value.uri_text.lower()
    assert uri_equal(uri, parse_uri(str(uri)))


@FAST
@given(vias())
def test_via_round_trip(text: str) -> None:
    via = parse_via(text)
    assert str(via) == text
    assert parse_via(str(via)) == via
    assert isinstance(via, Via) and via.branch is not None


@FAST
@given(sip_uris(headers=True))
def test_uri_round_trip_and_reflexive_equality(text: str) -> None:
    uri = parse_uri(text)
    assert str(uri).lower() == text.lower()
    assert uri_equal(uri, uri)
    rebuilt = parse_uri(str(uri.with_params(x="1")))
    assert rebuilt.param("x") == "1"


# --- only RemoteProtocolError ------------------------------------------------------------------


def attempt(action: Callable[[], object]) -> object:
    try:
        return action()
    except RemoteProtocolError:
        return None


def touch(msg: SipMessage) -> None:
    """Use every accessor; each may only raise RemoteProtocolError."""
    if isinstance(msg, SipRequest):
        attempt(lambda: msg.ruri)
        attempt(lambda: validate_request(msg))
        attempt(lambda: validate_request(msg, known_methods={"INVITE"}))
        make_response(msg, 400, "Bad Request", to_tag="t")
    else:
        assert isinstance(msg, SipResponse)
        attempt(lambda: validate_response(msg))
    attempt(lambda: check_message(msg))
    for name in (
        "call_id",
        "cseq",
        "from_",
        "to",
        "from_tag",
        "to_tag",
        "vias",
        "top_via",
        "contacts",
        "max_forwards",
        "expires",
        "date",
        "content_type",
        "event",
    ):
        attempt(lambda name=name: getattr(msg, name))  # type: ignore[misc]
    for header in ("from", "to"):
        value = attempt(lambda header=header: getattr(msg, header if header == "to" else "from_"))  # type: ignore[misc]
        if isinstance(value, NameAddr):
            attempt(lambda value=value: value.uri)  # type: ignore[misc]
    contacts = attempt(lambda: msg.contacts)
    if isinstance(contacts, list):
        for contact in contacts:
            if contact.uri_text != "*":
                attempt(lambda contact=contact: contact.uri)  # type: ignore[misc]
    for value in msg.route_set() + msg.route_set("route") + msg.headers.values("call-info"):
        attempt(lambda value=value: parse_name_addr(value).uri)  # type: ignore[misc]
    for name in ("authorization", "www-authenticate", "proxy-authenticate"):
        raw = msg.headers.get(name)
        if raw is not None:
            attempt(lambda raw=raw: parse_auth_params(raw))  # type: ignore[misc]
    for name in ("event", "subscription-state", "replaces"):
        raw = msg.headers.get(name)
        if raw is not None:
            attempt(lambda raw=raw: parse_value_params(raw))  # type: ignore[misc]
    msg.copy()
    out = msg.to_bytes()
    # Whatever was accepted re-serialises to something that parses to the same message.
    again = parse_message(out)
    assert start_line(again) == start_line(msg)
    assert list(again.headers) == list(msg.headers) and again.body == msg.body
    assert again.to_bytes() == out


def parse_and_touch(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except RemoteProtocolError:
        return
    touch(msg)


def frame(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer()
    previous = 0
    try:
        for cut in [*sorted(cuts), len(data)]:
            for raw in framer.feed(data[previous:cut]):
                parse_and_touch(raw)
                try:
                    parse_message(raw, stream=True)
                except RemoteProtocolError:
                    pass
            previous = max(previous, cut)
    except RemoteProtocolError:
        pass


def corpus() -> list[bytes]:
    out = [(DATA_DIR / e["file"]).read_bytes() for e in manifest()]
    out.append(
        b"SUBSCRIBE sip:100@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKa;rport\r\n"
        b'From: "A" <sip:101@example.com>;tag=1\r\nTo: <sip:100@example.com>\r\nCall-ID: c\r\n'
        b"CSeq: 1 SUBSCRIBE\r\nEvent: call-info;id=1\r\nExpires: 3600\r\n"
        b'Call-Info: <sip:example.com>;appearance-index=1;appearance-uri="\\"B\\" <sip:b@x>"\r\n'
        b'Authorization: Digest username="u", realm="r, s", nonce="n", uri="sip:x", '
        b'response="0"\r\n'
        b'Contact: <sip:101@192.0.2.1;transport=tcp>;+sip.instance="<urn:uuid:1>";expires=60\r\n'
        b"Route: <sip:p.example.com;lr>\r\nContent-Length: 0\r\n\r\n"
    )
    return out


CORPUS = corpus()
SPECIAL = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b'"',
    b"<",
    b">",
    b";",
    b",",
    b":",
    b" ",
    b"\t",
    b"%",
    b"\\",
    b"\xff",
    b"\r\n ",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "duplicate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(SPECIAL))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 40))]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_remote_protocol_error(data: bytes) -> None:
    parse_and_touch(data)
    parse_and_touch(b"INVITE sip:a@b SIP/2.0\r\n" + data)
    parse_and_touch(b"SIP/2.0 200 OK\r\n" + data)
    frame(data, [len(data) // 3])


@FUZZ
@given(mutated(), st.lists(st.integers(0, 2000), max_size=4))
def test_mutated_messages_raise_only_remote_protocol_error(data: bytes, cuts: list[int]) -> None:
    parse_and_touch(data)
    frame(data + data, cuts)


@FAST
@given(st.lists(st.sampled_from([b"\r\n", b"\r\n\r\n", b"\r", b"\n", b"x"]), max_size=10))
def test_keepalive_noise_never_breaks_framing(noise: list[bytes]) -> None:
    message = CORPUS[-1]
    framer = StreamFramer()
    stream = b"".join(n for n in noise if n != b"x") + message
    out: list[bytes] = []
    for i in range(0, len(stream), 7):
        out += framer.feed(stream[i : i + 7])
    assert out == [message]
