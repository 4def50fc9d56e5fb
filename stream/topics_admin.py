"""Create and list the contract's topics (``topics.catalog``) on a Kafka cluster, idempotently.

``ensure_topics(bootstrap, specs)`` creates what is missing with the catalog's partition counts
and configs, accepts topics that already exist (reporting them, and any partition-count drift),
and returns only once every partition of every topic has a leader, so a producer can write at
once without ``NotLeaderForPartition`` retries. It works from plain code and from inside a running
event loop (see :func:`stream.kafka_local.run_sync`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stream.kafka_local import run_sync
from topics.catalog import TopicSpec, catalog

if TYPE_CHECKING:
    from aiokafka.admin import AIOKafkaAdminClient

    from stream.settings import Settings

TOPIC_ALREADY_EXISTS = 36


class TopicAdminError(RuntimeError):
    """The cluster refused to create a topic, or topics did not become ready in time."""


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    partitions: int
    leaders_ready: bool


@dataclass(slots=True)
class EnsureReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    # existing topics whose partition count differs from the spec: name -> (actual, wanted)
    partition_mismatch: dict[str, tuple[int, int]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"created  {name}" for name in self.created]
        out += [f"exists   {name}" for name in self.existing]
        out += [
            f"WARNING  {name} has {actual} partitions, the catalog wants {wanted} "
            "(input topics must be co-partitioned)"
            for name, (actual, wanted) in self.partition_mismatch.items()
        ]
        return out


def catalog_from_settings(settings: Settings) -> tuple[TopicSpec, ...]:
    """The catalog with the topic names and partition count of a ``Settings`` object."""
    return catalog(
        product_events=settings.topic_product_events,
        email_events=settings.topic_email_events,
        crm_events=settings.topic_crm_events,
        actions=settings.topic_actions,
        transitions=settings.topic_transitions,
        dead_letter=settings.topic_dead_letter,
        partitions=settings.topic_partitions,
    )


Auth = Mapping[str, Any] | None  # aiokafka security kwargs: Settings.kafka_auth()


def _admin(bootstrap: str, timeout: float, auth: Auth = None) -> AIOKafkaAdminClient:
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="nurture-topics-admin",
        request_timeout_ms=int(timeout * 1000),
        **(auth or {}),
    )


async def check_access_async(settings: Settings, timeout: float = 15.0) -> None:
    """One authenticated connection to the first bootstrap server, or a SystemExit that names
    the cause (refused connection, TLS failure, wrong SASL credentials) and the settings to fix.
    aiokafka's own clients report only "Unable to bootstrap" and retry; this fails fast."""
    from aiokafka.conn import create_conn

    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        conn = await asyncio.wait_for(
            create_conn(
                host, int(port), request_timeout_ms=int(timeout * 1000), **settings.kafka_auth()
            ),
            timeout,
        )
    except Exception as exc:
        raise SystemExit(
            f"cannot connect to Kafka at {host}:{port} with "
            f"security_protocol={settings.kafka_security_protocol}"
            + (
                f" sasl_mechanism={settings.kafka_sasl_mechanism}"
                if settings.kafka_sasl_mechanism
                else ""
            )
            + f": {type(exc).__name__}: {exc}\n"
            "check NURTURE_KAFKA_BOOTSTRAP_SERVERS, NURTURE_KAFKA_SECURITY_PROTOCOL, "
            "NURTURE_KAFKA_SASL_MECHANISM, NURTURE_KAFKA_SASL_USERNAME, "
            "NURTURE_KAFKA_SASL_PASSWORD and NURTURE_KAFKA_SSL_CAFILE"
        ) from None
    conn.close()


def check_access(settings: Settings, timeout: float = 15.0) -> None:
    run_sync(check_access_async(settings, timeout))


def _describe(raw: Iterable[dict[str, Any]]) -> dict[str, TopicInfo]:
    out: dict[str, TopicInfo] = {}
    for topic in raw:
        if topic.get("error_code", 0) != 0:
            continue  # unknown topic, or leader not yet known for the whole topic
        parts = topic.get("partitions", [])
        ready = bool(parts) and all(
            p.get("error_code", 0) == 0 and p.get("leader", -1) >= 0 for p in parts
        )
        out[topic["topic"]] = TopicInfo(topic["topic"], len(parts), ready)
    return out


