"""SIP, SIPS and tel URIs: parsing, serialising, RFC 3261 19.1.4 comparison."""

from __future__ import annotations

import pytest

from sipsca.errors import RemoteProtocolError
from sipsca.sip import SipUri, parse_uri, unescape, uri_equal
from sipsca.sip.uri import is_valid_host


def test_full_sip_uri() -> None:
    uri = parse_uri(
        "sip:alice:secretword@atlanta.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent"
    )
    assert uri.scheme == "sip" and uri.is_sip
    assert uri.user == "alice" and uri.password == "secretword"
    assert uri.host == "atlanta.com" and uri.port == 5061
    assert uri.params == (("transport", "tcp"), ("lr", None))
    assert uri.param("TRANSPORT") == "tcp" and uri.param("lr") == "" and uri.param("maddr") is None
    assert uri.has_param("Lr") and not uri.has_param("ttl")
    assert uri.headers == "subject=project%20x&priority=urgent"
    assert uri.hostport == "atlanta.com:5061"
    assert uri.aor() == "sip:alice@atlanta.com:5061"
    assert (
        str(uri) == "sip:alice:secretword@atlanta.com:5061;transport=tcp;lr"
        "?subject=project%20x&priority=urgent"
    )


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:example.com", "example.com", None),
        ("sip:example.com.", "example.com.", None),
        ("sip:a-b.example.com:0", "a-b.example.com", 0),
        ("sip:192.0.2.4:5060", "192.0.2.4", 5060),
        ("sip:[2001:db8::10]", "[2001:db8::10]", None),
        ("sip:[2001:db8::10]:5070", "[2001:db8::10]", 5070),
        ("sip:[::ffff:192.0.2.1]:65535", "[::ffff:192.0.2.1]", 65535),
        ("sips:bob@x1.example", "x1.example", None),
        ("sip:_sip._udp.example.com", "_sip._udp.example.com", None),  # "_" tolerated
    ],
)
def test_hosts_and_ports(text: str, host: str, port: int | None) -> None:
    uri = parse_uri(text)
    assert (uri.host, uri.port) == (host, port)
    assert str(uri) == text


def test_sips_and_scheme_case() -> None:
    uri = parse_uri("SIPS:Bob@Biloxi.COM")
    assert uri.scheme == "sips" and uri.is_sip
    assert uri.user == "Bob" and uri.host == "Biloxi.COM"
    assert str(uri) == "sips:Bob@Biloxi.COM"


def test_escapes_are_kept_and_unescaped_on_demand() -> None:
    uri = parse_uri("sip:%61lice%20x@atlanta.com;n%61me=v%61lue")
    assert uri.user == "%61lice%20x"
    assert unescape(uri.user) == "alice x"
    assert uri.params == (("n%61me", "v%61lue"),)
    assert str(uri) == "sip:%61lice%20x@atlanta.com;n%61me=v%61lue"
    assert unescape("caf%C3%A9") == "café"
    assert unescape("no-escape") == "no-escape"
    assert unescape("%ff") == "\ufffd"


def test_user_part_with_user_unreserved_characters() -> None:
    uri = parse_uri("sip:+1-212-555-1212;phone-context=x;isub=y@gw.example.com;user=phone")
    assert uri.user == "+1-212-555-1212;phone-context=x;isub=y"
    assert uri.param("user") == "phone"


def test_tel_uris() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert uri.scheme == "tel" and not uri.is_sip
    assert uri.user == "+1-201-555-0123"
    assert uri.param("phone-context") == "example.com"
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"
    assert uri_equal(uri, parse_uri("tel:+1.201.555.0123;PHONE-CONTEXT=example.com"))
    assert not uri_equal(uri, parse_uri("tel:+1-201-555-0124;phone-context=example.com"))
    assert parse_uri("tel:7042;phone-context=example.com").user == "7042"


