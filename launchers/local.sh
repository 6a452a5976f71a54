#!/usr/bin/env bash
# Every party of a spec on this host: the same as `secure-ml run`.
#   launchers/local.sh protocols/mpc_train_quickstart.toml --out runs/qs
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
exec "${SECURE_ML:-$here/.venv/bin/secure-ml}" run "$@"
