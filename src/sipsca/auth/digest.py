"""HTTP Digest authentication for SIP (RFC 3261 22, RFC 2617 qop=auth, RFC 7616 / RFC 8760 SHA-256).

Pure code: no clock, no randomness of its own, no I/O. ``now`` (epoch seconds) is
passed in, and unpredictability, when wanted, comes from an injected ``entropy``
function (the runtime passes ``os.urandom``).

Nonces are stateless to verify: ``base64url(timestamp | counter | salt | MAC)`` where the
MAC is HMAC-SHA-256 under the server secret over the rest and the realm, so any worker
can check a nonce it did not issue and a restart with the same secret keeps old nonces
valid. The only state is the nonce-count table used against replays (RFC 2617 3.2.2:
"the server ... can detect replays by ... the nonce-count"); it is bounded, see
:class:`DigestAuthenticator`.

Flow, as in the sample config's ``route[AUTH]`` (``auth_check`` / ``auth_challenge`` /
``consume_credentials``)::

    creds = auth.credentials(req, realm=realm, proxy=not is_register)
    if creds is None -> send auth.challenge(...)
    result = auth.verify(req, creds, subscriber_lookup(creds.username), now=now)
    if not result.ok -> send auth.challenge(..., stale=result.stale)
    else (not REGISTER) -> auth.strip_credentials(req, realm=realm) and forward
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sipsca.auth.model import Subscriber
from sipsca.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from sipsca.sip.fields import parse_auth_params
from sipsca.sip.message import SipRequest, SipResponse, make_response

__all__ = [
    "MIN_SECRET_BYTES",
    "AuthResult",
    "Credentials",
    "DigestAuthenticator",
    "ha1",
    "make_subscriber",
]

MIN_SECRET_BYTES = 16
"""Shortest HMAC key for nonces and opaque values (``auth.secret``)."""

# Digest algorithm name (RFC 7616 6.1 registry spelling) -> hashlib name.
_HASHES: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256"}
# RFC 2617 3.2.2: nc-value = 8LHEX
_NC_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
_HEX_RE = re.compile(r"^[0-9A-Fa-f]+$")

_TS_LEN = 8
_COUNTER_LEN = 8
_SALT_LEN = 8
_MAC_LEN = 24
_PAYLOAD_LEN = _TS_LEN + _COUNTER_LEN + _SALT_LEN
_NONCE_LEN = _PAYLOAD_LEN + _MAC_LEN


def _canonical_algorithm(name: str) -> str | None:
    upper = name.strip().upper()
    return upper if upper in _HASHES else None


def _h(algorithm: str, text: str) -> str:
    # surrogateescape gives back the raw bytes the peer sent (the parser decodes with
    # it), so a non-UTF-8 username hashes exactly as the client hashed it.
    return hashlib.new(_HASHES[algorithm], _raw(text)).hexdigest()


def _raw(text: str) -> bytes:
    """The bytes of a header value as received (the parser decodes with surrogateescape)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate not made by surrogateescape
        return text.encode("utf-8", "surrogatepass")


def ha1(username: str, realm: str, password: str, algorithm: str) -> str:
    """``H(username ":" realm ":" password)`` in lower-case hex (RFC 2617 3.2.2.2, RFC 7616 3.4.2).

    Only this is stored for a user, never the password, so the user database cannot be
    replayed against another realm.

    Args:
        algorithm: ``"MD5"`` or ``"SHA-256"`` (case-insensitive).

    Raises:
        LocalProtocolError: any other algorithm (``-sess`` variants are not supported).
    """
    alg = _canonical_algorithm(algorithm)
    if alg is None:
        raise LocalProtocolError(f"Unsupported digest algorithm {algorithm!r}")
    return _h(alg, f"{username}:{realm}:{password}")


def make_subscriber(username: str, domain: str, password: str) -> Subscriber:
    """A :class:`Subscriber` with both HA1s computed with ``realm = domain``.

    sipsca challenges with the request's domain as realm (Kamailio ``auth_check("$fd")``),
    so a subscriber's HA1s are only valid for its own domain.
    """
    return Subscriber(
        username=username,
        domain=domain,
        ha1_md5=ha1(username, domain, password, "MD5"),
        ha1_sha256=ha1(username, domain, password, "SHA-256"),
    )


