"""parse_message, StreamFramer, limits, messages and validate_request."""

from __future__ import annotations

import pytest

from sipsca.errors import RemoteProtocolError
from sipsca.sip import (
    Headers,
    ParserLimits,
    SipRequest,
    SipResponse,
    StreamFramer,
    check_message,
    make_response,
    parse_message,
    response_bytes,
    validate_request,
    validate_response,
)

CRLF = "\r\n"


def raw(*lines: str, body: str = "") -> bytes:
    return (CRLF.join(lines) + CRLF + CRLF + body).encode()


REGISTER = raw(
    "REGISTER sip:example.com SIP/2.0",
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1;rport",
    "Max-Forwards: 70",
    "From: <sip:1001@example.com>;tag=a1",
    "To: <sip:1001@example.com>",
    "Call-ID: reg-1@192.0.2.10",
    "CSeq: 1 REGISTER",
    "Contact: <sip:1001@192.0.2.10:5060>;expires=3600",
    "Content-Length: 0",
)

OK = raw(
    "SIP/2.0 200 OK",
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1;rport=5060;received=192.0.2.10",
    "From: <sip:1001@example.com>;tag=a1",
    "To: <sip:1001@example.com>;tag=srv",
    "Call-ID: reg-1@192.0.2.10",
    "CSeq: 1 REGISTER",
    "Content-Length: 0",
)


def req(data: bytes, **kw: object) -> SipRequest:
    msg = parse_message(data, **kw)  # type: ignore[arg-type]
    assert isinstance(msg, SipRequest)
    return msg


def rejects(data: bytes, status: int = 400, **kw: object) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data, **kw)  # type: ignore[arg-type]
    assert info.value.status_hint == status, info.value.reason
    return info.value


# --- requests and responses -------------------------------------------------------------------


def test_request() -> None:
    msg = req(REGISTER)
    assert (msg.method, msg.uri) == ("REGISTER", "sip:example.com")
    assert msg.ruri.host == "example.com"
    assert msg.call_id == "reg-1@192.0.2.10" and msg.cseq.number == 1
    assert msg.from_tag == "a1" and msg.to_tag is None
    assert msg.top_via.branch == "z9hG4bK-1" and msg.top_via.has_param("rport")
    assert msg.max_forwards == 70 and msg.body == b""
    assert msg.contacts[0].param("expires") == "3600"
    assert msg.to_bytes() == REGISTER
    assert repr(msg) == "<SipRequest REGISTER sip:example.com>"
    assert validate_request(msg) is None


def test_response() -> None:
    msg = parse_message(OK)
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (200, "OK")
    assert msg.top_via.param("received") == "192.0.2.10"
    assert msg.to_tag == "srv"
    assert msg.to_bytes() == OK
    assert repr(msg) == "<SipResponse 200 OK>"
    assert validate_response(msg) is None
    assert parse_message(OK.replace(b"200 OK", b"180 Ringing Now")).reason == "Ringing Now"  # type: ignore[attr-defined]
    assert parse_message(OK.replace(b"200 OK", b"699")).status == 699  # type: ignore[attr-defined]
    assert parse_message(OK.replace(b"SIP/2.0 200", b"sip/2.0 200")).status == 200  # type: ignore[attr-defined]


def test_folding_is_unfolded_and_kept_on_the_wire() -> None:
    data = raw(
        "OPTIONS sip:a@example.com SIP/2.0",
        "Via: SIP/2.0/UDP h.example.com",
        "\t;branch=z9hG4bKf",
        "Subject: one",
        "   two",
        " three",
        "To: <sip:a@example.com>",
        "From: <sip:b@example.com>;tag=1",
        "Call-ID: fold",
        "CSeq: 1",
        " OPTIONS",
        "Content-Length: 0",
    )
    msg = req(data)
    assert msg.headers.get("subject") == "one two three"
    assert msg.top_via.branch == "z9hG4bKf"
    assert msg.cseq.method == "OPTIONS"
    assert msg.to_bytes() == data
    assert validate_request(msg) is None
    rejects(raw("OPTIONS sip:a@example.com SIP/2.0", " folded-first: x"))


