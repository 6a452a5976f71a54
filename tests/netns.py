"""Real multi-host runs on one machine, across Linux network namespaces.

A thin wrapper around ``launchers/netns.sh`` for tests (needs root and ``ip``)::

    reason = netns_available()
    if reason:
        pytest.skip(reason)
    with Testnet(unique_prefix("run"), 4) as net:
        capture = net.capture(tmp_path / "br0.pcap")    # tcpdump on the switch
        run = run_parties_in_netns(net, SPEC, tmp_path, extra_args=["--set", "train.epochs=1"])
        codes = run.wait()                               # {name: exit code}
        capture.stop()
    packets = tcp_packets(tmp_path / "br0.pcap")         # [(src, sport, dst, dport, ...)]

Host ``i`` is namespace ``PREFIX-h<i>`` with one interface ``eth0`` at
``10.231.7.<i+1>/24``; all hosts hang off bridge ``br0`` in ``PREFIX-br``.
Nothing is added to the root namespace, so no packet leaves the namespaces.
Rank ``r`` of a spec runs on host ``r``; rank 0's address is the rendezvous.
Every process gets ``GLOO_SOCKET_IFNAME=eth0`` (gloo would otherwise bind to
the address the hostname resolves to: loopback) and, unless the caller passes
``--keys``, its own key folder (its ``NAME.key``, every ``NAME.pub``), so the
channels are encrypted as between separate organisations.

``Testnet`` always tears down on exit (kills every process in its namespaces
and deletes them), also after a failed test. Prefixes must be unique per test
(``unique_prefix``) so parallel and aborted runs do not collide.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testkit import REPO

SCRIPT = REPO / "launchers" / "netns.sh"
SUBNET = "10.231.7"
MASTER_PORT = 29500
IFACE = "eth0"


def secure_ml_bin() -> str:
    """The ``secure-ml`` executable of the project's venv (else the one on PATH)."""
    venv = REPO / ".venv" / "bin" / "secure-ml"
    if os.access(venv, os.X_OK):
        return str(venv)
    return shutil.which("secure-ml") or str(venv)


def unique_prefix(stem: str = "t") -> str:
    """A short namespace prefix (at most 10 characters) unique to this call."""
    stem = re.sub(r"[^a-z0-9]", "", stem.lower())[:4] or "t"
    return f"{stem}{uuid.uuid4().hex[:6]}"


