"""RFC 4475 torture messages: outcomes per message, and the values each one is about.

The bytes are the members of RFC 4475 Appendix A.1 (``tests/sip/data/rfc4475``, see its
README). The expected outcomes live in ``make_conformance.py``, which also writes
``docs/conformance.md``; this module checks both against the running code.
"""

from __future__ import annotations

import hashlib

import pytest

from sipsca.errors import RemoteProtocolError
from sipsca.sip import (
    SipRequest,
    SipResponse,
    StreamFramer,
    check_message,
    parse_auth_params,
    parse_message,
    parse_uri,
    parse_value_params,
    unescape,
    unquote_string,
    uri_equal,
    validate_request,
    validate_response,
)

from .make_conformance import CASES, DATA_DIR, DOC_PATH, Case, manifest, outcome, render


def load(name: str) -> bytes:
    return (DATA_DIR / name).read_bytes()


def request(name: str) -> SipRequest:
    msg = parse_message(load(name))
    assert isinstance(msg, SipRequest)
    return msg


def response(name: str) -> SipResponse:
    msg = parse_message(load(name))
    assert isinstance(msg, SipResponse)
    return msg


# --- the data set and the generated document -------------------------------------------


def test_manifest_lists_the_49_messages_with_their_checksums() -> None:
    entries = manifest()
    assert len(entries) == 49
    assert {e["class"] for e in entries} == {"valid", "invalid", "semantic", "compat"}
    for entry in entries:
        data = load(entry["file"])
        assert len(data) == int(entry["bytes"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]


def test_every_message_has_exactly_one_expectation() -> None:
    assert sorted(c.file for c in CASES) == sorted(e["file"] for e in manifest())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_outcome(case: Case) -> None:
    got = outcome(load(case.file))
    assert got.stage == case.stage and got.status in case.statuses, got


def test_conformance_document_is_current() -> None:
    assert DOC_PATH.read_text("utf-8") == render(), "run tests/sip/make_conformance.py"
    assert "**Score: 49/49**" in render()


def test_valid_and_compat_messages_reserialise_byte_for_byte() -> None:
    # Fields keep their received text, so a message nobody changed goes back out exactly
    # as it came (RFC 4475 3.1.1.1: proxies forward unknown headers unchanged).
    for entry in manifest():
        if entry["class"] not in ("valid", "compat", "semantic"):
            continue
        data = load(entry["file"])
        try:
            msg = parse_message(data)
        except RemoteProtocolError:
            continue  # mcl01: refused by the parser
        if entry["file"] in ("dblreq.dat", "inv2543.dat"):
            continue  # trailing octets dropped / Content-Length added on purpose
        assert msg.to_bytes() == data, entry["file"]


# RFC 4475 3.1.2: 400 unless stated; 505 for the version, 501 or 400 for an unknown method with
# a CSeq mismatch, and responses (status_hint 0) are dropped, never answered.
INVALID_STATUS = {
    "badvers.dat": {505},
    "mismatch02.dat": {400, 501},
    "bigcode.dat": {0},
    "scalarlg.dat": {0},
}


def test_invalid_messages_raise_with_the_status_hint() -> None:
    for entry in manifest():
        if entry["class"] != "invalid" or entry["file"] == "baddate.dat":
            continue  # baddate: see test_baddate_is_ignored_by_validation_but_refused_by_...
        with pytest.raises(RemoteProtocolError) as info:
            check_message(parse_message(load(entry["file"])))
        assert info.value.status_hint in INVALID_STATUS.get(entry["file"], {400}), entry["file"]


# --- 3.1.1 valid messages ------------------------------------------------------------------


def test_wsinv_short_tortuous_invite() -> None:
    msg = request("wsinv.dat")
    assert msg.method == "INVITE"
    assert msg.ruri.has_param("unknownparam") and msg.ruri.param("unknownparam") == ""
    assert msg.to.uri_text == "sip:vivekg@chair-dnrc.example.com"
    assert msg.to.bracketed is False
    assert msg.to.tag == "1918181833n"
    assert msg.from_.display == '"J Rosenberg \\\\\\""'
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8"
    assert msg.max_forwards == 68
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert (msg.cseq.number, msg.cseq.method) == (9, "INVITE")
    vias = msg.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("Subject") == ""  # "s :" with an empty value
    assert msg.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.content_type == "application/sdp"
    assert msg.route_set("route") == [
        "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"
    ]
    route_uri = parse_uri("sip:services.example.com;lr;unknownwith=value;unknown-no-value")
    assert route_uri.param("unknown-no-value") == "" and route_uri.param("unknownwith") == "value"
    (contact,) = msg.contacts
    assert contact.display == '"Quoted string \\"\\""'
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert len(msg.body) == 150
    assert validate_request(msg) is None
    # Names keep their spelling; values are unfolded.
    names = [name for name, _ in msg.headers]
    assert names[:3] == ["TO", "from", "MaX-fOrWaRdS"]
    assert "Content-Length" in names and "s" in names and "m" in names


def test_wsinv_unknown_headers_kept_byte_for_byte_when_other_fields_change() -> None:
    data = load("wsinv.dat")
    msg = request("wsinv.dat")
    msg.headers.prepend("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy")
    msg.headers.set("Max-Forwards", "67")
    out = msg.to_bytes()
    for raw in (
        b"NewFangledHeader:   newfangled value\r\n continued newfangled value\r\n",
        b"UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n",
        b"Route:\r\n <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n",
        b'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\r\n',
    ):
        assert raw in data and raw in out
    assert b"MaX-fOrWaRdS: 67\r\n" in out
    assert out.startswith(b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n")


def test_intmeth_wide_range_of_valid_characters() -> None:
    msg = request("intmeth.dat")
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.method == method
    assert msg.cseq.method == method and msg.cseq.number == 139122385
    ruri = msg.ruri
    assert ruri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert ruri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert ruri.host == "example.com" and ruri.headers == ""
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to.display == '"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"'
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.from_.display == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert unquote_string(msg.from_.param("fromParam''~+*_!.-%") or "") == "работающий"
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.max_forwards == 255
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert validate_request(msg) is None
    assert validate_request(msg, known_methods={"INVITE", "ACK"}) == (501, "Not Implemented")


def test_esc01_escapes_compare_equal_to_their_characters_once() -> None:
    msg = request("esc01.dat")
    assert msg.ruri.user == "sips%3Auser%40example.com"
    assert unescape(msg.ruri.user) == "sips:user@example.com"
    assert msg.ruri.host == "example.net"
    assert uri_equal(msg.to.uri, parse_uri("sip:user@example.com"))
    assert msg.from_.uri.user == "I%20have%20spaces"
    assert unescape(msg.from_.uri.user) == "I have spaces"
    (contact,) = msg.contacts
    uri = contact.uri
    assert uri.user == "cal%6Cer"
    assert uri.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))
    assert uri_equal(uri, parse_uri("sip:caller@host5.example.net;lr;name=value%2541"))
    assert not uri_equal(uri, parse_uri("sip:caller@host5.example.net;lr;name=valueA"))
    assert msg.content_type == "application/sdp"  # compact "C"
    assert msg.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # compact "i"
    assert validate_request(msg) is None


