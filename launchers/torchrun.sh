#!/usr/bin/env bash
# Every process of a spec as torchrun workers, one worker per rank: the
# compute parties, then the dealer (ranks as `secure-ml spec check SPEC` lists
# them). Each worker runs this script and becomes
#   secure-ml party SPEC --rank $RANK --out $OUT/rank-$RANK [extra args]
# through party_per_host.sh; the dealer's rank runs the dealer. torchrun must
# start exactly as many processes as the spec has (nnodes x nproc-per-node):
# any other WORLD_SIZE stops every rank at once, naming the spec's processes.
#
#   # one host, every process (loopback: no keys needed)
#   GLOO_SOCKET_IFNAME=lo torchrun --standalone --nproc-per-node=3 --no-python \
#       launchers/torchrun.sh spec.toml
#   # one process per host: on host R (0, 1, 2; 10.0.0.1 is host 0)
#   torchrun --nnodes=3 --nproc-per-node=1 --node-rank=R --master-addr=10.0.0.1 \
#       --master-port=29500 --no-python launchers/torchrun.sh spec.toml --iface eth0 --keys keys
#
# Across hosts use the static rendezvous above (torchrun's default): its
# --node-rank fixes which host gets which rank, i.e. whose data; c10d's
# rendezvous hands ranks out in joining order. Every link off loopback is
# encrypted: pass --keys DIR (this process's NAME.key and every NAME.pub;
# README, "Several machines"). The parties meet at torchrun's own
# MASTER_ADDR:MASTER_PORT, where its agent already hosts a store that rank 0
# joins as a client (TORCHELASTIC_USE_AGENT_STORE; no "address in use" on
# rank 0): do not pass --master-addr/--master-port.
# Environment: OUT (default runs/torchrun; one folder per rank, rank-R),
# SECURE_ML (the secure-ml executable).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: torchrun ... --no-python $0 SPEC [secure-ml args]" >&2; exit 2; }
: "${RANK:?run this under torchrun: it sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT}"
OUT="${OUT:-runs/torchrun}/rank-$RANK" exec "$(dirname "$0")/party_per_host.sh" "$@"
