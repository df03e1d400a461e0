"""docker-py over fleetctl's own SSH connection.

docker-py's built-in SSH client reads little of ssh_config, ignores ProxyJump and the fleet's port, and has its
own host-key policy (library-facts §1). Instead, its SSH adapter is handed the already-verified paramiko client of
``SshPool``: the remote side still runs ``docker system dial-stdio`` on an exec channel of that connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleetctl.core.serve import ContainerSpec
from fleetctl.errors import HostError

if TYPE_CHECKING:
    import docker
    from paramiko import SSHClient

# Each dial-stdio pool costs an SSH session; sshd allows 10 per connection (MaxSessions) and fleetctl needs a few
# of its own on the same connection.
DOCKER_POOLS = 4


def docker_client(ssh_client: SSHClient, host: str, *, timeout_s: float = 60) -> docker.DockerClient:
    """A DockerClient whose every request rides ``ssh_client``; the API version is negotiated once."""
    import docker
    from docker import constants

    adapter = _adapter_class()(ssh_client, timeout=timeout_s)
    client = docker.DockerClient(
        base_url="ssh://fleetctl", use_ssh_client=True, timeout=timeout_s, version=constants.MINIMUM_DOCKER_API_VERSION
    )
    client.api.close()
    client.api._custom_adapter = adapter
    client.api.mount("http+docker://ssh", adapter)
    try:
        client.api._version = client.api.version(api_version=False)["ApiVersion"]
    except Exception as e:
        raise HostError(host, "docker_unavailable", f"no Docker daemon answered over SSH: {_reason(e)}") from e
    return client


def run_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """``spec`` as docker-py's ``containers.run`` keyword arguments (device requests as dicts: docker-py converts
    them)."""
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command),
        "name": spec.name,
        "detach": True,
        "environment": dict(spec.environment),
        "labels": dict(spec.labels),
        "restart_policy": {"Name": spec.restart},
        "volumes": {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in spec.mounts},
        "shm_size": spec.shm_size,
        "stop_signal": spec.stop_signal,
        "init": spec.init,
    }
    if spec.host_network:
        kwargs["network_mode"] = "host"
    if spec.gpu_count != 0:
        count = -1 if spec.gpu_count is None else spec.gpu_count
        kwargs["device_requests"] = [
            {"Driver": "", "Count": count, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
        ]
    if spec.ipc_host:
        kwargs["ipc_mode"] = "host"
    return kwargs


def _reason(e: Exception) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200]


_ADAPTER: type | None = None


def _adapter_class() -> type:
    """The adapter subclass, defined on first use so that importing this module stays cheap."""
    global _ADAPTER
    if _ADAPTER is None:
        from docker.transport.sshconn import SSHHTTPAdapter

        class PreconnectedSSHAdapter(SSHHTTPAdapter):
            def __init__(self, ssh_client: SSHClient, timeout: float) -> None:
                self._preconnected = ssh_client
                super().__init__("ssh://fleetctl", timeout=timeout, pool_connections=DOCKER_POOLS, shell_out=False)

            def _create_paramiko_client(self, base_url: str) -> None:
                self.ssh_client = self._preconnected
                self.ssh_params: dict[str, Any] = {}

            def _connect(self) -> None:
                transport = self.ssh_client.get_transport()
                if transport is None or not transport.is_active():
                    from docker.errors import DockerException

                    raise DockerException("the SSH connection to the host is closed")

            def close(self) -> None:
                self.pools.clear()  # the SSH connection belongs to fleetctl's pool: leave it open

        _ADAPTER = PreconnectedSSHAdapter
    return _ADAPTER