def test_compact_forms_and_name_case() -> None:
    data = raw(
        "OPTIONS sip:a@example.com SIP/2.0",
        "v: SIP/2.0/UDP h.example.com;branch=z9hG4bKc",
        "t: <sip:a@example.com>",
        "f: <sip:b@example.com>;tag=1",
        "i: compact",
        "cSeQ: 2 OPTIONS",
        "m: <sip:b@192.0.2.1>",
        "c: text/plain",
        "o: presence",
        "l: 5",
        body="hello",
    )
    msg = req(data)
    assert msg.call_id == "compact" and msg.to.uri_text == "sip:a@example.com"
    assert msg.content_type == "text/plain" and msg.event == "presence"
    assert msg.body == b"hello" and msg.cseq.number == 2
    assert msg.headers.get("Content-Length") == "5"
    assert validate_request(msg) is None


def test_header_name_white_space_and_empty_values() -> None:
    msg = req(raw("OPTIONS sip:a@b.example SIP/2.0", "Subject\t :", "X-Y:   v  ", "l:0"))
    assert msg.headers.get("subject") == "" and msg.headers.get("x-y") == "v"
    assert [n for n, _ in msg.headers] == ["Subject", "X-Y", "l"]


def test_bare_lf_is_tolerated_and_bare_cr_refused() -> None:
    lf = REGISTER.replace(b"\r\n", b"\n")
    msg = req(lf)
    assert msg.call_id == "reg-1@192.0.2.10" and msg.body == b""
    mixed = REGISTER.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n")
    assert req(mixed).max_forwards == 70
    folded = b"OPTIONS sip:a@b.example SIP/2.0\nSubject: a\n b\nl: 2\n\nhi"
    assert req(folded).headers.get("subject") == "a b" and req(folded).body == b"hi"
    rejects(REGISTER.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r"))
    rejects(REGISTER.replace(b"reg-1@", b"reg\r1@"))


def test_leading_crlf_and_empty_datagrams() -> None:
    assert req(b"\r\n\r\n" + REGISTER).method == "REGISTER"
    rejects(b"", status=0)
    rejects(b"\r\n\r\n", status=0)


def test_missing_blank_line() -> None:
    head = REGISTER[:-2]  # ends with one CRLF only
    assert req(head).call_id == "reg-1@192.0.2.10"
    rejects(head, stream=True)
    assert req(REGISTER.rstrip(b"\r\n")).body == b""


@pytest.mark.parametrize(
    ("start", "status"),
    [
        ("INVITE  sip:a@b.example SIP/2.0", 400),
        ("INVITE sip:a@b.example SIP/2.0 ", 400),
        ("INVITE sip:a@b.example; lr SIP/2.0", 400),
        ("INVITE <sip:a@b.example> SIP/2.0", 400),
        ("INVITE sip:a@b.example?Route=%3Csip:x%3E SIP/2.0", 400),
        ("INVITE sips:a@b.example?x=y SIP/2.0", 400),
        ("INVITE sip:a@b.example", 400),
        ("INVITE sip:a@b.example SIP/2.0 extra", 400),
        ("INVITE", 400),
        ("", 400),
        ("INVITE a@b.example SIP/2.0", 400),
        ("INVITE :a@b.example SIP/2.0", 400),
        ("INV@TE sip:a@b.example SIP/2.0", 400),
        ("INVITE sip:a@b.example HTTP/1.1", 400),
        ("INVITE sip:a@b.example SIP/2", 400),
        ("INVITE sip:a@b.example SIP/7.0", 505),
        ("INVITE sip:a@b.example SIP/2.1", 505),
        ("SIP/2.0 4294967301 better not break the receiver", 0),
        ("SIP/2.0 2000 OK", 0),
        ("SIP/2.0 099 Low", 0),
        ("SIP/2.0 20 OK", 0),
        ("SIP/2.0 abc OK", 0),
        ("SIP/2.0 \u0662\u0660\u0660 OK", 0),
        ("SIP/2.0", 0),
        ("SIP/3.0 200 OK", 0),
        ("SIP/2.0200 OK", 0),
        ("SIPX 200 OK", 400),
    ],
)
def test_bad_start_lines(start: str, status: int) -> None:
    rejects(raw(start, "Content-Length: 0"), status=status)


def test_request_uri_with_question_mark_in_user_part_is_fine() -> None:
    msg = req(raw("OPTIONS sip:a?b@example.com SIP/2.0", "l: 0"))
    assert msg.ruri.user == "a?b"
    assert req(raw("OPTIONS tel:+1555?x SIP/2.0", "l: 0")).uri == "tel:+1555?x"


@pytest.mark.parametrize(
    "line",
    [
        "NoColonHere",
        "Bad Name: x",
        ": empty name",
        "Via",
        "X\x00Y: z",
        "\u00e9t\u00e9: x",
        "Na<me>: x",
    ],
)
def test_malformed_header_lines(line: str) -> None:
    rejects(raw("OPTIONS sip:a@b.example SIP/2.0", line, "l: 0"))
    error = rejects(raw("SIP/2.0 200 OK", line, "l: 0"), status=0)
    assert "header" in error.reason


def test_content_length_rules() -> None:
    base = ("MESSAGE sip:a@b.example SIP/2.0", "Content-Type: text/plain")
    assert req(raw(*base, "Content-Length: 5", body="hello")).body == b"hello"
    assert req(raw(*base, "Content-Length: 005", body="hello")).body == b"hello"
    assert req(raw(*base, "Content-Length: 2", body="hello")).body == b"he"  # rest ignored (18.3)
    assert req(raw(*base, body="hello")).body == b"hello"  # no Content-Length on UDP: the rest
    assert req(raw(*base, "Content-Length: 4", body="a\r\n\r\nb")[:-1]).body == b"a\r\n\r"
    rejects(raw(*base, "Content-Length: 6", body="hello"))
    rejects(raw(*base, "Content-Length: -1", body="hello"))
    rejects(raw(*base, "Content-Length: 5 5", body="hello"))
    rejects(raw(*base, "Content-Length: \u0665", body="hello"))
    rejects(raw(*base, "Content-Length: " + "9" * 5000, body="hello"))
    rejects(raw(*base, "Content-Length: 5", "l: 5", body="hello"))
    rejects(raw(*base, body="hello"), stream=True)
    rejects(raw("SIP/2.0 200 OK", "Content-Length: 9"), status=0)


def test_binary_bodies_survive_and_non_utf8_header_text_is_refused() -> None:
    """A body is bytes, kept as they are; header text is UTF-8 (RFC 3261 7.3.1): a Latin-1
    byte there is a 400 (decisions.md 33: stored, it broke every database write after it)."""
    data = raw("MESSAGE sip:a@b.example SIP/2.0", "X-Raw: caf\xe9", "Content-Length: 4")
    msg = req(data + b"\x00\xff\r\n")
    assert msg.body == b"\x00\xff\r\n"
    assert msg.to_bytes() == data + b"\x00\xff\r\n"
    assert msg.headers.get("x-raw") == "caf\xe9"
    latin1 = data.replace(b"caf\xc3\xa9", b"caf\xe9")
    with pytest.raises(RemoteProtocolError) as exc:
        parse_message(latin1 + b"\x00\xff\r\n")
    assert (exc.value.status_hint, exc.value.reason) == (400, "Invalid UTF-8 in the header section")


# --- limits ---------------------------------------------------------------------------------------


def test_max_message_size() -> None:
    limits = ParserLimits(max_message_size=200)
    rejects(REGISTER + b"x" * 200, status=513, limits=limits)
    rejects(OK + b"x" * 200, status=0, limits=limits)
    assert req(REGISTER, limits=ParserLimits(max_message_size=len(REGISTER))).method == "REGISTER"


def test_max_headers() -> None:
    limits = ParserLimits(max_headers=10)
    many = raw("OPTIONS sip:a@b.example SIP/2.0", *[f"X-H{i}: {i}" for i in range(10)], "l: 0")
    rejects(many, limits=limits)
    ok = raw("OPTIONS sip:a@b.example SIP/2.0", *[f"X-H{i}: {i}" for i in range(9)], "l: 0")
    assert len(req(ok, limits=limits).headers) == 10
    # Continuation lines do not count as fields.
    folded = raw("OPTIONS sip:a@b.example SIP/2.0", "Subject: a", *[" b"] * 20, "l: 0")
    assert req(folded, limits=limits).headers.get("subject") == "a" + " b" * 20
    rejects(
        raw("OPTIONS sip:a@b.example SIP/2.0", *[f"X-H{i}: {i}\r\n f" for i in range(11)]),
        limits=limits,
    )


def test_max_line_length() -> None:
    limits = ParserLimits(max_line_length=100)
    rejects(raw("OPTIONS sip:a@b.example SIP/2.0", "Subject: " + "x" * 100, "l: 0"), limits=limits)
    rejects(raw("OPTIONS sip:" + "a" * 100 + "@b.example SIP/2.0", "l: 0"), limits=limits)
    rejects(raw("SIP/2.0 200 " + "x" * 100, "l: 0"), status=0, limits=limits)
    many_short = raw("OPTIONS sip:a@b.example SIP/2.0", *["Subject: " + "x" * 80] * 3, "l: 0")
    assert req(many_short, limits=limits).headers.count("subject") == 3


# --- StreamFramer ---------------------------------------------------------------------------------


INVITE = raw(
    "INVITE sip:bob@example.com SIP/2.0",
    "Via: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bK-2",
    "From: <sip:alice@example.com>;tag=x",
    "To: <sip:bob@example.com>",
    "Call-ID: inv-1",
    "CSeq: 1 INVITE",
    "Content-Type: application/sdp",
    "Content-Length: 17",
    body="v=0\r\n\r\n\r\nbody\r\n\r\n",
)


def test_framer_several_messages_in_one_feed() -> None:
    framer = StreamFramer()
    out = framer.feed(REGISTER + INVITE + OK)
    assert out == [REGISTER, INVITE, OK]
    assert framer.buffered == 0 and framer.pings == 0
    assert parse_message(out[1], stream=True).body == b"v=0\r\n\r\n\r\nbody\r\n\r\n"


def test_framer_serves_the_messages_before_a_framing_error() -> None:
    """A complete message followed in the same bytes by an unframeable one is returned;
    the error waits in ``failed`` (the connection is closed after serving) and the next
    feed raises it."""
    bad = REGISTER.replace(b"Content-Length: 0", b"Content-Length: -1")
    framer = StreamFramer()
    assert framer.feed(REGISTER + bad) == [REGISTER]
    assert framer.failed is not None and framer.failed.status_hint == 400
    with pytest.raises(RemoteProtocolError):
        framer.feed(b"")
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(bad)  # nothing before it: raised at once


def test_framer_one_byte_at_a_time() -> None:
    stream = REGISTER + b"\r\n\r\n" + INVITE + b"\r\n" + OK
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += framer.feed(stream[i : i + 1])
    assert out == [REGISTER, INVITE, OK]
    assert framer.pings == 1 and framer.buffered == 0


def test_framer_split_across_feeds() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE[:50]) == []
    assert framer.feed(INVITE[50:-5]) == []
    assert framer.buffered == len(INVITE) - 5
    assert framer.feed(INVITE[-5:] + REGISTER[:10]) == [INVITE]
    assert framer.feed(REGISTER[10:]) == [REGISTER]