def netns_available() -> str | None:
    """None when network namespaces can be used here, else why not (a skip reason)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    probe = f"probe{uuid.uuid4().hex[:5]}"
    try:
        steps = (
            ["ip", "netns", "add", probe],
            ["ip", "-n", probe, "link", "add", "br0", "type", "bridge"],
            ["ip", "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
        )
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                return f"`{' '.join(step)}` failed: {done.stderr.strip()}"
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"network namespaces unusable: {error}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


def ensure_tcpdump() -> str | None:
    """Install Debian's ``tcpdump`` when missing; None when usable, else a skip reason."""
    if shutil.which("tcpdump"):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "tcpdump is missing and cannot be installed (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "tcpdump"]
    for before in ([], [["apt-get", "update", "-q"]]):
        try:
            for cmd in [*before, install]:
                subprocess.run(cmd, env=env, capture_output=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"installing tcpdump failed: {error}"
        if shutil.which("tcpdump"):
            return None
    return "tcpdump is missing and `apt-get install tcpdump` failed"


@dataclass
class Capture:
    """A running ``tcpdump -i br0`` in the bridge namespace; ``stop()`` ends it."""

    proc: subprocess.Popen
    path: Path
    log: Path

    def stop(self, timeout: float = 10.0) -> Path:
        """End the capture cleanly (SIGINT: tcpdump flushes and closes the file)."""
        if self.proc.poll() is None:
            time.sleep(0.2)  # let the last packets through the bridge
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.path


class Testnet:
    """``n`` namespaced hosts on one bridge: ``netns.sh up`` on enter, ``down`` on exit."""

    __test__ = False  # not a pytest test class

    def __init__(self, prefix: str, n: int, subnet: str = SUBNET):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,9}", prefix):
            raise ValueError(f"prefix {prefix!r}: at most 10 letters, digits or '-'")
        self.prefix, self.n, self.subnet = prefix, n, subnet
        self._up = False

    def __enter__(self) -> Testnet:
        try:
            self._script("up", self.prefix, str(self.n), self.subnet)
        except BaseException:
            self.down()
            raise
        self._up = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def down(self) -> None:
        """Kill every process in the namespaces and delete them (idempotent)."""
        self._script("down", self.prefix)
        self._up = False

    def namespaces(self) -> list[str]:
        """This testnet's namespaces that exist now."""
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        pattern = re.compile(rf"{re.escape(self.prefix)}-(br|h\d+)")
        names = (line.split()[0] for line in out.splitlines() if line.strip())
        return [name for name in names if pattern.fullmatch(name)]

    def ns(self, i: int) -> str:
        if not 0 <= i < self.n:
            raise IndexError(f"host {i} of {self.n}")
        return f"{self.prefix}-h{i}"

    @property
    def bridge_ns(self) -> str:
        return f"{self.prefix}-br"

    def addr(self, i: int) -> str:
        self.ns(i)
        return f"{self.subnet}.{i + 1}"

    def addresses(self) -> list[str]:
        return [self.addr(i) for i in range(self.n)]

    def popen(
        self, i: int, argv: Sequence[str], env: Mapping[str, str] | None = None, **kw: object
    ) -> subprocess.Popen:
        """Start ``argv`` inside host ``i`` (new session, stdin from /dev/null)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns(i), *map(str, argv)],
            env=dict(os.environ if env is None else env),
            **kw,  # type: ignore[arg-type]
        )

    def run(self, i: int, argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess:
        """Run ``argv`` to completion inside host ``i`` (output captured as text)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(["ip", "netns", "exec", self.ns(i), *map(str, argv)], **kw)  # type: ignore[call-overload]

    def link_down(self, i: int) -> None:
        """Unplug host ``i``: its ``eth0`` goes down (packets to and from it are lost)."""
        subprocess.run(["ip", "-n", self.ns(i), "link", "set", IFACE, "down"], check=True)

    def link_up(self, i: int) -> None:
        subprocess.run(["ip", "-n", self.ns(i), "link", "set", IFACE, "up"], check=True)

    def capture(self, path: str | Path, *, snaplen: int = 0, timeout: float = 10.0) -> Capture:
        """Start ``tcpdump -i br0 -w path -U`` in the bridge namespace; returns once it listens.

        Call ``ensure_tcpdump()`` first. ``snaplen`` 0 keeps whole packets.
        """
        path = Path(path)
        log = path.with_name(path.name + ".log")
        argv = ["ip", "netns", "exec", self.bridge_ns, "tcpdump", "-i", "br0", "-w", str(path)]
        # -U: write each packet as it arrives; -Z root: keep root so the file
        # can be written wherever the test wants it (Debian's tcpdump drops to
        # the tcpdump user otherwise); -n: no name lookups
        argv += ["-U", "-n", "-Z", "root", "-s", str(snaplen)]
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while b"listening on" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"tcpdump did not start: {log.read_text(errors='replace')}")
            time.sleep(0.05)
        return Capture(proc=proc, path=path, log=log)

    def _script(self, *args: str) -> str:
        done = subprocess.run(
            ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"netns.sh {' '.join(args)} failed:\n{done.stderr}{done.stdout}")
        return done.stdout


# -- one secure-ml process per rank ------------------------------------------


@dataclass(frozen=True)
class RankInfo:
    rank: int
    name: str
    roles: tuple[str, ...]


_RANK_LINE = re.compile(r"^\s*rank\s+(\d+):\s+(\S+)\s+\[([^\]]*)\]")


def roster(spec_path: str | Path, sets: Sequence[str] = ()) -> list[RankInfo]:
    """Every process of the spec, from ``secure-ml spec check`` (``sets``: KEY=VALUE)."""
    argv = [secure_ml_bin(), "spec", "check", str(spec_path)]
    for item in sets:
        argv += ["--set", item]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    ranks = []
    for line in done.stdout.splitlines():
        match = _RANK_LINE.match(line)
        if match:
            roles = tuple(r.strip() for r in match[3].split(",") if r.strip())
            ranks.append(RankInfo(int(match[1]), match[2], roles))
    if not ranks:
        raise RuntimeError(f"no ranks in `secure-ml spec check` output:\n{done.stdout}")
    return ranks