def test_escnull_keeps_nul_and_distinct_contacts() -> None:
    msg = request("escnull.dat")
    assert msg.to.uri.user == "null-%00-null"
    assert unescape(msg.to.uri.user) == "null-\x00-null"
    first, second = msg.contacts
    assert unescape(first.uri.user) == "\x00" and unescape(second.uri.user) == "\x00\x00"
    assert not uri_equal(first.uri, second.uri)
    assert validate_request(msg) is None


def test_esc02_percent_that_is_not_an_escape() -> None:
    msg = request("esc02.dat")
    assert msg.method == "RE%47IST%45R" and msg.method != "REGISTER"
    assert msg.cseq.method == "RE%47IST%45R"
    assert msg.to.display == '"%Z%45"' and msg.to.display_name == "%Z%45"
    assert msg.top_via.branch == "z9hG4bK209%fzsnel234"
    # C%6Fntact is an unknown header (names are tokens, not escaped), so two Contacts.
    assert [c.uri_text for c in msg.contacts] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert validate_request(msg) is None
    assert validate_request(msg, known_methods={"REGISTER"}) == (501, "Not Implemented")


def test_lwsdisp_display_name_touching_angle_bracket() -> None:
    msg = request("lwsdisp.dat")
    assert msg.from_.display == "caller"
    assert msg.from_.uri_text == "sip:caller@example.com"
    assert msg.from_.tag == "323"


