"""Digest authentication: known answers, challenge/verify round trips, replay and junk input."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsca.auth.digest import (
    AuthResult,
    Credentials,
    DigestAuthenticator,
    ha1,
    make_subscriber,
)
from sipsca.auth.model import Subscriber
from sipsca.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from sipsca.sip import SipRequest, parse_message

SECRET = b"0123456789abcdef-test-secret"
NOW = 1_700_000_000.0
REALM = "example.com"
ALICE = make_subscriber("alice", REALM, "s3cret")


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


HASH: dict[str, Callable[[str], str]] = {"MD5": md5, "SHA-256": sha256}


def http_style_request(method: str, uri: str) -> SipRequest:
    """The RFC 2617/7616 examples use HTTP paths, which the SIP parser rightly refuses."""
    return SipRequest(method, uri, request().headers.copy())


def request(
    method: str = "REGISTER",
    uri: str = "sip:example.com",
    *,
    auth: tuple[str, ...] = (),
    proxy_auth: tuple[str, ...] = (),
) -> SipRequest:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1",
        "Max-Forwards: 70",
        "To: <sip:alice@example.com>",
        "From: <sip:alice@example.com>;tag=f1",
        "Call-ID: auth-1@phone",
        f"CSeq: 1 {method}",
    ]
    lines += [f"Authorization: {a}" for a in auth]
    lines += [f"Proxy-Authorization: {a}" for a in proxy_auth]
    lines += ["Content-Length: 0", "", ""]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, SipRequest)
    return msg


def challenge_params(value: str) -> dict[str, str]:
    assert value.startswith("Digest ")
    out = {}
    for m in re.finditer(r'([a-z]+)=("([^"]*)"|[^,\s]+)', value):
        out[m.group(1)] = m.group(3) if m.group(3) is not None else m.group(2)
    return out


def answer(
    challenge: dict[str, str],
    *,
    method: str = "REGISTER",
    uri: str = "sip:example.com",
    username: str = "alice",
    password: str = "s3cret",
    nc: int = 1,
    cnonce: str = "0a4f113b",
    qop: bool = True,
    algorithm: str | None = None,
    opaque: bool = True,
) -> str:
    """A UAC's Authorization value, computed by hand (RFC 2617 3.2.2.1)."""
    alg = algorithm or challenge["algorithm"]
    h = HASH[alg]
    a1 = h(f"{username}:{challenge['realm']}:{password}")
    a2 = h(f"{method}:{uri}")
    nonce = challenge["nonce"]
    ncs = f"{nc:08x}"
    # RFC 2617 3.2.2.1: with qop, KD(HA1, nonce:nc:cnonce:qop:HA2); without, RFC 2069.
    response = h(f"{a1}:{nonce}:{ncs}:{cnonce}:auth:{a2}") if qop else h(f"{a1}:{nonce}:{a2}")
    value = (
        f'Digest username="{username}", realm="{challenge["realm"]}", nonce="{nonce}", '
        f'uri="{uri}", response="{response}", algorithm={alg}'
    )
    if qop:
        value += f', qop=auth, nc={ncs}, cnonce="{cnonce}"'
    if opaque and "opaque" in challenge:
        value += f', opaque="{challenge["opaque"]}"'
    return value


@pytest.fixture
def auth() -> DigestAuthenticator:
    return DigestAuthenticator(secret=SECRET, nonce_ttl=300)


def fresh_challenge(
    auth: DigestAuthenticator, *, now: float = NOW, algorithm: str = "SHA-256", realm: str = REALM
) -> dict[str, str]:
    resp = auth.challenge(request(), realm=realm, now=now, proxy=False, to_tag="t")
    for value in resp.headers.get_all("WWW-Authenticate"):
        params = challenge_params(value)
        if params["algorithm"] == algorithm:
            return params
    raise AssertionError(f"no {algorithm} challenge")