def test_other_schemes_are_opaque() -> None:
    uri = parse_uri("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    assert uri.scheme == "urn" and not uri.is_sip
    assert str(uri) == "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    assert uri_equal(uri, parse_uri("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip",
        "alice@example.com",
        ":alice@example.com",
        "1sip:alice@example.com",
        "sip:alice@example.com x",
        "sip:alice@exa mple.com",
        "sip:<alice@example.com>",
        'sip:"alice"@example.com',
        "sip:alice@",
        "sip:@example.com",
        "sip:alice@example.com:",
        "sip:alice@example.com:65536",
        "sip:alice@example.com:5o60",
        "sip:alice@example.com:\u0665\u0660",
        "sip:alice@999.0.0.1",
        "sip:alice@1.2.3",
        "sip:alice@-example.com",
        "sip:alice@example-.com",
        "sip:alice@[2001:db8::1",
        "sip:alice@[2001:db8::g]",
        "sip:alice@[fe80::1%25eth0]",
        "sip:alice@[2001:db8::1]5060",
        "sip:alice@example.com;",
        "sip:alice@example.com;;lr",
        "sip:alice@example.com;lr=",
        "sip:alice@example.com;a=b=c",
        "sip:alice@example.com?",
        "sip:alice@example.com?subject",
        "sip:alice@example.com?a=b&",
        "sip:al%ZZice@example.com",
        "sip:alice:pa:ss@example.com",
        "sip:ali\u00e7e@example.com",
        "sip:alice@example.com\x00",
        "tel:",
        "tel:+1 555",
        "tel:+1555;",
        "mailto:",
    ],
)
def test_malformed_uris(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_uri(text)
    assert info.value.status_hint == 400


def test_with_and_without_params() -> None:
    uri = parse_uri("sip:alice@example.com;transport=udp;lr")
    tcp = uri.with_params(transport="tcp", ob=None)
    assert str(tcp) == "sip:alice@example.com;lr;transport=tcp;ob"
    assert str(uri.without_params("LR")) == "sip:alice@example.com;transport=udp"
    assert str(uri) == "sip:alice@example.com;transport=udp;lr"  # immutable
    with_headers = parse_uri("sip:alice@example.com?Route=%3Csip:p.example.com%3E")
    assert str(with_headers.without_headers()) == "sip:alice@example.com"
    assert uri.without_headers() is uri


def test_constructed_uri_serialises() -> None:
    uri = SipUri(scheme="sip", user="bob", host="biloxi.com", port=5060, params=(("lr", None),))
    assert str(uri) == "sip:bob@biloxi.com:5060;lr"
    assert str(SipUri(scheme="sip", host="[::1]")) == "sip:[::1]"
    assert (
        str(SipUri(scheme="tel", user="+15551234", params=(("ext", "1"),))) == "tel:+15551234;ext=1"
    )
    assert str(SipUri(scheme="sip", user="u", password="", host="h")) == "sip:u:@h"


def test_parse_is_memoised_and_results_are_immutable() -> None:
    text = "sip:memo@example.com"
    assert parse_uri(text) is parse_uri(text)
    with pytest.raises(AttributeError):
        parse_uri(text).user = "x"  # type: ignore[misc]
    long_text = "sip:" + "u" * 300 + "@example.com"
    assert parse_uri(long_text) == parse_uri(long_text)


@pytest.mark.parametrize(
    "host",
    ["example.com", "a.b.c.example", "x", "192.0.2.1", "255.255.255.255", "[::1]", "[2001:db8::1]"],
)
def test_valid_hosts(host: str) -> None:
    assert is_valid_host(host)


@pytest.mark.parametrize(
    "host", ["", "256.1.1.1", "1.2.3", "a..b", "-a.com", "[::1", "[zz::1]", "a b"]
)
def test_invalid_hosts(host: str) -> None:
    assert not is_valid_host(host)


# RFC 3261 19.1.4: "The URIs within each of the following sets are equivalent".
EQUAL = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]

# "The URIs within each of the following sets are not equivalent".
NOT_EQUAL = [
    (
        "SIP:ALICE@AtLanTa.CoM;Transport=udp",
        "sip:alice@AtLanTa.CoM;Transport=UDP",
    ),  # different usernames
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),  # can resolve to different ports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),  # different transports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),  # port and transport
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),  # header component
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),  # even if that is what it resolves to
    # "Note that equality is not transitive":
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_rfc3261_equal_examples(a: str, b: str) -> None:
    assert uri_equal(parse_uri(a), parse_uri(b))
    assert uri_equal(parse_uri(b), parse_uri(a))


@pytest.mark.parametrize(("a", "b"), NOT_EQUAL)
def test_rfc3261_not_equal_examples(a: str, b: str) -> None:
    assert not uri_equal(parse_uri(a), parse_uri(b))
    assert not uri_equal(parse_uri(b), parse_uri(a))


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("sip:alice@atlanta.com", "sips:alice@atlanta.com", False),  # scheme
        (
            "sip:alice:pw@atlanta.com",
            "sip:alice:PW@atlanta.com",
            False,
        ),  # password is case-sensitive
        ("sip:alice:p%77@atlanta.com", "sip:alice:pw@atlanta.com", True),
        ("sip:a%3Bb@atlanta.com", "sip:a;b@atlanta.com", False),  # reserved character escaped
        ("sip:a%3bb@atlanta.com", "sip:a%3Bb@atlanta.com", True),  # hex case
        ("sip:a%253Bb@atlanta.com", "sip:a%3Bb@atlanta.com", False),  # "%" stays escaped
        ("sip:x@h;maddr=239.255.255.1", "sip:x@h", False),  # maddr must match if present
        ("sip:x@h;user=phone", "sip:x@h", False),
        ("sip:x@h;ttl=15", "sip:x@h;TTL=15", True),
        ("sip:x@h;method=INVITE", "sip:x@h;method=invite", True),
        ("sip:x@[2001:DB8::1]", "sip:x@[2001:db8::1]", True),
        ("sip:x@h?a=b", "sip:x@h?A=B", True),
    ],
)
def test_comparison_details(a: str, b: str, equal: bool) -> None:
    assert uri_equal(parse_uri(a), parse_uri(b)) is equal
