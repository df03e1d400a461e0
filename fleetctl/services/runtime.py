"""vLLM containers on one host, through docker-py over fleetctl's SSH connection.

Every operation is idempotent, so a resumed rollout can repeat the step it was in:
``replace`` leaves the new container running with the old one stopped and kept as ``<name>-prev``;
``restore`` brings ``-prev`` back whatever half-state ``replace`` was left in.
Every operation fails as that host's HostError: Docker's refusals keep their own kinds (``container_failed``,
``pull_failed``...); a transport that broke underneath (docker-py, requests, urllib3, the SSH channel) is
``docker_unavailable``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from fleetctl.core.serve import (
    CONTAINER_NAME,
    LABEL_IMAGE,
    LABEL_PROFILE,
    LABEL_REVISION,
    PREVIOUS_SUFFIX,
    ContainerSpec,
)
from fleetctl.errors import HostError
from fleetctl.transport.docker import run_kwargs

if TYPE_CHECKING:
    import docker


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    image: str
    profile: str | None
    revision: str | None
    status: str  # created | running | exited | ...

    @property
    def running(self) -> bool:
        return self.status == "running"


P = ParamSpec("P")
R = TypeVar("R")


def _transport_errors() -> tuple[type[Exception], ...]:
    """What docker-py raises when the way to the daemon fails, not the daemon: imported on first use."""
    import docker.errors
    import paramiko
    import requests
    import urllib3.exceptions

    return (
        docker.errors.DockerException,
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        paramiko.SSHException,
        OSError,  # sockets, timeouts, a closed channel
        EOFError,
    )


def _host_errors(doing: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A HostRuntime method whose transport failures become the host's ``docker_unavailable`` HostError."""

    def wrap(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(*args, **kwargs)
            except HostError:
                raise
            except _transport_errors() as e:
                host = args[0].host if args and isinstance(args[0], HostRuntime) else "?"
                raise HostError(host, "docker_unavailable", f"{doing}: {_explain(e)}") from e

        return run

    return wrap


class HostRuntime:
    def __init__(self, host: str, client: docker.DockerClient) -> None:
        self.host, self.client = host, client

    @_host_errors("reading the container")
    def current(self, name: str = CONTAINER_NAME) -> ContainerInfo | None:
        container = self._get(name)
        return None if container is None else _info(container)

    def previous(self) -> ContainerInfo | None:
        return self.current(CONTAINER_NAME + PREVIOUS_SUFFIX)

    @_host_errors("pulling the image")
    def ensure_image(self, image: str) -> bool:
        """Pull ``image`` unless the host has it; True when it pulled. Errors inside the stream are errors."""
        import docker.errors
        from docker.utils import parse_repository_tag

        try:
            self.client.images.get(image)
            return False
        except docker.errors.ImageNotFound:
            pass
        repository, tag = parse_repository_tag(image)  # a tag or a digest (repo@sha256:...)
        try:
            for event in self.client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                if "error" in event:
                    raise HostError(self.host, "pull_failed", f"pulling {image}: {event['error']}")
        except docker.errors.APIError as e:
            raise HostError(self.host, "pull_failed", f"pulling {image}: {_explain(e)}") from e
        return True

    @_host_errors("replacing the container")
    def replace(self, spec: ContainerSpec) -> ContainerInfo:
        """Stop the running container, keep it as ``-prev``, start ``spec``. Repeatable."""
        existing = self._get(spec.name)
        if existing is not None and existing.labels.get(LABEL_REVISION) == spec.labels[LABEL_REVISION]:
            return self._ensure_running(existing)
        if existing is not None:
            self._stop(existing, spec.stop_timeout_s)
            self._remove(spec.name + PREVIOUS_SUFFIX)
            existing.rename(spec.name + PREVIOUS_SUFFIX)
        return self.create(spec)

    @_host_errors("starting the container")
    def create(self, spec: ContainerSpec) -> ContainerInfo:
        import docker.errors

        try:
            container = self.client.containers.run(**run_kwargs(spec))
        except docker.errors.APIError as e:
            self._remove(spec.name)  # a created-but-unstartable container must not linger
            raise HostError(self.host, _kind(e), f"starting {spec.image}: {_explain(e)}", hint=_hint(e)) from e
        container.reload()
        return _info(container)

    @_host_errors("restoring the previous container")
    def restore(self, stop_timeout_s: int = 40) -> ContainerInfo | None:
        """Put the kept ``-prev`` container back in place and running. Repeatable; None if nothing was kept."""
        kept = self._get(CONTAINER_NAME + PREVIOUS_SUFFIX)
        if kept is None:
            current = self._get(CONTAINER_NAME)
            return None if current is None else self._ensure_running(current)
        newer = self._get(CONTAINER_NAME)
        if newer is not None:
            self._stop(newer, stop_timeout_s)
            self._remove(CONTAINER_NAME)
        kept.rename(CONTAINER_NAME)
        return self._ensure_running(kept)

    @_host_errors("stopping the container")
    def stop(self, timeout_s: int) -> ContainerInfo | None:
        container = self._get(CONTAINER_NAME)
        if container is None:
            return None
        self._stop(container, timeout_s)
        container.reload()
        return _info(container)

    @_host_errors("starting the container")
    def start(self) -> ContainerInfo | None:
        container = self._get(CONTAINER_NAME)
        return None if container is None else self._ensure_running(container)

    def _ensure_running(self, container) -> ContainerInfo:
        container.reload()
        if container.status != "running":
            container.start()
            container.reload()
        return _info(container)

    def _stop(self, container, timeout_s: int) -> None:
        import docker.errors

        container.reload()
        if container.status == "running":
            try:
                container.stop(timeout=timeout_s)
            except docker.errors.APIError as e:
                raise HostError(self.host, "container_failed", f"stopping {container.name}: {_explain(e)}") from e

    def _get(self, name: str):
        import docker.errors

        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def _remove(self, name: str) -> None:
        container = self._get(name)
        if container is not None:
            container.remove(force=True)


def _info(container) -> ContainerInfo:
    labels = container.labels or {}
    image = labels.get(LABEL_IMAGE) or (container.image.tags[0] if container.image and container.image.tags else "")
    return ContainerInfo(container.name, image, labels.get(LABEL_PROFILE), labels.get(LABEL_REVISION), container.status)


def _explain(e: Exception) -> str:
    text = getattr(e, "explanation", None) or str(e)
    return " ".join(str(text).split())[:300]


def _kind(e: Exception) -> str:
    return "gpu_runtime_missing" if "could not select device driver" in _explain(e) else "container_failed"


def _hint(e: Exception) -> str | None:
    if _kind(e) == "gpu_runtime_missing":
        return "install the NVIDIA Container Toolkit on the host and restart Docker (fleetctl check --profile P)"
    return None
