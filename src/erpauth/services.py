"""The long-lived objects one erpauth process works with."""

from dataclasses import dataclass

from erpauth.abuse import AbuseControls
from erpauth.config import Settings
from erpauth.domain.standing import StandingCache
from erpauth.domain.tokens import TokenService
from erpauth.security.keys import KeyRing, ensure_signing_key
from erpauth.security.passwords import PasswordHasher
from erpauth.security.secrets import SecretBox, load_secret_box
from erpauth.storage.changes import ChangeFeed, libpq_url
from erpauth.storage.db import Database
from erpauth.storage.migrate import upgrade


@dataclass
class Services:
    settings: Settings
    database: Database
    box: SecretBox
    hasher: PasswordHasher
    keys: KeyRing
    tokens: TokenService
    abuse: AbuseControls
    # PostgreSQL's change notices; None on SQLite or with the standing cache turned off.
    changes: ChangeFeed | None = None
    # Grants completed by the fast paths (erpauth.oauth.refresh_fast_path and
    # password_fast_path); tests read them to tell which path answered, nothing else does.
    fast_refreshes: int = 0
    fast_password_grants: int = 0

    def close(self) -> None:
        self.abuse.close()
        self.database.dispose()


def build_services(settings: Settings, *, migrate: bool = False) -> Services:
    """Connects to the database (bringing the schema up to date when asked) and loads keys."""
    database = Database(settings)
    box = load_secret_box(settings)
    if migrate:
        upgrade(database.engine)
        with database.session() as session:
            ensure_signing_key(session, box)

    keys = KeyRing(database, box)
    hasher = PasswordHasher(settings)
    changes = None
    if database.async_autocommit is not None and settings.standing_cache_seconds > 0:
        changes = ChangeFeed(libpq_url(settings.resolved_database_url()))
    standing = StandingCache(changes, max_age=settings.standing_cache_seconds)
    return Services(
        settings=settings,
        database=database,
        box=box,
        hasher=hasher,
        keys=keys,
        tokens=TokenService(settings, database, keys, standing),
        abuse=AbuseControls(settings, database, hasher),
        changes=changes,
    )
