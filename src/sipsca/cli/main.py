"""The ``sipsca`` command: serve, check-config, user, db, rpc."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

import click

from sipsca import __version__
from sipsca.cli.settings import config_from_dict, load_config, public_listeners, validate
from sipsca.config import SipscaConfig
from sipsca.errors import ConfigError, RemoteProtocolError, StorageError

__all__ = ["main"]

# Shown as *** by check-config, whose output ends up in the journal (the unit's ExecStartPre).
_SECRETS = frozenset({"auth.secret", "rpc.token"})


def _load(config_file: str | None, overrides: dict[str, Any]) -> SipscaConfig:
    config = load_config(config_file) if config_file else SipscaConfig()
    data: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if value is None or value == ():
            continue
        section, key = dotted.split(".")
        data.setdefault(section, {})[key] = list(value) if isinstance(value, tuple) else value
    if data:
        config = config_from_dict(data, base=config)
    validate(config)
    return config


def _fail(exc: Exception) -> None:
    click.echo(f"sipsca: error: {exc}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sipsca")
def cli() -> None:
    """sipsca: a Shared Call Appearances SIP server (registrar, proxy, SCA)."""


@cli.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--listen", multiple=True, help="transport:host:port (udp, tcp, tls); repeatable.")
@click.option("--db-url", help="sqlite:///PATH, postgresql://..., mysql://...")
@click.option(
    "--rpc-listen",
    help="HOST:PORT of the JSON-RPC / metrics listener (an error with [rpc] enabled = false).",
)
@click.option("--log-level", help="DEBUG, INFO, WARNING, ERROR.")
def serve(
    config_file: str | None,
    listen: tuple[str, ...],
    db_url: str | None,
    rpc_listen: str | None,
    log_level: str | None,
) -> None:
    """Run the server in the foreground until SIGTERM/SIGINT."""
    from sipsca.cli.logs import setup_logging

    try:
        config = _load(
            config_file,
            {
                "server.listen": listen,
                "db.db_url": db_url,
                "rpc.listen": rpc_listen,
                "log.level": log_level,
            },
        )
        if rpc_listen and not config.rpc.enabled:
            # Refused rather than enabling the API the file switched off on purpose.
            raise ConfigError("--rpc-listen given but rpc.enabled = false")
    except ConfigError as exc:
        _fail(exc)
        return
    setup_logging(config.log.level, config.log.format)
    public = public_listeners(config)
    if config.auth.mode == "none" and public:  # validate() made sure it is allowed
        import logging

        logging.getLogger("sipsca").warning(
            'authentication is OFF (auth.mode = "none") on the non-loopback address %s',
            public[0],
        )
    from sipsca.service import run_server

    sys.exit(run_server(config))


@cli.command("check-config")
@click.argument("config_file", type=click.Path(dir_okay=False))
def check_config(config_file: str) -> None:
    """Validate a config file and print the effective settings.

    Secrets are shown as ***. Runs the start-up checks of serve that need no network
    (certificate and key, database URL, table name): OK means serve accepts the file.
    """
    from sipsca.service import check_startup

    try:
        config = load_config(config_file)
        check_startup(config)
    except ConfigError as exc:
        _fail(exc)
        return
    for section, values in dataclasses.asdict(config).items():
        for key, value in values.items():
            click.echo(f"{section}.{key} = {_shown(f'{section}.{key}', value)!r}")
    click.echo(f"{config_file}: OK")


def _shown(name: str, value: object) -> object:
    """``value`` of setting ``name`` with passwords, keys and tokens masked."""
    from sipsca.storage.registry import redact_url

    if name == "db.db_url":
        return redact_url(str(value))
    return "***" if name in _SECRETS and value else value


def _storage_options(func: Any) -> Any:
    func = click.option("--db-url", help="Database URL (overrides the config file).")(func)
    func = click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file."
    )(func)
    return func


async def _with_storage(config: SipscaConfig, action: Any, *, init: bool = True) -> Any:
    from sipsca.service import build_storage

    storage = build_storage(config)
    await storage.open()
    try:
        if init and await storage.schema_version() is None:
            await storage.init_schema()
        return await action(storage)
    finally:
        await storage.close()


def _run_storage(
    config_file: str | None, db_url: str | None, action: Any, *, init: bool = True
) -> Any:
    """Run ``action(storage)``; ``init``: create the schema first when there is none (the
    ``db`` commands pass False so that ``db migrate`` reports every step it applies)."""
    try:
        config = _load(config_file, {"db.db_url": db_url})
        return asyncio.run(_with_storage(config, action, init=init))
    except (ConfigError, StorageError) as exc:
        _fail(exc)


@cli.group()
def user() -> None:
    """Manage digest subscribers (HA1 stored, never the password)."""


@user.command("add")
@click.argument("address")
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Read the password from this file (first line).",
)
@_storage_options
def user_add(
    address: str, password_file: str | None, config_file: str | None, db_url: str | None
) -> None:
    """Add or replace USER@DOMAIN."""
    from sipsca.auth.digest import make_subscriber

    try:
        username, domain = _subscriber_address(address)
    except ConfigError as exc:
        _fail(exc)
        return
    if password_file:
        try:
            lines = Path(password_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            _fail(ConfigError(f"cannot read password file {password_file}: {_why(exc)}"))
            return
        password = lines[0] if lines else ""
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        _fail(ConfigError("empty password"))
    subscriber = make_subscriber(username, domain, password)

    async def action(storage: Any) -> bool:
        existed = await storage.get_subscriber(username, domain) is not None
        await storage.add_subscriber(subscriber)
        return existed

    existed = _run_storage(config_file, db_url, action)
    click.echo(f"{'replaced' if existed else 'added'} {username}@{domain}")


def _why(exc: OSError | UnicodeDecodeError) -> str:
    """The reason of a failed read without the path again (OSError's str repeats it)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    return exc.strerror or str(exc)


def _subscriber_address(address: str) -> tuple[str, str]:
    """``USER@DOMAIN`` -> (user, domain), read by the SIP URI parser so that only a name a
    phone can authenticate as is stored: RFC 3261 user characters, a host name, IPv4 address
    or [IPv6] domain, no ``sip:``, password, port or parameters."""
    from sipsca.sip.uri import parse_uri

    try:
        uri = parse_uri(f"sip:{address}")
    except RemoteProtocolError:
        uri = None
    if uri is None or not uri.user or f"{uri.user}@{uri.host}" != address:
        raise ConfigError(
            f"{address!r} is not USER@DOMAIN (RFC 3261 user characters, a host name, IPv4 "
            "address or [IPv6]; no sip:, port or parameters)"
        )
    return uri.user, uri.host


@user.command("del")
@click.argument("address")
@_storage_options
def user_del(address: str, config_file: str | None, db_url: str | None) -> None:
    """Delete USER@DOMAIN."""
    username, _, domain = address.partition("@")

    async def action(storage: Any) -> bool:
        return bool(await storage.delete_subscriber(username, domain))

    if not _run_storage(config_file, db_url, action):
        click.echo(f"sipsca: error: no user {address}", err=True)
        sys.exit(1)
    click.echo(f"deleted {address}")


@user.command("list")
@_storage_options
def user_list(config_file: str | None, db_url: str | None) -> None:
    """List subscribers."""

    async def action(storage: Any) -> list[Any]:
        return list(await storage.list_subscribers())

    for sub in _run_storage(config_file, db_url, action) or []:
        click.echo(f"{sub.username}@{sub.domain}")


@cli.group()
def db() -> None:
    """Database schema management."""


@db.command("init")
@_storage_options
def db_init(config_file: str | None, db_url: str | None) -> None:
    """Create every table (idempotent)."""

    async def action(storage: Any) -> None:
        await storage.init_schema()

    _run_storage(config_file, db_url, action, init=False)
    click.echo("database initialised")


@db.command("migrate")
@_storage_options
def db_migrate(config_file: str | None, db_url: str | None) -> None:
    """Upgrade the schema to this version of sipsca."""

    async def action(storage: Any) -> list[str]:
        return list(await storage.migrate())

    steps = _run_storage(config_file, db_url, action, init=False) or []
    for step in steps:
        click.echo(step)
    click.echo("database is up to date")


def _add_rpc() -> None:
    try:
        from sipsca.cli.rpc_cmd import rpc_command
    except ImportError:  # pragma: no cover - during development only
        return
    cli.add_command(rpc_command, "rpc")


_add_rpc()


def main() -> None:
    cli(prog_name="sipsca")