def test_longreq_long_values() -> None:
    msg = request("longreq.dat")
    assert msg.to.display.startswith('"I have a user name of extremeextreme')
    assert msg.to.uri.port == 6000
    assert msg.to.uri.param("unknownparam1") == "very" + "long" * 20 + "value"
    assert msg.to.uri.has_param(
        "verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongParameterNameWithNoValue"
    )
    assert msg.from_.tag == "1" + "298" * 50 + "2424"
    assert msg.from_.has_param(
        "unknownValuelessparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamname"
    )
    assert msg.call_id.startswith("longreq.onereallyreally") and msg.call_id.endswith("longcallid")
    vias = msg.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:2]] == ["sip33.example.com", "sip32.example.com"]
    last = vias[-1]
    assert last.host == "host.example.com" and last.param("received") == "192.0.2.5"
    assert last.branch is not None and last.branch.startswith("verylong") and len(last.branch) > 200
    unknown = [n for n, _ in msg.headers if n.startswith("Unknown-LongLong")]
    assert len(unknown) == 1
    assert len(msg.body) == 150  # compact "l"
    assert msg.contacts[0].uri.user.startswith("amazinglylongcallername")
    assert validate_request(msg) is None


def test_dblreq_ignores_trailing_octets() -> None:
    msg = request("dblreq.dat")
    assert msg.method == "REGISTER"
    assert msg.body == b""
    assert msg.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"  # compact "I"
    assert validate_request(msg) is None
    assert b"INVITE" not in msg.to_bytes()


def test_semiuri_user_part_with_semicolons() -> None:
    msg = request("semiuri.dat")
    ruri = msg.ruri
    assert ruri.user == "user;par=u%40example.net"
    assert unescape(ruri.user) == "user;par=u@example.net"
    assert ruri.host == "example.com" and ruri.params == ()
    assert msg.headers.values("accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports_unknown_via_transports() -> None:
    msg = request("transports.dat")
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"
    assert validate_request(msg) is None


def test_mpart01_binary_body_framed_by_content_length() -> None:
    data = load("mpart01.dat")
    msg = request("mpart01.dat")
    assert len(msg.body) == 553 and data.endswith(msg.body)
    assert b"\x00" in msg.body and b"\r\n\r\n" in msg.body
    assert msg.content_type == "multipart/mixed"
    assert msg.headers.get("Content-Type") == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert msg.top_via.has_param("rport") and msg.top_via.param("rport") == ""
    # Same framing over a stream, fed one byte at a time.
    framer = StreamFramer()
    out = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert out == [data]
    assert parse_message(out[0], stream=True).body == msg.body


def test_unreason_utf8_reason_phrase() -> None:
    msg = response("unreason.dat")
    assert msg.status == 200
    assert msg.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(msg.body) == 154
    assert validate_response(msg) is None


def test_noreason_empty_reason_phrase() -> None:
    msg = response("noreason.dat")
    assert msg.status == 100 and msg.reason == ""
    assert validate_response(msg) is None


# --- 3.1.2 invalid messages: the reason names the problem ----------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("badinv01.dat", "Malformed Via header"),
        ("clerr.dat", "Content-Length larger than the message body"),
        ("ncl.dat", "Malformed Content-Length header"),
        ("scalar02.dat", "CSeq value out of range"),
        ("scalarlg.dat", "CSeq value out of range"),
        ("quotbal.dat", "Malformed To header"),
        ("ltgtruri.dat", "Malformed Request-URI: enclosed in <>"),
        ("lwsruri.dat", "Malformed Request-Line: white space must be exactly one SP"),
        ("lwsstart.dat", "Malformed Request-Line: white space must be exactly one SP"),
        ("trws.dat", "Malformed Request-Line: white space must be exactly one SP"),
        ("escruri.dat", "Malformed Request-URI: headers are not allowed in a Request-URI"),
        ("regbadct.dat", "Malformed Contact header"),
        ("badaspec.dat", "Malformed To header"),
        ("baddn.dat", "Malformed To header"),
        ("badvers.dat", "Version Not Supported"),
        ("mismatch01.dat", "CSeq method does not match"),
        ("mismatch02.dat", "CSeq method does not match"),
        ("bigcode.dat", "Malformed status code"),
    ],
)
def test_invalid_reason(name: str, reason: str) -> None:
    assert outcome(load(name)).reason == reason


