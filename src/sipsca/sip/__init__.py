"""The SIP wire format: messages, headers, URIs; pure code, no I/O."""

from __future__ import annotations

from sipsca.sip.address import Flow, parse_flow
from sipsca.sip.fields import (
    CSeq,
    NameAddr,
    Via,
    format_params,
    parse_auth_params,
    parse_cseq,
    parse_date,
    parse_name_addr,
    parse_params,
    parse_uint,
    parse_value_params,
    parse_via,
    quote_string,
    split_values,
    unquote_string,
)
from sipsca.sip.headers import Headers
from sipsca.sip.message import SipMessage, SipRequest, SipResponse, make_response, response_bytes
from sipsca.sip.parser import ParserLimits, StreamFramer, parse_message
from sipsca.sip.status import reason_phrase
from sipsca.sip.uri import SipUri, parse_uri, unescape, uri_equal
from sipsca.sip.validate import check_message, validate_request, validate_response

__all__ = [
    "CSeq",
    "Flow",
    "Headers",
    "NameAddr",
    "ParserLimits",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "StreamFramer",
    "Via",
    "check_message",
    "format_params",
    "make_response",
    "response_bytes",
    "parse_auth_params",
    "parse_cseq",
    "parse_date",
    "parse_flow",
    "parse_message",
    "parse_name_addr",
    "parse_params",
    "parse_uint",
    "parse_uri",
    "parse_value_params",
    "parse_via",
    "quote_string",
    "reason_phrase",
    "split_values",
    "unescape",
    "unquote_string",
    "uri_equal",
    "validate_request",
    "validate_response",
]