def _sets(args: Sequence[str]) -> list[str]:
    out, it = [], iter(args)
    for arg in it:
        if arg == "--set":
            out.append(next(it, ""))
        elif arg.startswith("--set="):
            out.append(arg[len("--set=") :])
    return out


_PICKLING = threading.Lock()


def pickled_function(fn: object) -> bytes:
    """``fn`` cloudpickled with its test module by value (the parties cannot import it)."""
    import cloudpickle

    module = sys.modules[fn.__module__]  # a function's, or an instance's class's
    with _PICKLING:  # the registration is global: one at a time
        cloudpickle.register_pickle_by_value(module)
        try:
            return cloudpickle.dumps(fn)
        finally:
            cloudpickle.unregister_pickle_by_value(module)


def function_spec(parties: Sequence[str], *, receiver: str, collective_timeout: float) -> str:
    """A spec (TOML) for ``secure-ml party --function``: these parties and the TTP dealer."""
    lines = ['[protocol]\nname = "python"\ndealer = "ttp"\n']
    for name in parties:
        roles = '"data_owner", "receiver"' if name == receiver else '"data_owner"'
        lines.append(f'[[party]]\nname = "{name}"\nroles = [{roles}]\n')
    lines.append(f"[launch]\ncollective_timeout = {collective_timeout}\n")
    return "\n".join(lines)


