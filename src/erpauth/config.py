"""Service configuration, read from ``ERPAUTH_*`` environment variables."""

import ipaddress
import os
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# OWASP Password Storage Cheat Sheet, argon2id: at least 19 MiB of memory and 2 iterations.
OWASP_MIN_MEMORY_KIB = 19 * 1024
OWASP_MIN_TIME_COST = 2
MAX_HASHING_THREADS = 64


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    """Everything an operator of the service can set; each field is ``ERPAUTH_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="ERPAUTH_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Folder for the SQLite file and local keys.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default is a SQLite file in the data folder."
    )
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL clients use; also the token issuer."
    )
    secret_key: str | None = Field(
        None,
        description=(
            "Fernet key(s), comma-separated, newest first, that encrypt client secrets and "
            "signing keys at rest. Default: a key file made in the data folder at first start."
        ),
    )
    audience: str = Field("erpauth-api", description="The `aud` claim of access tokens.")
    argon2_memory_kib: int = Field(OWASP_MIN_MEMORY_KIB, ge=OWASP_MIN_MEMORY_KIB)
    argon2_time_cost: int = Field(OWASP_MIN_TIME_COST, ge=OWASP_MIN_TIME_COST)
    argon2_parallelism: int = Field(1, ge=1, le=16)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    refresh_token_ttl_hours: int = Field(24 * 30, ge=1)
    session_ttl_minutes: int = Field(8 * 60, ge=1)
    session_idle_minutes: int = Field(60, ge=1)
    redis_url: str | None = None
    log_format: str = Field("text", pattern="^(text|json)$")
    log_level: str = Field("INFO", pattern="(?i)^(debug|info|warning|error|critical)$")
    db_pool_size: int = Field(10, ge=1)
    standing_cache_seconds: float = Field(
        60.0,
        ge=0,
        le=3600,
        description=(
            "With PostgreSQL, how long a process may keep a token's standing between change "
            "notices; 0 reads it from the database on every request."
        ),
    )
    benchmark_routes: bool = Field(
        False, description="Serve /benchmark/open and /benchmark/protected (for bench/run.py)."
    )

    # Abuse resistance; docs/abuse.md explains each knob.
    limits_key_prefix: str = Field("erpauth", min_length=1, max_length=64)
    redis_timeout_seconds: float = Field(0.5, gt=0, le=10)
    redis_retry_seconds: float = Field(5.0, ge=0, le=300)
    token_requests_per_ip_per_minute: int = Field(30, ge=1)
    token_requests_per_client_per_minute: int = Field(60, ge=1)
    signin_requests_per_ip_per_minute: int = Field(30, ge=1)
    signin_failure_window_seconds: int = Field(900, ge=1)
    signin_failures_before_delay: int = Field(3, ge=1)
    signin_delay_seconds: int = Field(2, ge=1)
    signin_max_delay_seconds: int = Field(60, ge=1)
    signin_failures_before_lockout: int = Field(10, ge=1)
    signin_lockout_seconds: int = Field(900, ge=1)
    signin_account_failures_before_lockout: int = Field(100, ge=1)
    hashing_concurrency: int = Field(
        default_factory=lambda: min(available_cores(), MAX_HASHING_THREADS),
        ge=1,
        le=MAX_HASHING_THREADS,
        description=(
            "Hashing threads per process: password checks that run at once. Default: the CPU "
            "cores the process may use, shared among the worker processes of `erpauth serve`."
        ),
    )
    hashing_queue: int = Field(8, ge=0, le=1000)
    hashing_wait_seconds: float = Field(5.0, gt=0, le=60)
    audit_repeat_seconds: int = Field(60, ge=1)
    http_header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    http_max_header_bytes: int = Field(32 * 1024, ge=4096, le=1024 * 1024)
    http_body_timeout_seconds: float = Field(30.0, gt=0, le=600)
    http_keepalive_seconds: int = Field(5, ge=1, le=300)
    http_max_concurrency: int = Field(1000, ge=1)
    # Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: addresses or
    # networks, comma-separated. Empty (the default): the TCP peer is the client.
    trusted_proxies: str = ""

    @field_validator("public_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_networks(cls, value: str) -> str:
        entries = [part.strip() for part in value.split(",") if part.strip()]
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry[:60]!r} is not an IP address or network; name each proxy"
                ) from None
        return ",".join(entries)

    @field_validator("database_url")
    @classmethod
    def _known_dialect(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            make_url(value).get_dialect().import_dbapi()
        except (ArgumentError, ImportError):
            # Not the URL itself in the message: it may hold a password.
            raise ValueError(
                "not a SQLAlchemy URL this service can use; for example "
                "postgresql+psycopg://user:pass@host:5432/erpauth or sqlite:///data/erpauth.db"
            ) from None
        return value

    @field_validator("secret_key")
    @classmethod
    def _fernet_keys(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for key in (part.strip() for part in value.split(",") if part.strip()):
            try:
                Fernet(key)
            except ValueError:
                raise ValueError(
                    "each key must be a Fernet key (32 URL-safe base64-encoded bytes)"
                ) from None
        return value

    @property
    def issuer(self) -> str:
        return self.public_url

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'erpauth.db').as_posix()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
