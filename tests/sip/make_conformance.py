"""RFC 4475 conformance: the expected outcome of every torture message, and docs/conformance.md.

Run ``.venv/bin/python tests/sip/make_conformance.py`` to regenerate ``docs/conformance.md``.
``tests/sip/test_rfc4475.py`` asserts that every outcome below is what sipsca does, and that
the committed document is exactly what this script writes, so the table cannot go stale.

An *outcome* is where a message stops in the receive path of a server:

* ``parse``: :func:`sipsca.sip.parse_message` raises RemoteProtocolError(status_hint);
* ``validate``: parsing succeeds, :func:`sipsca.sip.check_message` (that is
  ``validate_request`` / ``validate_response``) rejects it with that status;
* ``accept``: both succeed; later layers decide (483, 420, 415, 406, registrar rules...).

Status 0 means "drop silently" (a response is never answered).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from sipsca.errors import RemoteProtocolError
from sipsca.sip import check_message, parse_message

DATA_DIR = Path(__file__).resolve().parent / "data" / "rfc4475"
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


@dataclass(frozen=True)
class Case:
    """What RFC 4475 asks for one message, and what sipsca is expected to do."""

    file: str
    stage: str
    statuses: frozenset[int | None]
    note: str


def _case(file: str, stage: str, *statuses: int | None, note: str) -> Case:
    return Case(file, stage, frozenset(statuses or (None,)), note)


CASES: tuple[Case, ...] = (
    # 3.1.1 Valid messages: a parser must accept them.
    _case(
        "wsinv.dat",
        "accept",
        note="folding, LWS, compact and odd-case names; unknown headers kept byte for byte",
    ),
    _case(
        "intmeth.dat",
        "accept",
        note="token method, NUL/BEL/DEL in quoted strings, user part with `?` and `;`",
    ),
    _case(
        "esc01.dat",
        "accept",
        note="escapes kept as received; `%25%34%31` compares as `%41`, never `A`",
    ),
    _case("escnull.dat", "accept", note="`%00` kept; the two Contacts stay distinct"),
    _case(
        "esc02.dat",
        "accept",
        note="method `RE%47IST%45R` is not REGISTER; `C%6Fntact` is not Contact",
    ),
    _case("lwsdisp.dat", "accept", note="display name `caller` touching `<`"),
    _case("longreq.dat", "accept", note="long values; 34 Via values across 22 spellings of Via"),
    _case(
        "dblreq.dat",
        "accept",
        note="REGISTER with empty body; trailing INVITE octets ignored (RFC 3261 18.3)",
    ),
    _case("semiuri.dat", "accept", note="Request-URI user part is `user;par=u%40example.net`"),
    _case("transports.dat", "accept", note="Via transports UDP, SCTP, TLS, UNKNOWN, TCP"),
    _case("mpart01.dat", "accept", note="553-byte binary multipart body framed by Content-Length"),
    _case("unreason.dat", "accept", note="UTF-8 reason phrase kept exactly"),
    _case("noreason.dat", "accept", note="empty reason phrase"),
    # 3.1.2 Invalid messages.
    _case("badinv01.dat", "validate", 400, note="empty Via and Contact parameters"),
    _case("clerr.dat", "parse", 400, note="Content-Length 9999 beyond the datagram"),
    _case("ncl.dat", "parse", 400, note="Content-Length -999"),
    _case(
        "scalar02.dat",
        "validate",
        400,
        note="CSeq 2**65 (Max-Forwards 300, Expires 10**100 also refused by their accessors)",
    ),
    _case("scalarlg.dat", "validate", 0, note="response with CSeq out of range: dropped"),
    _case("quotbal.dat", "validate", 400, note="unterminated quoted display name in To"),
    _case("ltgtruri.dat", "parse", 400, note="Request-URI in `<>`: rejected, never forwarded"),
    _case(
        "lwsruri.dat", "parse", 400, note="LWS inside the Request-URI: rejected, never forwarded"
    ),
    _case(
        "lwsstart.dat",
        "parse",
        400,
        note="several SP between Request-Line elements: rejected, never forwarded",
    ),
    _case("trws.dat", "parse", 400, note="SP after SIP-Version: rejected, never forwarded"),
    _case(
        "escruri.dat",
        "parse",
        400,
        note="`?headers` in a SIP Request-URI: rejected, never forwarded",
    ),
    _case(
        "baddate.dat",
        "accept",
        note="Date ignored by the server (allowed); `msg.date` raises 400 for any reader",
    ),
    _case("regbadct.dat", "validate", 400, note="Contact URI with `?` not enclosed in `<>`"),
    _case("badaspec.dat", "validate", 400, note="white space inside `<>` in To"),
    _case("baddn.dat", "validate", 400, note="unquoted display names with commas"),
    _case("badvers.dat", "parse", 505, note="SIP/7.0"),
    _case("mismatch01.dat", "validate", 400, note="CSeq method INVITE on an OPTIONS"),
    _case(
        "mismatch02.dat",
        "validate",
        400,
        501,
        note="400 by default; 501 when `known_methods` is given (RFC allows both)",
    ),
    _case("bigcode.dat", "parse", 0, note="status code 4294967301: dropped, not read as 429"),
    # 3.2 / 3.3 Transaction and application layer semantics.
    _case(
        "badbranch.dat",
        "accept",
        note="branch `z9hG4bK` alone: accepted, RFC 2543 matching applies",
    ),
    _case("insuf.dat", "validate", 400, note="no To, From, Call-ID"),
    _case("unkscm.dat", "validate", 416, note="opaque `nobodyKnowsThisScheme:` Request-URI"),
    _case("novelsc.dat", "validate", 416, note="`soap.beep:` Request-URI"),
    _case(
        "unksm2.dat",
        "accept",
        note="non-SIP To/From/Contact URIs parse as opaque; a registrar answers 400",
    ),
    _case(
        "bext01.dat",
        "accept",
        note="Require/Proxy-Require readable; 420 is the proxy's/UAS's decision",
    ),
    _case(
        "invut.dat",
        "accept",
        note="Content-Type `application/unknownformat` readable; 415 is the UAS's decision",
    ),
    _case(
        "regaut01.dat", "accept", note="unknown Authorization scheme parsed by `parse_auth_params`"
    ),
    _case("multi01.dat", "validate", 400, note="two To, From, Call-ID and CSeq fields"),
    _case("mcl01.dat", "parse", 400, note="two Content-Length fields"),
    _case(
        "bcast.dat",
        "accept",
        note="response parsed; second Via host 255.255.255.255 is the proxy's to drop",
    ),
    _case("zeromf.dat", "accept", note="Max-Forwards 0 parsed; 483 is the proxy's decision"),
    _case("cparam01.dat", "accept", note="`unknownparam` is a Contact header parameter"),
    _case("cparam02.dat", "accept", note="`unknownparam` is a URI parameter"),
    _case("regescrt.dat", "accept", note="escaped Route header kept in the Contact URI"),
    _case("sdp01.dat", "accept", note="Accept readable; 406 is the UAS's decision"),
    # 3.4 Backward compatibility.
    _case(
        "inv2543.dat",
        "accept",
        note="no branch, From tag, Max-Forwards or Content-Length (body = rest of datagram)",
    ),
)


@dataclass(frozen=True)
class Outcome:
    """Where a message stopped, with the status hint and reason phrase."""

    stage: str
    status: int | None
    reason: str


def outcome(data: bytes) -> Outcome:
    """Run ``data`` through parse_message then check_message."""
    try:
        msg = parse_message(data)
    except RemoteProtocolError as exc:
        return Outcome("parse", exc.status_hint, exc.reason)
    try:
        check_message(msg)
    except RemoteProtocolError as exc:
        return Outcome("validate", exc.status_hint, exc.reason)
    return Outcome("accept", None, "")


def manifest() -> list[dict[str, str]]:
    """The entries of ``manifest.json``, in RFC order."""
    entries: list[dict[str, str]] = json.loads((DATA_DIR / "manifest.json").read_text("utf-8"))
    return entries


def _status_text(status: int | None) -> str:
    if status is None:
        return "-"
    return "drop" if status == 0 else str(status)


def render() -> str:
    """The Markdown of docs/conformance.md, computed from the running code."""
    by_file = {case.file: case for case in CASES}
    rows = []
    passed = 0
    for entry in manifest():
        data = (DATA_DIR / entry["file"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise SystemExit(f"{entry['file']}: checksum mismatch")
        case = by_file[entry["file"]]
        got = outcome(data)
        ok = got.stage == case.stage and got.status in case.statuses
        passed += ok
        reason = got.reason.replace("|", "\\|") if got.reason else ""
        rows.append(
            f"| {entry['section']} | `{entry['file']}` | {entry['class']} | "
            f"{entry['expected']} | {got.stage} | {_status_text(got.status)} | {reason} | "
            f"{'pass' if ok else 'FAIL'} | {case.note} |"
        )
    total = len(rows)
    out = [
        "# RFC 4475 conformance of the SIP parser",
        "",
        "Generated by `tests/sip/make_conformance.py` from the running code;",
        "`tests/sip/test_rfc4475.py` fails if this file is stale or if any outcome changes.",
        "Regenerate with",
        "`.venv/bin/python tests/sip/make_conformance.py`.",
        "",
        f"**Score: {passed}/{total}** torture messages handled as RFC 4475 asks.",
        "",
        "Outcome columns: *stage* is where the message stops in a server's receive path:",
        "`parse` = `parse_message` raises `RemoteProtocolError`, `validate` = `check_message`",
        "(`validate_request` / `validate_response`, RFC 3261 8.2 / 16.3 checks) rejects it,",
        "`accept` = both pass and later layers decide (483, 420, 415, 406, registrar rules).",
        "*status* is the `status_hint` / reply status; `drop` means a response that is",
        "discarded silently. The test also asserts the specific values each valid message",
        "carries (see `tests/sip/test_rfc4475.py`).",
        "",
        "Where RFC 4475 lets a parser either reject or repair a malformed Request-Line",
        "(`ltgtruri`, `lwsruri`, `lwsstart`, `trws`, `escruri`), sipsca rejects with 400, so such",
        "a message is never forwarded.",
        "",
        "| RFC 4475 | file | class | RFC expects | stage | status | reason | result | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    return "\n".join(out)


def main() -> int:
    """Write docs/conformance.md."""
    text = render()
    DOC_PATH.write_text(text, "utf-8")
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