@dataclass(frozen=True, slots=True)
class Credentials:
    """One parsed ``Authorization`` / ``Proxy-Authorization`` Digest value (RFC 2617 3.2.2).

    Values are unquoted. ``algorithm`` is as sent, ``"MD5"`` when absent (RFC 2617 3.2.1
    default); ``qop``, ``nc``, ``cnonce`` and ``opaque`` are None when absent.
    """

    scheme: str
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of :meth:`DigestAuthenticator.verify`.

    ``stale`` is only ever True with ``ok`` False: the client knows the password but the
    nonce is expired or not ours, so re-challenge with ``stale=True`` and the UA retries
    without asking its user (RFC 2617 3.2.1). ``reason`` is for logs, never for the wire.
    """

    ok: bool
    stale: bool = False
    reason: str = ""


class DigestAuthenticator:
    """Issues Digest challenges and checks answers, keeping only a bounded nc table.

    Time is epoch seconds passed as ``now``. Replay protection (RFC 2617 3.2.2 nonce-count)
    is per instance: after a restart a captured answer with a still-fresh nonce could be
    accepted once more per nc value, which is the usual trade-off of stateless nonces
    (``nonce_ttl`` bounds the window; a fresh random secret per start closes it), and
    workers sharing a secret should each see a given UA's requests (its flow).

    The nc table holds at most ``max_tracked_nonces`` entries: entries of expired nonces
    are dropped on every :meth:`verify`, and beyond the bound the entry *first
    used* longest ago goes; a nonce issued before an evicted one then gets ``stale`` so the UA
    fetches a new nonce instead of its nc history being forgotten.
    """

    def __init__(
        self,
        *,
        secret: bytes,
        nonce_ttl: int = 300,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        max_tracked_nonces: int = 65536,
        entropy: Callable[[int], bytes] | None = None,
    ) -> None:
        """Create an authenticator.

        Args:
            secret: HMAC key for nonces and opaque; at least 16 bytes.
            nonce_ttl: seconds a nonce stays fresh; older nonces get ``stale=true``.
            algorithms: offered algorithms, most preferred first (RFC 8760 2.4: one
                challenge per algorithm "in the order of preference"). ``MD5`` and
                ``SHA-256`` are known.
            max_tracked_nonces: bound on the nonce-count table (memory per process).
            entropy: ``n -> n random bytes`` mixed into each nonce (e.g. ``os.urandom``).
                Without it nonces are still unique (a counter) and unforgeable (the MAC),
                only predictable.

        Raises:
            ConfigError: empty/short secret, unknown algorithm, or bad bounds.
        """
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"auth.secret must be at least {MIN_SECRET_BYTES} bytes "
                "(or empty: a random secret per start)"
            )
        canon: list[str] = []
        for name in algorithms:
            alg = _canonical_algorithm(name)
            if alg is None:
                raise ConfigError(f"auth.algorithms: unsupported {name!r} (use SHA-256, MD5)")
            if alg not in canon:
                canon.append(alg)
        if not canon:
            raise ConfigError('auth.algorithms must name at least one of "SHA-256", "MD5"')
        if not nonce_ttl > 0:
            raise ConfigError(f"auth.nonce_ttl must be > 0 seconds, not {nonce_ttl}")
        if max_tracked_nonces <= 0:
            raise ConfigError("max_tracked_nonces must be positive")
        self._secret = secret
        self.nonce_ttl = nonce_ttl
        self.algorithms: tuple[str, ...] = tuple(canon)
        self._max_tracked = max_tracked_nonces
        self._entropy = entropy
        self._counter = 0
        # nonce -> (issue time, issue counter, highest nc accepted); in first-use order.
        self._nc: OrderedDict[str, tuple[int, int, int]] = OrderedDict()
        # Nonces whose issue counter is at or below this, and that are not in the table,
        # may have been evicted for space: refuse them (stale) rather than forget their
        # nc history. Counters only grow, so fresh challenges are never caught by it.
        self._evicted_counter = -1

    # -- challenge ---------------------------------------------------------------------

    def challenge(
        self,
        request: SipRequest,
        *,
        realm: str,
        now: float,
        stale: bool = False,
        proxy: bool,
        to_tag: str,
    ) -> SipResponse:
        """A 401 with ``WWW-Authenticate`` (``proxy=False``) or 407 with ``Proxy-Authenticate``.

        RFC 3261 22.1 / 22.3: a registrar or UAS answers 401, a proxy 407. One header
        per configured algorithm, most preferred first (RFC 8760 2.4), all with the same
        nonce, ``qop="auth"`` and ``opaque``; ``stale=true`` when re-challenging a client
        that knew the password (RFC 2617 3.2.1).

        Send the returned response as is; nothing is remembered about it.
        """
        nonce = self._make_nonce(realm, now)
        opaque = self._opaque(realm)
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        extra: list[tuple[str, str]] = []
        for alg in self.algorithms:
            value = (
                f'Digest realm="{_quote(realm)}", nonce="{nonce}", opaque="{opaque}", '
                f'algorithm={alg}, qop="auth"'
            )
            if stale:
                value += ", stale=true"
            extra.append((header, value))
        return make_response(request, 407 if proxy else 401, to_tag=to_tag, extra=extra)

    def _make_nonce(self, realm: str, now: float) -> str:
        self._counter = (self._counter + 1) % 2**64
        salt = self._entropy(_SALT_LEN)[:_SALT_LEN] if self._entropy else b""
        payload = (
            max(0, int(now)).to_bytes(_TS_LEN, "big")
            + self._counter.to_bytes(_COUNTER_LEN, "big")
            + salt.ljust(_SALT_LEN, b"\0")
        )
        raw = payload + self._mac(payload, realm)
        return base64.urlsafe_b64encode(raw).decode("ascii")

    def _mac(self, payload: bytes, realm: str) -> bytes:
        msg = payload + b"|" + _raw(realm)
        return hmac.new(self._secret, msg, hashlib.sha256).digest()[:_MAC_LEN]

    def _opaque(self, realm: str) -> str:
        mac = hmac.new(
            self._secret, b"opaque|" + realm.encode("utf-8", "surrogateescape"), "sha256"
        )
        return mac.hexdigest()[:32]

    def _nonce_origin(self, nonce: str, realm: str) -> tuple[int, int] | None:
        """(issue time, counter) of a nonce we made for ``realm``; None if forged/garbled."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return None
        # The decoder skips stray characters; only our exact spelling is our nonce.
        if len(raw) != _NONCE_LEN or base64.urlsafe_b64encode(raw).decode("ascii") != nonce:
            return None
        payload, mac = raw[:_PAYLOAD_LEN], raw[_PAYLOAD_LEN:]
        if not hmac.compare_digest(mac, self._mac(payload, realm)):
            return None
        issued = int.from_bytes(payload[:_TS_LEN], "big")
        counter = int.from_bytes(payload[_TS_LEN : _TS_LEN + _COUNTER_LEN], "big")
        return issued, counter

    # -- credentials -------------------------------------------------------------------

    def credentials(self, request: SipRequest, *, realm: str, proxy: bool) -> Credentials | None:
        """The Digest credentials for ``realm`` in the request, None when there are none.

        Looks at ``Proxy-Authorization`` when ``proxy`` else ``Authorization``, one
        credential per header line (RFC 3261 7.3.1: these are never comma-combined), and
        returns the first Digest one whose realm equals ``realm`` exactly (RFC 3261 22.3:
        a proxy "MUST ... locate ... credentials with a matching realm"). Other schemes are
        skipped (RFC 4475 3.3.7 regaut01: answer with a challenge, not a 400).

        Raises:
            RemoteProtocolError: a Digest value is malformed or lacks a required
                parameter (answer 400).
        """
        name = "Proxy-Authorization" if proxy else "Authorization"
        for value in request.headers.get_all(name):
            params = _digest_params(value, name)
            if params is None:
                continue
            creds = _credentials_from(params, name)
            if creds.realm == realm:
                return creds
        return None

    # -- verify ------------------------------------------------------------------------

    def verify(
        self,
        request: SipRequest,
        creds: Credentials,
        subscriber: Subscriber | None,
        *,
        now: float,
    ) -> AuthResult:
        """Check ``creds`` (from :meth:`credentials`) against ``subscriber``'s HA1.

        Checks, in this order, and why:

        1. a subscriber exists and matches username and realm (its HA1 is realm-bound);
        2. the algorithm is one we offer (RFC 8760 2.5: fail on unsupported);
        3. the digest ``uri`` equals the Request-URI *textually* (RFC 2617 3.2.2.5: "the
           resource designated by the 'uri' directive is the same as the resource
           specified in the Request-Line"); no 19.1.4 equivalence, because the UA copies
           its own Request-URI and nothing may rewrite it before authentication;
        4. ``qop`` is ``auth`` (``auth-int`` is not supported) with an 8-hex ``nc``, or
           absent for the RFC 2069 compatibility digest (RFC 2617 3.2.2.1);
        5. the response digest is right (constant-time compare);
        6. the nonce is ours, for this realm, and fresh; if not, ``stale`` (the client
           knows the password, so it may retry without asking its user, RFC 2617 3.2.1);
        7. ``nc`` is strictly above the last accepted one for this nonce (replay). A
           no-qop answer has no nc, so its nonce is single-use: a second use is ``stale``
           and the client simply gets a fresh nonce.

        Only a fully successful check updates the nc table, so garbage cannot burn
        counts. Expired entries are evicted on every call.
        """
        self._evict(now)
        if subscriber is None:
            return AuthResult(ok=False, reason="Unknown user")
        if creds.username != subscriber.username:
            return AuthResult(ok=False, reason="Username does not match the subscriber")
        if creds.realm != subscriber.domain:
            return AuthResult(ok=False, reason="Realm does not match the subscriber's domain")
        alg = _canonical_algorithm(creds.algorithm)
        if alg is None or alg not in self.algorithms:
            return AuthResult(ok=False, reason=f"Unsupported algorithm {creds.algorithm!r}")
        if creds.uri != request.uri:
            return AuthResult(ok=False, reason="Digest uri does not match the Request-URI")
        qop = creds.qop.lower() if creds.qop is not None else None
        if qop is not None and qop != "auth":
            return AuthResult(ok=False, reason=f"Unsupported qop {creds.qop!r}")
        if qop is not None and (creds.nc is None or not _NC_RE.match(creds.nc)):
            return AuthResult(ok=False, reason="Malformed nonce count")
        secret_ha1 = subscriber.ha1_sha256 if alg == "SHA-256" else subscriber.ha1_md5
        ha2 = _h(alg, f"{request.method}:{creds.uri}")
        if qop is None:
            expected = _h(alg, f"{secret_ha1}:{creds.nonce}:{ha2}")
        else:
            expected = _h(
                alg, f"{secret_ha1}:{creds.nonce}:{creds.nc}:{creds.cnonce}:{creds.qop}:{ha2}"
            )
        given = _raw(creds.response.lower())
        if not hmac.compare_digest(expected.encode("ascii"), given):
            return AuthResult(ok=False, reason="Wrong response digest")

        origin = self._nonce_origin(creds.nonce, creds.realm)
        if origin is None:
            return AuthResult(ok=False, stale=True, reason="Nonce not issued by us")
        issued, counter = origin
        # RFC 2617 3.2.1: opaque "should be returned by the client unchanged". Tolerated
        # when absent (the nonce carries all state); a wrong one means another secret.
        if creds.opaque is not None and creds.opaque != self._opaque(creds.realm):
            return AuthResult(ok=False, stale=True, reason="Opaque not issued by us")
        if now - issued > self.nonce_ttl:
            return AuthResult(ok=False, stale=True, reason="Nonce expired")
        entry = self._nc.get(creds.nonce)
        if entry is None and counter <= self._evicted_counter:
            return AuthResult(ok=False, stale=True, reason="Nonce history evicted")
        nc = int(creds.nc, 16) if creds.nc is not None and qop is not None else 0
        if qop is None:
            if entry is not None:
                return AuthResult(ok=False, stale=True, reason="No-qop nonce already used")
        elif nc < 1:
            return AuthResult(ok=False, reason="Nonce count must start at 1")
        elif entry is not None and nc <= entry[2]:
            return AuthResult(ok=False, reason="Replayed nonce count")
        self._remember(creds.nonce, issued, counter, nc)
        return AuthResult(ok=True)

    def _remember(self, nonce: str, issued: int, counter: int, nc: int) -> None:
        self._nc[nonce] = (issued, counter, nc)
        while len(self._nc) > self._max_tracked:
            _, (_, old_counter, _) = self._nc.popitem(last=False)
            self._evicted_counter = max(self._evicted_counter, old_counter)

    def _evict(self, now: float) -> None:
        """Drop table entries of expired nonces (they fail freshness anyway).

        The table is in first-use order, which is close to issue order, so popping from
        the front until a fresh entry is met is O(evicted); stragglers behind a fresh
        entry go at the next calls or through the size bound.
        """
        horizon = now - self.nonce_ttl
        while self._nc:
            nonce, (issued, _, _) = next(iter(self._nc.items()))
            if issued >= horizon:
                break
            del self._nc[nonce]

    @property
    def tracked_nonces(self) -> int:
        """How many nonces the replay table holds (for metrics)."""
        return len(self._nc)

    # -- forwarding ----------------------------------------------------------------------

    def strip_credentials(self, request: SipRequest, *, realm: str) -> None:
        """Remove the ``Authorization`` / ``Proxy-Authorization`` values for ``realm``.

        Kamailio ``consume_credentials``: once we have checked them, our credentials mean
        nothing downstream (RFC 3261 22.3: a proxy "MUST NOT" remove credentials for
        *other* realms, so those, and anything unparseable, are kept).
        """

        def ours(value: str) -> bool:
            try:
                params = _digest_params(value, "Authorization")
            except RemoteProtocolError:
                return False
            return params is not None and params.get("realm") == realm

        request.headers.remove_if("Proxy-Authorization", ours)
        request.headers.remove_if("Authorization", ours)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _credentials_from(params: dict[str, str], header: str) -> Credentials:
    """Validate the Digest parameters (RFC 2617 3.2.2, RFC 3261 25.1 dig-resp)."""
    missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in params]
    if missing:
        raise RemoteProtocolError(f"Malformed {header}: missing {', '.join(missing)}")
    response = params["response"]
    if not _HEX_RE.match(response):
        raise RemoteProtocolError(f"Malformed {header}: response is not hex")
    qop = params.get("qop")
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None:
        # RFC 2617 3.2.2: cnonce and nc "MUST" be sent when qop is.
        if nc is None or cnonce is None:
            raise RemoteProtocolError(f"Malformed {header}: qop without nc/cnonce")
        if not _NC_RE.match(nc):
            raise RemoteProtocolError(f"Malformed {header}: nc is not 8 hex digits")
    return Credentials(
        scheme="Digest",
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=response,
        algorithm=params.get("algorithm", "MD5"),
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        opaque=params.get("opaque"),
    )


def _digest_params(value: str, header: str) -> dict[str, str] | None:
    """The parameters of a Digest credential, None for any other scheme.

    Parsing is :func:`sipsca.sip.fields.parse_auth_params` (these headers carry commas in
    quoted strings, so never ``Headers.values()``). Only Digest values are judged: another
    scheme's data, even unparseable, is not ours to reject (RFC 4475 3.3.7 regaut01).

    Raises:
        RemoteProtocolError: a malformed Digest value (400).
    """
    scheme = value.strip(" \t").replace("\t", " ").partition(" ")[0]
    if scheme.lower() != "digest":
        return None
    try:
        return parse_auth_params(value)[1]
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(f"Malformed {header}: {exc.reason}") from exc
