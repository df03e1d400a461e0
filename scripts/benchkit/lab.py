"""The bench's own lab and the fleetctl it drives: bring up, a router on a free port, deploy, run, take down."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
LAB_TOOL = REPO / "scripts" / "lab"
MODEL = "lab/tiny-llama"
PORT = 8000
TOOLKIT = "1.17.8"  # hosts need the NVIDIA Container Toolkit to run the GPU containers
RUN_TIMEOUT_S = 600
LAB_DEFAULT_ROUTER = "http://127.0.0.1:30000"  # what scripts/lab up writes
CHAT_POOL, OTHER_POOL = "chat", "other"  # with --pools 2: the measured pool and the one beside it
OTHER_MODEL = "other"  # the name the other pool serves (profile other-stable: --served-model-name other)
OTHER_HOSTS = 2  # hosts of the other pool
OTHER_CLIENTS = 4  # load clients for the other pool's model


class BenchError(Exception):
    """An expected failure: one line for the operator."""


@dataclass(frozen=True)
class BenchLab:
    root: Path
    fleet: Path
    ssh_config: Path
    router: str  # the router's base URL (a free loopback port)
    hosts: tuple[tuple[str, str], ...]  # (name, address)

    def url(self, name: str) -> str:
        return f"http://{dict(self.hosts)[name]}:{PORT}"

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.hosts]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def render_spec(script: str, prefix: str, subnet: str, count: int) -> str:
    lines = [f"# Written by {script}.", "[lab]", f'prefix = "{prefix}"', f'subnet = "{subnet}"']
    for i in range(1, count + 1):
        lines += ["", "[[hosts]]", f'name = "gpu-{i:02d}"', f'nvidia_container_toolkit = "{TOOLKIT}"']
    return "\n".join(lines) + "\n"


def lab_up(root: Path, spec_text: str) -> BenchLab:
    """Bring the lab up (or repair it) and point its fleet file's router at a free loopback port."""
    root.parent.mkdir(parents=True, exist_ok=True)
    spec = root.parent / "spec.toml"
    spec.write_text(spec_text)
    log(f"bringing up the lab in {root} ...")
    started = time.perf_counter()
    done = run_lab("up", "--spec", str(spec), "--dir", str(root))
    if done.returncode != 0:
        raise BenchError(f"scripts/lab up failed: {last_line(done.stderr or done.stdout)}")
    log(f"  lab up in {time.perf_counter() - started:.1f} s")
    fleet = root / "fleet.toml"
    router = point_router(fleet)
    with fleet.open("rb") as f:
        hosts = tuple((h["name"], h["address"]) for h in tomllib.load(f)["hosts"])
    return BenchLab(root=root, fleet=fleet, ssh_config=root / "ssh" / "config", router=router, hosts=hosts)


def point_router(fleet: Path) -> str:
    """Rewrite ``[router] url`` to a free loopback port, never the lab's default one (other labs' routers listen
    there). A lab kept by an earlier bench (--keep) gets back the port of the router fleetctl started for it,
    if that still answers: ``scripts/lab up`` rewrote the fleet file, not the router."""
    text = fleet.read_text()
    url = _kept_router(fleet.parent / ".fleetctl" / "router.json") or f"http://127.0.0.1:{free_port()}"
    fleet.write_text(re.sub(r'(?m)^url = "http://127\.0\.0\.1:\d+"', f'url = "{url}"', text, count=1))
    return url


def _kept_router(record: Path) -> str | None:
    try:
        url = json.loads(record.read_text()).get("url", "")
    except (OSError, ValueError, AttributeError):
        return None
    return url.rstrip("/") if url and url != LAB_DEFAULT_ROUTER and _answers(url) else None


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/list_workers", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LAB_TOOL), *args], capture_output=True, text=True)


def finish(bench_dir: Path, lab_root: Path, keep: bool, fleetctl: Fleetctl | None) -> None:
    """Stop the router and take the lab down, unless --keep."""
    if keep:
        log(f"--keep: the lab stays up in {lab_root} (scripts/lab down --dir {lab_root} removes it)")
        return
    if fleetctl is not None:
        fleetctl.run("router", "down")
    if (lab_root / "state.json").exists():
        done = run_lab("down", "--dir", str(lab_root))
        if done.returncode != 0:
            log(f"scripts/lab down failed, {bench_dir} left in place: {last_line(done.stderr or done.stdout)}")
            return
    shutil.rmtree(bench_dir, ignore_errors=True)