def test_framer_keepalives() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [] and framer.pings == 1
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == [] and framer.pings == 3
    assert framer.feed(b"\r\n") == [] and framer.pings == 3  # maybe a ping still arriving
    assert framer.buffered == 2
    assert framer.feed(b"\r\n") == [] and framer.pings == 4
    assert framer.feed(b"\r\n" + REGISTER) == [REGISTER]  # lone CRLF before a message
    assert framer.pings == 4
    assert framer.feed(b"\n\r" + OK) == [OK]  # stray bytes are skipped


def test_framer_errors() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        StreamFramer().feed(raw("OPTIONS sip:a@b.example SIP/2.0", "To: <sip:a@b.example>"))
    assert info.value.status_hint == 400 and "Content-Length" in info.value.reason
    with pytest.raises(RemoteProtocolError) as info:
        StreamFramer().feed(raw("SIP/2.0 200 OK", "To: <sip:a@b.example>"))
    assert info.value.status_hint == 0
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(raw("OPTIONS sip:a@b.example SIP/2.0", "l: x"))
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(raw("OPTIONS sip:a@b.example SIP/2.0", "l: 1", "Content-Length: 1"))
    small = ParserLimits(max_message_size=300)
    with pytest.raises(RemoteProtocolError) as info:
        StreamFramer(small).feed(b"OPTIONS sip:a@b.example SIP/2.0\r\nX: " + b"y" * 400)
    assert info.value.status_hint == 513
    with pytest.raises(RemoteProtocolError) as info:
        StreamFramer(small).feed(raw("OPTIONS sip:a@b.example SIP/2.0", "Content-Length: 1000"))
    assert info.value.status_hint == 513


