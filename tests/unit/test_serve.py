"""[serve] → container, described as data: labels, GPUs, mounts, env from fleetctl's environment never displayed."""

import pytest

from fleetctl.core.serve import (
    CONTAINER_NAME,
    REDACTED,
    EnvMissing,
    Mount,
    ServeSettings,
    container_spec,
)

SERVE = ServeSettings(
    model="meta-llama/Llama-3.1-8B-Instruct",
    port=8000,
    args=("--max-model-len", "8192"),
    gpus=2,
    env={"HF_TOKEN": "env:FLEET_HF_TOKEN", "VLLM_LOGGING_LEVEL": "INFO"},
    volumes={"/data/hf": "/root/.cache/huggingface", "/etc/certs": "/certs:ro"},
    shutdown_timeout_s=45,
)


def spec(environ=None):
    return container_spec(
        "llama31", "vllm/vllm-openai:v0.11.0", SERVE, "r3", environ or {"FLEET_HF_TOKEN": "hf_s3cret"}
    )


def test_container_spec_describes_the_container():
    s = spec()
    assert s.name == CONTAINER_NAME and s.image == "vllm/vllm-openai:v0.11.0"
    assert s.command == (
        "meta-llama/Llama-3.1-8B-Instruct",
        "--port",
        "8000",
        "--shutdown-timeout",
        "45",
        "--max-model-len",
        "8192",
    )
    assert s.labels == {
        "fleetctl.managed": "true",
        "fleetctl.profile": "llama31",
        "fleetctl.revision": "r3",
        "fleetctl.image": "vllm/vllm-openai:v0.11.0",
    }
    assert s.mounts == (
        Mount("/data/hf", "/root/.cache/huggingface", read_only=False),
        Mount("/etc/certs", "/certs", read_only=True),
    )
    assert (s.gpu_count, s.host_network, s.init, s.stop_signal, s.stop_timeout_s) == (2, True, True, "SIGTERM", 55)
    assert s.environment["HF_TOKEN"] == "hf_s3cret"  # the container gets the value...


@pytest.mark.parametrize(
    ("written", "mount"),
    [
        ("/models", Mount("/m", "/models", False)),
        ("/models:rw", Mount("/m", "/models", False)),
        ("/models:ro", Mount("/m", "/models", True)),
        ("/a:b", Mount("/m", "/a:b", False)),  # only :ro and :rw are modes
    ],
)
def test_mounts_as_written(written, mount):
    assert container_spec("p", "i", ServeSettings(model="m", volumes={"/m": written}), "r1", {}).mounts == (mount,)


def test_secrets_never_reach_the_display():
    shown = spec().display()
    assert shown["environment"] == {"HF_TOKEN": REDACTED, "VLLM_LOGGING_LEVEL": "INFO"}
    assert "hf_s3cret" not in repr(shown)


def test_missing_environment_variable_is_named():
    with pytest.raises(EnvMissing, match="FLEET_HF_TOKEN"):
        spec(environ={"OTHER": "x"})


def test_all_gpus_and_no_gpus():
    assert container_spec("p", "i", ServeSettings(model="m"), "r1", {}).gpu_count is None
    assert container_spec("p", "i", ServeSettings(model="m", gpus=0), "r1", {}).gpu_count == 0
