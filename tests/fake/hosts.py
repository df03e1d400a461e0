"""In-memory GPU hosts: containers started from a ``ContainerSpec`` (running or exited), vLLM's health and
/metrics counters per container (back to zero whenever the container's process starts again), and an SSH
connection that can drop in the middle of a step (the ``HostError`` kind ``disconnected`` the real pool raises).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fleetctl.core.fleet import Host
from fleetctl.core.serve import CONTAINER_NAME, LABEL_PROFILE, LABEL_REVISION, PREVIOUS_SUFFIX, ContainerSpec
from fleetctl.errors import HostError
from fleetctl.services.runtime import ContainerInfo

T = TypeVar("T")
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Behaviour:
    """How vLLM in an image behaves: does it become healthy, what fraction of requests fail, how slow."""

    healthy: bool = True
    error_rate: float = 0.0
    ttft_s: float = 0.05
    startup_s: float = 2.0
    crash_after_s: float | None = None  # the process exits this long after it started (None: never)


@dataclass
class FakeContainer:
    name: str
    image: str
    spec: ContainerSpec | None  # what it was started from (None: deployed before the test began)
    revision: str
    profile: str
    status: str = "running"
    starts: int = 1  # how often its process started: counters are from the latest start only
    finished: dict[str, float] = field(default_factory=dict)  # finished_reason → count
    answers: dict[str, float] = field(default_factory=dict)  # 2xx | 5xx → count
    ttft: list[float] = field(default_factory=lambda: [0.0] * len(BUCKETS))  # cumulative per bucket
    ttft_count: float = 0.0
    ttft_sum: float = 0.0
    in_flight: list[tuple[float, float]] = field(default_factory=list)  # scripted answers, first first
    up_s: float = 0.0  # seconds since its process started
    error_carry: float = 0.0  # single requests fail at the behaviour's rate, deterministically

    @property
    def running(self) -> bool:
        return self.status == "running"

    def start(self) -> None:
        """The process starts (again): vLLM's counters begin at zero."""
        self.status, self.starts, self.up_s = "running", self.starts + 1, 0.0
        self.finished, self.answers, self.ttft_count, self.ttft_sum = {}, {}, 0.0, 0.0
        self.ttft = [0.0] * len(BUCKETS)

    def serve(self, requests: int, behaviour: Behaviour) -> None:
        errors = round(requests * behaviour.error_rate)
        ok = requests - errors
        self.finished["stop"] = self.finished.get("stop", 0.0) + ok
        self.finished["error"] = self.finished.get("error", 0.0) + errors
        self.answers["2xx"] = self.answers.get("2xx", 0.0) + ok
        self.answers["5xx"] = self.answers.get("5xx", 0.0) + errors
        for i, le in enumerate(BUCKETS):
            if behaviour.ttft_s <= le:
                self.ttft[i] += requests
        self.ttft_count += requests
        self.ttft_sum += requests * behaviour.ttft_s

    def serve_one(self, behaviour: Behaviour) -> bool:
        """One request (a synthetic one, straight to the host); True when it succeeded."""
        self.error_carry += behaviour.error_rate
        failed = self.error_carry >= 1.0 - 1e-9
        if failed:
            self.error_carry -= 1.0
        ok, bad = (0, 1) if failed else (1, 0)
        self.finished["stop"] = self.finished.get("stop", 0.0) + ok
        self.finished["error"] = self.finished.get("error", 0.0) + bad
        self.answers["2xx"] = self.answers.get("2xx", 0.0) + ok
        self.answers["5xx"] = self.answers.get("5xx", 0.0) + bad
        if not failed:
            for i, le in enumerate(BUCKETS):
                if behaviour.ttft_s <= le:
                    self.ttft[i] += 1
            self.ttft_count += 1
            self.ttft_sum += behaviour.ttft_s
        return not failed

    def metrics_text(self, model: str) -> str:
        m = f'model_name="{model}"'
        running, waiting = self.in_flight[0] if self.in_flight else (0.0, 0.0)
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{m}}} {running}",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{m}}} {waiting}",
            "# TYPE vllm:request_success_total counter",
            *(f'vllm:request_success_total{{finished_reason="{r}",{m}}} {n}' for r, n in self.finished.items()),
            "# TYPE vllm:time_to_first_token_seconds histogram",
            *(f'vllm:time_to_first_token_seconds_bucket{{le="{le}",{m}}} {n}' for le, n in zip(BUCKETS, self.ttft)),
            f'vllm:time_to_first_token_seconds_bucket{{le="+Inf",{m}}} {self.ttft_count}',
            f"vllm:time_to_first_token_seconds_count{{{m}}} {self.ttft_count}",
            f"vllm:time_to_first_token_seconds_sum{{{m}}} {self.ttft_sum}",
            "# TYPE http_requests_total counter",
            *(
                f'http_requests_total{{handler="/v1/chat/completions",method="POST",status="{s}"}} {n}'
                for s, n in self.answers.items()
            ),
        ]
        return "\n".join(lines) + "\n"

    def info(self) -> ContainerInfo:
        return ContainerInfo(self.name, self.image, self.profile, self.revision, self.status)


