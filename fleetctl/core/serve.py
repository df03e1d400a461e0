"""A profile's ``[serve]`` table as a container, in plain data (docker-py's ``containers.run`` arguments).

Values written ``env:NAME`` come from fleetctl's own environment when the container is made; they are never
part of what is displayed, logged or journaled (``ContainerSpec.display``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CONTAINER_NAME = "fleetctl-vllm"
PREVIOUS_SUFFIX = "-prev"
LABEL_MANAGED = "fleetctl.managed"
LABEL_PROFILE = "fleetctl.profile"
LABEL_REVISION = "fleetctl.revision"
LABEL_IMAGE = "fleetctl.image"
REDACTED = "<from env>"


@dataclass(frozen=True)
class ServeSettings:
    model: str
    port: int = 8000
    args: tuple[str, ...] = ()
    gpus: str | int = "all"
    env: Mapping[str, str] = field(default_factory=dict)
    volumes: Mapping[str, str] = field(default_factory=dict)  # host path → container path[:ro]
    shm_size: str = "16g"
    ipc_host: bool = True
    restart: str = "unless-stopped"
    health_timeout_s: float = 900.0
    shutdown_timeout_s: int = 30


class EnvMissing(ValueError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(f"environment variable(s) {', '.join(names)} not set (named as env:NAME in [serve] env)")
        self.names = names


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: tuple[str, ...]
    environment: Mapping[str, str]
    labels: Mapping[str, str]
    gpus: str | int
    volumes: Mapping[str, str]
    shm_size: str
    ipc_host: bool
    restart: str
    stop_timeout_s: int
    secret_keys: frozenset[str] = frozenset()

    def display(self) -> dict[str, Any]:
        """What may be shown: environment values read from fleetctl's environment are redacted."""
        env = {k: (REDACTED if k in self.secret_keys else v) for k, v in self.environment.items()}
        return {
            "name": self.name,
            "image": self.image,
            "command": list(self.command),
            "environment": env,
            "labels": dict(self.labels),
            "gpus": self.gpus,
            "volumes": dict(self.volumes),
            "shm_size": self.shm_size,
            "ipc": "host" if self.ipc_host else None,
            "restart": self.restart,
        }


def resolve_env(env: Mapping[str, str], environ: Mapping[str, str]) -> tuple[dict[str, str], frozenset[str]]:
    """Values with ``env:NAME`` taken from ``environ``; returns them and the keys that came from there."""
    resolved, secret, missing = {}, set(), []
    for key, value in env.items():
        if value.startswith("env:"):
            source = value[4:]
            if source not in environ:
                missing.append(source)
                continue
            resolved[key] = environ[source]
            secret.add(key)
        else:
            resolved[key] = value
    if missing:
        raise EnvMissing(missing)
    return resolved, frozenset(secret)


def container_spec(
    profile: str, image: str, serve: ServeSettings, revision: str, environ: Mapping[str, str]
) -> ContainerSpec:
    environment, secret = resolve_env(serve.env, environ)
    command = (serve.model, "--port", str(serve.port), "--shutdown-timeout", str(serve.shutdown_timeout_s), *serve.args)
    labels = {LABEL_MANAGED: "true", LABEL_PROFILE: profile, LABEL_REVISION: revision, LABEL_IMAGE: image}
    return ContainerSpec(
        name=CONTAINER_NAME,
        image=image,
        command=command,
        environment=environment,
        labels=labels,
        gpus=serve.gpus,
        volumes=dict(serve.volumes),
        shm_size=serve.shm_size,
        ipc_host=serve.ipc_host,
        restart=serve.restart,
        stop_timeout_s=serve.shutdown_timeout_s + 10,
        secret_keys=secret,
    )


def run_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """docker-py ``containers.run`` keyword arguments (device requests as dicts: docker-py converts them)."""
    gpus = {
        "Driver": "",
        "Count": -1 if spec.gpus == "all" else int(spec.gpus),
        "DeviceIDs": [],
        "Capabilities": [["gpu"]],
        "Options": {},
    }
    volumes = {host: {"bind": _bind(target), "mode": _mode(target)} for host, target in spec.volumes.items()}
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command),
        "name": spec.name,
        "detach": True,
        "environment": dict(spec.environment),
        "labels": dict(spec.labels),
        "network_mode": "host",
        "restart_policy": {"Name": spec.restart},
        "volumes": volumes,
        "shm_size": spec.shm_size,
        "stop_signal": "SIGTERM",
        "init": True,  # docker's init as PID 1: forwards SIGTERM to vLLM and reaps its engine processes
    }
    if spec.gpus != 0:
        kwargs["device_requests"] = [gpus]
    if spec.ipc_host:
        kwargs["ipc_mode"] = "host"
    return kwargs


def _bind(target: str) -> str:
    return target.rsplit(":", 1)[0] if target.endswith((":ro", ":rw")) else target


def _mode(target: str) -> str:
    return "ro" if target.endswith(":ro") else "rw"
