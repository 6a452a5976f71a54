"""The ``secure-ml`` command (also ``python -m secure_ml``).

    secure-ml run SPEC [--out DIR] [--set key.path=value ...] [--timeout S]
    secure-ml party SPEC --rank R [--master-addr A --master-port P] [--iface IF]
                         [--keys DIR] [--out DIR]
    secure-ml dealer SPEC [--master-addr A --master-port P] [--iface IF] [--keys DIR]
                          [--out DIR]
    secure-ml spec check SPEC [--set ...]
    secure-ml bench [--suite quick|full] [--out DIR]
    secure-ml keys init --party NAME [--out DIR]
    secure-ml keys show KEY

Every failure ends with one line on stderr that names the cause (and the party,
for a party failure) and a non-zero exit code from ``secure_ml.errors``: the
code of the party's own error when a party failed, 70 for an unexpected
exception (a bug), wherever it was raised.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from secure_ml.errors import SecureMLError, SpecError, exit_code_for
from secure_ml.parties import Party
from secure_ml.spec import Spec, load_spec, spec_from_dict


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secure-ml", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every party of SPEC on this host")
    _spec_args(run)
    run.add_argument("--out", default="runs/latest", help="output folder (default runs/latest)")
    run.add_argument("--timeout", type=float, help="seconds before the whole run is stopped")
    run.add_argument("--quiet", action="store_true", help="no live view")

    for name, helptext in (
        ("party", "run one party (one host of a multi-host run)"),
        ("dealer", "run the trusted third party (dealer) on its own host"),
    ):
        p = sub.add_parser(name, help=helptext)
        _spec_args(p)
        if name == "party":
            p.add_argument(
                "--rank",
                type=int,
                help="this process's rank (default: $RANK); the dealer's rank runs the dealer",
            )
        p.add_argument("--master-addr", help="rank 0's address (default: $MASTER_ADDR)")
        p.add_argument("--master-port", type=int, help="rank 0's port (default: $MASTER_PORT)")
        p.add_argument(
            "--iface",
            help="network interface carrying the parties' addresses (sets GLOO_SOCKET_IFNAME; "
            "needed when this host's name resolves to loopback)",
        )
        p.add_argument("--out", default="runs/party", help="this party's output folder")
        p.add_argument("--control", help=argparse.SUPPRESS)
        p.add_argument(
            "--function", help="a cloudpickled fn(session) to run instead of the spec's protocol"
        )
        p.add_argument("--exit-if-orphaned", action="store_true", help=argparse.SUPPRESS)

    bench = sub.add_parser("bench", help="benchmark every task under every protocol")
    bench.add_argument("--suite", choices=("quick", "full"), default="quick")
    bench.add_argument("--out", default="benchmarks/results", help="output folder")
    bench.add_argument(
        "--peers", help="folder of peer records (*.json, e.g. from `make bench-peers`) to add"
    )

    keys = sub.add_parser("keys", help="long-term party keys (one pair per organisation)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    init = keys_sub.add_parser("init", help="create this party's key pair")
    init.add_argument("--party", required=True, help="the party's name, as in the spec")
    init.add_argument("--out", default="keys", help="folder for NAME.key and NAME.pub")
    show = keys_sub.add_parser("show", help="print a public key's fingerprint")
    show.add_argument("key", help="a NAME.pub file (or NAME.key: its .pub beside it)")

    spec = sub.add_parser("spec", help="work with spec files")
    spec_sub = spec.add_subparsers(dest="spec_command", required=True)
    check = spec_sub.add_parser("check", help="validate SPEC and print its summary")
    _spec_args(check)
    return parser


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="spec file (TOML)")
    p.add_argument(
        "--keys",
        metavar="DIR",
        help="folder with this party's NAME.key and every party's NAME.pub "
        "(sets [transport] keys; encrypted channels)",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a spec value, e.g. --set train.epochs=3 (repeatable)",
    )  # fmt: skip


def _load(path: str, overrides: Sequence[str], keys: str | None = None) -> Spec:
    if path.endswith(".json"):  # the resolved spec a launcher hands its children
        data = json.loads(Path(path).read_text())
        return spec_from_dict(data["spec"], source=data["source"])
    if keys is not None:  # relative to where the command runs, as a flag should be
        overrides = [*overrides, f"transport.keys={json.dumps(str(Path(keys).resolve()))}"]
    return load_spec(path, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command in ("party", "dealer"):
            return _party(args)
        if args.command == "bench":
            return _bench(args)
        if args.command == "keys":
            return _keys(args)
        return _spec_check(args)
    except (SecureMLError, KeyboardInterrupt) as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_code_for(error)
    except Exception as error:  # a bug: keep the traceback, still end with one line
        traceback.print_exc()
        print(
            f"error: unexpected {type(error).__name__}: {error} (a bug: please report it "
            "with the traceback above)",
            file=sys.stderr,
        )
        return exit_code_for(error)


def _keys(args: argparse.Namespace) -> int:
    from secure_ml.keys import init_keys, load_public
    from secure_ml.spec import check_party_name

    if args.keys_command == "init":
        check_party_name(args.party, where="--party")
        private_path, public = init_keys(args.party, args.out)
        print(f"private key: {private_path} (mode 0600: keep it on this machine, never send it)")
        print(f"public key:  {private_path.with_suffix('.pub')} (send it to the other parties)")
        print(f"fingerprint: {public.fingerprint}")
        return 0
    public = load_public(args.key)
    print(f"{public.party}  {public.fingerprint}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from secure_ml.api import run_protocol

    spec = _load(args.spec, args.set, args.keys)
    view = None if args.quiet else (lambda line: print(line, flush=True))
    result = run_protocol(spec, out=args.out, timeout=args.timeout, view=view)
    print(_summary(result, args.out))
    return 0


def _summary(result: dict[str, Any], out: str) -> str:
    m = result["metrics"]
    lines = [f"{result['protocol']} finished in {result['timings']['total']:.1f}s"]
    for key in (
        "accuracy", "plaintext_accuracy", "mse", "plaintext_mse",
        "agreement_with_plaintext", "max_abs_error",
    ):  # fmt: skip
        if m.get(key) is not None:
            lines.append(f"  {key:<20} {m[key]:.4f}")
    comm = result["comm"]
    lines.append(f"  {'bytes (all parties)':<20} {comm['bytes']:,}")
    lines.append(f"  {'rounds':<20} {comm['rounds']:,}")
    for what, receivers in result["revealed_to"].items():
        lines.append(f"  revealed {what} to {', '.join(receivers)}")
    lines.append(f"  results in {out}/result.json, logs in {out}/logs/")
    return "\n".join(lines)


def _party(args: argparse.Namespace) -> int:
    from secure_ml.launch.env import read_party_env
    from secure_ml.launch.party import Job, run_party

    spec = _load(args.spec, args.set, args.keys)
    if args.iface:  # before the process group forms: gloo reads it then
        os.environ["GLOO_SOCKET_IFNAME"] = args.iface
    if args.command == "party" and spec.protocol.name == "python" and not args.function:
        raise SpecError(
            f"{args.spec}: [protocol] name = 'python' runs a user function; start it "
            "with secure_ml.run(fn, spec), or pass the function to every party"
        )
    rank = spec.roster.world_size if args.command == "dealer" else args.rank
    if args.command == "dealer" and spec.roster.dealer is None:
        print(
            f"error: this spec has no dealer (dealer = {spec.protocol.dealer!r})", file=sys.stderr
        )
        return 2
    env = read_party_env(rank=rank, master_addr=args.master_addr, master_port=args.master_port)
    env.check([p.name for p in spec.roster.processes], compute=spec.roster.world_size)
    out = Path(args.out)
    code = run_party(
        spec,
        rank=env.rank,
        rendezvous=env.rendezvous,
        out_dir=out,
        control_dir=Path(args.control) if args.control else out / ".control",
        job=Job(function_file=Path(args.function) if args.function else None),
        exit_if_orphaned=args.exit_if_orphaned,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    # After a failure, peers may still hold gloo connections to us; exiting
    # hard avoids waiting in their destructors. Status is already written.
    if code != 0:
        os._exit(code)
    return code


def _bench(args: argparse.Namespace) -> int:
    from secure_ml.bench.harness import SUITES, run_suite

    out = Path(args.out)
    peers = Path(args.peers) if args.peers else None
    view = lambda line: print(line, flush=True)  # noqa: E731
    records = run_suite(SUITES[args.suite], out=out, view=view, peers=peers)
    print(f"{len(records)} records: {out}/results.json, {out}/report.md, {out}/*.png")
    return 0


def _spec_check(args: argparse.Namespace) -> int:
    spec = _load(args.spec, args.set, args.keys)
    roster = spec.roster
    print(f"{args.spec}: ok ({spec.protocol.name}, spec hash {spec.hash[:16]})")
    for party in roster.processes:
        print(f"  rank {party.rank}: {party.name} [{', '.join(party.roles)}]{_notes(party)}")
    return 0


def _notes(party: Party) -> str:
    notes = [] if party.crypten else ["outside CrypTen"]
    if party.failure != "required":
        notes.append(party.failure)
    return f" ({', '.join(notes)})" if notes else ""


if __name__ == "__main__":
    raise SystemExit(main())
