"""``sipsca rpc``: call the management JSON-RPC API from a shell, like Kamailio's ``kamcmd``.

Uses stdlib ``urllib`` rather than aiohttp: a one-shot request needs no event loop, and the
command starts faster. Proxies from the environment are ignored on purpose: the API is meant to
be reached directly (normally over loopback), and routing a bearer token through a proxy would
leak it.

Where the URL and token come from, first match wins: ``--url``/``--token``, the environment
(``SIPSCA_RPC_URL``/``SIPSCA_RPC_TOKEN``), ``--config FILE`` (``[rpc] listen``/``token``), the
built-in default ``http://127.0.0.1:5080/RPC``.
"""

from __future__ import annotations

import json
import re
import tomllib
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, NoReturn

import click

from sipsca.errors import ConfigError
from sipsca.rpc.listen import client_url

__all__ = ["DEFAULT_URL", "format_result", "rpc_command"]

DEFAULT_URL: Final = "http://127.0.0.1:5080/RPC"
_INT: Final = re.compile(r"-?(0|[1-9]\d*)")


def _coerce(arg: str) -> str | int:
    """Send integer-looking arguments as JSON numbers, as kamcmd does (``... release 1``).

    Leading zeros stay strings so a ``007`` user part is not turned into 7.
    """
    return int(arg) if _INT.fullmatch(arg) else arg


def _config_defaults(path: str | None) -> tuple[str | None, str | None]:
    """``(url, token)`` from the ``[rpc]`` table of a sipsca TOML config, if given."""
    if path is None:
        return None, None
    try:
        with Path(path).open("rb") as f:
            rpc = tomllib.load(f).get("rpc", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.UsageError(f"cannot read config {path}: {exc}")
    if not isinstance(rpc, dict):
        raise click.UsageError(f"config {path}: [rpc] must be a table")
    url = None
    listen = rpc.get("listen")
    if isinstance(listen, str) and listen:
        try:
            url = client_url(listen)
        except ConfigError as exc:
            raise click.UsageError(f"config {path}: {exc}")
    token = rpc.get("token")
    return url, token if isinstance(token, str) and token else None


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _table(rows: Sequence[Mapping[str, object]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(str(k) for k in row))
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    header = [c.upper() for c in columns]
    widths = [max(len(x) for x in col) for col in zip(header, *cells, strict=True)]
    return [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in (header, *cells)
    ]


def format_result(result: object) -> list[str]:
    """Render a result for people, kamcmd-like.

    A list of strings (every ``sca.*`` command) prints one per line; an object prints as an
    aligned ``key: value`` list; a list of objects prints as a table with a header row.
    """
    if result is None:
        return []
    if isinstance(result, Mapping):
        if not result:
            return []
        width = max(len(str(k)) for k in result)
        return [f"{str(k) + ':':<{width + 1}} {_cell(v)}".rstrip() for k, v in result.items()]
    if isinstance(result, list):
        if result and all(isinstance(r, Mapping) for r in result):
            return _table(result)
        return [_cell(r) for r in result]
    return [_cell(result)]


def _fail(message: str) -> NoReturn:
    """Print ``error: ...`` (kamcmd's wording) to stderr and exit 1."""
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(1)


def _post(url: str, token: str, payload: bytes, timeout: float) -> dict[str, object]:
    """POST the request; return the decoded JSON-RPC response.

    Exits 1 when the server cannot be reached or does not answer JSON-RPC.
    """
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:  # 4xx/5xx: the body may still be a JSON-RPC error
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        _fail(f"cannot reach sipsca RPC at {url} ({reason})")
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict):
        _fail(f"unexpected HTTP {status} answer from {url}")
    return decoded


@click.command(
    "rpc",
    context_settings={"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]},
)
@click.option(
    "--url",
    envvar="SIPSCA_RPC_URL",
    show_envvar=True,
    help=f"JSON-RPC endpoint [default: {DEFAULT_URL}]",
)
@click.option("--token", envvar="SIPSCA_RPC_TOKEN", show_envvar=True, help="Bearer token.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="sipsca TOML config to take [rpc] listen/token from.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds.")
@click.argument("method")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def rpc_command(
    url: str | None,
    token: str | None,
    config_path: str | None,
    as_json: bool,
    timeout: float,
    method: str,
    args: tuple[str, ...],
) -> None:
    """Call METHOD with ARGS on a running sipsca, like kamcmd.

    Example: `sipsca rpc sca.all_appearances`. Integer-looking ARGS are sent as numbers.
    `sipsca rpc system.listMethods` lists methods.
    URL and token: option, then environment, then --config [rpc] listen/token.
    """
    config_url, config_token = _config_defaults(config_path)
    url = url or config_url or DEFAULT_URL
    token = token or config_token or ""
    payload = json.dumps(
        {"jsonrpc": "2.0", "method": method, "params": [_coerce(a) for a in args], "id": 1}
    ).encode()
    response = _post(url, token, payload, timeout)
    error = response.get("error")
    if error is not None:
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        _fail(f"{code} - {message}")
    result = response.get("result")
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    for line in format_result(result):
        click.echo(line)


if __name__ == "__main__":
    rpc_command(prog_name="sipsca rpc")
