"""The host state a test node changes, recorded before it starts and put back after it stops.

A kubelet and containerd are not polite guests: the kubelet sets kernel sysctls
(``vm.overcommit_memory``, ``kernel.panic*``, ``kernel.keys.*``) and adds iptables chains (its
``KUBE-*`` canaries, in both families); pods leave mounts (rootfs overlays, tmpfs volumes, shm,
network namespaces) and cgroups; the CNI bridge stays after its last pod. :func:`record` takes
what the machine looks like; :func:`restore` undoes exactly the difference, leaving whatever else
(another session's podman rules, say) untouched. It runs on every teardown, failed runs included,
and :func:`sweep_leftovers` removes what a killed session left behind before a new node starts.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# What kubelet's container manager sets (pkg/kubelet/cm: setupKernelTunables) unless it may not,
# and ip_forward, which the CNI bridge plugin turns on for a gateway bridge.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class HostState:
    sysctls: dict[str, str] = field(default_factory=dict)
    # (tool, table) -> (chains, rules) as iptables-save prints them (a rule may repeat).
    iptables: dict[tuple[str, str], tuple[set[str], list[str]]] = field(default_factory=dict)


def save(state: HostState, path: Path) -> None:
    """Keep the state outside the session: if it is killed, the next node restores from it."""
    body = {
        "sysctls": state.sysctls,
        "iptables": [
            {"tool": tool, "table": table, "chains": sorted(chains), "rules": sorted(rules)}
            for (tool, table), (chains, rules) in state.iptables.items()
        ],
    }
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(body, indent=1))
    partial.rename(path)


def load(path: Path) -> HostState:
    body = json.loads(path.read_text())
    state = HostState(sysctls=dict(body["sysctls"]))
    for entry in body["iptables"]:
        state.iptables[(entry["tool"], entry["table"])] = (
            set(entry["chains"]),
            list(entry["rules"]),
        )
    return state


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def _iptables_save(tool: str, table: str) -> tuple[set[str], list[str]] | None:
    exe = shutil.which(f"{tool}-save")
    if exe is None:
        return None
    proc = subprocess.run(
        [exe, "-t", table], capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        return None
    chains = {line[1:].split()[0] for line in proc.stdout.splitlines() if line.startswith(":")}
    rules = [line for line in proc.stdout.splitlines() if line.startswith("-A ")]
    return chains, rules


def record() -> HostState:
    state = HostState()
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            state.sysctls[name] = _sysctl_path(name).read_text().strip()
    for tool in IPTABLES:
        for table in TABLES:
            saved = _iptables_save(tool, table)
            if saved is not None:
                state.iptables[(tool, table)] = saved
    return state


def _restore_iptables(state: HostState, owned: tuple[str, ...], errors: list[str]) -> None:
    """Remove the rules and chains added since :func:`record` that mention one of ``owned``
    (``KUBE-``, the bridge): others (podman's CNI chains, say) belong to someone else."""
    for (tool, table), (chains_before, rules_before) in state.iptables.items():
        now = _iptables_save(tool, table)
        if now is None:
            continue
        chains_now, rules_now = now
        added = collections.Counter(rules_now) - collections.Counter(rules_before)
        new_rules = [r for r in added.elements() if any(o in r for o in owned)]
        new_chains = {c for c in chains_now - chains_before if c.startswith(owned)}
        # Rules first (they may jump to the new chains).
        for rule in sorted(new_rules, reverse=True):
            args = shlex.split(rule)
            args[0] = "-D"
            proc = subprocess.run(
                [tool, "-w", "5", "-t", table, *args], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                errors.append(f"{tool} -t {table} {' '.join(args)}: {proc.stderr.strip()}")
        for chain in sorted(new_chains):
            for op in ("-F", "-X"):
                proc = subprocess.run(
                    [tool, "-w", "5", "-t", table, op, chain],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    errors.append(f"{tool} -t {table} {op} {chain}: {proc.stderr.strip()}")


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest (latest) first."""
    prefix = str(root).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point == str(root) or point.startswith(prefix):
                found.append(point)
    return list(reversed(found))


def unmount_all(root: Path, errors: list[str]) -> None:
    for point in mounts_under(root):
        proc = subprocess.run(["umount", point], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            # Busy (a process still holds it): detach it now, the kernel frees it when released.
            lazy = subprocess.run(
                ["umount", "-l", point], capture_output=True, text=True, check=False
            )
            if lazy.returncode != 0:
                errors.append(f"umount {point}: {proc.stderr.strip()} / {lazy.stderr.strip()}")


def remove_cgroups(name: str, errors: list[str]) -> None:
    """rmdir the cgroup ``/<name>`` tree in every v1 controller (and v2), deepest first."""
    if not CGROUP_ROOT.is_dir():
        return
    for controller in CGROUP_ROOT.iterdir():
        top = controller / name
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, top]:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                errors.append(f"rmdir {d}: {exc}")


def make_cgroups(name: str) -> None:
    """``/<name>`` in every controller: the kubelet's --cgroup-root must exist beforehand."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # v2: one hierarchy
        (CGROUP_ROOT / name).mkdir(exist_ok=True)
        return
    for controller in CGROUP_ROOT.iterdir():
        if not controller.is_symlink() and (controller / "tasks").exists():
            (controller / name).mkdir(exist_ok=True)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def make_bridge(name: str, address: str) -> None:
    """The pod bridge with the gateway address up before the node starts, so the kubelet can take
    the address as its node IP and forwarders can bind to it (the CNI plugin adopts the bridge)."""
    for cmd in (
        ["ip", "link", "add", name, "type", "bridge"],
        ["ip", "addr", "add", address, "dev", name],
        ["ip", "link", "set", name, "up"],
    ):
        subprocess.run(cmd, capture_output=True, text=True, check=True)


def delete_link(name: str, errors: list[str]) -> None:
    if not link_exists(name):
        return
    proc = subprocess.run(
        ["ip", "link", "delete", name], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        errors.append(f"ip link delete {name}: {proc.stderr.strip()}")


def restore(state: HostState, *, bridge: str, cgroup: str) -> list[str]:
    """Undo the node's host changes; returns what could not be undone (empty when clean)."""
    errors: list[str] = []
    delete_link(bridge, errors)
    for name, value in state.sysctls.items():
        path = _sysctl_path(name)
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError as exc:
            errors.append(f"sysctl {name}={value}: {exc}")
    _restore_iptables(state, ("KUBE-", bridge), errors)
    remove_cgroups(cgroup, errors)
    return errors


def sweep_leftovers(*, bridge: str, cgroup: str, roots: list[Path]) -> list[str]:
    """Before a node starts: what a killed session left (its temp roots' mounts, the bridge, the
    cgroups). Only names this harness owns are touched."""
    errors: list[str] = []
    for root in roots:
        unmount_all(root, errors)
        shutil.rmtree(root, ignore_errors=True)
    delete_link(bridge, errors)
    remove_cgroups(cgroup, errors)
    return errors


def pids_in(path: Path) -> list[int]:
    """The pids in the ``*.pid`` files below ``path`` (containerd shims, container inits)."""
    found = []
    for pid_file in path.rglob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            found.append(int(pid_file.read_text().strip()))
    return found


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def shims_of(socket: Path) -> list[int]:
    """Pids of the containerd shims serving ``socket``: they outlive containerd by design and
    carry its address on their command line (``-address <socket>``), which names them exactly."""
    wanted = str(socket).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and wanted in argv:
                found.append(int(proc.name))
    return found
