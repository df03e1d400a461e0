"""[serve] → container, as data: labels, GPUs, env from fleetctl's environment never displayed."""

import pytest

from fleetctl.core.serve import (
    CONTAINER_NAME,
    REDACTED,
    EnvMissing,
    ServeSettings,
    container_spec,
    run_kwargs,
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


def test_container_spec_and_run_arguments():
    kw = run_kwargs(spec())
    assert kw["name"] == CONTAINER_NAME and kw["image"] == "vllm/vllm-openai:v0.11.0"
    assert kw["command"] == [
        "meta-llama/Llama-3.1-8B-Instruct",
        "--port",
        "8000",
        "--shutdown-timeout",
        "45",
        "--max-model-len",
        "8192",
    ]
    assert kw["network_mode"] == "host" and kw["ipc_mode"] == "host" and kw["shm_size"] == "16g"
    assert kw["init"] is True and kw["stop_signal"] == "SIGTERM"  # an init reaps vLLM's engine processes
    assert kw["device_requests"] == [
        {"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert kw["labels"] == {
        "fleetctl.managed": "true",
        "fleetctl.profile": "llama31",
        "fleetctl.revision": "r3",
        "fleetctl.image": "vllm/vllm-openai:v0.11.0",
    }
    assert kw["volumes"] == {
        "/data/hf": {"bind": "/root/.cache/huggingface", "mode": "rw"},
        "/etc/certs": {"bind": "/certs", "mode": "ro"},
    }
    assert kw["environment"]["HF_TOKEN"] == "hf_s3cret"  # the container gets the value...
    assert (
        spec().stop_timeout_s == 55 and "stop_timeout" not in kw and kw["restart_policy"] == {"Name": "unless-stopped"}
    )


def test_secrets_never_reach_the_display():
    shown = spec().display()
    assert shown["environment"] == {"HF_TOKEN": REDACTED, "VLLM_LOGGING_LEVEL": "INFO"}
    assert "hf_s3cret" not in repr(shown)


def test_missing_environment_variable_is_named():
    with pytest.raises(EnvMissing, match="FLEET_HF_TOKEN"):
        spec(environ={"OTHER": "x"})


def test_all_gpus_and_no_gpus():
    all_gpus = container_spec("p", "i", ServeSettings(model="m"), "r1", {})
    assert run_kwargs(all_gpus)["device_requests"][0]["Count"] == -1
    none = container_spec("p", "i", ServeSettings(model="m", gpus=0, ipc_host=False), "r1", {})
    assert "device_requests" not in run_kwargs(none) and "ipc_mode" not in run_kwargs(none)