def check(
    auth: DigestAuthenticator,
    value: str,
    *,
    now: float = NOW,
    subscriber: Subscriber | None = ALICE,
    method: str = "REGISTER",
    uri: str = "sip:example.com",
    realm: str = REALM,
) -> AuthResult:
    req = request(method, uri, auth=(value,))
    creds = auth.credentials(req, realm=realm, proxy=False)
    assert creds is not None
    return auth.verify(req, creds, subscriber, now=now)


# -- known answers ----------------------------------------------------------------------

# RFC 2617 3.5: Mufasa / "Circle Of Life" / testrealm@host.com, GET /dir/index.html.
RFC2617 = {
    "username": "Mufasa",
    "realm": "testrealm@host.com",
    "password": "Circle Of Life",
    "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
    "uri": "/dir/index.html",
    "cnonce": "0a4f113b",
    "nc": "00000001",
    "response": "6629fae49393a05397450978507c4ef1",
}


def test_ha1_md5_known_answer() -> None:
    by_hand = md5("Mufasa:testrealm@host.com:Circle Of Life")
    assert by_hand == "939e7578ed9e3c518a452acee763bce9"  # the RFC 2617 3.5 HA1
    assert ha1("Mufasa", "testrealm@host.com", "Circle Of Life", "MD5") == by_hand
    assert ha1("Mufasa", "testrealm@host.com", "Circle Of Life", "md5") == by_hand


def test_ha1_sha256_known_answer() -> None:
    by_hand = sha256("Mufasa:http-auth@example.org:Circle of Life")
    assert ha1("Mufasa", "http-auth@example.org", "Circle of Life", "SHA-256") == by_hand


def test_ha1_rejects_unknown_algorithm() -> None:
    with pytest.raises(LocalProtocolError):
        ha1("a", "b", "c", "MD5-sess")


def test_make_subscriber_uses_domain_as_realm() -> None:
    sub = make_subscriber("bob", "example.org", "pw")
    assert sub == Subscriber(
        username="bob",
        domain="example.org",
        ha1_md5=md5("bob:example.org:pw"),
        ha1_sha256=sha256("bob:example.org:pw"),
    )


def _rfc_vector_creds(response: str, algorithm: str = "MD5", **kw: str) -> Credentials:
    v = RFC2617 | kw
    return Credentials(
        scheme="Digest",
        username=v["username"],
        realm=v["realm"],
        nonce=v["nonce"],
        uri=v["uri"],
        response=response,
        algorithm=algorithm,
        qop="auth",
        nc=v["nc"],
        cnonce=v["cnonce"],
    )


def test_rfc2617_response_known_answer(auth: DigestAuthenticator) -> None:
    # The response digest by hand, then through verify(): the nonce is not ours, so the
    # result is stale -- which verify() only says after the digest itself checked out.
    ha1_ = md5("Mufasa:testrealm@host.com:Circle Of Life")
    ha2 = md5("GET:/dir/index.html")
    by_hand = md5(f"{ha1_}:{RFC2617['nonce']}:00000001:0a4f113b:auth:{ha2}")
    assert by_hand == RFC2617["response"]
    sub = make_subscriber("Mufasa", "testrealm@host.com", "Circle Of Life")
    req = http_style_request("GET", "/dir/index.html")
    auth = DigestAuthenticator(secret=SECRET, algorithms=("MD5",))
    result = auth.verify(req, _rfc_vector_creds(by_hand), sub, now=NOW)
    assert result == AuthResult(ok=False, stale=True, reason="Nonce not issued by us")
    wrong = auth.verify(req, _rfc_vector_creds("0" * 32), sub, now=NOW)
    assert wrong == AuthResult(ok=False, stale=False, reason="Wrong response digest")


