"""The transport's side of a container: a ContainerSpec translated into docker-py's ``containers.run`` arguments,
and image references split as docker-py splits them (tags and digests)."""

import docker.errors
import pytest

from fleetctl.core.serve import ServeSettings, container_spec
from fleetctl.errors import HostError
from fleetctl.services.runtime import HostRuntime
from fleetctl.transport.docker import run_kwargs

SERVE = ServeSettings(
    model="meta-llama/Llama-3.1-8B-Instruct",
    port=8000,
    args=("--max-model-len", "8192"),
    gpus=2,
    env={"HF_TOKEN": "env:FLEET_HF_TOKEN", "VLLM_LOGGING_LEVEL": "INFO"},
    volumes={"/data/hf": "/root/.cache/huggingface", "/etc/certs": "/certs:ro"},
    shutdown_timeout_s=45,
)


def spec(serve=SERVE):
    return container_spec("llama31", "vllm/vllm-openai:v0.11.0", serve, "r3", {"FLEET_HF_TOKEN": "hf_s3cret"})


def test_run_arguments():
    kw = run_kwargs(spec())
    assert kw["name"] == "fleetctl-vllm" and kw["image"] == "vllm/vllm-openai:v0.11.0" and kw["detach"] is True
    assert kw["command"] == list(spec().command)
    assert kw["network_mode"] == "host" and kw["ipc_mode"] == "host" and kw["shm_size"] == "16g"
    assert kw["init"] is True and kw["stop_signal"] == "SIGTERM"  # an init reaps vLLM's engine processes
    assert kw["device_requests"] == [
        {"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert kw["labels"] == dict(spec().labels)
    assert kw["volumes"] == {
        "/data/hf": {"bind": "/root/.cache/huggingface", "mode": "rw"},
        "/etc/certs": {"bind": "/certs", "mode": "ro"},
    }
    assert kw["environment"] == {"HF_TOKEN": "hf_s3cret", "VLLM_LOGGING_LEVEL": "INFO"}
    assert "stop_timeout" not in kw and kw["restart_policy"] == {"Name": "unless-stopped"}


def test_all_gpus_and_no_gpus():
    assert run_kwargs(spec(ServeSettings(model="m")))["device_requests"][0]["Count"] == -1
    none = run_kwargs(spec(ServeSettings(model="m", gpus=0, ipc_host=False)))
    assert "device_requests" not in none and "ipc_mode" not in none


class FakeApi:
    def __init__(self, events):
        self.pulled, self.events = [], events

    def pull(self, repository, tag, stream, decode):
        self.pulled.append((repository, tag))
        return iter(self.events)


class FakeImages:
    def get(self, image):
        raise docker.errors.ImageNotFound(image)


class FakeClient:
    def __init__(self, events=()):
        self.api, self.images = FakeApi(list(events)), FakeImages()


@pytest.mark.parametrize(
    ("image", "pulled"),
    [
        ("vllm/vllm-openai:v0.11.0", ("vllm/vllm-openai", "v0.11.0")),
        ("vllm/vllm-openai", ("vllm/vllm-openai", "latest")),
        ("registry.lab:5000/vllm", ("registry.lab:5000/vllm", "latest")),  # a registry's port is no tag
        ("registry.lab:5000/vllm:v1", ("registry.lab:5000/vllm", "v1")),
        ("vllm/vllm-openai@sha256:" + "a" * 64, ("vllm/vllm-openai", "sha256:" + "a" * 64)),
    ],
)
def test_pull_splits_the_reference_as_docker_does(image, pulled):
    client = FakeClient()
    assert HostRuntime("gpu-01", client).ensure_image(image) is True
    assert client.api.pulled == [pulled]


def test_an_error_inside_the_pull_stream_is_the_host_error():
    client = FakeClient([{"status": "Pulling"}, {"error": "manifest unknown"}])
    with pytest.raises(HostError, match="gpu-01: pull_failed: pulling i:v1: manifest unknown"):
        HostRuntime("gpu-01", client).ensure_image("i:v1")
