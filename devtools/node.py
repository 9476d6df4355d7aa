"""A real node for the k8s tier: containerd + CNI bridge + kubelet + kube-scheduler on this machine.

Opt-in per test module through the ``kube_node`` fixture. Once per session (``node_runtime``):
containerd (Debian's 1.6, CRI v1, runc) with its own root, state and socket under a temporary
folder, a CNI bridge on a private subnet (:data:`SUBNET`, its gateway
:data:`~devtools.kubeapi.NODE_GATEWAY` on the host) and the images. Per module: the kubelet
registered as the Node ``pgqueue-node`` with a client certificate from the control plane's CA, and
kube-scheduler (Ready in a few seconds); afterwards the node is drained and deleted, so the rest of
the session sees a cluster without nodes, as the emulated tiers (``e2e_pods``) expect.

Pods run the images for real: their entrypoint, user, read-only root filesystem, probes, env from
Secrets, SIGTERM and grace periods, all as a cluster delivers them. Pods reach the host only
through its bridge address, where forwarders listen: :meth:`KubeNode.pod_dsn` gives the DSN of a
host Postgres as a pod must spell it.

Facts this machine imposes (each cost time to find): root lacks CAP_SYS_RESOURCE, so containerd
needs ``restrict_oom_score_adj``; there is no registry, so the sandbox image is built locally
(:mod:`devtools.node_images`) and images come from podman; cgroups are v1 (the kubelet needs
``failCgroupV1: false`` and the cgroupfs driver). The host changes the kubelet makes are undone on
teardown (:mod:`devtools.node_host`); everything started is stopped by pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
import yaml

from devtools import node_host, node_images
from devtools.faultproxy import FaultProxy
from devtools.kubeapi import (
    NODE_GATEWAY,
    REPO,
    ControlPlaneError,
    KubeCluster,
    free_port,
    issue_certificate,
    load_pki,
    write_kubeconfig,
)

# The control plane's process helpers, under the names this module has always used.
from devtools.kubeapi import ManagedProcess as _Proc
from devtools.kubeapi import last_lines as _tail
from devtools.kubeapi import terminate_group as _terminate

NODE_NAME = "pgqueue-node"
SUBNET = NODE_GATEWAY.rsplit(".", 1)[0] + ".0/24"
BRIDGE = "pgqnode0"
CGROUP = "pgqueue-node"  # the kubelet's --cgroup-root: every pod cgroup lives below it
NODE_TOOLS = ("kubelet", "kube-scheduler")
LOCK = Path("/run/lock/pgqueue-test-node.lock")
# The host as it was before the node started; removed once restored. Found at start, it means a
# session was killed mid-run: the sweep restores from it before recording afresh.
HOST_STATE = LOCK.with_suffix(".host.json")
ROOT_PREFIX = "pgqueue-node-"
START_TIMEOUT = 120.0
DRAIN_TIMEOUT = 60.0
WORKER_IMAGE = "localhost/pgqueue-worker:dev"
OPERATOR_IMAGE = "localhost/pgqueue-operator:dev"


class NodeError(ControlPlaneError):
    """The node could not be built, started or reached; the message carries log tails."""


def ensure_node_tools() -> Path:
    """``hack/k8s-node-tools.sh`` (a stamp check taking milliseconds once built)."""
    proc = subprocess.run(
        ["bash", str(REPO / "hack" / "k8s-node-tools.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    directory = Path(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else Path()
    if proc.returncode != 0 or not all((directory / t).is_file() for t in NODE_TOOLS):
        raise NodeError(
            f"hack/k8s-node-tools.sh failed (exit {proc.returncode}):\n"
            + _tail(proc.stdout + proc.stderr)
        )
    return directory


def _containerd_config(root: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{root / "containerd"}"
state = "{root / "run"}"
[grpc]
  address = "{root / "containerd.sock"}"
[ttrpc]
  address = "{root / "containerd.sock.ttrpc"}"
[{cri}]
  sandbox_image = "{node_images.PAUSE_IMAGE}"
  # Root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  # Network namespaces under our state folder, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{root / "cni"}"
"""


def _cni_config(root: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "pgqueue-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # pods talk to the host and each other, never beyond
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": SUBNET, "gateway": NODE_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(root / "cni-ipam"),
                },
            }
        ],
    }


