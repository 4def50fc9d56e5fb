"""One validated settings object for the runtime, read from ``NURTURE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NURTURE_", extra="ignore")

    app_id: str = Field("nurture-stream", description="Faust app id / consumer group")
    kafka_bootstrap_servers: str = Field(
        "localhost:9092", description="comma-separated host:port list of Kafka brokers"
    )
    data_dir: Path = Field(Path("./data"), description="folder for RocksDB state")
    rules_file: Path | None = Field(None, description="program rules YAML (default: built in)")

    topic_product_events: str = "nurture.product-events"
    topic_email_events: str = "nurture.email-events"
    topic_crm_events: str = "nurture.crm-events"
    topic_actions: str = "nurture.actions"
    topic_transitions: str = "nurture.transitions"
    topic_dead_letter: str = "nurture.dead-letter"
    topic_partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1)

    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    standby_replicas: int = Field(0, ge=0)
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    web_token: str | None = Field(None, description="bearer token for /leads (optional)")
    timer_tick_seconds: float = Field(1.0, gt=0, le=60)
    log_level: str = "info"

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
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"NURTURE_{field.upper()}"
            lines.append(f"  {field} (env {env}): {err['msg']} (got {err.get('input')!r})")
        raise SystemExit("\n".join(lines)) from None