def test_rfc7616_sha256_known_answer() -> None:
    # RFC 7616 3.9.1 example (SHA-256 variant).
    v = {
        "realm": "http-auth@example.org",
        "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    }
    a1 = sha256(f"Mufasa:{v['realm']}:Circle of Life")
    a2 = sha256("GET:/dir/index.html")
    by_hand = sha256(f"{a1}:{v['nonce']}:00000001:{v['cnonce']}:auth:{a2}")
    assert by_hand == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    sub = make_subscriber("Mufasa", v["realm"], "Circle of Life")
    creds = _rfc_vector_creds(by_hand, "SHA-256", **v)
    auth = DigestAuthenticator(secret=SECRET)
    result = auth.verify(http_style_request("GET", "/dir/index.html"), creds, sub, now=NOW)
    assert result.stale and not result.ok


# -- challenge ----------------------------------------------------------------------------


def test_challenge_401_for_register(auth: DigestAuthenticator) -> None:
    resp = auth.challenge(request(), realm=REALM, now=NOW, proxy=False, to_tag="tt")
    assert resp.status == 401
    assert resp.reason == "Unauthorized"
    assert resp.headers.get("to") == "<sip:alice@example.com>;tag=tt"
    assert "proxy-authenticate" not in resp.headers
    values = resp.headers.get_all("WWW-Authenticate")
    assert [challenge_params(v)["algorithm"] for v in values] == ["SHA-256", "MD5"]
    first, second = (challenge_params(v) for v in values)
    assert first["realm"] == REALM
    assert first["qop"] == "auth"
    assert 'qop="auth"' in values[0]
    assert first["nonce"] == second["nonce"]
    assert first["opaque"] == second["opaque"]
    assert "stale" not in first


def test_challenge_407_for_proxy(auth: DigestAuthenticator) -> None:
    resp = auth.challenge(
        request("INVITE", "sip:bob@example.com"), realm=REALM, now=NOW, proxy=True, to_tag="tt"
    )
    assert resp.status == 407
    assert resp.reason == "Proxy Authentication Required"
    assert "www-authenticate" not in resp.headers
    assert len(resp.headers.get_all("Proxy-Authenticate")) == 2


def test_challenge_stale_flag(auth: DigestAuthenticator) -> None:
    resp = auth.challenge(request(), realm=REALM, now=NOW, stale=True, proxy=False, to_tag="t")
    assert all(v.endswith(", stale=true") for v in resp.headers.get_all("WWW-Authenticate"))


def test_challenge_follows_configured_preference() -> None:
    auth = DigestAuthenticator(secret=SECRET, algorithms=("md5",))
    resp = auth.challenge(request(), realm=REALM, now=NOW, proxy=False, to_tag="t")
    (value,) = resp.headers.get_all("WWW-Authenticate")
    assert challenge_params(value)["algorithm"] == "MD5"


def test_challenge_nonces_are_unique(auth: DigestAuthenticator) -> None:
    nonces = {fresh_challenge(auth)["nonce"] for _ in range(50)}
    assert len(nonces) == 50


def test_challenge_uses_injected_entropy() -> None:
    calls: list[int] = []

    def entropy(n: int) -> bytes:
        calls.append(n)
        return b"\xab" * n

    auth = DigestAuthenticator(secret=SECRET, entropy=entropy)
    c = fresh_challenge(auth)
    assert calls == [8]
    assert check(auth, answer(c)).ok


@pytest.mark.parametrize(
    "kwargs",
    [
        {"secret": b"short"},
        {"secret": SECRET, "algorithms": ("SHA-512",)},
        {"secret": SECRET, "algorithms": ()},
        {"secret": SECRET, "nonce_ttl": 0},
    ],
)
def test_bad_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DigestAuthenticator(**kwargs)  # type: ignore[arg-type]


# -- verify: success and failures ---------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_success(auth: DigestAuthenticator, algorithm: str) -> None:
    c = fresh_challenge(auth, algorithm=algorithm)
    assert check(auth, answer(c), now=NOW + 5) == AuthResult(ok=True)


def test_success_for_invite_via_proxy_authorization(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    value = answer(c, method="INVITE", uri="sip:bob@example.com")
    req = request("INVITE", "sip:bob@example.com", proxy_auth=(value,))
    assert auth.credentials(req, realm=REALM, proxy=False) is None
    creds = auth.credentials(req, realm=REALM, proxy=True)
    assert creds is not None
    assert auth.verify(req, creds, ALICE, now=NOW).ok


def test_wrong_password(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    result = check(auth, answer(c, password="guess"))
    assert result == AuthResult(ok=False, stale=False, reason="Wrong response digest")


def test_wrong_method_breaks_digest(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    value = answer(c, method="INVITE")
    assert not check(auth, value, method="REGISTER").ok


def test_unknown_user(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    assert check(auth, answer(c), subscriber=None) == AuthResult(ok=False, reason="Unknown user")


def test_username_must_match_subscriber(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    bob = make_subscriber("bob", REALM, "s3cret")
    assert not check(auth, answer(c), subscriber=bob).ok


def test_wrong_realm(auth: DigestAuthenticator) -> None:
    # Credentials made for another realm are not ours: credentials() skips them...
    other = fresh_challenge(auth, realm="other.example")
    req = request(auth=(answer(other),))
    assert auth.credentials(req, realm=REALM, proxy=False) is None
    # ...and even if looked up for that realm, our subscriber's HA1 is bound to its domain.
    result = check(auth, answer(other), realm="other.example")
    assert result.reason == "Realm does not match the subscriber's domain"
    assert not result.ok and not result.stale


def test_nonce_is_bound_to_its_realm(auth: DigestAuthenticator) -> None:
    other = fresh_challenge(auth, realm="other.example")
    mine = fresh_challenge(auth)
    forged = answer(mine | {"nonce": other["nonce"]})
    result = check(auth, forged)
    assert result == AuthResult(ok=False, stale=True, reason="Nonce not issued by us")


def test_stale_nonce(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth, now=NOW)
    assert check(auth, answer(c), now=NOW + 300).ok  # exactly at the ttl: still fresh
    c = fresh_challenge(auth, now=NOW)
    result = check(auth, answer(c), now=NOW + 301)
    assert result == AuthResult(ok=False, stale=True, reason="Nonce expired")


def test_stale_nonce_with_wrong_password_is_not_stale(auth: DigestAuthenticator) -> None:
    # RFC 2617 3.2.1: stale only when the digest itself is valid.
    c = fresh_challenge(auth, now=NOW)
    result = check(auth, answer(c, password="guess"), now=NOW + 1000)
    assert not result.ok and not result.stale


def test_tampered_nonce(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    nonce = c["nonce"]
    flipped = nonce[:5] + ("A" if nonce[5] != "A" else "B") + nonce[6:]
    result = check(auth, answer(c | {"nonce": flipped}))
    assert not result.ok
    assert result.reason == "Nonce not issued by us"


@pytest.mark.parametrize("nonce", ["", "not base64!!", "AAAA", "Zm9v" * 30, "ünïcode"])
def test_garbage_nonce(auth: DigestAuthenticator, nonce: str) -> None:
    c = fresh_challenge(auth)
    result = check(auth, answer(c | {"nonce": nonce}))
    assert not result.ok and result.stale


def test_nonce_from_another_secret_is_stale(auth: DigestAuthenticator) -> None:
    # After a restart with a new random secret, phones re-authenticate without prompting.
    before = DigestAuthenticator(secret=b"another-secret-of-16+bytes")
    c = fresh_challenge(before)
    result = check(auth, answer(c, opaque=False))
    assert result.stale and not result.ok


def test_opaque_checked_when_present(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    assert check(auth, answer(c | {"opaque": "deadbeef"})).reason == "Opaque not issued by us"
    c = fresh_challenge(auth)
    assert check(auth, answer(c, opaque=False)).ok


def test_uri_must_match_request_uri_textually(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    value = answer(c, uri="sip:EXAMPLE.com")
    result = check(auth, value, uri="sip:example.com")
    assert result.reason == "Digest uri does not match the Request-URI"
    assert not result.ok and not result.stale


def test_unsupported_algorithm(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    value = answer(c).replace("algorithm=SHA-256", "algorithm=SHA-512-256")
    assert check(auth, value).reason == "Unsupported algorithm 'SHA-512-256'"


def test_algorithm_not_offered() -> None:
    sha_only = DigestAuthenticator(secret=SECRET, algorithms=("SHA-256",))
    c = fresh_challenge(sha_only) | {"algorithm": "MD5"}
    assert not check(sha_only, answer(c)).ok


def test_missing_algorithm_means_md5(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth, algorithm="MD5")
    value = answer(c).replace(", algorithm=MD5", "")
    req = request(auth=(value,))
    creds = auth.credentials(req, realm=REALM, proxy=False)
    assert creds is not None and creds.algorithm == "MD5"
    assert auth.verify(req, creds, ALICE, now=NOW).ok


def test_qop_auth_int_not_supported(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    value = answer(c).replace("qop=auth", "qop=auth-int")
    assert check(auth, value).reason == "Unsupported qop 'auth-int'"


def test_uppercase_hex_response_accepted(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    value = answer(c)
    m = re.search(r'response="([0-9a-f]+)"', value)
    assert m is not None
    assert check(auth, value.replace(m.group(1), m.group(1).upper())).ok


# -- nonce counts / replay ----------------------------------------------------------------


def test_replayed_nc_rejected(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    value = answer(c, nc=1)
    assert check(auth, value).ok
    result = check(auth, value, now=NOW + 1)
    assert result == AuthResult(ok=False, stale=False, reason="Replayed nonce count")


def test_lower_nc_rejected(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    assert check(auth, answer(c, nc=5)).ok
    assert not check(auth, answer(c, nc=4)).ok


def test_increasing_nc_ok(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    for nc in (1, 2, 3, 7, 0xFFFFFFFF):
        assert check(auth, answer(c, nc=nc, cnonce=f"c{nc}")).ok, nc


def test_nc_zero_rejected(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    assert check(auth, answer(c, nc=0)).reason == "Nonce count must start at 1"


def test_failed_attempt_does_not_burn_counts(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    assert not check(auth, answer(c, nc=9, password="guess")).ok
    assert check(auth, answer(c, nc=1)).ok


def test_missing_qop_rfc2069_fallback(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth, algorithm="MD5")
    value = answer(c, qop=False)
    assert "qop" not in value and "nc=" not in value
    assert check(auth, value).ok
    # No nc to protect it: the nonce is single-use, a reuse asks for a fresh one.
    again = check(auth, value)
    assert again == AuthResult(ok=False, stale=True, reason="No-qop nonce already used")


def test_nc_table_is_bounded() -> None:
    auth = DigestAuthenticator(secret=SECRET, max_tracked_nonces=2)
    challenges = [fresh_challenge(auth) for _ in range(3)]
    for c in challenges:
        assert check(auth, answer(c)).ok
    assert auth.tracked_nonces == 2
    # The evicted (oldest) nonce cannot be replayed: its history is gone, so it is stale.
    result = check(auth, answer(challenges[0], nc=1))
    assert not result.ok and result.stale
    # The still-tracked ones keep replay protection.
    assert not check(auth, answer(challenges[2], nc=1)).ok
    assert check(auth, answer(challenges[2], nc=2)).ok


def test_expired_nonces_are_evicted(auth: DigestAuthenticator) -> None:
    for _ in range(5):
        assert check(auth, answer(fresh_challenge(auth, now=NOW)), now=NOW).ok
    assert auth.tracked_nonces == 5
    c = fresh_challenge(auth, now=NOW + 1000)
    assert check(auth, answer(c), now=NOW + 1000).ok
    assert auth.tracked_nonces == 1


# -- credentials parsing ------------------------------------------------------------------


def test_credentials_absent(auth: DigestAuthenticator) -> None:
    assert auth.credentials(request(), realm=REALM, proxy=False) is None


def test_credentials_parsed(auth: DigestAuthenticator) -> None:
    value = (
        'Digest  username="a\\"b" ,realm="example.com",nonce="n",uri="sip:example.com",'
        'response="abcdef",qop=auth,nc=0000000A,cnonce="c",opaque="o",algorithm="SHA-256"'
    )
    creds = auth.credentials(request(auth=(value,)), realm=REALM, proxy=False)
    assert creds == Credentials(
        scheme="Digest",
        username='a"b',
        realm=REALM,
        nonce="n",
        uri="sip:example.com",
        response="abcdef",
        algorithm="SHA-256",
        qop="auth",
        nc="0000000A",
        cnonce="c",
        opaque="o",
    )


def test_credentials_case_insensitive_names_and_scheme(auth: DigestAuthenticator) -> None:
    value = 'digest USERNAME="alice", Realm="example.com", NONCE="n", URI="sip:x", Response="00"'
    creds = auth.credentials(request(auth=(value,)), realm=REALM, proxy=False)
    assert creds is not None and creds.username == "alice"


def test_credentials_unquoted_uri_tolerated(auth: DigestAuthenticator) -> None:
    value = (
        'Digest username="alice", realm="example.com", nonce="n", uri=sip:example.com, response="0"'
    )
    creds = auth.credentials(request(auth=(value,)), realm=REALM, proxy=False)
    assert creds is not None and creds.uri == "sip:example.com"


def test_credentials_pick_our_realm_among_several(auth: DigestAuthenticator) -> None:
    theirs = (
        'Digest username="x", realm="upstream.net", nonce="n", uri="sip:example.com", response="00"'
    )
    ours = 'Digest username="alice", realm="example.com", nonce="m", uri="sip:x", response="11"'
    creds = auth.credentials(request(auth=(theirs, ours)), realm=REALM, proxy=False)
    assert creds is not None and creds.nonce == "m"


def test_unknown_scheme_is_ignored_rfc4475_regaut01(auth: DigestAuthenticator) -> None:
    # RFC 4475 3.3.7: a registrar may ignore it (and challenge).
    req = request(auth=("NoOneKnowsThisScheme opaque-data=here",))
    assert auth.credentials(req, realm=REALM, proxy=False) is None
    req = request(auth=("Basic dXNlcjpwYXNz",))
    assert auth.credentials(req, realm=REALM, proxy=False) is None


@pytest.mark.parametrize(
    "value",
    [
        'Digest username="alice, realm="example.com"',  # unbalanced quote
        'Digest username="alice", realm="example.com", nonce="n", uri="sip:x"',  # no response
        'Digest username="alice" realm="example.com"',  # missing comma
        'Digest username="a", username="b", realm="example.com", nonce="n", uri="u", response="00"',
        'Digest username="a", realm="example.com", nonce="n", uri="u", response="00", qop=auth',
        'Digest username="a", realm="example.com", nonce="n", uri="u", response="00", '
        'qop=auth, nc=1, cnonce="c"',
        'Digest username="a", realm="example.com", nonce="n", uri="u", response="xyz"',
        "Digest username",
        "Digest =x",
        "Digest username=",
        'Digest username="a", , realm=',
    ],
)
def test_malformed_digest_raises_400(auth: DigestAuthenticator, value: str) -> None:
    req = request()
    req.headers.add("Authorization", value)
    with pytest.raises(RemoteProtocolError) as info:
        auth.credentials(req, realm=REALM, proxy=False)
    assert info.value.status_hint == 400


@pytest.mark.parametrize("value", ['"Digest" username="a"', 'Digest,username="a"', "", "!!!"])
def test_not_a_digest_scheme_is_ignored(auth: DigestAuthenticator, value: str) -> None:
    req = request()
    req.headers.add("Authorization", value)
    assert auth.credentials(req, realm=REALM, proxy=False) is None


def test_malformed_header_only_raises_for_the_header_asked(auth: DigestAuthenticator) -> None:
    req = request(proxy_auth=('Digest username="',))
    assert auth.credentials(req, realm=REALM, proxy=False) is None
    with pytest.raises(RemoteProtocolError):
        auth.credentials(req, realm=REALM, proxy=True)


# -- strip_credentials --------------------------------------------------------------------


def test_strip_credentials_keeps_other_realms(auth: DigestAuthenticator) -> None:
    ours = 'Digest username="alice", realm="example.com", nonce="n", uri="sip:b@x", response="00"'
    theirs = 'Digest username="alice", realm="carrier.net", nonce="n", uri="sip:b@x", response="00"'
    req = request(
        "INVITE",
        "sip:b@x",
        auth=(ours, "Basic dXNlcjpwYXNz"),
        proxy_auth=(theirs, ours, 'Digest garbage="'),
    )
    auth.strip_credentials(req, realm=REALM)
    assert req.headers.get_all("Authorization") == ["Basic dXNlcjpwYXNz"]
    assert req.headers.get_all("Proxy-Authorization") == [theirs, 'Digest garbage="']
    # Idempotent, and other headers are untouched.
    auth.strip_credentials(req, realm=REALM)
    assert req.headers.get("call-id") == "auth-1@phone"
    assert len(req.headers.get_all("Proxy-Authorization")) == 2


# -- junk never raises anything but RemoteProtocolError -----------------------------------

_PIECES = st.sampled_from(
    [
        "Digest",
        "digest ",
        " ",
        ",",
        "=",
        '"',
        "\\",
        "username",
        "realm",
        "nonce",
        "uri",
        "response",
        "qop",
        "nc",
        "cnonce",
        "algorithm",
        "opaque",
        "auth",
        "00000001",
        "example.com",
        "sip:example.com",
        "SHA-256",
        "MD5",
        "\t",
        "\u00e9",
        "\udcff",
        "\x00",
    ]
)
_JUNK = st.one_of(
    st.text(max_size=120),
    st.lists(_PIECES | st.text(max_size=5), max_size=40).map("".join),
).map(lambda s: s.replace("\r", " ").replace("\n", " "))  # a parsed field has no line breaks


@settings(max_examples=400, deadline=None)
@given(values=st.lists(_JUNK, min_size=1, max_size=3), proxy=st.booleans())
def test_junk_credentials_only_raise_remote_protocol_error(values: list[str], proxy: bool) -> None:
    auth = DigestAuthenticator(secret=SECRET)
    req = request()
    name = "Proxy-Authorization" if proxy else "Authorization"
    for value in values:
        req.headers.add(name, value)
    try:
        creds = auth.credentials(req, realm=REALM, proxy=proxy)
    except RemoteProtocolError:
        creds = None
    if creds is not None:
        result = auth.verify(req, creds, ALICE, now=NOW)
        assert not result.ok
    auth.strip_credentials(req, realm=REALM)


@settings(max_examples=200, deadline=None)
@given(
    username=st.text(max_size=20),
    nonce=st.text(max_size=80),
    uri=st.text(max_size=30),
    response=st.text(max_size=70),
    algorithm=st.text(max_size=10),
    qop=st.none() | st.text(max_size=8),
    nc=st.none() | st.text(max_size=10),
)
def test_verify_never_raises_on_odd_credentials(
    username: str,
    nonce: str,
    uri: str,
    response: str,
    algorithm: str,
    qop: str | None,
    nc: str | None,
) -> None:
    auth = DigestAuthenticator(secret=SECRET)
    creds = Credentials(
        scheme="Digest",
        username=username,
        realm=REALM,
        nonce=nonce,
        uri=uri,
        response=response,
        algorithm=algorithm,
        qop=qop,
        nc=nc,
        cnonce="c",
    )
    result = auth.verify(request(), creds, ALICE, now=NOW)
    assert not result.ok


def test_verify_rejects_bad_nc_in_hand_made_credentials(auth: DigestAuthenticator) -> None:
    c = fresh_challenge(auth)
    req = request(auth=(answer(c),))
    creds = auth.credentials(req, realm=REALM, proxy=False)
    assert creds is not None
    odd = Credentials(**{f: getattr(creds, f) for f in creds.__slots__} | {"nc": "xyz"})
    assert auth.verify(req, odd, ALICE, now=NOW).reason == "Malformed nonce count"


def test_lone_surrogate_in_credentials_does_not_crash(auth: DigestAuthenticator) -> None:
    sub = make_subscriber("al\ud800ice", REALM, "pw")
    creds = Credentials(
        scheme="Digest",
        username="al\ud800ice",
        realm=REALM,
        nonce="n",
        uri="sip:example.com",
        response="0" * 64,
        algorithm="SHA-256",
    )
    assert not auth.verify(request(), creds, sub, now=NOW).ok
