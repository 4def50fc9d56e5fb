"""Shared fixtures: one real Kafka broker per test session, and helpers for topics.

``kafka_bootstrap`` (session) returns a bootstrap string, from the first source that works:

1. ``KAFKA_BOOTSTRAP_SERVERS`` from the environment (an existing broker; checked with a real
   metadata request);
2. a Docker engine that answers a ping within 3 s: an ``apache/kafka`` container through
   testcontainers (KRaft, single node, same version as the local broker);
3. otherwise :class:`stream.kafka_local.LocalKafka`: Kafka's own jars from Maven Central, run
   with Java on loopback ports (the path used on machines without Docker).

If none works the requesting test fails with the reason; integration tests are never skipped.
The broker is only started when a test asks for it, so unit-only runs stay fast.

Every test under ``tests/integration`` and ``tests/reliability`` gets the ``integration`` marker.

Topics: the local broker has topic auto-creation off. Use ``catalog_topics`` (the default catalog
names, created once per session), ``kafka_settings`` (a ``Settings`` with unique topic names and
app id, topics created, for tests that run a worker) or ``topic_factory`` (ad-hoc unique topics).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from stream.settings import Settings
    from topics.catalog import TopicSpec

KAFKA_IMAGE = os.environ.get("NURTURE_TEST_KAFKA_IMAGE", "apache/kafka:4.4.0")
INTEGRATION_DIRS = ("integration", "reliability")
_TESTS_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            rel = Path(str(item.path)).resolve().relative_to(_TESTS_DIR)
        except ValueError:
            continue
        if rel.parts and rel.parts[0] in INTEGRATION_DIRS:
            item.add_marker(pytest.mark.integration)


# --- broker sources -------------------------------------------------------------------------


def _wait_for_broker(bootstrap: str, timeout: float) -> None:
    """Poll a real metadata request until the broker answers with a controller, or raise."""
    from stream.kafka_local import probe, run_sync

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            info = run_sync(probe(bootstrap, timeout=3.0))
        except Exception as exc:
            last = exc
        else:
            if info.get("brokers") and info.get("controller_id", -1) != -1:
                return
            last = info
        time.sleep(0.25)  # poll interval between real probes
    raise RuntimeError(f"no Kafka broker answered at {bootstrap} within {timeout:.0f}s: {last!r}")


def _docker_available() -> bool:
    """True if a Docker engine answers a ping within 3 s."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _start_container() -> tuple[str, Callable[[], None]]:
    """An ``apache/kafka`` KRaft container whose advertised listener is the mapped host port.

    The image's own start script runs only after the container is up and the mapped port is
    known (the same trick testcontainers' Confluent ``KafkaContainer`` uses).
    """
    import io
    import tarfile

    from testcontainers.core.container import DockerContainer

    script = "/tmp/nurture-start.sh"
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_exposed_ports(9092)
        .with_env("CLUSTER_ID", "bnVydHVyZS1zdHJlYW0tdA")
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env(
            "KAFKA_LISTENERS",
            "PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9093,CONTROLLER://0.0.0.0:9094",
        )
        .with_env(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
        )
        .with_env("KAFKA_INTER_BROKER_LISTENER_NAME", "BROKER")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9094")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_NUM_PARTITIONS", "4")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        .with_command(f'sh -c "while [ ! -f {script} ]; do sleep 0.1; done; sh {script}"')
    )
    container.start()
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(9092)
        body = (
            f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{host}:{port},BROKER://localhost:9093\n"
            "exec /etc/kafka/docker/run\n"
        ).encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(name=script)
            info.size = len(body)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(body))
        container.get_wrapped_container().put_archive("/", archive.getvalue())
        bootstrap = f"{host}:{port}"
        _wait_for_broker(bootstrap, timeout=120)
    except BaseException:
        container.stop()
        raise
    return bootstrap, container.stop


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of a real Kafka broker for this session (see the module docstring)."""
    from_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if from_env:
        try:
            _wait_for_broker(from_env, timeout=30)
        except RuntimeError as exc:
            pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS is set but unusable: {exc}", pytrace=False)
        yield from_env
        return

    failures: list[str] = []
    if _docker_available():
        try:
            bootstrap, stop = _start_container()
        except Exception as exc:
            failures.append(f"Docker container {KAFKA_IMAGE}: {exc!r}")
        else:
            try:
                yield bootstrap
            finally:
                stop()
            return
    else:
        failures.append("no Docker engine answered a ping")

    from stream.kafka_local import LocalKafka

    kafka = LocalKafka()
    try:
        kafka.start()
    except Exception as exc:
        failures.append(f"local broker (Maven jars + java): {exc}")
    if not kafka.running:
        pytest.fail(
            "no Kafka broker for the integration tests:\n- "
            + "\n- ".join(failures)
            + "\nSet KAFKA_BOOTSTRAP_SERVERS=host:port to use an existing broker.",
            pytrace=False,
        )
    try:
        yield kafka.bootstrap
    finally:
        kafka.stop()


# --- topic helpers --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def catalog_topics(kafka_bootstrap: str) -> tuple[TopicSpec, ...]:
    """The contract's topics under their default names, created (idempotently) on the broker."""
    from stream.topics_admin import ensure_topics
    from topics.catalog import catalog

    specs = catalog()
    ensure_topics(kafka_bootstrap, specs)
    return specs


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Callable[..., str]:
    """``make(prefix='t', partitions=4, config=None) -> name``: a fresh topic, leaders ready."""
    from stream.topics_admin import ensure_topics
    from topics.catalog import TopicSpec

    def make(prefix: str = "t", partitions: int = 4, config: dict[str, str] | None = None) -> str:
        name = unique_name(prefix)
        spec = TopicSpec(name, "key", "internal", "test", "test", partitions, dict(config or {}))
        ensure_topics(kafka_bootstrap, [spec])
        return name

    return make


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """``Settings`` for one test: the session broker, unique topic names and app id (so tests
    never see each other's events or consumer groups), a private data dir; topics created."""
    from stream.settings import Settings
    from stream.topics_admin import catalog_from_settings, ensure_topics

    run = uuid.uuid4().hex[:8]
    fields: dict[str, Any] = {
        "app_id": f"nurture-test-{run}",
        "kafka_bootstrap_servers": kafka_bootstrap,
        "data_dir": tmp_path / "data",
        "topic_product_events": f"nurture.product-events.{run}",
        "topic_email_events": f"nurture.email-events.{run}",
        "topic_crm_events": f"nurture.crm-events.{run}",
        "topic_actions": f"nurture.actions.{run}",
        "topic_transitions": f"nurture.transitions.{run}",
        "topic_dead_letter": f"nurture.dead-letter.{run}",
        # the lead tests compare exact outputs on the shared topics; accounts have their own
        # (tests/integration/test_accounts_stream.py turns them on)
        "accounts_enabled": False,
        # 4 partitions keep topic creation, recovery and rebalances short on the CI machine;
        # test_stream_replay_equivalence runs the default (12)
        "topic_partitions": 4,
    }
    settings = Settings(**fields)
    ensure_topics(kafka_bootstrap, catalog_from_settings(settings))
    return settings
