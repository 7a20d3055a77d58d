"""Stateful proxy core (RFC 3261 section 16): pure decisions, no I/O.

* :mod:`~sipsca.proxy.validate` -- 16.3 request validation (483, 482, 420, 416)
* :mod:`~sipsca.proxy.route` -- 16.4 route preprocessing, 16.6 forwarding, 16.7 Via
  removal, 9.1 CANCEL
* :mod:`~sipsca.proxy.context` -- 16.7 response context and best-response selection
"""

from __future__ import annotations

from sipsca.proxy.context import COMPLETED_ELSEWHERE, ContextAction, ResponseContext
from sipsca.proxy.route import (
    DEFAULT_MAX_FORWARDS,
    build_via,
    compute_branch,
    is_myself_factory,
    make_cancel,
    next_hop,
    prepare_forward,
    preprocess_routes,
    record_route_values,
    strip_own_via,
    via_is_mine,
)
from sipsca.proxy.validate import SIP_SCHEMES, check_request, is_loop

__all__ = [
    "COMPLETED_ELSEWHERE",
    "DEFAULT_MAX_FORWARDS",
    "SIP_SCHEMES",
    "ContextAction",
    "ResponseContext",
    "build_via",
    "check_request",
    "compute_branch",
    "is_loop",
    "is_myself_factory",
    "make_cancel",
    "next_hop",
    "prepare_forward",
    "preprocess_routes",
    "record_route_values",
    "strip_own_via",
    "via_is_mine",
]
