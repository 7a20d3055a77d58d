"""Pick a storage backend from a ``db_url`` (Kamailio's ``db_url`` parameter, same spelling).

=============================================  ==================================================
``memory://``                                   in-process dicts (lost at exit)
``sqlite:///var/lib/sipsca/sca.db``             SQLite, absolute path (three slashes, like Kamailio)
``sqlite://var/sca.db``                         SQLite, path relative to the working directory
``postgresql://user:pw@host:5432/db``           PostgreSQL (``postgres://`` too)
``mysql://user:pw@host:3306/db``                MySQL / MariaDB (``mariadb://`` too)
=============================================  ==================================================

Note that ``sqlite:///x.db`` is the *absolute* path ``/x.db`` (Kamailio's reading), not a
relative one as in SQLAlchemy. Backends are imported lazily and nothing connects here: the
caller awaits ``open()``.
"""

from __future__ import annotations

from sipsca.errors import ConfigError
from sipsca.storage._sql import check_identifier
from sipsca.storage.base import Storage

__all__ = ["open_storage", "redact_url"]

_SCHEMES = "memory://, sqlite://, postgresql://, postgres://, mysql://, mariadb://"


def redact_url(db_url: str) -> str:
    """``db_url`` with its password replaced by ``***`` (for logs and error messages)."""
    scheme, sep, rest = db_url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return db_url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def open_storage(
    db_url: str, *, subs_table: str = "sca_subscriptions", server_id: int = 0
) -> Storage:
    """Build (not connect) the backend named by ``db_url``; ConfigError when unusable."""
    check_identifier(subs_table)
    scheme, sep, rest = db_url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError(f"db_url: {redact_url(db_url)!r} has no scheme; use one of {_SCHEMES}")
    if scheme == "memory":
        from sipsca.storage.memory import MemoryStorage

        return MemoryStorage(subs_table=subs_table, server_id=server_id)
    if scheme == "sqlite":
        if not rest:
            raise ConfigError("db_url: sqlite:// needs a file path (sqlite:///abs or sqlite://rel)")
        from sipsca.storage.sqlite import SqliteStorage

        return SqliteStorage(rest, subs_table=subs_table, server_id=server_id)
    if scheme in ("postgresql", "postgres"):
        from sipsca.storage.postgres import PostgresStorage

        return PostgresStorage(db_url, subs_table=subs_table, server_id=server_id)
    if scheme in ("mysql", "mariadb"):
        from sipsca.storage.mysql import MysqlStorage

        return MysqlStorage(db_url, subs_table=subs_table, server_id=server_id)
    raise ConfigError(f"db_url: unsupported scheme {scheme + '://'!r}; use one of {_SCHEMES}")
