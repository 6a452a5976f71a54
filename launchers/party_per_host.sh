#!/usr/bin/env bash
# One party per host. Run on every host with the same spec (local paths may
# differ), its own RANK, and rank 0's address; with dealer = "ttp" also run
# ROLE=dealer on the dealer's host.
#
#   RANK=0 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 launchers/party_per_host.sh spec.toml
#   ROLE=dealer MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 launchers/party_per_host.sh spec.toml
#
# GLOO_SOCKET_IFNAME must name the interface carrying the parties' addresses
# when the hostname resolves to loopback. Across hosts every link is encrypted:
# pass --keys DIR (this party's NAME.key and every NAME.pub; README, "Several
# machines").
set -euo pipefail
spec="$1"; shift
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${SECURE_ML:-$here/.venv/bin/secure-ml}"
: "${MASTER_ADDR:?set MASTER_ADDR to the address of rank 0}"
: "${MASTER_PORT:?set MASTER_PORT to a free port on rank 0}"
if [ "${ROLE:-party}" = "dealer" ]; then
  exec "$bin" dealer "$spec" --out "${OUT:-runs/dealer}" "$@"
fi
: "${RANK:?set RANK to the rank of this party}"
exec "$bin" party "$spec" --rank "$RANK" --out "${OUT:-runs/party-$RANK}" "$@"