class FakeHost:
    """One host: its containers by name, images it has, and the SSH connection's generation (a drop makes every
    handle opened before it dead, as a closed transport is)."""

    def __init__(self, host: Host, fleet: Any) -> None:
        self.host, self.fleet = host, fleet
        self.containers: dict[str, FakeContainer] = {}
        self.images: set[str] = set()
        self.refuse_pull: set[str] = set()
        self.generation = 0
        self.down = False  # powered off or rebooting (tests/fake/maintain.py): it answers nothing
        self.drops: dict[str, list[bool]] = {}  # operation → queued drops (True: after the operation took effect)
        self.log: list[str] = []  # operations as carried out, for tests

    @property
    def name(self) -> str:
        return self.host.name

    def current(self) -> FakeContainer | None:
        return self.containers.get(CONTAINER_NAME)

    def drop(self, operation: str, times: int = 1, *, after: bool = False) -> None:
        """The next ``times`` calls of ``operation`` lose the connection (before it acts, or ``after``)."""
        self.drops.setdefault(operation, []).extend([after] * times)

    def call(self, handle: FakeHostOps, operation: str, fn: Callable[[], T]) -> T:
        if self.down:
            raise HostError(self.name, "unreachable", "connect: no route to host")
        if handle.generation != self.generation:
            raise HostError(self.name, "disconnected", "SSH connection closed")
        queued = self.drops.get(operation) or []
        if not queued:
            return fn()
        after = queued.pop(0)
        if after:
            fn()
        self.generation += 1
        raise HostError(self.name, "disconnected", f"SSH connection dropped during {operation}")

    # -- the runtime, as fleetctl.services.runtime.HostRuntime behaves ----------------------------------------

    def ensure_image(self, image: str) -> bool:
        if image in self.refuse_pull:
            raise HostError(self.name, "pull_failed", f"pulling {image}: manifest unknown")
        pulled = image not in self.images
        self.images.add(image)
        self.log.append(f"pull {image}")
        return pulled

    def replace(self, spec: ContainerSpec) -> ContainerInfo:
        existing = self.containers.get(spec.name)
        if existing is not None and existing.revision == spec.labels[LABEL_REVISION]:
            return self._ensure_running(existing).info()
        if existing is not None:
            existing.status = "exited"
            self.containers.pop(spec.name + PREVIOUS_SUFFIX, None)
            existing.name = spec.name + PREVIOUS_SUFFIX
            self.containers[existing.name] = self.containers.pop(spec.name)
        created = FakeContainer(
            spec.name, spec.image, spec, spec.labels[LABEL_REVISION], spec.labels.get(LABEL_PROFILE, "")
        )
        self.containers[spec.name] = created
        self.log.append(f"replace {spec.image}")
        return created.info()

    def restore(self, stop_timeout_s: int = 40) -> ContainerInfo | None:
        kept = self.containers.get(CONTAINER_NAME + PREVIOUS_SUFFIX)
        if kept is None:
            current = self.current()
            return None if current is None else self._ensure_running(current).info()
        self.containers.pop(CONTAINER_NAME, None)
        kept.name = CONTAINER_NAME
        self.containers[CONTAINER_NAME] = self.containers.pop(CONTAINER_NAME + PREVIOUS_SUFFIX)
        self.log.append(f"restore {kept.image}")
        return self._ensure_running(kept).info()

    def restart(self) -> None:
        """The container's process dies and Docker starts it again (restart policy): counters back to zero."""
        current = self.current()
        if current is not None:
            current.start()

    def stop(self, timeout_s: int) -> ContainerInfo | None:
        current = self.current()
        if current is None:
            return None
        current.status = "exited"
        return current.info()

    def start(self) -> ContainerInfo | None:
        current = self.current()
        return None if current is None else self._ensure_running(current).info()

    def _ensure_running(self, container: FakeContainer) -> FakeContainer:
        if not container.running:
            container.start()
        return container

    # -- vLLM ------------------------------------------------------------------------------------------------

    def wait_healthy(self, model: str, port: int, timeout_s: float) -> float:
        current = self.current()
        if current is None or not current.running:
            raise HostError(self.name, "exited", "the container exited before vLLM became healthy")
        behaviour = self.fleet.behaviour(current.image, self.name)
        if not behaviour.healthy:
            self.fleet.clock.sleep(timeout_s)
            raise HostError(self.name, "unhealthy", f"not healthy after {timeout_s:g}s")
        self.fleet.clock.sleep(behaviour.startup_s)
        return behaviour.startup_s

    def in_flight(self, port: int) -> tuple[float, float]:
        self.fleet.timeline.append((self.fleet.clock.now, "in_flight", self.name))  # a drain waits here
        current = self.current()
        if current is None or not current.running:
            raise HostError(self.name, "vllm_unreachable", "connection refused")
        return current.in_flight.pop(0) if current.in_flight else (0.0, 0.0)

    def metrics_text(self, model: str) -> str:
        current = self.current()
        if current is None or not current.running:
            raise HostError(self.name, "vllm_unreachable", "connection refused")
        return current.metrics_text(model)