def test_scalar02_every_overlarge_scalar_is_refused_by_its_accessor() -> None:
    msg = request("scalar02.dat")
    for accessor in ("cseq", "max_forwards", "expires"):
        with pytest.raises(RemoteProtocolError) as info:
            getattr(msg, accessor)
        assert info.value.status_hint == 400
    # The Contact expires parameter is only a string here; the registrar clamps it.
    assert msg.contacts[0].param("expires") == "280297596632815"


def test_scalarlg_response_errors_have_status_hint_zero() -> None:
    msg = response("scalarlg.dat")
    with pytest.raises(RemoteProtocolError) as info:
        msg.cseq  # noqa: B018
    assert info.value.status_hint == 0
    assert msg.headers.get("Retry-After") == "949302838503028349304023988"


def test_baddate_is_ignored_by_validation_but_refused_by_the_date_accessor() -> None:
    msg = request("baddate.dat")
    assert validate_request(msg) is None
    with pytest.raises(RemoteProtocolError) as info:
        msg.date  # noqa: B018
    assert info.value.status_hint == 400
    assert msg.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_baddn_with_and_without_the_missing_blank_line() -> None:
    data = load("baddn.dat")
    assert not data.endswith(b"\r\n\r\n")  # as shipped in RFC 4475 A.1
    for raw in (data, data + b"\r\n"):
        assert outcome(raw).stage == "validate" and outcome(raw).status == 400
    with pytest.raises(RemoteProtocolError):
        parse_message(data, stream=True)


def test_clerr_over_a_stream_waits_for_the_rest() -> None:
    data = load("clerr.dat")
    framer = StreamFramer()
    assert framer.feed(data) == []
    assert framer.buffered == len(data)


def test_mismatch02_is_501_when_the_method_is_unknown_to_the_element() -> None:
    msg = request("mismatch02.dat")
    assert validate_request(msg) == (400, "CSeq method does not match")
    assert validate_request(msg, known_methods={"INVITE", "OPTIONS"}) == (501, "Not Implemented")


# --- 3.2 / 3.3 semantics, 3.4 compatibility ---------------------------------------------------


def test_badbranch_is_accepted_for_rfc2543_matching() -> None:
    msg = request("badbranch.dat")
    assert msg.top_via.branch == "z9hG4bK"
    assert validate_request(msg) is None


def test_insuf_missing_required_headers() -> None:
    msg = request("insuf.dat")
    assert validate_request(msg) == (400, "Missing To header")
    for accessor in ("to", "from_", "call_id"):
        with pytest.raises(RemoteProtocolError):
            getattr(msg, accessor)


@pytest.mark.parametrize(
    ("name", "scheme"), [("unkscm.dat", "nobodyknowsthisscheme"), ("novelsc.dat", "soap.beep")]
)
def test_unknown_request_uri_schemes_get_416(name: str, scheme: str) -> None:
    msg = request(name)
    assert msg.ruri.scheme == scheme and not msg.ruri.is_sip
    assert validate_request(msg) == (416, "Unsupported URI Scheme")


