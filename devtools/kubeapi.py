"""A real Kubernetes control plane for the k8s tier: etcd, kube-apiserver, kube-controller-manager.

The binaries come from ``make k8s-tools`` (built from the Go module proxy into a cache outside the
clone); :class:`ControlPlane` gives them fresh certificates, free loopback ports and a temp dir, and
waits for real readiness signals (etcd ``/health``, apiserver ``/readyz``, the controller-manager
having created the ``default`` ServiceAccount) rather than sleeping. ``PGQUEUE_TEST_KUBECONFIG``
points the tier at an existing cluster (kind) instead, and then nothing is built or started.
In CI (``CI=true``) a control plane that cannot be built or started fails the tier; it never skips.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
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

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("kube-apiserver", "kube-controller-manager", "kubectl", "etcd", "helm")
KUBECONFIG_ENV = "PGQUEUE_TEST_KUBECONFIG"
START_TIMEOUT = 90.0
# The test node's bridge address (devtools.node): the kubelet's node IP, and where pods reach
# the host (Postgres, the API server) through forwarders. In the serving certificate's SANs.
NODE_GATEWAY = "10.213.7.1"
STOP_TIMEOUT = 15.0


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached; the message carries log tails."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


# --------------------------------------------------------------------------------------------
# The cluster handle the tests use.


@dataclass(frozen=True)
class KubeCluster:
    """A reachable cluster: its kubeconfig, API server URL, and the pinned kubectl and helm."""

    kubeconfig: Path
    server: str
    bin_dir: Path
    helm_home: Path
    # The harness's CA and certificates (a private control plane only; None for a kind cluster).
    pki_dir: Path | None = None

    def tool(self, name: str) -> str:
        """The pinned binary from ``bin_dir``, else one on PATH (for a kind cluster)."""
        pinned = self.bin_dir / name
        if pinned.is_file():
            return str(pinned)
        found = shutil.which(name)
        if found is None:
            raise ControlPlaneError(f"{name} is neither in {self.bin_dir} nor on PATH")
        return found

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.tool("kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        return _run(cmd, input=input, check=check, timeout=_outlasting(args, timeout), env=None)

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        # Helm's caches and config go to a private folder, never the user's home.
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.helm_home / "cache"),
            "HELM_CONFIG_HOME": str(self.helm_home / "config"),
            "HELM_DATA_HOME": str(self.helm_home / "data"),
        }
        return _run([self.tool("helm"), *args], input=input, check=check, timeout=timeout, env=env)

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` configured from :attr:`kubeconfig`; close it after."""
        from kubernetes import config

        # The kubernetes package is untyped; keep the Any at this one boundary.
        new_client: Any = config.new_client_from_config
        return new_client(config_file=str(self.kubeconfig))