class FakeRuntime:
    def __init__(self, handle: FakeHostOps) -> None:
        self.handle = handle

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        return self.handle.fake.call(self.handle, operation, fn)

    def ensure_image(self, image: str) -> bool:
        return self._call("ensure_image", lambda: self.handle.fake.ensure_image(image))

    def replace(self, spec: ContainerSpec) -> ContainerInfo:
        return self._call("replace", lambda: self.handle.fake.replace(spec))

    def restore(self, stop_timeout_s: int = 40) -> ContainerInfo | None:
        return self._call("restore", lambda: self.handle.fake.restore(stop_timeout_s))

    def current(self) -> ContainerInfo | None:
        def info() -> ContainerInfo | None:
            current = self.handle.fake.current()
            return None if current is None else current.info()

        return self._call("current", info)

    def restart(self) -> None:
        """The container's process dies and Docker starts it again (restart policy): counters back to zero."""
        current = self.current()
        if current is not None:
            current.start()

    def stop(self, timeout_s: int) -> ContainerInfo | None:
        return self._call("stop", lambda: self.handle.fake.stop(timeout_s))

    def start(self) -> ContainerInfo | None:
        return self._call("start", lambda: self.handle.fake.start())


class FakeHostOps:
    """A handle on a fake host over one SSH connection (``fleetctl.services.rollout_ports.HostPort``)."""

    def __init__(self, fake: FakeHost) -> None:
        self.fake, self.host, self.generation = fake, fake.host, fake.generation
        self.clock = fake.fleet.clock
        self.runtime = FakeRuntime(self)

    def wait_healthy(self, model: str, port: int, timeout_s: float) -> float:
        return self.fake.call(self, "wait_healthy", lambda: self.fake.wait_healthy(model, port, timeout_s))

    def in_flight(self, port: int) -> tuple[float, float]:
        return self.fake.call(self, "in_flight", lambda: self.fake.in_flight(port))
