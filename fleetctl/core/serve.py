"""A profile's ``[serve]`` table as a container, described in plain data; ``transport/docker.py`` translates the
description into docker-py's ``containers.run`` arguments.

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
WORKER_KEY_ENV = "VLLM_API_KEY"  # vLLM's own variable for --api-key: the key never shows on its command line


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
    served_model_name: str | None = None  # [serve] served_model_name; else --served-model-name in args

    @property
    def served_name(self) -> str:
        """The name clients ask for and /v1/models lists: the first served model name, else the model."""
        names = served_names(self.args)
        return self.served_model_name or (names[0] if names else self.model)


SERVED_FLAG = "--served-model-name"


def served_names(args: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The names vLLM's ``--served-model-name`` gives in ``args`` (``--served-model-name a b`` or ``=a``)."""
    names: list[str] = []
    taking = False
    for arg in args:
        if arg.startswith(SERVED_FLAG + "="):
            names.append(arg.split("=", 1)[1])
            taking = False
        elif arg == SERVED_FLAG:
            taking = True
        elif taking and not arg.startswith("-"):
            names.append(arg)
        else:
            taking = False
    return tuple(n for n in names if n)


def served_args(serve: ServeSettings) -> tuple[str, ...]:
    """``[serve] args``, with ``--served-model-name`` added when only ``served_model_name`` names it."""
    if serve.served_model_name and not served_names(serve.args):
        return (*serve.args, SERVED_FLAG, serve.served_model_name)
    return serve.args


class EnvMissing(ValueError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(f"environment variable(s) {', '.join(names)} not set (named as env:NAME in [serve] env)")
        self.names = names


@dataclass(frozen=True)
class Mount:
    """A host path bound into the container (``[serve] volumes``: ``host = "target"`` or ``"target:ro"``)."""

    source: str
    target: str
    read_only: bool = False


def parse_mount(source: str, written: str) -> Mount:
    """``target``, ``target:rw`` or ``target:ro`` as written in the profile."""
    for suffix, read_only in ((":ro", True), (":rw", False)):
        if written.endswith(suffix):
            return Mount(source, written.removesuffix(suffix), read_only)
    return Mount(source, written)


@dataclass(frozen=True)
class ContainerSpec:
    """The vLLM container fleetctl runs: what it is, never how one container engine spells it."""

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
    host_network: bool = True  # vLLM listens on the host's own address, where the router reaches it
    init: bool = True  # an init as PID 1 forwards the stop signal to vLLM and reaps its engine processes
    stop_signal: str = "SIGTERM"  # vLLM finishes in-flight requests for --shutdown-timeout, then exits

    @property
    def mounts(self) -> tuple[Mount, ...]:
        return tuple(parse_mount(source, written) for source, written in self.volumes.items())

    @property
    def gpu_count(self) -> int | None:
        """How many GPUs the container gets: None for every GPU of the host, 0 for none."""
        return None if self.gpus == "all" else int(self.gpus)

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
    profile: str,
    image: str,
    serve: ServeSettings,
    revision: str,
    environ: Mapping[str, str],
    worker_key: str | None = None,
) -> ContainerSpec:
    """The container for ``serve``; with ``worker_key``, vLLM answers /v1/* only to requests bearing it."""
    environment, secret = resolve_env(serve.env, environ)
    if worker_key is not None:
        environment, secret = {**environment, WORKER_KEY_ENV: worker_key}, secret | {WORKER_KEY_ENV}
    command = (
        serve.model,
        "--port",
        str(serve.port),
        "--shutdown-timeout",
        str(serve.shutdown_timeout_s),
        *served_args(serve),
    )
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
