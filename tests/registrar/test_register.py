"""Registrar decisions (RFC 3261 10.3, RFC 3327, RFC 5626) on messages written inline."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sipsca.config import RegistrarConfig
from sipsca.registrar.logic import RegisterDecision, aor_of, decide_register, lookup_targets
from sipsca.registrar.model import Binding
from sipsca.sip import SipRequest, parse_message, parse_name_addr, parse_uri
from sipsca.sip.address import Flow

NOW = 1_700_000_000.0
AOR = "sip:alice@example.com"
SOURCE = Flow("udp", "198.51.100.7", 40123)
CONFIG = RegistrarConfig(min_expires=60, max_expires=3600, default_expires=1800, max_contacts=0)


def parse_request(text: str) -> SipRequest:
    msg = parse_message(text.replace("\n", "\r\n").encode())
    assert isinstance(msg, SipRequest)
    return msg


def register(
    *contacts: str,
    call_id: str = "reg-1@phone",
    cseq: int = 1,
    expires: str | None = None,
    extra: tuple[str, ...] = (),
    to: str = "<sip:alice@example.com>",
    vias: int = 1,
) -> SipRequest:
    lines = ["REGISTER sip:example.com SIP/2.0"]
    lines += [f"Via: SIP/2.0/UDP 10.0.0.{i};branch=z9hG4bK-{i}" for i in range(vias)]
    lines += [
        "Max-Forwards: 70",
        f"To: {to}",
        "From: <sip:alice@example.com>;tag=f1",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += list(extra)
    lines += ["Content-Length: 0", "", ""]
    return parse_request("\n".join(lines))


def decide(
    request: SipRequest,
    current: tuple[Binding, ...] | list[Binding] = (),
    *,
    config: RegistrarConfig = CONFIG,
    now: float = NOW,
    aor: str = AOR,
) -> RegisterDecision:
    return decide_register(
        request, current, aor=aor, source=SOURCE, now=now, config=config, to_tag="srv"
    )


def binding(contact: str, **kw: object) -> Binding:
    base = Binding(
        aor=AOR,
        contact=contact,
        expires_at=NOW + 600,
        call_id="reg-1@phone",
        cseq=1,
        updated_at=NOW - 100,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def response_contacts(decision: RegisterDecision) -> list[str]:
    return decision.response.headers.values("contact")


def expires_of(decision: RegisterDecision) -> dict[str, int]:
    out = {}
    for value in response_contacts(decision):
        na = parse_name_addr(value)
        out[na.uri_text] = int(na.param("expires") or -1)
    return out


# -- aor_of -------------------------------------------------------------------------------


def test_aor_of_drops_params_port_and_lowercases_host() -> None:
    assert aor_of(parse_uri("sip:alice@Example.COM:5070;transport=tcp?x=y")) == AOR


def test_aor_of_keeps_scheme_and_user_case() -> None:
    assert aor_of(parse_uri("sips:Alice@example.com")) == "sips:Alice@example.com"


def test_aor_of_unescapes_user_canonically() -> None:
    # RFC 3261 10.3 step 5: escaped characters converted; equivalent spellings -> one key.
    assert aor_of(parse_uri("sip:%61lice@example.com")) == AOR
    assert aor_of(parse_uri("sip:a%2fb@example.com")) == aor_of(parse_uri("sip:a/b@example.com"))
    # An escaped '@' must not produce a second '@' in the key.
    assert aor_of(parse_uri("sip:a%40b@example.com")) == "sip:a%40b@example.com"


def test_aor_of_non_sip() -> None:
    assert aor_of(parse_uri("tel:+15551234;phone-context=x")) == "tel:+15551234"
    assert aor_of(parse_uri("isbn:2983792873")) == "isbn:2983792873"


def test_aor_of_host_only() -> None:
    assert aor_of(parse_uri("sip:Example.com:5060")) == "sip:example.com"


# -- adding, refreshing, expiry selection ---------------------------------------------------


def test_new_binding_gets_default_expires_and_source() -> None:
    d = decide(register("<sip:alice@192.0.2.10:5060>"), ())
    assert d.response.status == 200
    assert d.response.headers.get("to") == "<sip:alice@example.com>;tag=srv"
    (b,) = d.upserts
    assert b.aor == AOR
    assert b.contact == "sip:alice@192.0.2.10:5060"
    assert b.expires_at == NOW + CONFIG.default_expires
    assert b.received == "udp:198.51.100.7:40123"
    assert b.call_id == "reg-1@phone"
    assert b.cseq == 1
    assert b.updated_at == NOW
    assert d.deletes == ()
    assert expires_of(d) == {"sip:alice@192.0.2.10:5060": CONFIG.default_expires}


def test_expires_header_beats_default() -> None:
    d = decide(register("<sip:alice@192.0.2.10>", expires="300"))
    assert d.upserts[0].expires_at == NOW + 300


def test_contact_param_beats_expires_header() -> None:
    d = decide(register("<sip:alice@192.0.2.10>;expires=120", expires="300"))
    assert d.upserts[0].expires_at == NOW + 120
    assert expires_of(d) == {"sip:alice@192.0.2.10": 120}


def test_expires_clamped_to_max() -> None:
    d = decide(register("<sip:alice@192.0.2.10>", expires="86400"))
    assert d.upserts[0].expires_at == NOW + CONFIG.max_expires


def test_huge_expires_is_clamped_not_rejected() -> None:
    d = decide(register("<sip:alice@192.0.2.10>;expires=99999999999999999999"))
    assert d.response.status == 200
    assert d.upserts[0].expires_at == NOW + CONFIG.max_expires


def test_malformed_expires_means_3600() -> None:
    # RFC 3261 10.2.1 / 20.19: "Malformed values SHOULD be treated as equivalent to 3600."
    cfg = replace(CONFIG, max_expires=7200)
    d = decide(register("<sip:alice@192.0.2.10>;expires=soon"), config=cfg)
    assert d.upserts[0].expires_at == NOW + 3600
    d = decide(
        register("<sip:alice@192.0.2.10>", expires="Thu, 01 Dec 2044 16:00:00 GMT"), config=cfg
    )
    assert d.upserts[0].expires_at == NOW + 3600


def test_too_brief_gets_423_with_min_expires() -> None:
    d = decide(register("<sip:alice@192.0.2.10>", expires="30"))
    assert d.response.status == 423
    assert d.response.reason == "Interval Too Brief"
    assert d.response.headers.get("min-expires") == "60"
    assert d.upserts == () and d.deletes == ()


def test_423_for_one_brief_contact_rejects_all() -> None:
    d = decide(register("<sip:a@192.0.2.10>;expires=300", "<sip:b@192.0.2.11>;expires=10"))
    assert d.response.status == 423
    assert d.upserts == ()


def test_no_423_at_or_above_one_hour() -> None:
    # 10.3 step 7: 423 only if "smaller than one hour AND less than a configured minimum".
    cfg = replace(CONFIG, min_expires=7200, max_expires=7200)
    d = decide(register("<sip:alice@192.0.2.10>", expires="3600"), config=cfg)
    assert d.response.status == 200


def test_min_expires_boundary_is_accepted() -> None:
    d = decide(register("<sip:alice@192.0.2.10>", expires="60"))
    assert d.response.status == 200


def test_refresh_same_call_id_higher_cseq_updates() -> None:
    old = binding("sip:alice@192.0.2.10", cseq=5)
    d = decide(register("<sip:alice@192.0.2.10>", cseq=6, expires="900"), [old])
    assert d.response.status == 200
    (b,) = d.upserts
    assert b.cseq == 6 and b.expires_at == NOW + 900
    assert d.deletes == ()


def test_refresh_matches_equivalent_uri() -> None:
    # 10.3 step 7 uses the URI comparison rules (19.1.4): host case does not matter.
    old = binding("sip:alice@HOST.example.net;transport=udp", cseq=5)
    d = decide(register("<sip:alice@host.example.net;transport=UDP>", cseq=6), [old])
    assert d.response.status == 200
    assert len(d.upserts) == 1
    assert d.deletes == ((AOR, "sip:alice@HOST.example.net;transport=udp"),)
    assert len(response_contacts(d)) == 1


@pytest.mark.parametrize("cseq", [4, 5])
def test_same_call_id_not_higher_cseq_is_500(cseq: int) -> None:
    old = binding("sip:alice@192.0.2.10", cseq=5)
    d = decide(register("<sip:alice@192.0.2.10>", cseq=cseq), [old])
    assert d.response.status == 500
    assert d.response.reason == "Out of order request"
    assert d.upserts == () and d.deletes == ()


def test_out_of_order_removal_is_500_too() -> None:
    old = binding("sip:alice@192.0.2.10", cseq=5)
    d = decide(register("<sip:alice@192.0.2.10>;expires=0", cseq=3), [old])
    assert d.response.status == 500


def test_different_call_id_replaces_even_with_lower_cseq() -> None:
    old = binding("sip:alice@192.0.2.10", cseq=500, call_id="older@phone")
    d = decide(register("<sip:alice@192.0.2.10>", cseq=1, call_id="rebooted@phone"), [old])
    assert d.response.status == 200
    (b,) = d.upserts
    assert b.call_id == "rebooted@phone" and b.cseq == 1


def test_failed_request_changes_nothing_even_if_other_contacts_ok() -> None:
    old = binding("sip:alice@192.0.2.10", cseq=5)
    d = decide(register("<sip:new@192.0.2.20>", "<sip:alice@192.0.2.10>", cseq=5), [old])
    assert d.response.status == 500
    assert d.upserts == () and d.deletes == ()


# -- removal ------------------------------------------------------------------------------


def test_expires_zero_removes() -> None:
    old = binding("sip:alice@192.0.2.10", cseq=5)
    other = binding("sip:alice@192.0.2.99", cseq=5)
    d = decide(register("<sip:alice@192.0.2.10>", cseq=6, expires="0"), [old, other])
    assert d.response.status == 200
    assert d.deletes == ((AOR, "sip:alice@192.0.2.10"),)
    assert d.upserts == ()
    assert [parse_name_addr(c).uri_text for c in response_contacts(d)] == ["sip:alice@192.0.2.99"]


def test_remove_unknown_contact_is_a_no_op() -> None:
    d = decide(register("<sip:alice@192.0.2.10>;expires=0"))
    assert d.response.status == 200
    assert d.upserts == () and d.deletes == ()
    assert response_contacts(d) == []


def test_wildcard_removes_everything() -> None:
    current = [binding("sip:a@192.0.2.1"), binding("sip:b@192.0.2.2", call_id="x")]
    d = decide(register("*", expires="0", cseq=2), current)
    assert d.response.status == 200
    assert set(d.deletes) == {(AOR, "sip:a@192.0.2.1"), (AOR, "sip:b@192.0.2.2")}
    assert d.upserts == ()
    assert response_contacts(d) == []


def test_wildcard_out_of_order_is_500() -> None:
    current = [binding("sip:a@192.0.2.1", cseq=9)]
    d = decide(register("*", expires="0", cseq=9), current)
    assert d.response.status == 500
    assert d.deletes == ()


@pytest.mark.parametrize("expires", [None, "60", "abc"])
def test_wildcard_needs_expires_zero(expires: str | None) -> None:
    d = decide(register("*", expires=expires))
    assert d.response.status == 400
    assert d.response.reason == "Wildcard Contact requires Expires: 0"


def test_wildcard_must_be_alone() -> None:
    d = decide(register("*", "<sip:alice@192.0.2.10>", expires="0"))
    assert d.response.status == 400
    assert d.response.reason == "Wildcard Contact must be the only Contact"


def test_wildcard_in_one_line_list_must_be_alone() -> None:
    d = decide(register("<sip:alice@192.0.2.10>, *", expires="0"))
    assert d.response.status == 400


# -- query --------------------------------------------------------------------------------


def test_query_lists_current_bindings_unchanged() -> None:
    current = [binding("sip:a@192.0.2.1", q=0.5), binding("sip:b@192.0.2.2", expires_at=NOW + 42)]
    d = decide(register(), current)
    assert d.response.status == 200
    assert d.upserts == () and d.deletes == ()
    values = response_contacts(d)
    assert values == ["<sip:a@192.0.2.1>;expires=600;q=0.5", "<sip:b@192.0.2.2>;expires=42"]


def test_expired_bindings_are_not_listed_and_are_deleted() -> None:
    stale = binding("sip:old@192.0.2.1", expires_at=NOW - 1)
    d = decide(register(), [stale])
    assert response_contacts(d) == []
    assert d.deletes == ((AOR, "sip:old@192.0.2.1"),)


def test_expired_binding_does_not_trigger_ordering_check() -> None:
    stale = binding("sip:alice@192.0.2.10", expires_at=NOW - 1, cseq=99)
    d = decide(register("<sip:alice@192.0.2.10>", cseq=1), [stale])
    assert d.response.status == 200
    assert len(d.upserts) == 1
    # Same storage key: re-added, so not deleted.
    assert d.deletes == ()


def test_bindings_of_other_aors_are_ignored() -> None:
    foreign = binding("sip:bob@192.0.2.5", aor="sip:bob@example.com")
    d = decide(register(), [foreign])
    assert response_contacts(d) == [] and d.deletes == ()


# -- q values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0.0), ("0.5", 0.5), ("0.125", 0.125), ("1", 1.0), ("1.000", 1.0)]
)
def test_q_valid(text: str, value: float) -> None:
    d = decide(register(f"<sip:alice@192.0.2.10>;q={text}"))
    assert d.response.status == 200
    assert d.upserts[0].q == value


@pytest.mark.parametrize("text", ["1.5", "0.1234", "-0.1", "abc", "", ".5", "2", "1.001"])
def test_q_invalid_is_400(text: str) -> None:
    value = "<sip:alice@192.0.2.10>;q" + (f"={text}" if text else "")
    d = decide(register(value))
    assert d.response.status == 400
    assert "q parameter" in d.response.reason
    assert d.upserts == ()


def test_q_rendered_in_200() -> None:
    d = decide(register("<sip:alice@192.0.2.10>;q=0.700"))
    assert response_contacts(d) == ["<sip:alice@192.0.2.10>;expires=1800;q=0.7"]


# -- To / malformed -----------------------------------------------------------------------


def test_to_must_be_sip_rfc4475_unksm2() -> None:
    # RFC 4475 3.3.4 unksm2: a registrar must answer 400 to a non-SIP To.
    req = parse_request(
        "REGISTER sip:example.com SIP/2.0\n"
        "To: isbn:2983792873\n"
        "From: <http://www.example.com>;tag=3234233\n"
        "Call-ID: unksm2.daksdj@hyphenated-host.example.com\n"
        "CSeq: 234902 REGISTER\n"
        "Max-Forwards: 70\n"
        "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw\n"
        "Contact: <name:John_Smith>\n"
        "l: 0\n\n"
    )
    d = decide(req)
    assert d.response.status == 400
    assert d.response.reason == "To must be a SIP or SIPS URI"
    assert d.upserts == ()


def test_tel_to_is_400() -> None:
    d = decide(register("<sip:a@192.0.2.1>", to="<tel:+15551234>"))
    assert d.response.status == 400


def test_malformed_contact_is_returned_400() -> None:
    d = decide(register("<sip:alice@bad host>"))
    assert d.response.status == 400
    assert d.upserts == ()


def test_malformed_cseq_is_returned_400() -> None:
    req = register("<sip:alice@192.0.2.10>")
    req.headers.set("CSeq", "x REGISTER")
    d = decide(req)
    assert d.response.status == 400
    assert d.response.reason == "Malformed CSeq header"


def test_sips_to_accepted() -> None:
    d = decide(register("<sips:alice@192.0.2.10>", to="<sips:alice@example.com>"))
    assert d.response.status == 200


# -- max contacts -------------------------------------------------------------------------


def test_max_contacts() -> None:
    cfg = replace(CONFIG, max_contacts=2)
    current = [binding("sip:a@192.0.2.1"), binding("sip:b@192.0.2.2")]
    d = decide(register("<sip:c@192.0.2.3>", cseq=2), current, config=cfg)
    assert d.response.status == 403
    assert d.response.reason == "Too many registered contacts"
    assert d.upserts == ()


def test_max_contacts_allows_refresh_and_replacement() -> None:
    cfg = replace(CONFIG, max_contacts=2)
    current = [binding("sip:a@192.0.2.1"), binding("sip:b@192.0.2.2")]
    d = decide(register("<sip:a@192.0.2.1>", cseq=2), current, config=cfg)
    assert d.response.status == 200
    d = decide(
        register("<sip:a@192.0.2.1>;expires=0", "<sip:c@192.0.2.3>", cseq=2), current, config=cfg
    )
    assert d.response.status == 200


def test_max_contacts_over_lowered_limit_still_refreshes() -> None:
    cfg = replace(CONFIG, max_contacts=1)
    current = [binding("sip:a@192.0.2.1"), binding("sip:b@192.0.2.2")]
    d = decide(register("<sip:a@192.0.2.1>", cseq=2), current, config=cfg)
    assert d.response.status == 200


# -- Path (RFC 3327) ----------------------------------------------------------------------


def test_path_stored_and_echoed_when_supported() -> None:
    req = register(
        "<sip:alice@192.0.2.10>",
        vias=2,
        extra=(
            "Path: <sip:edge1.example.net;lr>",
            "Path: <sip:edge2.example.net;lr>",
            "Supported: path",
        ),
    )
    d = decide(req)
    assert d.upserts[0].path == ("<sip:edge1.example.net;lr>", "<sip:edge2.example.net;lr>")
    assert d.response.headers.values("path") == [
        "<sip:edge1.example.net;lr>",
        "<sip:edge2.example.net;lr>",
    ]


def test_path_stored_but_not_echoed_without_supported() -> None:
    req = register("<sip:alice@192.0.2.10>", vias=2, extra=("Path: <sip:edge1.example.net;lr>",))
    d = decide(req)
    assert d.upserts[0].path == ("<sip:edge1.example.net;lr>",)
    assert "path" not in d.response.headers


# -- Outbound (RFC 5626) ------------------------------------------------------------------

INSTANCE = '"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"'


def test_instance_and_reg_id_kept_with_outbound() -> None:
    req = register(
        f"<sip:alice@192.0.2.10;ob>;+sip.instance={INSTANCE};reg-id=1",
        extra=("Supported: path, outbound",),
    )
    d = decide(req)
    assert d.response.status == 200
    (b,) = d.upserts
    assert b.instance_id == "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"
    assert b.reg_id == 1
    assert d.response.headers.get("require") == "outbound"
    assert response_contacts(d) == [
        f"<sip:alice@192.0.2.10;ob>;expires=1800;+sip.instance={INSTANCE};reg-id=1"
    ]


def test_outbound_flow_replaced_by_instance_and_reg_id_not_uri() -> None:
    old = binding(
        "sip:alice@192.0.2.10;ob",
        instance_id="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>",
        reg_id=1,
        call_id="c1",
        cseq=7,
    )
    req = register(
        f"<sip:alice@203.0.113.5:5062;ob>;+sip.instance={INSTANCE};reg-id=1",
        call_id="c1",
        cseq=8,
        extra=("Supported: outbound",),
    )
    d = decide(req, [old])
    assert d.response.status == 200
    (b,) = d.upserts
    assert b.contact == "sip:alice@203.0.113.5:5062;ob"
    assert d.deletes == ((AOR, "sip:alice@192.0.2.10;ob"),)
    assert len(response_contacts(d)) == 1


def test_outbound_second_flow_is_a_separate_binding() -> None:
    old = binding(
        "sip:alice@192.0.2.10;ob",
        instance_id="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>",
        reg_id=1,
    )
    req = register(
        f"<sip:alice@192.0.2.10:5070;ob>;+sip.instance={INSTANCE};reg-id=2",
        call_id="c2",
        extra=("Supported: outbound",),
    )
    d = decide(req, [old])
    assert len(d.upserts) == 1 and d.deletes == ()
    assert len(response_contacts(d)) == 2


def test_reg_id_ignored_without_supported_outbound() -> None:
    req = register(f"<sip:alice@192.0.2.10>;+sip.instance={INSTANCE};reg-id=1")
    d = decide(req)
    assert d.upserts[0].reg_id == 0
    assert d.upserts[0].instance_id  # instance still kept
    assert "require" not in d.response.headers


def test_reg_id_without_instance_is_ignored() -> None:
    req = register("<sip:alice@192.0.2.10>;reg-id=1", extra=("Supported: outbound",))
    d = decide(req)
    assert d.response.status == 200
    assert d.upserts[0].reg_id == 0
    assert "require" not in d.response.headers


def test_reg_id_malformed_is_400() -> None:
    req = register(f"<sip:alice@192.0.2.10>;+sip.instance={INSTANCE};reg-id=0")
    assert decide(req).response.status == 400


def test_outbound_not_first_hop_without_ob_path_is_439() -> None:
    req = register(
        f"<sip:alice@192.0.2.10;ob>;+sip.instance={INSTANCE};reg-id=1",
        vias=2,
        extra=("Path: <sip:edge.example.net;lr>", "Supported: outbound, path"),
    )
    d = decide(req)
    assert d.response.status == 439
    assert d.response.reason == "First Hop Lacks Outbound Support"


def test_outbound_not_first_hop_with_ob_path() -> None:
    req = register(
        f"<sip:alice@192.0.2.10;ob>;+sip.instance={INSTANCE};reg-id=1",
        vias=2,
        extra=("Path: <sip:edge.example.net;lr;ob>", "Supported: outbound, path"),
    )
    d = decide(req)
    assert d.response.status == 200
    assert d.upserts[0].reg_id == 1


def test_outbound_two_nonzero_contacts_is_400() -> None:
    req = register(
        f"<sip:alice@192.0.2.10;ob>;+sip.instance={INSTANCE};reg-id=1",
        "<sip:alice@192.0.2.11>",
        extra=("Supported: outbound",),
    )
    assert decide(req).response.status == 400


def test_same_contact_uri_on_two_flows_collapses_to_latest() -> None:
    # Storage rows are keyed by (aor, contact); the newest flow wins.
    old = binding(
        "sip:alice@192.0.2.10;ob",
        instance_id="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>",
        reg_id=1,
    )
    req = register(
        f"<sip:alice@192.0.2.10;ob>;+sip.instance={INSTANCE};reg-id=2",
        call_id="c2",
        extra=("Supported: outbound",),
    )
    d = decide(req, [old])
    assert [b.reg_id for b in d.upserts] == [2]
    assert d.deletes == ()
    assert len(response_contacts(d)) == 1


# -- RFC 4475 registrar semantics -----------------------------------------------------------


def test_rfc4475_cparam01_contact_param_is_not_uri_param() -> None:
    # 3.3.12: "unknownparam" is a contact-param (no <>), so it is not part of the bound URI.
    req = parse_request(
        "REGISTER sip:example.com SIP/2.0\n"
        "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\n"
        "Max-Forwards: 70\n"
        "From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe\n"
        "To: sip:watson@example.com\n"
        "Call-ID: cparam01.70710@saturn.example.com\n"
        "CSeq: 2 REGISTER\n"
        "Contact: sip:+19725552222@gw1.example.net;unknownparam\n"
        "l: 0\n\n"
    )
    d = decide(req, aor=aor_of(req.to.uri))
    assert d.response.status == 200
    (b,) = d.upserts
    assert b.aor == "sip:watson@example.com"
    assert b.contact == "sip:+19725552222@gw1.example.net"
    (value,) = response_contacts(d)
    na = parse_name_addr(value)
    assert not na.uri.has_param("unknownparam")
    assert na.uri_text == "sip:+19725552222@gw1.example.net"
    # A later query does not show it as a URI parameter either.
    q = decide(register(), [b], aor="sip:watson@example.com")
    assert "unknownparam" not in q.response.headers.get("contact").split(">")[0]  # type: ignore[union-attr]


def test_rfc4475_cparam02_uri_param_is_kept() -> None:
    # 3.3.13: inside <> "unknownparam" is a URI parameter and stays in the binding.
    req = parse_request(
        "REGISTER sip:example.com SIP/2.0\n"
        "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\n"
        "Max-Forwards: 70\n"
        "From: sip:watson@example.com;tag=838293\n"
        "To: sip:watson@example.com\n"
        "Call-ID: cparam02.70710@saturn.example.com\n"
        "CSeq: 3 REGISTER\n"
        "Contact: <sip:+19725552222@gw1.example.net;unknownparam>\n"
        "l: 0\n\n"
    )
    d = decide(req, aor=aor_of(req.to.uri))
    assert d.response.status == 200
    (b,) = d.upserts
    assert b.contact == "sip:+19725552222@gw1.example.net;unknownparam"
    (value,) = response_contacts(d)
    assert parse_name_addr(value).uri.has_param("unknownparam")


def test_rfc4475_cparam01_and_02_are_different_bindings() -> None:
    first = binding("sip:+19725552222@gw1.example.net", call_id="cparam01", cseq=2)
    req = register("<sip:+19725552222@gw1.example.net;unknownparam>", call_id="cparam02", cseq=3)
    d = decide(req, [first])
    # 19.1.4: a parameter present in only one URI is ignored unless it is user/ttl/method/
    # maddr/transport, so the two URIs are equivalent and the binding is replaced.
    assert len(d.upserts) == 1
    assert d.deletes == ((AOR, "sip:+19725552222@gw1.example.net"),)


def test_rfc4475_regescrt_escaped_route_kept_in_contact() -> None:
    # 3.3.14: the escaped Route header inside the Contact URI is part of the binding.
    req = parse_request(
        "REGISTER sip:example.com SIP/2.0\n"
        "To: sip:user@example.com\n"
        "From: sip:user@example.com;tag=8\n"
        "Max-Forwards: 70\n"
        "Call-ID: regescrt.k345asrl3fdbv@192.0.2.1\n"
        "CSeq: 14398234 REGISTER\n"
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\n"
        "M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\n"
        "L:0\n\n"
    )
    d = decide(req, aor=aor_of(req.to.uri))
    assert d.response.status == 200
    (b,) = d.upserts
    assert b.aor == "sip:user@example.com"
    assert b.contact == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    (value,) = response_contacts(d)
    na = parse_name_addr(value)
    assert na.uri.headers == "Route=%3Csip:sip.example.com%3E"
    assert value.startswith("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>;expires=")


# -- misc ---------------------------------------------------------------------------------


def test_multiple_contacts_in_one_request() -> None:
    d = decide(register("<sip:a@192.0.2.1>;q=0.1, <sip:b@192.0.2.2>;q=0.9", expires="600"))
    assert d.response.status == 200
    assert {b.contact for b in d.upserts} == {"sip:a@192.0.2.1", "sip:b@192.0.2.2"}


def test_duplicate_contact_in_one_request_last_wins() -> None:
    d = decide(register("<sip:a@192.0.2.1>;expires=600", "<sip:a@192.0.2.1>;expires=0"))
    assert d.response.status == 200
    assert d.upserts == () and d.deletes == ()


def test_user_agent_stored() -> None:
    d = decide(register("<sip:a@192.0.2.1>", extra=("User-Agent: PolycomVVX-VVX_410",)))
    assert d.upserts[0].user_agent == "PolycomVVX-VVX_410"


def test_response_copies_dialog_headers() -> None:
    d = decide(register("<sip:a@192.0.2.1>", cseq=42))
    assert d.response.headers.get("call-id") == "reg-1@phone"
    assert d.response.headers.get("cseq") == "42 REGISTER"
    assert d.response.headers.get("via") == "SIP/2.0/UDP 10.0.0.0;branch=z9hG4bK-0"


def test_remaining_expires_in_response_counts_down() -> None:
    b = binding("sip:a@192.0.2.1", expires_at=NOW + 100)
    d = decide(register(), [b], now=NOW + 40)
    assert response_contacts(d) == ["<sip:a@192.0.2.1>;expires=60"]


# -- lookup_targets -----------------------------------------------------------------------


def test_lookup_targets_orders_by_q_then_recency() -> None:
    low = binding("sip:low@192.0.2.1", q=0.2, updated_at=NOW - 1)
    old_hi = binding("sip:old@192.0.2.2", q=0.9, updated_at=NOW - 500)
    new_hi = binding("sip:new@192.0.2.3", q=0.9, updated_at=NOW - 5)
    expired = binding("sip:gone@192.0.2.4", q=1.0, expires_at=NOW)
    assert lookup_targets([low, old_hi, expired, new_hi], now=NOW) == [new_hi, old_hi, low]


def test_lookup_targets_stable_for_full_ties() -> None:
    a = binding("sip:a@192.0.2.1")
    b = binding("sip:b@192.0.2.2")
    assert lookup_targets([a, b], now=NOW) == [a, b]
    assert lookup_targets([b, a], now=NOW) == [b, a]


def test_lookup_targets_uses_one_outbound_flow_per_instance() -> None:
    """RFC 5626 5.3: two flows (reg-id 1 and 2) of one phone are one target, the most
    recently refreshed; a plain binding with the same instance but no reg-id, and another
    instance, stay targets of their own."""
    inst = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
    flow1 = binding("sip:p@192.0.2.1", instance_id=inst, reg_id=1, updated_at=NOW - 50)
    flow2 = binding("sip:p@192.0.2.2", instance_id=inst, reg_id=2, updated_at=NOW - 5)
    plain = binding("sip:p@192.0.2.3", instance_id=inst, updated_at=NOW - 1)
    other = binding("sip:q@192.0.2.4", instance_id="<urn:uuid:1>", reg_id=1)
    assert lookup_targets([flow1, flow2, plain, other], now=NOW) == [plain, flow2, other]


def test_lookup_targets_empty() -> None:
    assert lookup_targets([], now=NOW) == []


def test_unparseable_stored_contact_never_matches() -> None:
    junk = binding("not a uri", cseq=50)
    d = decide(register("<sip:alice@192.0.2.10>", cseq=2), [junk])
    assert d.response.status == 200
    assert len(d.upserts) == 1 and d.deletes == ()


def test_outbound_not_first_hop_with_unparseable_path_is_439() -> None:
    req = register(
        f"<sip:alice@192.0.2.10;ob>;+sip.instance={INSTANCE};reg-id=1",
        vias=2,
        extra=("Path: <bad uri;ob>", "Supported: outbound, path"),
    )
    assert decide(req).response.status == 439


def test_many_contacts_are_matched_without_comparing_every_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An AoR with 1,000 bindings (the ceiling without ``max_contacts``) refreshed by a
    REGISTER of 100 Contacts (the most one may carry) written differently (upper-case host:
    the texts differ but RFC 3261 19.1.4 calls them equal): each is found and refreshed,
    none duplicated, with about one URI comparison per Contact. A scan compared each
    Contact with every binding, 50,000 comparisons here."""
    import sipsca.registrar.logic as logic

    n = logic.UNLIMITED_CONTACTS_CEILING
    current = [binding(f"sip:alice@host{i}.example.net:5060") for i in range(n)]
    calls = 0
    real = logic.uri_equal

    def counting(a: object, b: object) -> bool:
        nonlocal calls
        calls += 1
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(logic, "uri_equal", counting)
    m = logic.MAX_CONTACTS_PER_REGISTER
    values = [f"<sip:alice@HOST{i}.example.net:5060>;expires=300" for i in range(0, n, n // m)]
    lines = [", ".join(values[i : i + 10]) for i in range(0, m, 10)]
    d = decide(register(*lines, call_id="other@phone"), current)
    assert d.response.status == 200
    assert len(d.upserts) == m
    assert {b.contact for b in d.upserts} == {
        f"sip:alice@HOST{i}.example.net:5060" for i in range(0, n, n // m)
    }
    assert all(b.expires_at == NOW + 300 for b in d.upserts)
    assert len(d.deletes) == m  # old spellings' rows go; the new text is the key now
    assert len(response_contacts(d)) == n
    assert calls <= 2 * m, calls


def test_one_register_carries_at_most_100_contacts() -> None:
    """Equal URIs can only be found pairwise; Contacts differing in an unchecked parameter
    share an index bucket, so a 3,500-Contact REGISTER was 15 s of CPU: refused (403)."""
    values = [f"<sip:alice@10.0.0.1:5060;p={i}>" for i in range(101)]
    lines = [", ".join(values[i : i + 10]) for i in range(0, 101, 10)]
    d = decide(register(*lines))
    assert d.response.status == 403
    assert d.response.reason == "Too many Contacts in one REGISTER"
    assert d.upserts == () and d.deletes == ()
    assert decide(register(*lines[:10])).response.status == 200  # 100 are fine


def test_an_aor_holds_at_most_1000_bindings_without_max_contacts() -> None:
    current = [binding(f"sip:alice@10.0.{i // 250}.{i % 250}") for i in range(1000)]
    assert decide(register("<sip:alice@192.0.2.99>"), current).response.status == 403
    refresh = register("<sip:alice@10.0.0.1>", call_id="reg-1@phone", cseq=2)
    assert decide(refresh, current).response.status == 200


def test_contact_listed_twice_in_one_register_is_one_binding() -> None:
    d = decide(register("<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.10;transport=udp>"))
    # transport must match when present in either URI (19.1.4): two bindings
    assert len(d.upserts) == 2
    d = decide(register("<sip:alice@192.0.2.10>;expires=100", "<sip:alice@192.0.2.10>;expires=200"))
    (b,) = d.upserts
    assert b.expires_at == NOW + 200


def test_contacts_past_the_scan_limit_still_match_earlier_ones() -> None:
    """The index is built once an AoR has more slots than a scan is worth; Contacts added
    by the same REGISTER before that point are found through it."""
    values = [f"<sip:alice@10.0.0.{i}:5060>" for i in range(1, 31)]
    values.append("<sip:alice@10.0.0.3:5060;X=1>")  # equal to the third (19.1.4)
    d = decide(register(*values))
    assert d.response.status == 200
    assert len(d.upserts) == 30
    assert "sip:alice@10.0.0.3:5060;X=1" in {b.contact for b in d.upserts}


@pytest.mark.parametrize("others", [3, 8])
def test_index_compares_with_the_binding_as_just_replaced(others: int) -> None:
    """``foo=1`` replaces the binding without ``foo``; ``foo=2`` then differs from it (a
    parameter in both must match, 19.1.4) and is a binding of its own, with the scan (few
    bindings) and with the index (more than 8) alike."""
    current = [binding("sip:alice@h.example", call_id="old")] + [
        binding(f"sip:alice@10.0.0.{i}", call_id="old") for i in range(others)
    ]
    req = register("<sip:alice@h.example;foo=1>", "<sip:alice@h.example;foo=2>", call_id="new")
    d = decide(req, current)
    mine = sorted(c for c in response_contacts(d) if "h.example" in c)
    assert [c.split(">")[0] for c in mine] == [
        "<sip:alice@h.example;foo=1",
        "<sip:alice@h.example;foo=2",
    ]