async def describe_topics_async(
    bootstrap: str,
    names: Sequence[str] | None = None,
    *,
    timeout: float = 30.0,
    auth: Auth = None,
) -> dict[str, TopicInfo]:
    """Topics of the cluster (or just ``names``), internal ones included when listing all."""
    admin = _admin(bootstrap, timeout, auth)
    await asyncio.wait_for(admin.start(), timeout)
    try:
        raw = await admin.describe_topics(list(names) if names is not None else None)
        return _describe(raw)
    finally:
        await admin.close()


async def ensure_topics_async(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
    auth: Auth = None,
) -> EnsureReport:
    from aiokafka.admin import NewTopic

    wanted = {spec.name: spec for spec in specs}
    report = EnsureReport()
    if not wanted:
        return report
    admin = _admin(bootstrap, timeout, auth)
    await asyncio.wait_for(admin.start(), timeout)
    try:
        present = set(await admin.list_topics())
        missing = [spec for name, spec in wanted.items() if name not in present]
        report.existing = [name for name in wanted if name in present]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        spec.partitions,
                        replication_factor,
                        topic_configs=dict(spec.config),
                    )
                    for spec in missing
                ],
                timeout_ms=int(timeout * 1000),
            )
            errors = []
            for name, code, *rest in response.topic_errors:
                if code == 0:
                    report.created.append(name)
                elif code == TOPIC_ALREADY_EXISTS:  # created concurrently by someone else
                    report.existing.append(name)
                else:
                    message = rest[0] if rest else ""
                    errors.append(f"{name}: error {code} {message or ''}".strip())
            if errors:
                raise TopicAdminError("creating topics failed: " + "; ".join(errors))
        # wait until every partition has a leader (metadata propagates after CreateTopics)
        deadline = time.monotonic() + timeout
        while True:
            info = _describe(await admin.describe_topics(list(wanted)))
            if all(name in info and info[name].leaders_ready for name in wanted):
                break
            if time.monotonic() > deadline:
                not_ready = sorted(n for n in wanted if n not in info or not info[n].leaders_ready)
                raise TopicAdminError(
                    f"topics without partition leaders after {timeout}s: {not_ready}"
                )
            await asyncio.sleep(0.1)  # poll interval of a condition with a deadline
        for name in report.existing:
            actual, spec_partitions = info[name].partitions, wanted[name].partitions
            if actual != spec_partitions:
                report.partition_mismatch[name] = (actual, spec_partitions)
        return report
    finally:
        await admin.close()


def ensure_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
    auth: Auth = None,
) -> EnsureReport:
    """Create the missing topics of ``specs``; existing ones are fine. Returns what happened."""
    return run_sync(
        ensure_topics_async(
            bootstrap,
            list(specs),
            replication_factor=replication_factor,
            timeout=timeout,
            auth=auth,
        )
    )


def describe_topics(
    bootstrap: str,
    names: Sequence[str] | None = None,
    *,
    timeout: float = 30.0,
    auth: Auth = None,
) -> dict[str, TopicInfo]:
    return run_sync(describe_topics_async(bootstrap, names, timeout=timeout, auth=auth))


async def delete_topics_async(
    bootstrap: str, names: Sequence[str], *, timeout: float = 30.0
) -> None:
    """Delete topics (test clean-up); unknown topics are ignored."""
    admin = _admin(bootstrap, timeout)
    await asyncio.wait_for(admin.start(), timeout)
    try:
        present = set(await admin.list_topics())
        doomed = [n for n in names if n in present]
        if doomed:
            await admin.delete_topics(doomed, timeout_ms=int(timeout * 1000))
    finally:
        await admin.close()


def delete_topics(bootstrap: str, names: Sequence[str], *, timeout: float = 30.0) -> None:
    run_sync(delete_topics_async(bootstrap, names, timeout=timeout))
