"""The RPC method table: Kamailio's ``sca.*`` commands plus a few core/registrar/stats ones.

Thin by design: each method checks its arguments exactly where and how Kamailio's
``sca_rpc.c`` does (so scripts written for ``kamcmd`` get the same fault texts) and then calls the
runtime through :class:`sipsca.rpc.api.ManagementBackend`. No SIP logic lives here.

Parameters are positional (a JSON array, as kamcmd sends them) or named (a JSON object with
the names listed in :data:`METHODS`). For ``sca.*`` commands a missing or mistyped argument is
answered with Kamailio's 500 usage fault, extra positional arguments are ignored (Kamailio's
``rpc->scan`` ignores them too); for the other methods such problems are -32602.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from sipsca.rpc.api import ManagementBackend, RpcFault
from sipsca.rpc.jsonrpc import InvalidParams, MethodNotFound, to_json_value
from sipsca.sca.model import AppearanceState

__all__ = [
    "INDEX_NOT_POSITIVE",
    "METHODS",
    "SCA_EVENTS",
    "USAGE_DEACTIVATE",
    "USAGE_RELEASE",
    "USAGE_SEIZE",
    "USAGE_SHOW_APPEARANCE",
    "USAGE_SHOW_SUBSCRIPTION",
    "USAGE_SUBSCRIPTION_COUNT",
    "USAGE_UPDATE",
    "Args",
    "Handler",
    "Method",
    "MethodTable",
    "Param",
    "bind",
]

logger = logging.getLogger(__name__)

SCA_EVENTS: Final = frozenset({"call-info", "line-seize"})

# Kamailio's texts (sca_rpc.c), verbatim, including their inconsistent capitalisation.
USAGE_SUBSCRIPTION_COUNT: Final = "usage: sca.subscription_count {call-info | line-seize}"
USAGE_SHOW_SUBSCRIPTION: Final = (
    "usage: sca.show_subscription sip:user@domain {call-info | line-seize} [sip:user@IP]"
)
USAGE_SEIZE: Final = "usage: sca.seize_appearance sip:user@domain"
USAGE_UPDATE: Final = (
    "Usage: sca.update_appearance sip:user@domain appearance-index appearance-state "
    "[appearance-uri]"
)
UPDATE_STATES: Final = tuple(
    state.value for state in AppearanceState if state is not AppearanceState.ACTIVE_PENDING
)
"""The ``appearance-state`` values ``sca.update_appearance`` takes (Kamailio's, exact case);
anything else faults Kamailio's ``<state>: invalid state``."""
USAGE_RELEASE: Final = "usage: sca.release_appearance user@domain appearance-index"
INDEX_NOT_POSITIVE: Final = "appearance-index must be > 0"
# Kamailio has no usage text for these two (it faults 600 before reading arguments); sipsca
# implements them, so it words their usage the same way.
USAGE_DEACTIVATE: Final = (
    "usage: sca.deactivate_subscription sip:user@domain {call-info | line-seize} sip:user@IP"
)
USAGE_SHOW_APPEARANCE: Final = "usage: sca.show_appearance sip:user@domain [appearance-index]"

_INT_RE: Final = re.compile(r"\s*[+-]?\d+\s*")


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: its name (for named params), its type and whether it is needed.

    ``strs`` collects all remaining positional arguments (or a list / single string when named).
    """

    name: str
    kind: Literal["str", "int", "strs"] = "str"
    required: bool = True


class Args:
    """Checked, converted arguments of one call, with typed getters for the handlers."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, object]) -> None:
        self._values = dict(values)

    def text(self, name: str) -> str:
        value = self._values[name]
        assert isinstance(value, str)
        return value

    def opt_text(self, name: str) -> str | None:
        value = self._values.get(name)
        assert value is None or isinstance(value, str)
        return value

    def number(self, name: str) -> int:
        value = self._values[name]
        assert isinstance(value, int)
        return value

    def opt_number(self, name: str) -> int | None:
        value = self._values.get(name)
        assert value is None or isinstance(value, int)
        return value

    def texts(self, name: str) -> list[str]:
        value = self._values.get(name, [])
        assert isinstance(value, list)
        return [str(v) for v in value]


Handler = Callable[[ManagementBackend, Args], object]


@dataclass(frozen=True, slots=True)
class Method:
    """A table entry.

    ``usage`` set means Kamailio semantics: bad/missing arguments fault 500 with that text
    (else -32602). ``ignore_extra`` drops surplus positional arguments as Kamailio's
    ``rpc->scan`` does (else -32602). ``changes_state`` makes the table call
    ``backend.after_change()`` afterwards so queued NOTIFYs go out.
    """

    name: str
    params: tuple[Param, ...]
    handler: Handler
    help: str
    usage: str | None = None
    ignore_extra: bool = False
    changes_state: bool = False


_MISSING: Final = object()


def _convert(param: Param, value: object) -> object:
    """Convert one argument or return ``_MISSING`` when it does not fit.

    Strings accept integers too because kamcmd and ``sipsca rpc`` send anything that looks like
    a number as a number (a bare ``1000`` AoR). Integers accept strings that parse as integers
    (clients that quote every argument) and integral floats.
    """
    if param.kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return _MISSING
    if param.kind == "int":
        if isinstance(value, bool):
            return _MISSING
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INT_RE.fullmatch(value):
            return int(value)
        return _MISSING
    items = value if isinstance(value, list) else [value]
    converted = [_convert(Param(param.name), item) for item in items]
    return _MISSING if any(c is _MISSING for c in converted) else converted


def bind(method: Method, params: object) -> Args:
    """Match ``params`` (array, object or absent) against ``method.params``.

    Raises:
        RpcFault: Kamailio's usage fault for ``sca.*``, -32602 otherwise.
    """

    def bad(detail: str) -> RpcFault:
        return RpcFault(500, method.usage) if method.usage else InvalidParams(detail)

    values: dict[str, object] = {}
    if params is None or isinstance(params, list):
        positional = params or []
        for i, param in enumerate(method.params):
            if param.kind == "strs":
                raw: object = [v for v in positional[i:] if v is not None]
            else:
                raw = positional[i] if i < len(positional) else None
            values[param.name] = raw
        if (
            len(positional) > len(method.params)
            and not method.ignore_extra
            and not any(p.kind == "strs" for p in method.params)
        ):
            raise InvalidParams(f"{method.name} takes at most {len(method.params)} parameter(s)")
    elif isinstance(params, dict):
        known = {p.name for p in method.params}
        unknown = sorted(str(k) for k in params if k not in known)
        if unknown:
            raise InvalidParams(f"unknown parameter(s) {', '.join(unknown)}")
        values = {p.name: params.get(p.name) for p in method.params}
    else:
        raise InvalidParams("params must be an array or an object")

    args: dict[str, object] = {}
    for param in method.params:
        raw = values[param.name]
        if raw is None or raw == []:
            if param.required:
                raise bad(f"missing parameter {param.name}")
            args[param.name] = [] if param.kind == "strs" else None
            continue
        converted = _convert(param, raw)
        if converted is _MISSING:
            expected = {"str": "a string", "int": "an integer", "strs": "strings"}[param.kind]
            raise bad(f"parameter {param.name} must be {expected}")
        args[param.name] = converted
    return Args(args)


# --- sca.* --------------------------------------------------------------------------------


def _event(args: Args, usage: str) -> str:
    """Kamailio's ``sca_event_from_str`` check: an unknown event name is a usage fault."""
    event = args.text("event")
    if event not in SCA_EVENTS:
        raise RpcFault(500, usage)
    return event


def _positive_index(index: int) -> int:
    if index <= 0:
        raise RpcFault(500, INDEX_NOT_POSITIVE)
    return index


def _all_subscriptions(b: ManagementBackend, a: Args) -> object:
    return b.sca.rpc_all_subscriptions(now=b.now())


def _subscription_count(b: ManagementBackend, a: Args) -> object:
    return b.sca.rpc_subscription_count(_event(a, USAGE_SUBSCRIPTION_COUNT))


def _show_subscription(b: ManagementBackend, a: Args) -> object:
    event = _event(a, USAGE_SHOW_SUBSCRIPTION)
    return b.sca.rpc_show_subscription(a.text("aor"), event, a.opt_text("contact"))


def _subscribers(b: ManagementBackend, a: Args) -> object:
    return b.sca.rpc_subscribers()


def _deactivate_all(b: ManagementBackend, a: Args) -> object:
    return b.sca.rpc_deactivate_all_subscriptions(now=b.now())


def _deactivate_one(b: ManagementBackend, a: Args) -> object:
    event = _event(a, USAGE_DEACTIVATE)
    return b.sca.rpc_deactivate_subscription(a.text("aor"), event, a.text("contact"), now=b.now())


def _all_appearances(b: ManagementBackend, a: Args) -> object:
    return b.sca.rpc_all_appearances()


def _show_appearance(b: ManagementBackend, a: Args) -> object:
    index = a.opt_number("index")
    if index is not None:
        _positive_index(index)
    return b.sca.rpc_show_appearance(a.text("aor"), index)


def _seize(b: ManagementBackend, a: Args) -> object:
    return b.sca.rpc_seize_appearance(a.text("aor"), a.text("owner"), now=b.now())


def _update(b: ManagementBackend, a: Args) -> object:
    state = a.text("state")
    try:
        AppearanceState.from_wire(state)
    except ValueError:
        raise RpcFault(500, f"{state}: invalid state")
    return b.sca.rpc_update_appearance(
        a.text("aor"), a.number("index"), state, a.opt_text("uri"), now=b.now()
    )


def _release(b: ManagementBackend, a: Args) -> object:
    index = _positive_index(a.number("index"))
    return b.sca.rpc_release_appearance(a.text("aor"), index, now=b.now())


# --- core, registrar, stats, log, system --------------------------------------------------


def _version(b: ManagementBackend, a: Args) -> object:
    return b.version()


def _uptime(b: ManagementBackend, a: Args) -> object:
    """Kamailio's ``core.uptime`` shape: ctime strings and whole seconds."""
    now = b.now()
    up = max(0.0, b.uptime())
    return {"now": time.ctime(now), "up_since": time.ctime(now - up), "uptime": int(up)}


def _bindings(b: ManagementBackend, a: Args) -> object:
    return [dict(binding) for binding in b.bindings()]


def _stats(b: ManagementBackend, a: Args) -> object:
    """All statistics, or the selected ones.

    Selectors as in Kamailio's ``stats.get_statistics``: ``all``, a group (``sca:``, ``sca.``
    or just ``sca``) or an exact name. Selectors that match nothing at all are a -32602 fault
    (Kamailio answers nothing); ones that match some statistics return those.
    """
    wanted = a.texts("names")
    stats = b.stats()
    if wanted and "all" not in wanted:
        prefixes = tuple(
            p for w in wanted for p in ((w,) if w.endswith((":", ".")) else (w + ":", w + "."))
        )
        stats = {k: v for k, v in stats.items() if k in wanted or k.startswith(prefixes)}
        if not stats:  # an empty answer would look like success to a script or an operator
            raise InvalidParams(f"no such statistic: {' '.join(wanted)}")
    return {k: int(v) if float(v).is_integer() else v for k, v in sorted(stats.items())}


def _log_level(b: ManagementBackend, a: Args) -> object:
    return b.log_level()


def _set_log_level(b: ManagementBackend, a: Args) -> object:
    level = a.text("level")
    try:
        return b.set_log_level(level)
    except ValueError as exc:
        raise InvalidParams(str(exc) or f"unknown log level {level!r}")


def _list_methods(b: ManagementBackend, a: Args) -> object:
    return sorted(METHODS)


def _method_help(b: ManagementBackend, a: Args) -> object:
    name = a.text("method")
    method = METHODS.get(name)
    if method is None:
        raise MethodNotFound(name)
    return method.help


def _table(*methods: Method) -> dict[str, Method]:
    return {m.name: m for m in methods}


_P = Param
_AOR = _P("aor")
_EVENT = _P("event")
_INDEX = _P("index", "int")

METHODS: Final[Mapping[str, Method]] = _table(
    Method(
        "sca.all_subscriptions",
        (),
        _all_subscriptions,
        "List every subscription: <user> <subscriber host[:port]> <event> <seconds left> <state>.",
        ignore_extra=True,
    ),
    Method(
        "sca.subscription_count",
        (_EVENT,),
        _subscription_count,
        "Count subscriptions of one event package: <n> <event>.",
        usage=USAGE_SUBSCRIPTION_COUNT,
        ignore_extra=True,
    ),
    Method(
        "sca.show_subscription",
        (_AOR, _EVENT, _P("contact", required=False)),
        _show_subscription,
        "Show an AoR's subscriptions: <aor> <event> <subscriber> <absolute expires>.",
        usage=USAGE_SHOW_SUBSCRIPTION,
        ignore_extra=True,
    ),
    Method(
        "sca.subscribers",
        (),
        _subscribers,
        "List subscribers (Kamailio: not yet implemented).",
        ignore_extra=True,
    ),
    Method(
        "sca.deactivate_all_subscriptions",
        (),
        _deactivate_all,
        "Terminate every subscription with reason=deactivated and NOTIFY the subscribers.",
        ignore_extra=True,
        changes_state=True,
    ),
    Method(
        "sca.deactivate_subscription",
        (_AOR, _EVENT, _P("contact")),
        _deactivate_one,
        "Terminate one subscription (AoR, event, subscriber Contact) and NOTIFY it.",
        usage=USAGE_DEACTIVATE,
        ignore_extra=True,
        changes_state=True,
    ),
    Method(
        "sca.all_appearances",
        (),
        _all_appearances,
        "List every stored appearance: <aor> <index> <state> <mtime> <owner> <callee> "
        "<call-id> <from-tag> <to-tag>.",
        ignore_extra=True,
    ),
    Method(
        "sca.show_appearance",
        (_AOR, _P("index", "int", required=False)),
        _show_appearance,
        "Show one line's appearances (or one appearance).",
        usage=USAGE_SHOW_APPEARANCE,
        ignore_extra=True,
    ),
    Method(
        "sca.seize_appearance",
        (_AOR, _P("owner")),
        _seize,
        "Seize the lowest free appearance of a line for an owner Contact and NOTIFY the group.",
        usage=USAGE_SEIZE,
        ignore_extra=True,
        changes_state=True,
    ),
    Method(
        "sca.update_appearance",
        (_AOR, _INDEX, _P("state"), _P("uri", required=False)),
        _update,
        "Set an appearance's state (and appearance-uri) and NOTIFY the group; STATE is one "
        f"of {', '.join(UPDATE_STATES)} (idle releases the appearance).",
        usage=USAGE_UPDATE,
        ignore_extra=True,
        changes_state=True,
    ),
    Method(
        "sca.release_appearance",
        (_AOR, _INDEX),
        _release,
        "Release an appearance and NOTIFY the group.",
        usage=USAGE_RELEASE,
        ignore_extra=True,
        changes_state=True,
    ),
    Method("core.version", (), _version, "Server name and version."),
    Method("core.uptime", (), _uptime, "Current time, start time and uptime in seconds."),
    Method("ul.dump", (), _bindings, "Registrar bindings (same data as registrar.bindings)."),
    Method("registrar.bindings", (), _bindings, "Registrar bindings, one object per contact."),
    Method(
        "stats",
        (_P("names", "strs", required=False),),
        _stats,
        "Statistics: all, or the selected ones (exact names or groups: 'sca', 'sca:').",
    ),
    Method(
        "stats.get_statistics",
        (_P("names", "strs", required=False),),
        _stats,
        "Alias of stats (Kamailio name); 'all' selects everything.",
    ),
    Method("log.level", (), _log_level, "The current log level."),
    Method("log.set_level", (_P("level"),), _set_log_level, "Set the log level; returns it."),
    Method("system.listMethods", (), _list_methods, "Names of all methods."),
    Method("system.methodHelp", (_P("method"),), _method_help, "One method's help text."),
)


class MethodTable:
    """Dispatches ``call(name, params)`` for :class:`sipsca.rpc.jsonrpc.JsonRpcServer`."""

    def __init__(self, backend: ManagementBackend, methods: Mapping[str, Method] = METHODS) -> None:
        self._backend = backend
        self._methods = methods

    def call(self, name: str, params: object) -> object:
        method = self._methods.get(name)
        if method is None:
            raise MethodNotFound(name)
        args = bind(method, params)
        if not method.changes_state:
            return method.handler(self._backend, args)
        # State-changing commands are an operator's action on live calls: keep an audit trail.
        logger.info("rpc %s %s", name, to_json_value(params))
        try:
            return method.handler(self._backend, args)
        finally:
            self._after_change(name)

    def _after_change(self, name: str) -> None:
        """Flush queued NOTIFYs; a failure there must not hide the command's own outcome."""
        try:
            self._backend.after_change()
        except Exception:
            logger.exception("after_change failed after rpc %s", name)