def test_framer_folded_content_length_and_bad_other_headers() -> None:
    data = raw("MESSAGE sip:a@b.example SIP/2.0", "Content-Length:", " 2", "Bad Header", body="hi")
    (out,) = StreamFramer().feed(data)
    assert out == data
    with pytest.raises(RemoteProtocolError):
        parse_message(out, stream=True)  # the bad header is the parser's business, not framing


# --- messages -------------------------------------------------------------------------------------


def test_make_response_copies_the_right_headers() -> None:
    msg = req(REGISTER)
    resp = make_response(msg, 200, to_tag="t1", extra=[("Expires", "3600")], body=b"")
    assert resp.status == 200 and resp.reason == "OK"
    assert resp.headers.keys() == ["via", "from", "to", "call-id", "cseq", "expires"]
    assert resp.to_tag == "t1" and resp.headers.get("via") == msg.headers.get("via")
    assert make_response(msg, 100).to_tag is None
    tagged = make_response(
        req(OK.replace(b"SIP/2.0 200 OK", b"BYE sip:a@b SIP/2.0")), 200, to_tag="new"
    )
    assert tagged.to_tag == "srv"
    assert make_response(msg, 486, "Busy Here Now").reason == "Busy Here Now"
    assert b"Content-Length: 0\r\n" in resp.to_bytes()


