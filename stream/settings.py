"""One validated settings object for the runtime, read from ``NURTURE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    import ssl

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NURTURE_", extra="ignore")

    app_id: str = Field("nurture-stream", description="Faust app id / consumer group")
    kafka_bootstrap_servers: str = Field(
        "localhost:9092", description="comma-separated host:port list of Kafka brokers"
    )
    # broker security (applied to the worker, the sender, `topics create` and `simulate`)
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = Field(None, description="SASL_* protocols only")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle (default: system CAs)")
    kafka_ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    kafka_ssl_keyfile: Path | None = Field(None, description="client key (with the certfile)")
    data_dir: Path = Field(Path("./data"), description="folder for RocksDB state")
    rules_file: Path | None = Field(None, description="program rules YAML (default: built in)")

    topic_product_events: str = "nurture.product-events"
    topic_email_events: str = "nurture.email-events"
    topic_crm_events: str = "nurture.crm-events"
    topic_actions: str = "nurture.actions"
    topic_transitions: str = "nurture.transitions"
    topic_dead_letter: str = "nurture.dead-letter"
    topic_partitions: int = Field(12, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1)

    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    standby_replicas: int = Field(0, ge=0)
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    web_token: str | None = Field(None, description="bearer token for /leads (optional)")
    report_port: int = Field(6067, ge=0, le=65535, description="report consumer HTTP port")
    report_data_dir: Path | None = Field(
        None, description="report consumer RocksDB folder (default: <data_dir>/report)"
    )
    timer_tick_seconds: float = Field(1.0, gt=0, le=60)
    accounts_enabled: bool = Field(
        True, description="post-sale accounts: re-key account events, run the account agent"
    )
    account_forward_format: Literal["msgpack", "json"] = Field(
        "msgpack",
        description="how the lead runner writes account forwards: msgpack (read only by workers "
        "from 9a80ada on) or json, the envelope earlier workers read; keep json during a rolling "
        "upgrade from such a worker, then switch to msgpack with a second rolling restart",
    )
    batch_size: int = Field(2000, ge=1, le=100_000, description="input messages per batch")
    batch_linger_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="how long a woken batch loop lets the fetcher deliver more before it cuts "
        "batches smaller than batch_size (0: at once)",
    )
    max_task_idle_ms: int = Field(
        1000,
        ge=0,
        le=600_000,
        description="how long a partition waits for an input topic with unread data before "
        "it goes on without it in event time",
    )
    lead_cache_size: int = Field(
        30_000,
        ge=1,
        le=10_000_000,
        description="decoded lead records kept in memory across batches (about 4 KB each)",
    )
    state_write_buffer_mb: int = Field(
        4, ge=1, le=512, description="RocksDB memtable size per table partition (MB, 2 at most)"
    )
    state_block_cache_mb: int = Field(
        8, ge=1, le=4096, description="RocksDB block cache per table partition (MB)"
    )
    fetch_max_wait_ms: int = Field(
        30,
        ge=1,
        le=30_000,
        description="how long a fetch waits at the broker for new data (Faust hard-codes "
        "1500 ms; one fetch per broker is in flight, so a partition drained meanwhile is "
        "fetched again only after it returns). Each fetch lists every assigned partition "
        "(aiokafka has no incremental fetch sessions) and is encoded and decoded in Python: "
        "30 ms gave lower latency than 10 ms at 2,458 inputs/s (fewer fetches, less CPU)",
    )
    fetch_min_bytes: int = Field(
        65_536,
        ge=1,
        le=64 * 1024 * 1024,
        description="how much new data a fetch waits for at the broker, up to "
        "fetch_max_wait_ms (aiokafka's default of 1 byte answers every fetch at the first "
        "message: about one fetch request per few messages, each over every assigned "
        "partition, at a live input rate)",
    )
    producer_linger_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="how long the producer waits to fill a batch before it sends a produce "
        "request (part of every output's latency; fewer, larger requests cost less CPU)",
    )
    gil_switch_interval_ms: float = Field(
        5.0,
        gt=0,
        le=100,
        description="how long the batch loop may hold the GIL before Faust's consumer thread "
        "gets it (CPython's switch interval, 5 ms by default): every fetch the consumer "
        "thread makes and hands over waits up to this long while a batch runs",
    )
    trace_latency_file: Path | None = Field(
        None,
        description="debugging only: append each batch's per-stage times (JSON lines) here "
        "(stream.runtime.trace; the bench's latency breakdown)",
    )
    log_level: str = "info"

    # the reference sender (`nurture sender`, stream/sender/)
    sender_transport: Literal["smtp", "webhook", "stdout"] = "stdout"
    sender_group: str | None = Field(None, description="consumer group (default <app_id>-sender)")
    sender_data_dir: Path | None = Field(
        None, description="dedupe store (default <data_dir>/sender)"
    )
    sender_templates_dir: Path | None = Field(
        None, description="Jinja2 templates (default built in)"
    )
    sender_channels: frozenset[Literal["email", "in_app", "sales_task", "csm_task"]] = Field(
        frozenset({"email"}),
        description='channels delivered (JSON list, e.g. ["email"]); other sends are ignored',
    )
    sender_from: str = "nurture@example.com"
    sender_recipient: str = Field(
        "{lead_id}@example.invalid", description="To address; {lead_id} is filled in"
    )
    sender_smtp_host: str | None = None
    sender_smtp_port: int = Field(25, ge=1, le=65535)
    sender_smtp_username: str | None = None
    sender_smtp_password: str | None = None
    sender_smtp_starttls: bool = False
    sender_webhook_url: str | None = None
    sender_timeout_seconds: float = Field(10.0, gt=0)
    sender_max_attempts: int = Field(5, ge=1, le=100)
    sender_backoff_seconds: float = Field(0.5, ge=0, description="first retry delay; doubles")
    sender_backoff_max_seconds: float = Field(30.0, ge=0)
    sender_retention_days: float = Field(
        30.0, gt=0, description="keep delivery markers this long (>= actions topic retention)"
    )
    sender_metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus port (0: off)")
    sender_fault_kill_after: int = Field(
        0, ge=0, description="testing only: SIGKILL itself after the Nth delivery, before commit"
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str) -> str:
        for item in value.split(","):
            host, sep, port = item.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(
                    f"{item!r} is not host:port; "
                    "set NURTURE_KAFKA_BOOTSTRAP_SERVERS=host:9092[,host2:9092]"
                )
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        problems = [*self._security_problems(), *self._sender_problems()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _security_problems(self) -> list[str]:
        out: list[str] = []
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        given = [
            name
            for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
            if getattr(self, name) is not None
        ]
        if sasl:
            missing = sorted(
                {"kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"} - set(given)
            )
            out += [f"{protocol} needs {name}: set NURTURE_{name.upper()}" for name in missing]
        elif given:
            out.append(
                f"{', '.join(given)} given but NURTURE_KAFKA_SECURITY_PROTOCOL={protocol}: "
                "set it to SASL_SSL (or SASL_PLAINTEXT), or unset the SASL settings"
            )
        tls_files = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
        if not protocol.endswith("SSL"):
            files = [name for name in tls_files if getattr(self, name) is not None]
            if files:
                out.append(
                    f"{', '.join(files)} given but NURTURE_KAFKA_SECURITY_PROTOCOL={protocol}: "
                    "set it to SSL or SASL_SSL, or unset the files"
                )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            out.append(
                "kafka_ssl_certfile and kafka_ssl_keyfile go together: "
                "set both NURTURE_KAFKA_SSL_CERTFILE and NURTURE_KAFKA_SSL_KEYFILE, or neither"
            )
        for name in tls_files:
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                out.append(f"{name}: {path} is not a readable file (NURTURE_{name.upper()})")
        return out

    def _sender_problems(self) -> list[str]:
        out: list[str] = []
        if "{lead_id}" not in self.sender_recipient:
            out.append("sender_recipient must contain {lead_id} (NURTURE_SENDER_RECIPIENT)")
        if self.sender_transport == "smtp" and not self.sender_smtp_host:
            out.append("sender_transport=smtp needs NURTURE_SENDER_SMTP_HOST")
        if self.sender_transport == "webhook" and not (self.sender_webhook_url or "").startswith(
            ("http://", "https://")
        ):
            out.append("sender_transport=webhook needs NURTURE_SENDER_WEBHOOK_URL=http(s)://...")
        if (self.sender_smtp_username is None) != (self.sender_smtp_password is None):
            out.append(
                "sender_smtp_username and sender_smtp_password go together: set both "
                "NURTURE_SENDER_SMTP_USERNAME and NURTURE_SENDER_SMTP_PASSWORD, or neither"
            )
        return out

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of an SSL / SASL_SSL connection (None for plaintext)."""
        if not self.kafka_security_protocol.endswith("SSL"):
            return None
        from aiokafka.helpers import create_ssl_context

        context: ssl.SSLContext = create_ssl_context(
            cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None,
            certfile=str(self.kafka_ssl_certfile) if self.kafka_ssl_certfile else None,
            keyfile=str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
        )
        return context

    def kafka_auth(self) -> dict[str, Any]:
        """Security keyword arguments for any aiokafka client (producer, consumer, admin)."""
        out: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        context = self.ssl_context()
        if context is not None:
            out["ssl_context"] = context
        if self.kafka_security_protocol.startswith("SASL_"):
            out["sasl_mechanism"] = self.kafka_sasl_mechanism
            out["sasl_plain_username"] = self.kafka_sasl_username
            out["sasl_plain_password"] = self.kafka_sasl_password
        return out

    def faust_credentials(self) -> Any:
        """The same security as Faust ``broker_credentials`` (None for plaintext)."""
        import faust

        context = self.ssl_context()
        if self.kafka_security_protocol.startswith("SASL_"):
            credentials = faust.SASLCredentials(
                username=self.kafka_sasl_username,
                password=self.kafka_sasl_password,
                mechanism=self.kafka_sasl_mechanism,
                ssl_context=context,
            )
            return credentials
        if context is not None:
            return faust.SSLCredentials(context)
        return None

    @property
    def input_topics(self) -> tuple[str, str, str]:
        return (self.topic_product_events, self.topic_email_events, self.topic_crm_events)


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning a validation error into a one-line-per-field SystemExit."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = ["invalid configuration:"]
        for err in exc.errors():
            if not err["loc"]:  # a combination of fields: the message names them and the fix
                lines += [
                    f"  {part}" for part in err["msg"].removeprefix("Value error, ").split("; ")
                ]
                continue
            field = ".".join(str(p) for p in err["loc"])
            env = f"NURTURE_{field.upper()}"
            lines.append(f"  {field} (env {env}): {err['msg']} (got {err.get('input')!r})")
        raise SystemExit("\n".join(lines)) from None