def _kubelet_config(root: Path, ca: Path, cert: Path, key: Path, port: int, health: int) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_GATEWAY,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": health,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "containerRuntimeEndpoint": f"unix://{root / 'containerd.sock'}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP}",
        "failSwapOn": False,
        "failCgroupV1": False,
        "podLogsDir": str(root / "pod-logs"),
        "volumePluginDir": str(root / "volume-plugins"),
        "resolvConf": "/etc/resolv.conf",
        "maxPods": 40,
        "serializeImagePulls": False,
        # Never evict or garbage-collect on this shared disk: the images cannot be pulled again.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "shutdownGracePeriod": "0s",
    }
    return yaml.safe_dump(config)


def _get_json(url: str, ctx: ssl.SSLContext) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except (urllib.error.URLError, OSError, ValueError):
        return None


def node_ready(body: dict[str, Any] | None) -> bool:
    for cond in ((body or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


@dataclass
class KubeNode:
    """The running node: its cluster, name, bridge address, and the tools to feed it."""

    cluster: KubeCluster
    name: str
    gateway: str
    root: Path
    ready_seconds: float
    api_port: int  # the API server, forwarded on the gateway for in-cluster clients
    _forwarders: dict[tuple[str, int], FaultProxy] = field(default_factory=dict)

    @property
    def ctr_command(self) -> list[str]:
        return ["ctr", "--address", str(self.root / "containerd.sock"), "--namespace", "k8s.io"]

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.ctr_command, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if check and proc.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def forward(self, host: str, port: int) -> FaultProxy:
        """A forwarder on the bridge address to ``host:port`` (one per target, kept all session);
        a pod cannot reach the host's loopback, where the test services listen."""
        key = (host, port)
        if key not in self._forwarders:
            self._forwarders[key] = FaultProxy(host, port, host=self.gateway).start()
        return self._forwarders[key]

    def pod_dsn(self, dsn: str) -> str:
        """``dsn`` as a pod spells it: through a forwarder on the node's bridge address."""
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        proxy = self.forward(str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432))))
        return proxy.dsn_for(dsn)

    def kill_container(self, namespace: str, pod: str, container: str | None = None) -> None:
        """SIGKILL a pod's container through containerd, as an OOM kill or a crash would end it
        (the kubelet then restarts it); ``kubectl delete --force`` would be a SIGTERM instead."""
        out = self.cluster.kubectl("-n", namespace, "get", "pod", pod, "-o", "json")
        statuses = json.loads(out.stdout)["status"].get("containerStatuses") or []
        for status in statuses:
            if container is None or status["name"] == container:
                self.ctr("tasks", "kill", "--signal", "SIGKILL",
                         status["containerID"].removeprefix("containerd://"))  # fmt: skip
                return
        raise NodeError(f"pod {namespace}/{pod} has no running container {container or ''}")

    def import_image(self, image: str) -> float:
        """Move ``image`` from podman's store into the node's containerd; returns seconds."""
        return node_images.import_from_podman(self.ctr_command, image)

    def stop_forwarders(self) -> None:
        for proxy in self._forwarders.values():
            proxy.stop()
        self._forwarders.clear()


