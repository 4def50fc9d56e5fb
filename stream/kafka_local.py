"""A real, single-node Apache Kafka broker (KRaft combined mode) without Docker.

The broker's jars come from Maven Central through ``deploy/kafka/pom.xml`` (``mvn
dependency:copy-dependencies``, run once and cached under ``.cache/kafka/<version>/libs`` or
``$NURTURE_KAFKA_CACHE/<version>/libs``). :class:`LocalKafka` writes a ``server.properties`` into a
temporary data folder, formats the storage, starts ``kafka.Kafka`` on free loopback ports and
waits until a real metadata request answers with a broker and an active controller.

Topic auto-creation is off by default (as in production): create topics with
:func:`stream.topics_admin.ensure_topics` (the ``nurture kafka`` command and the test fixture do).
Faust creates its own internal topics (changelogs, repartition topics) through the admin API.

Usage::

    with LocalKafka() as kafka:
        print(kafka.bootstrap)  # "127.0.0.1:PORT"
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

# Keep in step with deploy/kafka/pom.xml and the apache/kafka image tag in docker-compose.yml.
KAFKA_VERSION = "4.4.0"
REPO_ROOT = Path(__file__).resolve().parents[1]
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
STORAGE_TOOL = "kafka.tools.StorageTool"
BROKER_MAIN = "kafka.Kafka"

T = TypeVar("T")


class KafkaStartError(RuntimeError):
    """The broker could not be set up or did not become ready."""


def cache_root() -> Path:
    """Where broker jars are cached: ``$NURTURE_KAFKA_CACHE`` or ``<repo>/.cache/kafka``."""
    env = os.environ.get("NURTURE_KAFKA_CACHE")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".cache" / "kafka"


def data_root() -> Path | None:
    """Where a broker without a given ``data_dir`` makes its data dir: ``$NURTURE_KAFKA_DATA_ROOT``
    (e.g. ``/dev/shm``, to keep a benchmark's broker off a disk the worker shares), else the
    system temp dir (``None``)."""
    env = os.environ.get("NURTURE_KAFKA_DATA_ROOT", "").strip()
    if not env:
        return None
    root = Path(env).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def ensure_jars(version: str = KAFKA_VERSION, *, pom: Path = POM, quiet: bool = True) -> Path:
    """Return the folder with the broker's jars, resolving them with Maven on first use.

    Safe to call from several processes at once: a file lock serialises the download, and the
    folder is only published (renamed into place) once Maven has finished.
    """
    root = cache_root() / version
    libs = root / "libs"
    done = root / ".complete"
    if done.exists() and libs.is_dir():
        return libs
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists() and libs.is_dir():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaStartError(
                "Maven (`mvn`) is needed once to fetch the Kafka broker jars; "
                "install it (apt-get install maven) or set KAFKA_BOOTSTRAP_SERVERS"
            )
        if not pom.is_file():
            raise KafkaStartError(f"{pom} not found (run from a checkout of nurture-stream)")
        staging = root / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(libs, ignore_errors=True)
        cmd = [
            mvn,
            *(["-q"] if quiet else []),
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-Dkafka.version={version}",
            f"-DoutputDirectory={staging}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not any(staging.glob(f"kafka_2.13-{version}.jar")):
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise KafkaStartError(
                f"resolving Kafka {version} jars failed:\n{' '.join(cmd)}\n{tail}"
            )
        staging.rename(libs)
        done.write_text(version + "\n")
    return libs


def free_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free loopback TCP ports."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def random_cluster_id() -> str:
    """A Kafka ``Uuid`` string: URL-safe base64 of 16 random bytes, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="kafka-local-sync")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


async def probe(bootstrap: str, timeout: float = 5.0) -> dict[str, Any]:
    """One real metadata request; returns ``describe_cluster()`` (brokers, controller_id)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        return await asyncio.wait_for(admin.describe_cluster(), timeout)
    finally:
        await admin.close()


def _parent_death_signal() -> Callable[[], None] | None:
    """A child-side hook: SIGKILL the broker if its parent dies without stop() (Linux only).

    libc is loaded here, in the parent, so the hook run between fork and exec only makes one
    foreign call (no imports, no allocation-heavy work).
    """
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    kill = int(signal.SIGKILL)

    def hook() -> None:
        prctl(1, kill)  # PR_SET_PDEATHSIG

    return hook


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Silence a logger's connection-refused noise while polling a starting broker."""
    log = logging.getLogger(name)
    old = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(old)


