"""The lab: fake GPU hosts, each a network namespace with its own real sshd, built from a spec.

    lab = Lab(Path(".lab"), load_spec(None))
    info = lab.up()          # idempotent: fixes what is missing, leaves what is right
    lab.status()             # {"exists", "up", "hosts": [...], ...}
    lab.down()               # removes every namespace, link, bridge, process, mount and file it made

Each host also runs its own dockerd (unless the spec says `docker = false`), with the lab images imported and
ready-to-use fleetctl profiles for them in <lab>/profiles.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import catalog, dockerd, driver, netns, power, sshd, standins
from .fakenvml import LIBRARY_NAME, build_library, install_tools
from .files import (
    LabPaths,
    ensure_symlink,
    fill_nopython_bin,
    read_state,
    render_fleet,
    render_known_hosts,
    render_ssh_config,
    session_env,
    write_if_changed,
    write_state,
)
from .layout import NODE_DEV, Layout, Node, plan_layout
from .preflight import docker_problems, problems
from .spec import LabError, LabSpec, parse_spec

READY_TIMEOUT_S = 20.0
DOCKER_READY_TIMEOUT_S = 90.0  # ~5 s each, but they start together on a small machine
WORKERS = 8


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    ring: str | None
    namespace: str
    dir: Path
    docker_host: str | None = None  # unix://<its dockerd's socket>; None when the host has no dockerd


@dataclass(frozen=True)
class LabInfo:
    """What `up` made and what a client needs to reach it."""

    root: Path
    fleet_file: Path
    identity_file: Path
    known_hosts: Path
    ssh_config: Path  # for `ssh -F`: names, addresses, key checks and the jump host
    hosts: tuple[LabHost, ...]
    bastion: str | None  # the bastion's address, when hosts sit behind one
    spec: LabSpec
    profiles: Path | None = None  # <tag>.toml fleetctl profiles for the lab images

    @property
    def proxy_jump(self) -> str | None:
        return f"root@{self.bastion}" if self.bastion else None

    def host(self, name: str) -> LabHost:
        return next(h for h in self.hosts if h.name == name)

    def lab(self) -> Lab:
        """The Lab behind this info (for status, stop_sshd, restart_sshd, down)."""
        return Lab(self.root, self.spec)

    def ssh_command(self, host: str, *command: str) -> list[str]:
        """`ssh` argv that reaches a lab host (through the bastion if any), host keys verified."""
        return ["ssh", "-F", str(self.ssh_config), host, *command]


class Lab:
    def __init__(self, root: Path, spec: LabSpec) -> None:
        self.paths = LabPaths(Path(root).absolute())
        self.spec = spec
        self.layout = plan_layout(spec)
        if any(c.isspace() or c in "\"'\\" for c in str(self.paths.root)):
            raise LabError(f"{self.paths.root}: the lab folder's path must have no spaces or quotes (sshd_config)")

    @classmethod
    def open(cls, root: Path) -> Lab:
        """The lab that `up` left in root; LabError if there is none."""
        state = read_state(LabPaths(Path(root).absolute()))
        if state is None:
            raise LabError(f"no lab in {Path(root).absolute()} (scripts/lab up makes one)")
        return cls(root, parse_spec(state["spec"], source=f"{root}/state.json"))

    # -- up -------------------------------------------------------------------------------------------------

    def up(self) -> LabInfo:
        found = problems() + (docker_problems() if self._docker_nodes() else [])
        if found:
            raise LabError(found[0])
        for node in self._docker_nodes():
            dockerd.check_socket_room(self._dockerd_files(node))
        ours = self._retire_previous()
        netns.check_network_free(self.layout, self.spec.subnet, ours)
        write_state(self.paths, self.spec.to_dict(), phase="building")
        try:
            library = build_library(self.paths.lib)
        except RuntimeError as e:
            raise LabError(str(e).splitlines()[0]) from e
        sshd.keygen(self.paths.identity, "fleetctl-lab-client")
        write_if_changed(self.paths.authorized_keys, sshd.public_key(self.paths.identity) + "\n", 0o600)
        if any(not node.host.python3 for node in self.layout.hosts):
            fill_nopython_bin(self.paths.nopython_bin)
        netns.ensure_network(self.layout)
        self._each_node(lambda node: self._ensure_node(node, library))  # starts the dockerds, does not wait
        deadline = time.monotonic() + READY_TIMEOUT_S
        for node in self.layout.nodes:
            sshd.wait_ready(self._sshd_files(node), node.namespace, deadline)
        self._ensure_docker()
        catalog.write_profiles(self.paths.profiles)
        self._write_client_files()
        write_state(self.paths, self.spec.to_dict(), phase="up")
        power.ensure_helper(self.paths.root)
        return self.info()

    def info(self) -> LabInfo:
        hosts = tuple(
            LabHost(n.name, n.address, n.host.ring, n.namespace, self.paths.node_dir(n), self._docker_host(n))
            for n in self.layout.hosts
        )
        bastion = self.layout.bastion.address if self.layout.bastion else None
        return LabInfo(
            root=self.paths.root,
            fleet_file=self.paths.fleet,
            identity_file=self.paths.identity,
            known_hosts=self.paths.known_hosts,
            ssh_config=self.paths.ssh_config,
            hosts=hosts,
            bastion=bastion,
            spec=self.spec,
            profiles=self.paths.profiles,
        )

    def _retire_previous(self) -> bool:
        """Take down what an earlier `up` in this folder made that this spec no longer has.

        True if the network this spec wants is already this folder's own (an earlier `up` made it)."""
        state = read_state(self.paths)
        if state is None:
            return False
        old = plan_layout(parse_spec(state["spec"], source=str(self.paths.state)))
        if (old.bridge, old.gateway_cidr, bool(old.bastion)) != (
            self.layout.bridge,
            self.layout.gateway_cidr,
            bool(self.layout.bastion),
        ):
            self._delete_layout(old)
            return False
        keep = {node.name for node in self.layout.nodes}
        for node in old.nodes:
            if node.name not in keep:
                self._stop_dockerd(node)
                netns.delete_node(node.namespace, node.veth, node.outer_ns)
                shutil.rmtree(self.paths.node_dir(node), ignore_errors=True)
        return True

    def _each_node(self, step) -> None:
        self._each(self.layout.nodes, step)

    @staticmethod
    def _each(nodes, step) -> None:
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for future in [pool.submit(step, node) for node in nodes]:
                future.result()

    def _ensure_node(self, node: Node, library: Path) -> None:
        base = self.paths.node_dir(node)
        (base / "home").mkdir(parents=True, exist_ok=True)
        if node.host is not None:
            self._ensure_fake_gpu(node, base, library)
        netns.ensure_namespace(node.namespace)
        netns.ensure_node_link(node)
        self._ensure_sshd(node)
        if node.host is not None:
            self._ensure_dockerd(node)
            power.forget_failure(base)  # up brought it back

    def _ensure_fake_gpu(self, node: Node, base: Path, library: Path) -> None:
        """The host's fake GPU as its disk has it: the spec, then what lab-driver installed (labkit.driver)."""
        installed = driver.read_installed(base)
        write_if_changed(base / "nvml.conf", driver.render_nvml_config(node.host.raw, installed))
        install_tools(base / "bin", driver.effective_table(node.host.raw, installed))
        if node.host.nvml == "library-missing":
            shutil.rmtree(base / "lib", ignore_errors=True)
        else:
            ensure_symlink(base / "lib" / library.name, library)

    def _ensure_sshd(self, node: Node) -> None:
        """(Re)start the node's sshd if it is down or how it starts changed (config, stand-ins, masks). A
        restart is not a reboot: the host keeps its boot id."""
        files = self._sshd_files(node)
        sshd.keygen(files.host_key, f"fleetctl-lab-{node.name}")
        host_dir = self.paths.node_dir(node)
        boot_id, mounts, digest = standins.ensure(node.name, host_dir, node.host is not None, self.paths.root)
        extra = ("AllowTcpForwarding yes",) if node.host is None else ()
        env = session_env(self.paths, node, self._docker_host(node))
        text = sshd.render_config(files, node.address, self.paths.authorized_keys, env, extra)
        changed = write_if_changed(files.config, f"{text}# lab stand-ins and mounts: {digest}\n", 0o600)
        if changed or sshd.running_pid(files, node.namespace) is None:
            sshd.stop(files, node.namespace)
            sshd.start(files, node.namespace, node.name, boot_id, mounts)

    def _sshd_files(self, node: Node) -> sshd.SshdFiles:
        return sshd.SshdFiles(self.paths.node_dir(node))

    # -- docker ---------------------------------------------------------------------------------------------

    def _docker_nodes(self) -> list[Node]:
        return [node for node in self.layout.hosts if node.host.docker]

    def _dockerd_files(self, node: Node) -> dockerd.DockerdFiles:
        return dockerd.DockerdFiles(self.paths.docker_dir(node))

    def _docker_host(self, node: Node) -> str | None:
        return self._dockerd_files(node).host if node.host is not None and node.host.docker else None

    def _ensure_dockerd(self, node: Node) -> None:
        """Start (or restart, if how it is started changed) the host's dockerd; a host without docker has none.

        The fake nvidia-container-runtime-hook is on its PATH only where the spec installs the toolkit."""
        if not node.host.docker:
            self._stop_dockerd(node)
            shutil.rmtree(self.paths.docker_dir(node), ignore_errors=True)
            return
        toolkit = node.host.table["nvidia_container_toolkit"]
        hook_dir = self.paths.node_dir(node) / "bin" if toolkit else None
        dockerd.ensure(self._dockerd_files(node), node.namespace, hook_dir)

    def _ensure_docker(self) -> None:
        """Wait for every dockerd to answer and give each the lab images: the first imports them (or loads the
        cached bundle), the others load the bundle, in parallel."""
        nodes = self._docker_nodes()
        if not nodes:
            return
        tarball, digest = catalog.rootfs()  # builds (or finds) it while the daemons start
        bundle = catalog.bundle_path(catalog.IMAGE_CACHE, digest)
        deadline = time.monotonic() + DOCKER_READY_TIMEOUT_S

        def ready_with_images(node: Node) -> None:
            files = self._dockerd_files(node)
            dockerd.wait_ready(files, node.namespace, deadline)
            catalog.ensure_images(lambda *args: dockerd.cli(files, *args), tarball, digest, bundle)

        ready_with_images(nodes[0])
        self._each(nodes[1:], ready_with_images)

    def _stop_dockerd(self, node: Node) -> None:
        if node.host is not None and self.paths.docker_dir(node).exists():
            dockerd.stop(self._dockerd_files(node), node.namespace)

    def _write_client_files(self) -> None:
        entries = [(n.address, sshd.public_key(self._sshd_files(n).host_key)) for n in self.layout.nodes]
        write_if_changed(self.paths.known_hosts, render_known_hosts(entries))
        write_if_changed(self.paths.ssh_config, render_ssh_config(self.paths, self.layout))
        write_if_changed(self.paths.fleet, render_fleet(self.paths, self.layout))

    # -- status ---------------------------------------------------------------------------------------------

    def status(self) -> dict:
        """Every node, whether its sshd runs and whether its dockerd answers (None: it has none); `up` is True
        only if the lab exists and all of them do."""
        exists = read_state(self.paths) is not None
        nodes = [self._node_status(n) for n in self.layout.nodes]
        hosts = [n for n in nodes if n["role"] == "host"]
        bastion = next((n for n in nodes if n["role"] == "bastion"), None)
        helper = power.running_pid(self.paths.root)
        up = exists and helper is not None and all(n["sshd"] and n["docker"] is not False for n in nodes)
        return {
            "root": str(self.paths.root),
            "exists": exists,
            "up": up,
            "prefix": self.spec.prefix,
            "subnet": self.spec.subnet,
            "bastion": bastion,
            "hosts": hosts,
            "fleet_file": str(self.paths.fleet),
            "power_helper": helper,  # its pid; None: hosts cannot reboot
        }

    def _node_status(self, node: Node) -> dict:
        pid = sshd.running_pid(self._sshd_files(node), node.namespace)
        docker, docker_pid = None, None
        if self._docker_host(node):
            files = self._dockerd_files(node)
            docker_pid = dockerd.running_pid(files, node.namespace)
            docker = docker_pid is not None and dockerd.ping(files)
        return {
            "name": node.name,
            "role": "bastion" if node.host is None else "host",
            "address": node.address,
            "ring": node.host.ring if node.host else None,
            "namespace": node.namespace,
            "sshd": pid is not None,
            "pid": pid,
            "docker": docker,
            "docker_pid": docker_pid,
            "docker_host": self._docker_host(node),
            "power": power.host_state(self.paths.node_dir(node)),  # "up", "rebooting" or "failed: why"
        }

    # -- for tests ------------------------------------------------------------------------------------------

    def stop_sshd(self, host: str) -> None:
        """Stop one node's sshd listener: the host then refuses connections, like a host whose sshd died."""
        node = self._node(host)
        sshd.stop(self._sshd_files(node), node.namespace)

    def restart_sshd(self, host: str, new_host_key: bool = False) -> None:
        """Restart one node's sshd; new_host_key=True gives it a fresh host key that known_hosts does not have."""
        node = self._node(host)
        files = self._sshd_files(node)
        sshd.stop(files, node.namespace)
        if new_host_key:
            files.host_key.unlink(missing_ok=True)
            sshd.keygen(files.host_key, f"fleetctl-lab-{node.name}")
        sshd.start(files, node.namespace, node.name)
        sshd.wait_ready(files, node.namespace, time.monotonic() + READY_TIMEOUT_S)

    def stop_dockerd(self, host: str) -> None:
        """Stop one host's dockerd (its containers go with it), like a host whose Docker engine is down."""
        self._stop_dockerd(self._node(host))

    def reboot(self, host: str) -> None:
        """Ask the lab's power helper to reboot one host, as its `reboot` command does (returns at once)."""
        power.request_reboot(self.paths.node_dir(self._node(host)))

    # -- power (labkit.power runs these, outside the host) --------------------------------------------------

    def power_off(self, host: str) -> None:
        """Stop the host as a shutdown does: sshd and every session (they drop), then dockerd (it stops its
        containers, whose state stays on disk), then whatever is left; its link goes down, so its address
        stops answering."""
        node = self._node(host)
        sshd.stop(self._sshd_files(node), node.namespace)
        spared = set(dockerd.leftover_pids(self._dockerd_files(node))) if self._docker_host(node) else set()
        netns.terminate([p for p in netns.namespace_pids(node.namespace) if p not in spared], 2.0)
        self._stop_dockerd(node)
        netns.kill_namespace_processes(node.namespace)
        netns.ip("link", "set", NODE_DEV, "down", ns=node.namespace)
        netns.ip("neigh", "flush", "to", node.address, ns=node.outer_ns, check=False)

    def power_on(self, host: str) -> None:
        """Boot the host from its disk: a new boot id, the driver lab-driver installed, its link up, dockerd
        (waited for), then sshd: once SSH answers, Docker does too."""
        node = self._node(host)
        base = self.paths.node_dir(node)
        standins.new_boot_id(base)
        driver.write_installed(base, driver.boot(driver.read_installed(base)))
        self._ensure_fake_gpu(node, base, self.paths.lib / LIBRARY_NAME)
        netns.ensure_node_link(node)
        if self._docker_host(node):
            self._ensure_dockerd(node)
            dockerd.wait_ready(self._dockerd_files(node), node.namespace, time.monotonic() + DOCKER_READY_TIMEOUT_S)
        sshd.stop(self._sshd_files(node), node.namespace)  # a new sshd, so sessions see the new boot id
        self._ensure_sshd(node)
        sshd.wait_ready(self._sshd_files(node), node.namespace, time.monotonic() + READY_TIMEOUT_S)

    def _node(self, name: str) -> Node:
        try:
            return self.layout.node(name)
        except KeyError:
            raise LabError(f"no host {name!r} in this lab") from None

    # -- down -----------------------------------------------------------------------------------------------

    def down(self) -> None:
        """Remove every namespace, link, bridge, process, mount and file this lab made; safe to run twice.

        The image cache (catalog.IMAGE_CACHE) is not the lab's folder and stays, so the next `up` is fast."""
        state = read_state(self.paths)
        power.stop_helper(self.paths.root)  # first: it would bring rebooting hosts back
        stop_fleetctl_router(self.paths.root / ".fleetctl")
        if state is not None:
            self._delete_layout(plan_layout(parse_spec(state["spec"], source=str(self.paths.state))))
        self._delete_layout(self.layout)
        dockerd.unmount_under(self.paths.root)
        left = dockerd.mounts_under(self.paths.root)
        if left:  # never delete files through a mount
            raise LabError(f"cannot remove {self.paths.root}: still mounted: {', '.join(left)}")
        for path in (*self.paths.made(), self.paths.root / ".fleetctl"):  # fleetctl's state of this lab too
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        try:
            self.paths.root.rmdir()
        except OSError:
            pass  # not empty: it holds things the lab did not make

    def _delete_layout(self, layout: Layout) -> None:
        """Stop the hosts' dockerds (together: each may wait for its containers), then remove the network."""
        self._each(layout.hosts, self._stop_dockerd)
        for node in layout.hosts + ((layout.bastion,) if layout.bastion else ()):
            netns.delete_node(node.namespace, node.veth, node.outer_ns)
        netns.delete_bridge(layout.bridge)


def stop_fleetctl_router(state_dir: Path) -> None:
    """Stop the vllm-router that fleetctl started for this lab (its pid and start time are in router.json)."""
    try:
        record = json.loads((state_dir / "router.json").read_text())
        pid, ticks = int(record["pid"]), int(record["start_ticks"])
        if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]) != ticks:
            return  # that pid is another process now
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _running(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has exited; only its parent's wait is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"