class CommandError(subprocess.CalledProcessError):
    """A failed kubectl/helm call whose message carries the command's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr:\n{last_lines(self.stderr or '')}"


def _outlasting(args: tuple[str, ...], timeout: float) -> float:
    """A wait long enough for kubectl's own ``--timeout=``: a subprocess killed first raises
    TimeoutExpired whatever ``check`` says (a ``delete --timeout=60s`` under load did, as a
    teardown error, before kubectl could report)."""
    own = [a.removeprefix("--timeout=") for a in args if a.startswith("--timeout=")]
    if own:
        try:
            # kubectl's durations as the tests write them: "30s", "2m".
            seconds = float(own[-1][:-1]) * {"s": 1, "m": 60}[own[-1][-1]]
        except (KeyError, ValueError):
            return timeout
        return max(timeout, seconds + 30.0)
    return timeout


def _run(
    cmd: list[str], *, input: str | None, check: bool, timeout: float, env: dict[str, str] | None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc


# --------------------------------------------------------------------------------------------
# Tools.


def bin_dir() -> Path:
    """Where ``make k8s-tools`` puts the pinned tools (``hack/k8s-bin-dir.sh`` knows)."""
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "k8s-bin-dir.sh")],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def tools_present(directory: Path) -> bool:
    return (directory / ".stamp").is_file() and all((directory / t).is_file() for t in TOOLS)


def ensure_tools() -> Path:
    """The bin dir, after ``hack/k8s-tools.sh`` (a stamp check taking milliseconds once built)."""
    directory = bin_dir()
    proc = subprocess.run(
        ["bash", str(REPO / "hack" / "k8s-tools.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not tools_present(directory):
        raise ControlPlaneError(
            f"hack/k8s-tools.sh failed (exit {proc.returncode}):\n"
            + last_lines(proc.stdout + proc.stderr)
        )
    return directory


# --------------------------------------------------------------------------------------------
# Certificates: one CA, an apiserver serving cert, client certs, the service-account key pair.


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class _Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Signatures for every certificate; certificate and CRL signing only for the CA."""
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=False,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    subject: x509.Name,
    *,
    server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    # make_pki's CA builder chain reads like this one on purpose: see the reason there.
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
    )
    if server_names or server_ips:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
    else:
        usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(directory: Path) -> _Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pgqueue-test-ca")])
    now = datetime.datetime.now(datetime.UTC)
    # The CA's builder chain reads like _issue's on purpose: each certificate's fields stated in
    # full, in the order x509 documents them, is what a reader checks against a TLS error.
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    serving, serving_key = _issue(
        ca_key,
        ca_name,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        server_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        server_ips=("127.0.0.1", "10.96.0.1", NODE_GATEWAY),
    )
    # system:masters is the admin group; the controller-manager uses this identity too
    # (--use-service-account-credentials=false), so one client cert serves both.
    admin, admin_key = _issue(
        ca_key,
        ca_name,
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "pgqueue-test-admin"),
            ]
        ),
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki = _Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
    )
    pki.ca_cert.write_bytes(_pem_cert(ca_cert))
    pki.ca_key.write_bytes(_pem_key(ca_key))
    pki.serving_cert.write_bytes(_pem_cert(serving) + _pem_cert(ca_cert))
    pki.serving_key.write_bytes(_pem_key(serving_key))
    pki.admin_cert.write_bytes(_pem_cert(admin))
    pki.admin_key.write_bytes(_pem_key(admin_key))
    pki.sa_key.write_bytes(_pem_key(sa_key))
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for key_file in (pki.ca_key, pki.serving_key, pki.admin_key, pki.sa_key):
        key_file.chmod(0o600)
    return pki


def load_pki(directory: Path) -> _Pki:
    """The files :func:`make_pki` wrote to ``directory``."""
    return _Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
    )