def test_unksm2_unknown_schemes_in_headers_are_opaque() -> None:
    msg = request("unksm2.dat")
    assert validate_request(msg) is None
    assert msg.to.uri.scheme == "isbn" and not msg.to.uri.is_sip
    assert str(msg.to.uri) == "isbn:2983792873"
    assert msg.from_.uri.scheme == "http" and msg.from_.tag == "3234233"
    assert msg.contacts[0].uri.scheme == "name"


def test_bext01_require_values_are_readable() -> None:
    msg = request("bext01.dat")
    assert validate_request(msg) is None
    assert msg.headers.values("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert msg.headers.values("Proxy-Require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]
    assert msg.top_via.transport == "TLS"


def test_invut_unknown_content_type() -> None:
    msg = request("invut.dat")
    assert validate_request(msg) is None
    assert msg.content_type == "application/unknownformat"
    assert msg.body.startswith(b"<audio>") and len(msg.body) == 40


def test_regaut01_unknown_authorization_scheme() -> None:
    msg = request("regaut01.dat")
    assert validate_request(msg) is None
    value = msg.headers.get("Authorization")
    assert value == "NoOneKnowsThisScheme opaque-data=here"
    assert parse_auth_params(value) == ("NoOneKnowsThisScheme", {"opaque-data": "here"})


def test_multi01_duplicated_single_value_headers() -> None:
    msg = request("multi01.dat")
    assert validate_request(msg) == (400, "Multiple To headers")
    assert msg.headers.count("CSeq") == 2 and msg.headers.count("call-id") == 2


def test_mcl01_multiple_content_length_refused_by_parser_and_framer() -> None:
    data = load("mcl01.dat")
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    assert info.value.status_hint == 400
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(data)


def test_bcast_broadcast_via_is_parsed() -> None:
    msg = response("bcast.dat")
    assert validate_response(msg) is None
    assert [v.host for v in msg.vias] == ["192.0.2.198", "255.255.255.255"]


def test_zeromf_max_forwards_zero() -> None:
    msg = request("zeromf.dat")
    assert msg.max_forwards == 0
    assert validate_request(msg) is None


def test_cparam01_contact_parameter_is_a_header_parameter() -> None:
    (contact,) = request("cparam01.dat").contacts
    assert contact.bracketed is False
    assert contact.has_param("unknownparam")
    assert contact.uri.params == ()


def test_cparam02_url_parameter_stays_in_the_uri() -> None:
    (contact,) = request("cparam02.dat").contacts
    assert contact.params == ()
    assert contact.uri.has_param("unknownparam")


def test_regescrt_escaped_route_header_stays_in_contact_uri() -> None:
    msg = request("regescrt.dat")
    assert validate_request(msg) is None
    (contact,) = msg.contacts  # compact "M"
    assert contact.uri.headers == "Route=%3Csip:sip.example.com%3E"
    assert unescape(contact.uri.headers) == "Route=<sip:sip.example.com>"


def test_sdp01_accept_is_readable() -> None:
    msg = request("sdp01.dat")
    assert validate_request(msg) is None
    assert msg.headers.values("Accept") == ["text/nobodyKnowsThis"]


def test_inv2543_rfc2543_syntax() -> None:
    data = load("inv2543.dat")
    msg = request("inv2543.dat")
    assert validate_request(msg) is None
    assert msg.top_via.branch is None
    assert msg.from_tag is None
    assert msg.max_forwards is None
    assert "content-length" not in msg.headers
    assert data.endswith(msg.body) and msg.body.startswith(b"v=0")
    assert msg.from_.uri.param("user") == "phone"
    assert msg.route_set() == ["<sip:UserB@example.com;maddr=ss1.example.com>"]
    with pytest.raises(RemoteProtocolError):
        parse_message(data, stream=True)  # a stream needs Content-Length (RFC 3261 18.3)


def test_event_style_values_parse_with_value_params() -> None:
    assert parse_value_params("call-info;id=3") == ("call-info", (("id", "3"),))
