"""A fast stand-in for vLLM 0.32's OpenAI API server, for fleetctl's lab (Python 3.11 stdlib only).

    server.py MODEL [--served-model-name N ...] [--host H] [--port 8000] [--shutdown-timeout S]
              [--behaviour healthy|slow|failing|crash|never-ready] [--ttft-ms MS] [--tokens-per-s N]
              [--startup-s S] [--fail-rate F] [--version-string V] [--api-key KEY ...]

``--api-key`` (or VLLM_API_KEY when it is not given) guards /v1, /v2, /inference and /cohere as vLLM 0.32 does:
without ``Authorization: Bearer KEY`` they answer 401 ``{"error":"Unauthorized"}``; /health, /metrics and
/version stay open. ``--model MODEL`` works too, and other vLLM flags are accepted and ignored. FLEETCTL_STANDIN_BEHAVIOUR and
FLEETCTL_STANDIN_VERSION give defaults (an image sets them). Like vLLM: the port is bound at once but
listens only once "loaded" (connections are refused meanwhile); SIGTERM with --shutdown-timeout 0 aborts
in-flight requests and exits, with N > 0 answers new requests 500, waits up to N s for in-flight ones, then exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine as eng
import handler as http
import metrics as m
import shapes

DEFAULT_VERSION = "0.32.0"
CRASH_AFTER_S = 1.0
ABORT_GRACE_S = 2.0  # time for aborted streams to write their last chunks


def parse_args(argv: list[str]) -> argparse.Namespace:
    argv = list(argv)
    if argv[:1] == ["serve"]:
        argv.pop(0)
    model = argv.pop(0) if argv and not argv[0].startswith("-") else None
    p = argparse.ArgumentParser(prog="standin", allow_abbrev=False, description="vLLM stand-in for fleetctl's lab")
    p.add_argument("--model", default=model)
    p.add_argument("--served-model-name", nargs="+", default=None)
    p.add_argument("--host", default="")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--shutdown-timeout", type=int, default=0)
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument(
        "--behaviour",
        "--behavior",
        choices=eng.BEHAVIOURS,
        default=os.environ.get("FLEETCTL_STANDIN_BEHAVIOUR", "healthy"),
    )
    p.add_argument("--version-string", default=os.environ.get("FLEETCTL_STANDIN_VERSION", DEFAULT_VERSION))
    p.add_argument("--ttft-ms", type=float, default=20.0)
    p.add_argument("--tokens-per-s", type=float, default=100.0)
    p.add_argument("--startup-s", type=float, default=0.0, help="time 'loading the model' before listening")
    p.add_argument("--fail-rate", type=float, default=None, help="share of failed requests (failing: 0.3)")
    p.add_argument(
        "--fail-mode",
        choices=eng.FAIL_MODES,
        default="mixed",
        help="500: rejected with HTTP 500; error: finished with reason error; mixed: either",
    )
    p.add_argument("--reply-tokens", type=int, default=16, help="natural reply length, unless ignore_eos")
    p.add_argument("--kv-cache-tokens", type=int, default=65536)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--api-key", nargs="+", default=None, help="keys for /v1/* (vLLM: else $VLLM_API_KEY)")
    p.add_argument("--disable-uvicorn-access-log", action="store_true")
    args, ignored = p.parse_known_args(argv)
    if not args.model:
        p.error("a model is required (MODEL or --model)")
    if args.behaviour != "healthy" and args.fail_rate is None:
        args.fail_rate = eng.FAILING_RATE if args.behaviour == "failing" else 0.0
    args.ignored = ignored
    return args


def settings_from(args: argparse.Namespace) -> eng.Settings:
    return eng.Settings(
        behaviour=args.behaviour,
        ttft_s=args.ttft_ms / 1000.0,
        token_s=1.0 / max(args.tokens_per_s, 1e-6),
        fail_rate=args.fail_rate or 0.0,
        fail_mode=args.fail_mode,
        reply_tokens=args.reply_tokens,
        max_num_seqs=args.max_num_seqs,
        kv_cache_tokens=args.kv_cache_tokens,
        seed=args.seed,
    )


def build_server(args: argparse.Namespace) -> http.StandinServer:
    """Engine, metrics and a bound (not yet listening) HTTP server."""
    names = tuple(args.served_model_name or [args.model])
    served = shapes.Served(
        names=names,
        root=args.model,
        version=args.version_string,
        max_model_len=args.max_model_len,
        started=int(time.time()),
    )
    metrics = m.Metrics(names[0])
    server = http.StandinServer(
        (args.host, args.port),
        served,
        eng.Engine(settings_from(args), metrics),
        metrics,
        access_log=not args.disable_uvicorn_access_log,
        api_keys=api_keys(args.api_key, os.environ),
    )
    server.server_bind()
    return server


def api_keys(given: list[str] | None, environ) -> tuple[str, ...]:
    """vLLM's rule: --api-key wins over VLLM_API_KEY; empty values do not count."""
    return tuple(k for k in (given or [environ.get("VLLM_API_KEY")]) if k)


def log(message: str, level: str = "INFO") -> None:
    stamp = time.strftime("%m-%d %H:%M:%S")
    sys.stdout.write(f"(APIServer pid={os.getpid()}) {level} {stamp} [standin] {message}\n")
    sys.stdout.flush()


class Stop:
    """Set by SIGTERM/SIGINT. Polled, because taking a lock inside a signal handler can deadlock."""

    def __init__(self) -> None:
        self.signalled = False

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.signalled and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)
        return self.signalled


def install_signals() -> Stop:
    stop = Stop()

    def on_signal(signum, _frame) -> None:
        stop.signalled = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def crash() -> int:
    time.sleep(CRASH_AFTER_S)
    log("EngineCore failed to start.", "ERROR")
    sys.stderr.write(
        "RuntimeError: Engine core initialization failed. See root cause above. "
        "Failed core proc(s): {'EngineCore': 1}\n"
    )
    return 1


def load(args: argparse.Namespace, stop: Stop) -> bool:
    """Pretend to load the model; False when stopped first (never-ready only stops that way)."""
    log(f"Loading model {args.model} (behaviour {args.behaviour})")
    if args.behaviour == "never-ready":
        stop.wait()
        return False
    return not stop.wait(args.startup_s)


def shut_down(server: http.StandinServer, timeout: int) -> None:
    """vLLM's SIGTERM: abort now (0), or refuse new requests and wait up to ``timeout`` s for in-flight ones."""
    mode = "abort" if timeout == 0 else "drain"
    log(f"[shutdown] API server: stopping engine client mode={mode} timeout={timeout}s")
    if timeout > 0:
        server.engine.close()
        if not server.engine.wait_idle(timeout):
            running, waiting = server.engine.in_flight()
            log(f"[shutdown] drain timed out with {running} running and {waiting} waiting; aborting", "WARNING")
    server.engine.abort_all()
    server.shutdown()
    server.server_close()
    server.wait_answered(ABORT_GRACE_S)
    log("[shutdown] API server: shutting down HTTP server")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    stop = install_signals()
    if args.ignored:
        log(f"ignoring vLLM options the stand-in does not model: {' '.join(args.ignored)}")
    if args.behaviour == "crash":
        return crash()
    server = build_server(args)
    if not load(args, stop):
        server.server_close()
        return 0
    server.server_activate()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    log(
        f"Starting vLLM API server 0 on http://{args.host or '0.0.0.0'}:{args.port} "
        f"(version {args.version_string}, stand-in)"
    )
    stop.wait()
    shut_down(server, args.shutdown_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