def issue_certificate(
    pki_dir: Path,
    name: str,
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
) -> tuple[Path, Path]:
    """A certificate from the harness's CA in ``pki_dir`` (``name``.crt/.key); a client certificate
    unless server names or IPs are given. Returns (certificate, key)."""
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    cert, key = _issue(
        ca_key,
        ca_cert.subject,
        x509.Name(subject),
        server_names=server_names,
        server_ips=server_ips,
    )
    cert_path, key_path = pki_dir / f"{name}.crt", pki_dir / f"{name}.key"
    cert_path.write_bytes(_pem_cert(cert))
    key_path.write_bytes(_pem_key(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def write_kubeconfig(
    path: Path,
    server: str,
    pki: _Pki,
    *,
    client: tuple[Path, Path] | None = None,
    user: str = "pgqueue-test-admin",
) -> None:
    """A kubeconfig for ``server``: the admin identity, or ``client`` (certificate, key)."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    cert, key = client or (pki.admin_cert, pki.admin_key)

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "pgqueue-test",
                "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [
            {
                "name": "pgqueue-test",
                "context": {"cluster": "pgqueue-test", "user": user},
            }
        ],
        "current-context": "pgqueue-test",
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    path.chmod(0o600)


# --------------------------------------------------------------------------------------------
# Processes.


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def last_lines(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    log_file: IO[bytes]

    def tail(self, lines: int = 40) -> str:
        self.log_file.flush()
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (exit={self.popen.poll()}) {self.log}\n{last_lines(text, lines)}"


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, in ``workdir``.

    Usable outside pytest (``make demo-k8s``): ``cluster = ControlPlane(bin_dir, workdir).start()``
    then ``.stop()``; or ``python -m devtools.kubeapi`` to run one until Ctrl-C.
    """

    bin_dir: Path
    workdir: Path
    procs: list[ManagedProcess] = field(default_factory=list)
    cluster: KubeCluster | None = None
    startup_seconds: float = 0.0

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    def _spawn(self, name: str, args: list[str]) -> ManagedProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        log_file = log.open("wb")
        popen = subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches every child
            cwd=self.workdir,
        )
        proc = ManagedProcess(name, popen, log, log_file)
        self.procs.append(proc)
        return proc

    def logs(self, lines: int = 40) -> str:
        return "\n".join(p.tail(lines) for p in self.procs)

    def _fail(self, message: str) -> ControlPlaneError:
        return ControlPlaneError(f"{message}\n{self.logs()}")

    # devtools.node supervises its kubelet and containerd with the same few lines (spawn, logs,
    # await): kept apart on purpose, as each raises its own error (ControlPlaneError, NodeError)
    # with its own processes' logs, and the node is a test fixture, not a tool.
    def _await(self, what: str, proc: ManagedProcess, ready: Any, deadline: float) -> None:
        """Poll ``ready()`` until true; fail early if ``proc`` exits, or at ``deadline``."""
        while not ready():
            if proc.popen.poll() is not None:
                raise self._fail(f"{proc.name} exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise self._fail(f"timed out waiting for {what}")
            # The poll interval doubles as a liveness check on the process.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=0.1)

    def start(self, timeout: float = START_TIMEOUT) -> KubeCluster:
        t0 = time.monotonic()
        deadline = t0 + timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            cluster = self._start(deadline)
        except BaseException:
            self.stop(keep_logs=True)
            raise
        self.startup_seconds = time.monotonic() - t0
        self.cluster = cluster
        return cluster

    def _start(self, deadline: float) -> KubeCluster:
        pki = make_pki(self.workdir / "pki")

        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",  # throwaway data: durability buys nothing, fsync costs
                "--log-level=warn",
            ],
        )
        self._await("etcd /health", etcd, lambda: _http_ok(f"{etcd_url}/health"), deadline)

        port = free_port()
        server = f"https://127.0.0.1:{port}"
        apiserver = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                # Node: the kubelet of devtools.node acts as system:node:<name>.
                "--authorization-mode=Node,RBAC",
                # logs/exec/port-forward: the API server calls the kubelet as an admin, and checks
                # the kubelet's serving certificate against the same CA.
                f"--kubelet-client-certificate={pki.admin_cert}",
                f"--kubelet-client-key={pki.admin_key}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--anonymous-auth=false",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--profiling=false",
            ],
        )
        readyz = _mtls_context(pki)
        self._await(
            "kube-apiserver /readyz",
            apiserver,
            lambda: _http_ok(f"{server}/readyz", readyz),
            deadline,
        )

        kubeconfig = self.workdir / "kubeconfig"
        write_kubeconfig(kubeconfig, server, pki)
        controller_manager = self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--controllers=*",
                "--leader-elect=false",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                "--profiling=false",
            ],
        )
        # The serviceaccount controller creating default/default proves the controllers run.
        self._await(
            "kube-controller-manager (ServiceAccount default/default)",
            controller_manager,
            lambda: _http_ok(f"{server}/api/v1/namespaces/default/serviceaccounts/default", readyz),
            deadline,
        )
        helm_home = self.workdir / "helm"
        helm_home.mkdir(exist_ok=True)
        return KubeCluster(
            kubeconfig=kubeconfig,
            server=server,
            bin_dir=self.bin_dir,
            helm_home=helm_home,
            pki_dir=pki.ca_cert.parent,
        )

    def stop(self, *, keep_logs: bool = False) -> None:
        """Stop in reverse order (process groups: TERM, then KILL); remove the workdir.

        With ``keep_logs`` the logs folder survives (everything else is removed).
        """
        for proc in reversed(self.procs):
            terminate_group(proc.popen)
            proc.log_file.close()
        self.procs.clear()
        self.cluster = None
        if not self.workdir.exists():
            return
        for child in self.workdir.iterdir():
            if keep_logs and child == self.log_dir:
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        if not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)


def terminate_group(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        try:
            os.killpg(popen.pid, sig)
        except ProcessLookupError:
            return
        try:
            popen.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        return


def _mtls_context(pki: _Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return ctx


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def server_of(kubeconfig: Path) -> str:
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    return str(cluster["cluster"]["server"])


def main() -> None:
    """Run a control plane in the foreground until interrupted; print its kubeconfig path."""
    workdir = Path(tempfile.mkdtemp(prefix="pgqueue-kube-"))
    plane = ControlPlane(ensure_tools(), workdir)
    cluster = plane.start()
    print(f"control plane up in {plane.startup_seconds:.1f}s; server {cluster.server}")
    print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        plane.stop()


if __name__ == "__main__":
    main()