@dataclass
class NodeRunner:
    """Starts and stops the node's processes (containerd, kubelet, kube-scheduler) in ``root``."""

    cluster: KubeCluster
    bin_dir: Path
    root: Path
    procs: list[_Proc] = field(default_factory=list)
    host_state: node_host.HostState | None = None
    node: KubeNode | None = None
    _lock_file: IO[str] | None = None

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def sock(self) -> Path:
        return self.root / "containerd.sock"

    def _spawn(self, name: str, exe: str, args: list[str]) -> _Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        log_file = log.open("ab")  # the kubelet starts once per module: keep every run's log
        popen = subprocess.Popen(
            [exe, *args],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.root,
        )
        proc = _Proc(name, popen, log, log_file)
        self.procs.append(proc)
        # A killed session leaves this list for the next one's sweep (see _sweep).
        with (self.root / "pids").open("a") as pids:
            pids.write(f"{popen.pid} {exe}\n")
        return proc

    def logs(self, lines: int = 40) -> str:
        return "\n".join(p.tail(lines) for p in self.procs)

    def _fail(self, message: str) -> NodeError:
        return NodeError(f"{message}\n{self.logs()}")

    # The same loop as devtools.kubeapi.ControlPlane's, on purpose: its own error, its own logs.
    def _await(self, what: str, proc: _Proc, ready: Any, deadline: float) -> None:
        while not ready():
            if proc.popen.poll() is not None:
                raise self._fail(f"{proc.name} exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise self._fail(f"timed out waiting for {what}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=0.2)  # the poll interval doubles as a liveness check

    # -- start ---------------------------------------------------------------------------------

    def _take_lock(self, timeout: float = 900.0) -> None:
        """One node per machine: the bridge, subnet, cgroup root and sysctls are machine-wide."""
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = LOCK.open("w")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    msg = f"another test node holds {LOCK} for over {timeout:.0f}s"
                    raise NodeError(msg) from None
                time.sleep(1)  # poll interval of a deadline loop

    def _sweep(self) -> None:
        """What a killed session left: its processes (by the pids it recorded), mounts, folders."""
        roots = [p for p in Path(tempfile.gettempdir()).glob(ROOT_PREFIX + "*") if p != self.root]
        for old in roots:
            pids = old / "pids"
            if not pids.is_file():
                continue
            for line in pids.read_text().splitlines():
                pid_s, exe = line.split(" ", 1)
                pid = int(pid_s)
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
                    if cmdline == exe:
                        os.killpg(pid, signal.SIGKILL)
            for pid in node_host.pids_in(old / "run") + node_host.shims_of(old / "containerd.sock"):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        errors = node_host.sweep_leftovers(bridge=BRIDGE, cgroup=CGROUP, roots=roots)
        if HOST_STATE.is_file():
            errors += node_host.restore(node_host.load(HOST_STATE), bridge=BRIDGE, cgroup=CGROUP)
            if not errors:
                HOST_STATE.unlink()
        if errors:
            sys.stderr.write("node: leftovers not removed:\n  " + "\n  ".join(errors) + "\n")

    def start(self, timeout: float = START_TIMEOUT) -> KubeNode:
        """The runtime: host record, bridge, cgroups, containerd with the pause image."""
        self._take_lock()
        try:
            self._sweep()
            if HOST_STATE.is_file():  # the sweep could not restore it: that is the original
                self.host_state = node_host.load(HOST_STATE)
            else:
                self.host_state = node_host.record()
                node_host.save(self.host_state, HOST_STATE)
            node = self._start_runtime(time.monotonic() + timeout)
        except BaseException:
            self.stop(keep_logs=True)
            raise
        return node

    def _start_runtime(self, deadline: float) -> KubeNode:
        if self.cluster.pki_dir is None:
            raise NodeError("the node joins the harness's own control plane (kind has nodes)")
        for sub in ("cni", "cni-ipam", "pod-logs", "volume-plugins", "kubelet", "pki"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        node_host.make_bridge(BRIDGE, f"{NODE_GATEWAY}/24")
        node_host.make_cgroups(CGROUP)
        # Pods may reach the host and each other; forwarding them elsewhere is dropped.
        subprocess.run(
            ["iptables", "-w", "5", "-I", "FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP"],
            capture_output=True,
            text=True,
            check=True,
        )
        (self.root / "cni" / "10-pgqueue.conflist").write_text(
            json.dumps(_cni_config(self.root), indent=2)
        )
        config = self.root / "containerd.toml"
        config.write_text(_containerd_config(self.root))
        containerd = self._spawn("containerd", "/usr/bin/containerd", ["--config", str(config)])
        node = self._handle()

        def containerd_up() -> bool:
            return node.ctr("version", check=False).returncode == 0

        self._await("containerd", containerd, containerd_up, deadline)
        node_images.ctr_import(node.ctr_command, node_images.pause_archive())
        node.forward("127.0.0.1", node.api_port)
        return node

    def _handle(self) -> KubeNode:
        if self.node is None:
            port = int(self.cluster.server.rsplit(":", 1)[1])
            self.node = KubeNode(self.cluster, NODE_NAME, NODE_GATEWAY, self.root, 0.0, port)
        return self.node

    # -- join and leave the cluster ------------------------------------------------------------

    @property
    def joined(self) -> bool:
        return any(p.name == "kubelet" for p in self.procs)

    def join(self, timeout: float = START_TIMEOUT) -> KubeNode:
        """Start kubelet and kube-scheduler and wait for the Node to be Ready."""
        node = self._handle()
        pki_dir = self.cluster.pki_dir
        assert pki_dir is not None
        t0 = time.monotonic()
        deadline = t0 + timeout
        pki = load_pki(pki_dir)
        tls = self.root / "pki"
        client = issue_certificate(
            pki_dir, "kubelet-client", f"system:node:{NODE_NAME}", organizations=("system:nodes",)
        )
        serving = issue_certificate(
            pki_dir, "kubelet-serving", NODE_NAME, server_names=(NODE_NAME,),
            server_ips=(NODE_GATEWAY,),
        )  # fmt: skip
        kubeconfig = tls / "kubelet.kubeconfig"
        write_kubeconfig(
            kubeconfig, self.cluster.server, pki, client=client, user=f"system:node:{NODE_NAME}"
        )
        kubelet_config = self.root / "kubelet.yaml"
        kubelet_config.write_text(
            _kubelet_config(self.root, pki.ca_cert, *serving, free_port(), free_port())
        )
        # Each command line in full, alike in shape only: every flag is one a reader checks.
        kubelet = self._spawn(
            "kubelet",
            str(self.bin_dir / "kubelet"),
            [
                f"--config={kubelet_config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.root / 'kubelet'}",
                f"--cert-dir={tls}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_GATEWAY}",
                "--v=1",
            ],
        )
        # The scheduler's command line in full, like the kubelet's above (shape only, on purpose).
        scheduler = self._spawn(
            "kube-scheduler",
            str(self.bin_dir / "kube-scheduler"),
            [
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--authentication-kubeconfig={self.cluster.kubeconfig}",
                f"--authorization-kubeconfig={self.cluster.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        url = f"{self.cluster.server}/api/v1/nodes/{NODE_NAME}"
        self._await(
            "the Node to be Ready", kubelet, lambda: node_ready(_get_json(url, ctx)), deadline
        )
        if scheduler.popen.poll() is not None:
            raise self._fail("kube-scheduler exited")
        node.ready_seconds = time.monotonic() - t0
        return node

    def leave(self) -> None:
        """Drain, stop kubelet and kube-scheduler, delete the Node: the cluster has no node again
        (other tiers, like the e2e story, decide how to run pods from that)."""
        if not self.joined:
            return
        with contextlib.suppress(Exception):
            self._drain()
        for proc in [p for p in self.procs if p.name in ("kubelet", "kube-scheduler")]:
            _terminate(proc.popen)
            proc.log_file.close()
            self.procs.remove(proc)
        self.cluster.kubectl("delete", "node", NODE_NAME, "--ignore-not-found", check=False)

    # -- stop ----------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Cordon, delete every pod on the node and wait for containerd to have no task left, so
        the kubelet tears the pod networks and mounts down itself (CNI DEL, netns, volumes)."""
        kube = self.cluster
        kube.kubectl("cordon", NODE_NAME, check=False)
        kube.kubectl(
            "delete", "pods", "--all-namespaces", "--field-selector", f"spec.nodeName={NODE_NAME}",
            "--grace-period=1", "--wait=false", check=False,
        )  # fmt: skip
        node = self.node
        if node is None:
            return
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < deadline:
            tasks = node.ctr("tasks", "list", "--quiet", check=False)
            if tasks.returncode != 0 or not tasks.stdout.strip():
                return
            time.sleep(0.5)  # poll interval of a deadline loop

    def _kill_tasks(self) -> None:
        node = self.node
        if node is None:
            return
        tasks = node.ctr("tasks", "list", "--quiet", check=False)
        for task in tasks.stdout.split():
            node.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)

    def stop(self, *, keep_logs: bool = False) -> list[str]:
        """Stop everything this node started; returns host changes that could not be undone."""
        with contextlib.suppress(Exception):
            self.leave()
        if self.node is not None:
            self.node.stop_forwarders()
        for proc in reversed(self.procs):
            if proc.name == "containerd":
                with contextlib.suppress(Exception):
                    self._kill_tasks()
            _terminate(proc.popen)
            proc.log_file.close()
        self.procs.clear()
        # Shims (and any container init) outlive containerd by design: stop them by their pids.
        for pid in node_host.pids_in(self.root / "run") + node_host.shims_of(self.sock):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        errors: list[str] = []
        node_host.unmount_all(self.root, errors)
        if self.host_state is not None:
            errors += node_host.restore(self.host_state, bridge=BRIDGE, cgroup=CGROUP)
            if not errors:
                HOST_STATE.unlink(missing_ok=True)
        self.node = None
        for child in self.root.iterdir() if self.root.exists() else []:
            if keep_logs and child == self.log_dir:
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        if not keep_logs:
            shutil.rmtree(self.root, ignore_errors=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        return errors