@pytest.mark.parametrize(
    ("status", "copied"), [(100, False), (180, True), (202, True), (300, False), (404, False)]
)
def test_record_route_is_copied_into_180_to_299(status: int, copied: bool) -> None:
    """RFC 3261 12.1.1 (and Kamailio's replies): the dialog's route set reaches the UAC."""
    msg = req(REGISTER.replace(b"Call-ID:", b"Record-Route: <sip:p1.example.com;lr>\r\nCall-ID:"))
    expected = ["<sip:p1.example.com;lr>"] if copied else []
    assert make_response(msg, status, to_tag="t").headers.values("record-route") == expected
    wire = response_bytes(msg, status, "X", to_tag="t")
    assert (b"Record-Route: <sip:p1.example.com;lr>\r\n" in wire) is copied


def test_copy_and_to_bytes_fix_content_length() -> None:
    msg = req(REGISTER)
    dup = msg.copy()
    dup.body = b"abc"
    dup.headers.set("Max-Forwards", "69")
    out = dup.to_bytes()
    assert b"Content-Length: 3\r\n" in out and out.endswith(b"\r\n\r\nabc")
    assert msg.to_bytes() == REGISTER
    built = SipRequest("OPTIONS", "sip:x@example.com", Headers([("To", "<sip:x@example.com>")]))
    assert (
        built.to_bytes() == b"OPTIONS sip:x@example.com SIP/2.0\r\nTo: <sip:x@example.com>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    resp = SipResponse(404)
    assert resp.reason == "Not Found" and resp.copy().status == 404


def test_typed_values_are_cached_per_raw_value() -> None:
    msg = req(REGISTER)
    assert msg.from_ is msg.from_ and msg.top_via is msg.top_via and msg.cseq is msg.cseq
    first = msg.from_
    msg.headers.set("From", "<sip:other@example.com>;tag=z")
    assert msg.from_ is not first and msg.from_tag == "z"
    vias = msg.vias
    msg.headers.prepend("Via", "SIP/2.0/UDP p.example.com;branch=z9hG4bKp")
    assert len(msg.vias) == len(vias) + 1 and msg.top_via.host == "p.example.com"
    old_ruri = msg.ruri
    msg.uri = "sip:new.example.com"
    assert msg.ruri.host == "new.example.com" and old_ruri.host == "example.com"


def test_missing_and_malformed_headers_through_accessors() -> None:
    msg = req(raw("OPTIONS sip:a@b.example SIP/2.0", "Call-ID:  ", "Via: ,", "l: 0"))
    for accessor in ("call_id", "cseq", "from_", "to", "top_via", "from_tag", "to_tag"):
        with pytest.raises(RemoteProtocolError) as info:
            getattr(msg, accessor)
        assert info.value.status_hint == 400
    assert msg.vias == [] and msg.contacts == []
    resp = parse_message(raw("SIP/2.0 200 OK", "CSeq: x", "l: 0"))
    with pytest.raises(RemoteProtocolError) as info:
        resp.cseq  # noqa: B018
    assert info.value.status_hint == 0
    with pytest.raises(RemoteProtocolError) as info:
        resp.to  # noqa: B018
    assert info.value.status_hint == 0


# --- validate_request / validate_response -------------------------------------------------


def request_with(
    *changes: tuple[str, str | None], uri: str = "sip:100@example.com", method: str = "INVITE"
) -> SipRequest:
    fields = {
        "Via": "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKv",
        "To": "<sip:100@example.com>",
        "From": "<sip:101@example.com>;tag=1",
        "Call-ID": "v1",
        "CSeq": f"1 {method}",
        "Max-Forwards": "70",
    }
    lines = [f"{method} {uri} SIP/2.0"]
    extra: list[str] = []
    for name, value in changes:
        if name in fields:
            if value is None:
                del fields[name]
            else:
                fields[name] = value
        elif value is not None:
            extra.append(f"{name}: {value}")
    lines += [f"{n}: {v}" for n, v in fields.items()] + extra + ["Content-Length: 0"]
    return req(raw(*lines))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ((), None),
        ((("Max-Forwards", None),), None),
        ((("Max-Forwards", "0"),), None),
        ((("Via", "SIP/2.0/UDP 192.0.2.1"),), None),
        ((("Via", None),), (400, "Missing Via header")),
        ((("To", None),), (400, "Missing To header")),
        ((("From", None),), (400, "Missing From header")),
        ((("Call-ID", None),), (400, "Missing Call-ID header")),
        ((("CSeq", None),), (400, "Missing CSeq header")),
        ((("Call-ID", " "),), (400, "Empty Call-ID header")),
        ((("CSeq", "1 BYE"),), (400, "CSeq method does not match")),
        ((("CSeq", "1 invite"),), (400, "CSeq method does not match")),
        ((("CSeq", "2147483648 INVITE"),), (400, "CSeq value out of range")),
        ((("CSeq", "x INVITE"),), (400, "Malformed CSeq header")),
        ((("To", "Bad, Name <sip:a@b>"),), (400, "Malformed To header")),
        ((("From", "<sip:a@b b>"),), (400, "Malformed From header")),
        ((("From", "<sip:a@-bad->;tag=1"),), (400, "Malformed From header")),
        ((("Via", "SIP/2.0/UDP h;;"),), (400, "Malformed Via header")),
        ((("Via", ","),), (400, "Malformed Via header")),
        ((("Max-Forwards", "256"),), (400, "Max-Forwards value out of range")),
        ((("Max-Forwards", "x"),), (400, "Malformed Max-Forwards header")),
        ((("Expires", "-1"),), (400, "Malformed Expires header")),
        ((("Contact", "<sip:a@b>, sip:c@d?x=y"),), (400, "Malformed Contact header")),
        ((("Contact", "*"),), None),
        ((("Route", "<sip:p.example.com;lr>"),), None),
        ((("Route", "sip:p.example.com;lr junk"),), (400, "Malformed Route header")),
        ((("Record-Route", "<sip:p.example.com;;lr>"),), (400, "Malformed Record-Route header")),
        ((("X-To", "x"), ("To", "<sip:a@b>")), None),
    ],
)
def test_validate_request(
    changes: tuple[tuple[str, str | None], ...], expected: tuple[int, str] | None
) -> None:
    assert validate_request(request_with(*changes)) == expected