class Fleetctl:
    """The venv's fleetctl against the bench lab's fleet file, bytecode cached under the bench folder (as where
    fleetctl is pip-installed), even when this shell says PYTHONDONTWRITEBYTECODE."""

    def __init__(self, lab: BenchLab, work: Path) -> None:
        self.argv = [str(VENV_BIN / "fleetctl"), "--fleet", str(lab.fleet)]
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "FLEETCTL_FLEET")}
        self.env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")

    def run(self, *args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([*self.argv, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"fleetctl {' '.join(args)}: no result within {timeout:g} s") from None

    def ok(self, *args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
        done = self.run(*args, timeout=timeout)
        if done.returncode != 0:
            raise BenchError(
                f"fleetctl {' '.join(args)}: exit {done.returncode}: {last_line(done.stderr or done.stdout)}"
            )
        return done

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*self.argv, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def version_ms(self, runs: int) -> list[float]:
        """Wall milliseconds of ``fleetctl --version``: the interpreter and import floor of every command."""
        self.run("--version")  # warm the page and bytecode caches
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            self.ok("--version")
            times.append((time.perf_counter() - started) * 1000)
        return times


@dataclass(frozen=True)
class Pools:
    """The bench lab's two pools: ``chat`` (profile stable, lab/tiny-llama) is measured, ``other`` (profile
    other-stable, served as ``other``) carries load beside it."""

    chat: tuple[str, ...]
    other: tuple[str, ...]


def render_pools(pools: Pools) -> str:
    return (
        f'\n# Written by the bench: two pools, one model each.\n[[pools]]\nname = "{CHAT_POOL}"\n'
        f'profile = "stable"\nhosts = "{",".join(pools.chat)}"\n\n[[pools]]\nname = "{OTHER_POOL}"\n'
        f'profile = "other-stable"\nhosts = "{",".join(pools.other)}"\n'
    )


def declare_pools(lab: BenchLab, pools: Pools) -> None:
    """Append the two ``[[pools]]`` to the lab's fleet file (once: a kept lab's file may have them already)."""
    text = lab.fleet.read_text()
    if "[[pools]]" not in text:
        lab.fleet.write_text(text.rstrip("\n") + "\n" + render_pools(pools))


def serve_pools(fleetctl: Fleetctl, pools: Pools) -> None:
    """Start the router and deploy each pool's profile (hosts already serving are left as they are)."""
    fleetctl.ok("router", "up")
    for pool in (CHAT_POOL, OTHER_POOL):
        log(f"deploying pool {pool} ...")
        fleetctl.ok("deploy", "--pool", pool)


def serve(fleetctl: Fleetctl, lab: BenchLab, names: list[str]) -> None:
    """Start the router and deploy ``stable`` on ``names`` (a host already serving is left as it is)."""
    fleetctl.ok("router", "up")
    doc = json.loads(fleetctl.run("status", "--json", "--limit", ",".join(names)).stdout or "{}")
    idle = [h["name"] for h in doc.get("hosts", []) if h.get("image") is None]
    if idle:
        log(f"deploying stable on {len(idle)} host(s) ...")
        fleetctl.ok("deploy", "--profile", "stable", "--limit", ",".join(idle))


def start_load(router: str, clients: int, model: str = MODEL):
    """The tests' load generator on the router for ``model``, flowing (16 requests done) before it is returned."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.support.load import LoadGenerator

    load = LoadGenerator(router, model, clients=clients).start()
    try:
        load.wait_for_progress(16)
    except (TimeoutError, RuntimeError) as e:
        load.stop()
        raise BenchError(f"load for {model} through {router} does not flow: {e}") from None
    return load


def load_figures(report) -> dict:
    return {"ok": report.ok, "failed": report.failed, "summary": report.summary()}


def other_load_targets(report, target) -> dict:
    """The other pool's load figures and its PASS/MISS row (``target`` is benchkit.figures.target)."""
    return {"other_load": load_figures(report), "other_target": target(report.failed, "= 0", report.failed == 0)}
