"""Session: one party's runtime for one run.

A ``Session`` joins this process to the others over the run's links (the one
message path, ``secure_ml.transport.links``), checks that every process runs
the same spec and, in CrypTen's world, installs our CrypTen communicator on
those links and applies CrypTen's configuration for this run only
(``cfg.temp_override``; nothing global is left behind). It offers the two
doors of the shared domain, ``share`` (in) and ``reveal`` (out, to named
receivers only), and, for parties outside CrypTen's world, direct messages
and ``send_shares``/``receive_shares``.

Start-up, stage by stage:

1. every process (compute parties, the dealer, parties outside CrypTen's
   world) joins the run's process group and gets its links, with the spec's
   codec (``[transport] codec``);
2. every pair of processes runs the channel handshake
   (``secure_ml.keys.exchange``): unless every process is on loopback (or the
   spec switched encryption off), each proves its identity with its long-term
   key and every later message is sealed with AES-GCM under per-link,
   per-direction keys; a peer without the right key is refused here;
3. every process sends its spec hash to all others: a mismatch stops every
   party with ``SpecMismatchError`` (parties learn each other's spec hashes);
4. in CrypTen's world only (crypten is never imported outside it): compute
   parties exchange 256-bit ChaCha20 keys with their neighbours (the pairwise
   streams for sharings of zero) and, with a dealer, receive a key from it for
   the triples it will correct: each party learns only the keys of the
   streams it shares (see ``secure_ml.sharing.csprng``). These keys travel
   on the links, so across hosts they are sealed like everything else.

Closing: the compute parties meet at a last barrier (one byte to each
peer), and only then does party 0 tell the dealer to stop. A run thus
ends cleanly for all or for none: a party lost after its last message (say,
while a value was being revealed to it) fails every other process too,
naming it, instead of leaving some with a result and some without.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import torch

from secure_ml.compat import load_crypten
from secure_ml.errors import ProtocolAbort, SpecMismatchError
from secure_ml.parties import Party
from secure_ml.release import ReleaseMechanism, reveal
from secure_ml.spec import Spec

log = logging.getLogger("secure_ml.session")

PLAINTEXT_WARNING = (
    "UNENCRYPTED CHANNELS: [transport] encryption = 'off' with insecure_plaintext = true. "
    "Every share, stream key and message of this run travels in the clear: anyone on the "
    "network between the parties can rebuild every shared value. Use encryption = 'auto' "
    "unless the network is trusted."
)

TFP_WARNING = (
    "INSECURE DEALER: dealer = 'tfp' with insecure_dealer = true. Party 0 ({name}) "
    "generates every Beaver triple and can therefore decrypt EVERY shared value of "
    "this run. Use dealer = 'ttp' unless party 0 may see all data."
)


class Session:
    """One party's view of a run: its identity, its communicator, share/reveal."""

    def __init__(
        self,
        spec: Spec,
        *,
        rank: int,
        rendezvous: str,
        out_dir: str | Path,
        progress: Callable[[str], None] | None = None,
        on_lost: Callable[[Exception], None] | None = None,
    ) -> None:
        self.spec = spec
        self.roster = spec.roster
        self.party: Party = self.roster.by_rank(rank)
        self.rendezvous = rendezvous
        self.out_dir = Path(out_dir)
        self.revealed: dict[str, list[str]] = {}
        #: reveal name -> the release mechanisms it used (not in result.json)
        self.release_mechanisms: dict[str, list[str]] = {}
        self.setup_seconds: float | None = None
        self._progress = progress
        #: the dealer's watch reports a lost party through this (``transport.watch``)
        self._on_lost = on_lost
        self._stack: ExitStack | None = None
        self.precompute: Any = None  # secure_ml.sharing.precompute.Precompute, with a TTP
        self.links: Any = None  # secure_ml.transport.links.Links, once started
        #: "encrypted" or "plain", once the handshake ran
        self.channel: str | None = None

    # ---------------------------------------------------------- identity --
    @property
    def rank(self) -> int:
        return self.party.rank

    @property
    def name(self) -> str:
        return self.party.name

    @property
    def world_size(self) -> int:
        """Number of compute parties (the dealer is not counted)."""
        return self.roster.world_size

    @property
    def is_dealer(self) -> bool:
        return self.party.is_dealer

    @property
    def in_crypten(self) -> bool:
        """Whether this process is in CrypTen's world (a compute party or the dealer)."""
        return self.party.crypten

    @property
    def crypten(self) -> Any:
        """The (patched) crypten module, for CrypTen ops on shares."""
        self._require_crypten("use CrypTen")
        return load_crypten()

    def _require_crypten(self, what: str) -> None:
        if not self.in_crypten:
            raise ProtocolAbort(
                f"party {self.name} is outside CrypTen's world ([[party]] crypten = false) "
                f"and cannot {what}; it talks to the others with session.send/receive"
            )

    # --------------------------------------------------------- lifecycle --
    def __enter__(self) -> Session:
        self.start()
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        # On an error we do not shut down gracefully: peers may be blocked in a
        # collective with us, and a polite goodbye could wait for them. The
        # process exits and the launcher stops the others.

    def start(self) -> None:
        """Join the run, check the spec, set up CrypTen (see the module docstring)."""
        from secure_ml.transport.frames import make_frames
        from secure_ml.transport.links import join, leave

        started = time.perf_counter()
        torch.set_num_threads(self.spec.launch.threads)
        self._stack = ExitStack()
        self.links = join(
            rank=self.rank,
            size=len(self.roster.processes),
            rendezvous=self.rendezvous,
            timeout_s=self._collective_timeout(),
            startup_timeout_s=self.spec.launch.collective_timeout,
            frames=make_frames(self.spec.transport.codec),
            names=tuple(p.name for p in self.roster.processes),
        )
        self._stack.callback(leave)
        self._stack.callback(self._write_link_counts)
        if self.is_dealer and self._on_lost is not None:
            self._watch_while_idle()
        self._open_channels()
        self._check_same_spec()
        if self.in_crypten:
            self._start_crypten()
        self.setup_seconds = time.perf_counter() - started
        log.info("session ready: %s (rank %d) in %.2fs", self.name, self.rank, self.setup_seconds)

    def _watch_while_idle(self) -> None:
        from secure_ml.transport.watch import watching

        watch = watching(
            rank=self.rank,
            names=[p.name for p in self.roster.processes],
            limit_s=self.spec.launch.collective_timeout,
            on_lost=self._on_lost,
        )
        self._stack.enter_context(watch)

    def _open_channels(self) -> None:
        """The handshake with every peer; seal every later message when it says so."""
        from secure_ml.keys.exchange import channel_mode, establish
        from secure_ml.transport.frames import with_inner

        transport = self.spec.transport
        mode = channel_mode(
            transport.encryption, self.rendezvous, os.environ.get("GLOO_SOCKET_IFNAME")
        )
        sealed = establish(
            self.links,
            mode=mode,
            names=tuple(p.name for p in self.roster.processes),
            keys=self._key_ring,
        )
        if transport.encryption == "off":
            log.warning(PLAINTEXT_WARNING)
        if sealed is None:
            self.channel = "plain"
            return
        self.links.frames = with_inner(self.links.frames, sealed)
        self.channel = "encrypted"
        log.info("every link is encrypted and authenticated (AES-256-GCM)")

    def _key_ring(self) -> Any:
        from secure_ml.errors import KeyMaterialError
        from secure_ml.keys.exchange import KeyRing

        folder = self.spec.transport.keys
        if folder is None:
            raise KeyMaterialError(
                "encryption is on (a process of this run is not on loopback) but no keys "
                "were given: create each party's keys with `secure-ml keys init --party "
                "NAME`, put this party's NAME.key and every party's NAME.pub in one folder, "
                "and pass --keys DIR (or set [transport] keys)"
            )
        return KeyRing(folder=Path(folder), me=self.name)

    def _start_crypten(self) -> None:
        """Install CrypTen's configuration and communicator, keys, dealer and pool."""
        from secure_ml.sharing.batched import batched_openings
        from secure_ml.sharing.csprng import mask_streams, setup_party_streams
        from secure_ml.sharing.fast_config import fast_config
        from secure_ml.sharing.truncation import exact_truncation
        from secure_ml.transport.communicator import connect

        crypten = load_crypten()
        self._stack.enter_context(crypten.cfg.temp_override(self._crypten_config()))
        self._stack.enter_context(fast_config(crypten.cfg, self.spec.mpc.fast_config))
        self._stack.enter_context(batched_openings(self.spec.mpc.batch_openings))
        # every mask (pairwise, dealer, local) from ChaCha20, never a torch generator
        self._stack.enter_context(mask_streams())
        self._stack.enter_context(exact_truncation(self.spec.mpc.exact_truncation))
        connect(
            links=self.links,
            world_size=self.world_size,
            with_dealer=self.roster.dealer is not None,
            name=self.name,
            p2p_open=self.spec.mpc.p2p_open,
        )
        self._stack.callback(self._disconnect)
        if self.spec.protocol.dealer == "tfp":
            log.warning(TFP_WARNING.format(name=self.roster.by_rank(0).name))
        if not self.is_dealer:
            setup_party_streams()
            if self.roster.dealer is not None:
                crypten.mpc.provider.ttp_provider.TTPClient._init()
                self._start_precompute()

    def _start_precompute(self) -> None:
        from secure_ml.sharing.precompute import pooled_dealer

        mpc = self.spec.mpc
        pooled = pooled_dealer(mpc.precompute, budget_mb=mpc.precompute_mb)
        self.precompute = self._stack.enter_context(pooled)

    def step(self, key: Any, remaining: int) -> Any:
        """Context for one step of a repeated computation (see ``Precompute.step``).

        With the TTP dealer and ``[mpc] precompute``, the dealer's tuples for
        the next steps of the same shape are fetched in bulk; otherwise this
        does nothing. Every party must make the same calls in the same order.
        """
        if self.precompute is None:
            return nullcontext()
        return self.precompute.step(key, remaining)

    def close(self) -> None:
        """Leave the run: the closing barrier, then party 0 tells the dealer to stop."""
        if self._stack is not None:
            if self.in_crypten and not self.is_dealer:
                compute = [p.rank for p in self.roster.processes if p.crypten and not p.is_dealer]
                self.links.barrier(compute)
            stack, self._stack = self._stack, None
            stack.close()

    def _collective_timeout(self) -> float:
        # The dealer legitimately idles while parties compute locally (loading,
        # preprocessing); it waits up to the run's timeout. A dead party is
        # caught sooner by the launcher's process watch.
        launch = self.spec.launch
        return (
            max(launch.timeout, launch.collective_timeout)
            if self.is_dealer
            else launch.collective_timeout
        )

    def _crypten_config(self) -> dict[str, Any]:
        provider = "TTP" if self.spec.protocol.dealer == "ttp" else "TFP"
        # verbose turns on CrypTen's byte and round counters (result.json: comm)
        return {"mpc.provider": provider, "communicator.verbose": True}

    def _disconnect(self) -> None:
        from secure_ml.transport.communicator import disconnect

        crypten = load_crypten()
        if not self.is_dealer and self.roster.dealer is not None:
            crypten.mpc.provider.ttp_provider.TTPClient.uninit()
        disconnect()

    def _check_same_spec(self) -> None:
        # every process, CrypTen's or not, over the links; JSON, never a pickle
        digests = self.links.all_gather_obj(self.spec.hash, range(self.links.size))
        names = [p.name for p in self.roster.processes]
        if not all(isinstance(digest, str) for digest in digests):
            raise SpecMismatchError("a party sent a spec hash that is not a string")
        hashes = dict(zip(names, digests, strict=True))
        if len(set(hashes.values())) > 1:
            listing = ", ".join(f"{n}: {h[:12]}" for n, h in hashes.items())
            raise SpecMismatchError(
                f"the parties were started with different specs ({listing}); start every "
                "party with the same spec file (party-local paths and [launch] may differ)"
            )

    def _write_link_counts(self) -> None:
        """With the ``audit`` codec: every message and byte per link, in the output folder."""
        counts = getattr(self.links.frames, "counts", None)
        if counts is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"links-{self.name}.json"
        path.write_text(json.dumps({"codec": self.links.frames.name, "peers": counts()}))

    # ------------------------------------------------- the shared domain --
    def share(
        self,
        value: torch.Tensor | None,
        *,
        owner: str,
        limit: str = "product",
        name: str = "value",
    ) -> Any:
        """Secret-share ``value`` held by party ``owner`` (others pass ``None``)."""
        from secure_ml.sharing.mpc import share

        self._require_crypten("take part in share()")
        party = self.roster.by_name(owner)
        return share(value, owner=party, my_rank=self.rank, limit=limit, what=name)

    def reveal(
        self,
        value: Any,
        *,
        to: Sequence[str],
        name: str = "value",
        mechanism: ReleaseMechanism | None = None,
    ) -> torch.Tensor | None:
        """Open a shared ``value`` to the parties in ``to``; everyone else gets None.

        ``mechanism`` (every party passes the same) is charged, then perturbs the
        value on shares, before any share is sent (``secure_ml.release.mechanism``).
        """
        self._require_crypten("take part in reveal()")
        return reveal(self, value, to=to, name=name, mechanism=mechanism)

    def record_reveal(
        self, name: str, receivers: list[str], *, mechanism: str | None = None
    ) -> None:
        """Note that ``name`` was opened to ``receivers`` (and with which mechanism)."""
        known = self.revealed.setdefault(name, [])
        known.extend(r for r in receivers if r not in known)
        if mechanism is not None:
            used = self.release_mechanisms.setdefault(name, [])
            if mechanism not in used:
                used.append(mechanism)

    # ------------------------------------------------ direct messages --
    # For protocols with parties outside CrypTen's world (an input party that
    # sends shares it made, an HE client and server): one message to one named
    # party, through the same links and codec as everything else.
    def send(self, value: torch.Tensor, *, to: str) -> None:
        """Send a tensor to party ``to`` (it must ``receive`` one of the same shape and dtype)."""
        self.links.send(self._peer_rank(to), value)

    def receive(self, like: torch.Tensor, *, sender: str) -> torch.Tensor:
        """Receive a tensor shaped like ``like`` from party ``sender`` (into ``like``)."""
        return self.links.recv(self._peer_rank(sender), like)

    def send_object(self, obj: Any, *, to: str) -> None:
        """Send a JSON-like object (see ``transport.objects``) to party ``to``."""
        self.links.send_obj(obj, self._peer_rank(to))

    def receive_object(self, *, sender: str) -> Any:
        """Receive one object from party ``sender`` (parsed, never unpickled)."""
        return self.links.recv_obj(self._peer_rank(sender))

    def send_bytes(self, data: bytes, *, to: str) -> None:
        """Send opaque bytes (a serialized ciphertext, say) to party ``to``."""
        self.links.send_bytes(self._peer_rank(to), data)

    def receive_bytes(self, *, sender: str, limit: int) -> bytes:
        """One bytes message from ``sender``; a declared length above ``limit`` aborts."""
        return self.links.recv_bytes(self._peer_rank(sender), limit=limit)

    def send_shares(self, value: torch.Tensor, *, limit: str = "product") -> None:
        """Secret-share ``value`` to every compute party, without CrypTen (an input party).

        Every compute party calls ``receive_shares(sender=<this party>, ...)``
        (see ``secure_ml.sharing.inputs`` for what each party learns).
        """
        from secure_ml.sharing.inputs import send_shares

        compute = [p.rank for p in self.roster.parties]
        send_shares(self.links, value, compute, limit=limit)

    def receive_shares(self, *, sender: str, shape: Sequence[int]) -> Any:
        """The shared value party ``sender`` sent with ``send_shares``, or None if it was lost.

        Every compute party gets None together when any one of them did not
        receive its share (the sender died or dropped out), so they all go on
        without it.
        """
        from secure_ml.sharing.inputs import receive_share

        self._require_crypten("receive shares")
        compute = [p.rank for p in self.roster.parties]
        share = receive_share(self.links, self._peer_rank(sender), tuple(shape), compute)
        if share is None:
            log.info("no shares from %s: it dropped out; going on without it", sender)
            return None
        return load_crypten().mpc.MPCTensor.from_shares(share)

    def _peer_rank(self, name: str) -> int:
        rank = self.roster.by_name(name).rank
        if rank == self.rank:
            raise ValueError(f"party {name} cannot send a message to itself")
        return rank

    # -------------------------------------------------------- reporting --
    def progress(self, message: str) -> None:
        """Tell the launcher's live view what this party is doing."""
        log.info("progress: %s", message)
        if self._progress is not None:
            self._progress(message)

    def comm_stats(self) -> dict[str, float]:
        """This party's bytes and rounds so far.

        CrypTen's counters in CrypTen's world; outside it, the payload bytes the
        links sent and received, and one round per message sent.
        """
        if not self.in_crypten:
            return {
                "bytes": self.links.sent_bytes + self.links.received_bytes,
                "rounds": self.links.sent_messages,
            }
        stats = load_crypten().communicator.get().get_communication_stats()
        return {"bytes": int(stats["bytes"]), "rounds": int(stats["rounds"])}