def test_validate_request_duplicates_uri_and_body() -> None:
    dup = request_with()
    dup.headers.add("Expires", "1")
    dup.headers.add("Expires", "2")
    assert validate_request(dup) == (400, "Multiple Expires headers")
    dup = request_with()
    dup.headers.add("Call-ID", "other")
    assert validate_request(dup) == (400, "Multiple Call-ID headers")
    assert validate_request(request_with(uri="tel:+15551234")) is None
    assert validate_request(request_with(uri="sips:100@example.com")) is None
    assert validate_request(request_with(uri="http://example.com/")) == (
        416,
        "Unsupported URI Scheme",
    )
    assert validate_request(request_with(uri="sip:100@exa%mple.com")) == (
        400,
        "Malformed Request-URI",
    )
    built = request_with()
    built.uri = "sip:100@example.com?Route=x"
    assert validate_request(built) == (400, "Headers not allowed in the Request-URI")
    body = request_with()
    body.body = b"abc"  # Content-Length: 0 left as received
    assert validate_request(body) == (400, "Content-Length does not match the body")
    body.headers.set("Content-Length", "x")
    assert validate_request(body) == (400, "Malformed Content-Length header")
    assert validate_request(request_with(), known_methods={"INVITE"}) is None
    assert validate_request(request_with(method="FOO"), known_methods={"INVITE"}) == (
        501,
        "Not Implemented",
    )


def test_validate_response_and_check_message() -> None:
    resp = parse_message(OK)
    assert isinstance(resp, SipResponse)
    assert validate_response(resp) is None
    check_message(resp)
    check_message(req(REGISTER))
    broken = resp.copy()
    broken.headers.remove("via")
    assert validate_response(broken) == "Missing Via header"
    broken = resp.copy()
    broken.headers.set("CSeq", "99999999999 REGISTER")
    assert validate_response(broken) == "CSeq value out of range"
    broken.headers.add("To", "<sip:x@y>")
    assert validate_response(broken) == "Multiple To headers"
    broken = resp.copy()
    broken.headers.set("From", "<sip:x y>")
    assert validate_response(broken) == "Malformed From header"
    with pytest.raises(RemoteProtocolError) as info:
        check_message(broken)
    assert info.value.status_hint == 0
    with pytest.raises(RemoteProtocolError) as info:
        check_message(request_with(("CSeq", "1 ACK")))
    assert (info.value.status_hint, info.value.reason) == (400, "CSeq method does not match")
