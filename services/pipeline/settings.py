"""Configuration of every process, from `CSAE_*` environment variables. Built once, then passed."""

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.referral import Priority
from services.domain.breaker import BreakerSettings
from services.domain.deadlines import DEFAULT_DEADLINES, Deadlines, with_defaults


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CSAE_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_topic_partitions: int = Field(default=12, ge=1)
    """Partitions of each topic: created with this many, grown to it (`csae topics create`)."""
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    """How produced batches are compressed. zstd by default: a task carries its flag, and a
    batch of them shrinks about 28 times for 1.3 µs of CPU a flag. (aiokafka's lz4 is level 9,
    5.5 µs a flag for a ratio of 14; gzip 13 µs.)"""
    kafka_max_batch_bytes: int = Field(default=256 * 1024, ge=16 * 1024, le=1024 * 1024)
    """The most bytes (before compression) a produced batch for one partition holds. Larger
    than the client's 16 KiB default, so the outputs of one fetch go in few requests; below
    the broker's default `message.max.bytes` (1 MiB)."""

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/csae"

    topic_flags: str = "csae.flags.v1"
    topic_referrals: str = "csae.referrals.v1"
    topic_decisions: str = "csae.decisions.v1"
    topic_dlq: str = "csae.flags.dlq.v1"
    router_group: str = "csae-router"
    referral_group: str = "csae-referral"

    max_flag_bytes: int = Field(default=256 * 1024, ge=1024)
    batch_max_records: int = Field(default=500, ge=1)
    batch_retry_seconds: float = Field(default=15.0, gt=0)
    """How long a failing batch is retried before it is handed back to Kafka and fetched again."""
    partitions_at_once: int = Field(default=4, ge=1)
    """After a failed batch, how many partitions are retried at once, each in its own
    transaction (kept below the database pool's size)."""
    poison_tries: int = Field(default=3, ge=1)
    """How many times a message whose data cannot be stored is tried before it is parked."""
    parked_in_a_row_limit: int = Field(default=3, ge=1)
    """After this many messages parked in a row with none stored between, the consumer stops
    parking and blocks (a bug or a schema out of step, not bad data): it pages instead."""
    lag_interval_seconds: float = Field(default=10.0, gt=0)
    """How often each consumer reads its group's lag from the broker (and the worker checks its
    database): readiness wants an answer within three of these."""
    consumer_stall_seconds: float = Field(default=120.0, gt=0)
    """Liveness (`/healthz` of router and worker) fails when the consume loop has not come round
    for this long: a hung call or a blocked event loop, which a restart fixes. Keep it above
    `batch_retry_seconds` plus a batch's time, and below `max_poll_interval` (300 s)."""

    api_keys_file: Path | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_cursor_secret: SecretStr | None = None
    """The key that signs the API's pagination cursors (HMAC-SHA256). Unset: a random key per
    process, so a cursor only works on the process that issued it and until it restarts; set it
    to the same value on every API process behind one address."""
    console_idle_seconds: float = Field(default=900.0, gt=0)
    """A console session with no request for this long is signed out."""
    console_lifetime_seconds: float = Field(default=12 * 3600.0, gt=0)
    """A console session ends this long after sign-in, however busy."""
    console_refresh_seconds: float = Field(default=15.0, ge=2)
    """How often the console's queue page refreshes itself."""
    api_workers: int = Field(default=1, ge=1, le=64)
    """API worker processes sharing the port (uvicorn's workers): each serves requests on its
    own core, with its own database pool, keys (each re-reads the keys file) and metrics."""
    api_db_pool_size: int = Field(default=10, ge=1)
    """Database connections each API process keeps open: about the requests it serves at once
    (at 200 requests/s of 5 ms each, one or two; a burst queues for a free one)."""
    api_db_max_overflow: int = Field(default=5, ge=0)
    """Connections an API process may open past its pool at a peak, closed again after."""
    api_key_use_flush_seconds: float = Field(default=60.0, gt=0)
    """How often each API process writes its keys' last uses to the database (`csae keys
    list` shows them): a use is noted in memory, never written per request."""
    router_metrics_port: int = 9101
    worker_metrics_port: int = 9102

    policy_file: Path | None = None
    """The reporting policy (YAML); the one bundled in the package when unset. Read at start."""
    forces_file: Path | None = None
    """The UK police force directory (JSON, in the format of the bundled
    `services/domain/data/uk_police_forces.json`); the bundled one when unset. Read at start."""
    home_force_id: str = "metropolitan"
    """The reporting organisation's home police force, used when no location is known."""
    # Printed on every packet, so bounded as packets are: a value that no packet could hold is
    # refused at start, not discovered when the first case is built.
    org_name: str = Field(default="Example Platform Ltd", min_length=1, max_length=256)
    safeguarding_contact: str = Field(
        default="Designated Safeguarding Lead, +44 20 0000 0000", min_length=1, max_length=256
    )
    safeguarding_email: str | None = Field(default=None, max_length=256)
    org_country: str = Field(default="GB", pattern="^[A-Z]{2}$")
    """The country of the organisation named above (ISO 3166-1 alpha-2)."""
    org_directory_file: Path | None = None
    """The reporting organisations by `platform.org_id` (see `services/domain/organisations.py`);
    unset: the one organisation above sends every packet."""
    single_organisation: bool = False
    """With a directory of exactly one organisation: it sends every packet, whatever the flag's
    `platform.org_id` (otherwise a flag from an unlisted organisation is refused)."""

    sla_deadlines: dict[Priority, Deadlines] = Field(
        default_factory=lambda: dict(DEFAULT_DEADLINES)
    )
    """Per-priority deadlines, as JSON; a partial table overrides the defaults, e.g.
    `CSAE_SLA_DEADLINES='{"P0": {"ready": 30}, "P3": {"submitted": "P5D"}}'`
    (seconds or ISO 8601 durations)."""
    sla_sweep_seconds: float = Field(default=15.0, gt=0)
    """How often the worker checks the SLA clocks of open cases."""

    breaker_enabled: bool = True
    """The flood breaker (see `services/domain/breaker.py`): a source sending far past its
    usual rate has its referrals held as reviews until a person closes it."""
    breaker_factor: float = Field(default=10.0, gt=1)
    breaker_min_flags: int = Field(default=500, ge=1)
    breaker_window_seconds: float = Field(default=300.0, ge=60)
    breaker_baseline_seconds: float = Field(default=86_400.0, ge=600)
    breaker_cool_down_seconds: float | None = Field(default=None, gt=0)
    """Unset: only a person closes a breaker (`csae breaker close`, or the admin API)."""

    retention_enabled: bool = True
    """The worker deletes and redacts what is past its period (see
    `services/referral/retention.py`), once every `retention_interval_seconds`."""
    retention_interval_seconds: float = Field(default=3600.0, gt=0)
    retention_no_report_days: float = Field(default=90, gt=0)
    retention_dismissed_days: float = Field(default=365, gt=0)
    retention_closed_days: float = Field(default=366, gt=0)
    retention_reference_days: float = Field(default=5 * 365 + 2, gt=0)
    """A calendar year and five, leap days included (`retention.Periods`)."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def retention(self) -> tuple[timedelta, timedelta, timedelta, timedelta]:
        """The retention periods: no-report decisions, dismissed reviews, closed cases'
        content, and their references."""
        return (
            timedelta(days=self.retention_no_report_days),
            timedelta(days=self.retention_dismissed_days),
            timedelta(days=self.retention_closed_days),
            timedelta(days=self.retention_reference_days),
        )

    def breaker(self) -> BreakerSettings | None:
        """The flood breaker's thresholds; None when it is turned off."""
        if not self.breaker_enabled:
            return None
        cool_down = self.breaker_cool_down_seconds
        return BreakerSettings(
            factor=self.breaker_factor,
            min_flags=self.breaker_min_flags,
            window=timedelta(seconds=self.breaker_window_seconds),
            baseline=timedelta(seconds=self.breaker_baseline_seconds),
            cool_down=timedelta(seconds=cool_down) if cool_down is not None else None,
        )

    @field_validator("sla_deadlines", mode="before")
    @classmethod
    def _merge_deadlines(cls, value: object) -> object:
        return with_defaults(value)