def _log4j2_properties(level: str) -> str:
    return "\n".join(
        [
            "status = warn",
            "appender.out.type = Console",
            "appender.out.name = STDOUT",
            "appender.out.layout.type = PatternLayout",
            "appender.out.layout.pattern = [%d] %p %m (%c)%n",
            f"rootLogger.level = {level}",
            "rootLogger.appenderRef.out.ref = STDOUT",
            "logger.state.name = state.change.logger",
            "logger.state.level = WARN",
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
            "",
        ]
    )


@dataclass(frozen=True)
class SecureListener:
    """A second, SASL_SSL listener (the PLAINTEXT one stays for the controller and tools).

    ``keystore`` is a PEM file with the broker's unencrypted PKCS#8 key and its certificate
    chain; ``users`` are name -> password, accepted with PLAIN and with each SCRAM mechanism
    (SCRAM credentials are written into the storage at format time).
    """

    keystore: Path
    users: dict[str, str]
    mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class LocalKafka:
    """A throw-away single-node KRaft broker on loopback ports; a context manager."""

    def __init__(
        self,
        *,
        version: str | None = None,
        data_dir: Path | None = None,
        port: int | None = None,
        partitions: int = 4,
        auto_create_topics: bool = False,
        heap: str = "512m",
        log_level: str = "INFO",
        ready_timeout: float = 90.0,
        extra_properties: dict[str, str] | None = None,
        secure: SecureListener | None = None,
    ) -> None:
        self.version = version or os.environ.get("NURTURE_KAFKA_VERSION") or KAFKA_VERSION
        self._given_dir = data_dir
        self._port = port
        self.partitions = partitions
        self.auto_create_topics = auto_create_topics
        self.heap = heap
        self.log_level = log_level
        self.ready_timeout = ready_timeout
        self.extra_properties = dict(extra_properties or {})
        self.secure = secure
        self.secure_port = 0
        self._launch: list[str] = []
        self.data_dir: Path | None = None
        self.broker_port = 0
        self.controller_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self.format_seconds = 0.0  # storage format (a separate JVM), measured by start()
        self.start_seconds = 0.0  # from the broker JVM's launch to ready, measured by start()

    # --- public API ---------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        if not self.broker_port:
            raise RuntimeError("LocalKafka is not started")
        return f"127.0.0.1:{self.broker_port}"

    @property
    def secure_bootstrap(self) -> str:
        """host:port of the SASL_SSL listener (``secure=`` given)."""
        if not self.secure_port:
            raise RuntimeError("LocalKafka has no secure listener")
        return f"127.0.0.1:{self.secure_port}"

    @property
    def log_path(self) -> Path:
        if self.data_dir is None:
            raise RuntimeError("LocalKafka is not started")
        return self.data_dir / "broker.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> LocalKafka:
        if self._proc is not None:
            raise RuntimeError("LocalKafka already started")
        libs = ensure_jars(self.version)
        self.data_dir = self._given_dir or Path(
            tempfile.mkdtemp(prefix="nurture-kafka-", dir=data_root())
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._port:
            self.broker_port, self.controller_port = self._port, free_ports(1)[0]
        else:
            self.broker_port, self.controller_port = free_ports(2)
        if self.secure is not None:
            self.secure_port = free_ports(1)[0]
        props = self.data_dir / "server.properties"
        props.write_text(self.server_properties())
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(_log4j2_properties(self.log_level))
        java = self._java_cmd(libs, log4j, broker=True)
        atexit.register(self.stop)
        try:
            formatting = time.monotonic()
            self._format(self._java_cmd(libs, log4j, broker=False), props)
            self.format_seconds = time.monotonic() - formatting
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
            started = time.monotonic()
            # PDEATHSIG fires when the *thread* that forked exits, so only from the main thread
            in_main = threading.current_thread() is threading.main_thread()
            self._launch = [*java, BROKER_MAIN, str(props)]
            self._proc = subprocess.Popen(
                self._launch,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us, and we stop the broker cleanly
                preexec_fn=_parent_death_signal() if in_main else None,
            )
            self._wait_ready()
            self.start_seconds = time.monotonic() - started
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, timeout: float = 20.0) -> None:
        """Stop the broker (SIGTERM, controlled shutdown) and start it again on the same data
        directory and ports; returns once it answers metadata requests again."""
        proc = self._proc
        if proc is None or not self._launch:
            raise RuntimeError("LocalKafka is not started")
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        self._proc = subprocess.Popen(
            self._launch,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (controlled shutdown), SIGKILL after ``timeout``, then delete the data dir."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.data_dir is not None and self._given_dir is None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir = None
        self.broker_port = self.controller_port = self.secure_port = 0

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except (OSError, RuntimeError):
            return "(no broker log)"

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- internals ----------------------------------------------------------------------
    def server_properties(self) -> str:
        assert self.data_dir is not None
        b, c = self.broker_port, self.controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{c}",
            "listeners": f"PLAINTEXT://127.0.0.1:{b},CONTROLLER://127.0.0.1:{c}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{b}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": str(self.partitions),
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "8",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.check.interval.ms": "300000",
        }
        if self.secure is not None:
            props.update(self._secure_properties(self.secure))
        props.update(self.extra_properties)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _secure_properties(self, secure: SecureListener) -> dict[str, str]:
        b, s, c = self.broker_port, self.secure_port, self.controller_port
        users = " ".join(f'user_{name}="{pw}"' for name, pw in secure.users.items())
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        props = {
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{b},SASL_SSL://127.0.0.1:{s},CONTROLLER://127.0.0.1:{c}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{b},SASL_SSL://127.0.0.1:{s}",
            "listener.security.protocol.map": (
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL"
            ),
            "sasl.enabled.mechanisms": ",".join(secure.mechanisms),
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(secure.keystore),
            "listener.name.sasl_ssl.plain.sasl.jaas.config": f"{plain} required {users};",
        }
        for mechanism in secure.mechanisms:
            if mechanism.startswith("SCRAM"):
                key = f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config"
                props[key] = f"{scram} required;"
        return props

    def _java_cmd(self, libs: Path, log4j: Path, *, broker: bool) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise KafkaStartError("`java` (17+) is needed to run the local Kafka broker")
        if broker:
            opts = [
                "-Xms128m",
                f"-Xmx{self.heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError",
            ]
        else:  # the short-lived storage tool: start fast (saves ~0.2-0.3 s here)
            opts = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        return [
            java,
            *opts,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{libs}/*",
        ]

    def _format(self, java: list[str], props: Path) -> None:
        cmd = [*java, STORAGE_TOOL, "format", "-t", random_cluster_id(), "-c", str(props)]
        if self.secure is not None:
            for mechanism in self.secure.mechanisms:
                if mechanism.startswith("SCRAM"):
                    for name, pw in self.secure.users.items():
                        cmd += ["--add-scram", f"{mechanism}=[name={name},password={pw}]"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise KafkaStartError(f"kafka storage format failed:\n{proc.stdout}{proc.stderr}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise KafkaStartError(
                    f"Kafka broker exited with code {self._proc.returncode} while starting; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                with _quiet_logger("aiokafka"):
                    info = run_sync(probe(self.bootstrap, timeout=3.0))
            except Exception as exc:  # not listening yet, or no controller yet
                last_error = exc
            else:
                if info.get("brokers") and info.get("controller_id", -1) != -1:
                    return
                last_error = RuntimeError(f"metadata not ready: {info}")
            time.sleep(0.2)  # poll interval between real probes, not a synchronisation sleep
        raise KafkaStartError(
            f"Kafka broker not ready after {self.ready_timeout:.0f}s ({last_error!r}); "
            f"log tail:\n{self.log_tail()}"
        )