def make_keys(names: Sequence[str], folder: Path) -> dict[str, Path]:
    """A key folder per process: its own ``NAME.key`` and every ``NAME.pub``."""
    folders = {}
    for name in names:
        folders[name] = folder / name
        subprocess.run(
            [secure_ml_bin(), "keys", "init", "--party", name, "--out", str(folders[name])],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    for name in names:
        for other in names:
            if other != name:
                shutil.copy(folders[other] / f"{other}.pub", folders[name] / f"{other}.pub")
    return folders


@dataclass
class NetnsRun:
    """The processes of one run: ``procs[name]`` is a Popen; logs in ``logs[name]``."""

    testnet: Testnet
    ranks: list[RankInfo]
    procs: dict[str, subprocess.Popen]
    logs: dict[str, Path]
    outs: dict[str, Path]
    timeout: float
    codes: dict[str, int | None] = field(default_factory=dict)

    def __getitem__(self, name: str) -> subprocess.Popen:
        return self.procs[name]

    def host(self, name: str) -> int:
        return next(r.rank for r in self.ranks if r.name == name)

    def wait(
        self, timeout: float | None = None, names: Sequence[str] | None = None
    ) -> dict[str, int | None]:
        """Wait for ``names`` (default all) up to ``timeout`` seconds in total.

        Returns each exit code, None for a process still running at the deadline
        (left running: ``kill_all`` or the Testnet's teardown ends it).
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for name in names or list(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.procs[name].wait(timeout=max(0.0, deadline - time.monotonic()))
            self.codes[name] = self.procs[name].poll()
        return {name: self.codes[name] for name in names or list(self.procs)}

    def log(self, name: str, tail: int | None = 4000) -> str:
        text = self.logs[name].read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_parties_in_netns(
    testnet: Testnet,
    spec_path: str | Path,
    out_dir: str | Path,
    *,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    keys: bool = True,
    master_port: int = MASTER_PORT,
) -> NetnsRun:
    """Start every rank of the spec (parties and dealer), rank r on host r.

    Each process runs ``secure-ml party SPEC --rank r`` (the dealer: ``secure-ml
    dealer SPEC``) with ``--master-addr <host 0> --master-port``, ``--out
    out_dir/NAME``, a key folder of its own (``keys``, unless ``extra_args``
    has ``--keys``) and ``extra_args``; output goes to ``out_dir/NAME.log``.
    ``timeout`` is the default deadline of ``NetnsRun.wait``.
    """
    out_dir, spec_path = Path(out_dir).resolve(), Path(spec_path).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ranks = roster(spec_path, _sets(extra_args))
    if len(ranks) > testnet.n:
        raise ValueError(f"{len(ranks)} processes but only {testnet.n} hosts")
    dealers = [r.rank for r in ranks if "dealer" in r.roles]
    dealer = dealers[-1] if dealers else None
    with_keys = keys and not any(a == "--keys" or a.startswith("--keys=") for a in extra_args)
    key_dirs = make_keys([r.name for r in ranks], out_dir / "keys") if with_keys else {}
    base = dict(os.environ if env is None else env)
    base.update(
        GLOO_SOCKET_IFNAME=IFACE, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1"
    )
    if env is not None:  # the caller's values win, GLOO_SOCKET_IFNAME included
        base.update(env)
    procs, logs, outs = {}, {}, {}
    for info in ranks:
        if info.rank == dealer:
            argv = [secure_ml_bin(), "dealer", str(spec_path)]
        else:
            argv = [secure_ml_bin(), "party", str(spec_path), "--rank", str(info.rank)]
        outs[info.name] = out_dir / info.name
        argv += ["--master-addr", testnet.addr(0), "--master-port", str(master_port)]
        argv += ["--out", str(outs[info.name])]
        if info.name in key_dirs:
            argv += ["--keys", str(key_dirs[info.name])]
        argv += list(extra_args)
        logs[info.name] = out_dir / f"{info.name}.log"
        with open(logs[info.name], "wb") as log:
            procs[info.name] = testnet.popen(
                info.rank, argv, env=base, stdout=log, stderr=subprocess.STDOUT
            )
    return NetnsRun(testnet, ranks, procs, logs, outs, timeout)


# -- classic libpcap files ----------------------------------------------------


@dataclass(frozen=True)
class TcpPacket:
    src: str
    sport: int
    dst: str
    dport: int
    ip_len: int  # the IPv4 total length (headers and payload), from the packet
    payload: bytes  # the captured part of the TCP payload (all of it with snaplen 0)
    seq: int = 0  # the TCP sequence number of the payload's first byte


def tcp_packets(path: str | Path) -> list[TcpPacket]:
    """The IPv4 TCP packets of a classic libpcap file of Ethernet frames (tcpdump -w)."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file (magic {magic.hex()})")
    linktype = struct.unpack(end + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError(f"{path}: link type {linktype}, expected Ethernet (1)")
    packets, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack(end + "I", data[off + 8 : off + 12])[0]
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        if len(frame) < 34:
            continue
        ethertype, ip = struct.unpack("!H", frame[12:14])[0], 14
        if ethertype == 0x8100 and len(frame) >= 38:  # one VLAN tag
            ethertype, ip = struct.unpack("!H", frame[16:18])[0], 18
        if ethertype != 0x0800 or frame[ip] >> 4 != 4 or frame[ip + 9] != 6:
            continue
        ihl = (frame[ip] & 0x0F) * 4
        total = struct.unpack("!H", frame[ip + 2 : ip + 4])[0]
        tcp = ip + ihl
        if len(frame) < tcp + 20:
            continue
        sport, dport, seq = struct.unpack("!HHI", frame[tcp : tcp + 8])
        doff = (frame[tcp + 12] >> 4) * 4
        payload = frame[tcp + doff : ip + total]
        packets.append(
            TcpPacket(
                src=socket.inet_ntoa(frame[ip + 12 : ip + 16]),
                sport=sport,
                dst=socket.inet_ntoa(frame[ip + 16 : ip + 20]),
                dport=dport,
                ip_len=total,
                payload=payload,
                seq=seq,
            )
        )
    return packets


def tcp_streams(packets: Sequence[TcpPacket]) -> dict[tuple[str, int, str, int], bytes]:
    """Each direction of each TCP connection as one byte string, in sequence order.

    Reassembled from the packets' sequence numbers (retransmitted bytes once),
    so that a search finds a value even where TCP split it across segments.
    Keys are ``(src, sport, dst, dport)``.
    """
    flows: dict[tuple[str, int, str, int], list[TcpPacket]] = {}
    for packet in packets:
        if packet.payload:
            key = (packet.src, packet.sport, packet.dst, packet.dport)
            flows.setdefault(key, []).append(packet)
    streams = {}
    for key, flow in flows.items():
        seqs = [p.seq for p in flow]
        first = min(seqs) if max(seqs) - min(seqs) < 2**31 else flow[0].seq  # else it wrapped
        pieces = sorted(((p.seq - first) % 2**32, p.payload) for p in flow)
        data = bytearray()
        for offset, payload in pieces:
            if offset > len(data):  # bytes the capture missed: a gap, never a false match
                data += bytes(min(offset - len(data), 64))
                offset = len(data)
            if offset + len(payload) > len(data):
                data += payload[len(data) - offset :]
        streams[key] = bytes(data)
    return streams


def in_subnet(address: str, subnet: str = SUBNET) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(f"{subnet}.0/24")
