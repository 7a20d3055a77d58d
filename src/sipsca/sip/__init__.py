"""The SIP wire format: messages, headers, URIs; pure code, no I/O."""

from __future__ import annotations

from sipsca.sip.fields import CSeq, NameAddr, Via, parse_cseq, parse_name_addr, parse_via, split_values
from sipsca.sip.headers import Headers
from sipsca.sip.message import SipMessage, SipRequest, SipResponse, make_response
from sipsca.sip.parser import ParserLimits, StreamFramer, parse_message
from sipsca.sip.status import reason_phrase
from sipsca.sip.uri import SipUri, parse_uri, uri_equal

__all__ = [
    "CSeq",
    "Headers",
    "NameAddr",
    "ParserLimits",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "StreamFramer",
    "Via",
    "make_response",
    "parse_cseq",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "reason_phrase",
    "split_values",
    "uri_equal",
]
