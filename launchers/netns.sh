#!/usr/bin/env bash
# A private multi-host network on one machine, made of Linux network
# namespaces, for demos and CI tests of multi-host runs (needs root and `ip`).
#
#   launchers/netns.sh up PREFIX N [SUBNET]   # SUBNET defaults to 10.231.7
#   launchers/netns.sh down PREFIX
#   launchers/netns.sh demo SPEC [extra secure-ml args, e.g. --set train.epochs=1]
#
# `up` creates N "hosts", namespaces PREFIX-h0 .. PREFIX-h{N-1}, and one
# switch, namespace PREFIX-br holding the Linux bridge br0. Host i has a
# single interface eth0 with address SUBNET.(i+1)/24, cabled by a veth pair to
# port vh<i> of br0. Every veth is created directly inside its namespaces, the
# bridge has no address, and no route, interface or address is added to the
# root namespace: nothing can leave the namespaces, and nothing outside can
# reach them. `lo` is up in every namespace; IPv6 is off (no stray router/
# neighbour solicitations in captures). PREFIX should be short (at most 10
# characters, letters, digits and '-') and unique per user of this script.
#
# `down` kills every process inside PREFIX-* namespaces and deletes them. It
# is idempotent and never fails when things are already gone.
#
# `demo` runs SPEC across namespaces, one process per rank (compute parties
# and the dealer): rank r runs in PREFIX-h<r> as
#   secure-ml party SPEC --rank r --master-addr <h0's address> --master-port 29500
#             --out runs/netns/<name> [extra args]
# (the dealer as `secure-ml dealer ...`), with GLOO_SOCKET_IFNAME=eth0: gloo
# binds to the address the hostname resolves to, which is loopback inside a
# namespace, unless this names the interface that carries the parties'
# addresses. It waits for every process, prints each exit code, and exits
# non-zero if any failed. Teardown runs on exit, failure and Ctrl-C.
# Unless --keys is given, every process gets a fresh key pair (secure-ml keys
# init) in a folder of its own with every peer's public key, deleted on exit,
# so the channels are encrypted as between real organisations (NETNS_KEYS=0:
# no keys). Environment: SECURE_ML (the secure-ml executable, default .venv/bin/secure-ml),
# NETNS_PREFIX (default smld<pid>), NETNS_SUBNET, MASTER_PORT (default 29500),
# NETNS_OUT (default runs/netns).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"

die() { echo "netns.sh: $*" >&2; exit 2; }

check_prefix() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,19}$ ]] || die "bad PREFIX '$1' (letters, digits, '-')"
}

check_subnet() {
  [[ "$1" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "bad SUBNET '$1' (like 10.231.7)"
}

# Namespaces belonging to PREFIX: PREFIX-br and PREFIX-h<digits>.
list_ns() {
  local prefix="$1"
  ip netns list 2>/dev/null | awk '{print $1}' \
    | grep -E "^${prefix}-(br|h[0-9]+)\$" || true
}

cmd_up() {
  [ $# -ge 2 ] || die "usage: up PREFIX N [SUBNET]"
  local prefix="$1" n="$2" subnet="${3:-${NETNS_SUBNET:-10.231.7}}"
  check_prefix "$prefix"; check_subnet "$subnet"
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 250 ] || die "bad N '$n' (1..250)"
  [ -z "$(list_ns "$prefix")" ] || die "namespaces $prefix-* already exist (run: $0 down $prefix)"
  # Undo a half-built set if any step fails.
  trap 'cmd_down "$prefix" >/dev/null 2>&1 || true' ERR

  local br="$prefix-br"
  ip netns add "$br"
  nosix "$br"
  ip -n "$br" link set lo up
  ip -n "$br" link add br0 type bridge stp_state 0 forward_delay 0
  ip -n "$br" link set br0 up
  local i ns
  for ((i = 0; i < n; i++)); do
    ns="$prefix-h$i"
    ip netns add "$ns"
    nosix "$ns"
    ip -n "$ns" link set lo up
    # Created inside the bridge namespace, the peer straight into the host's:
    # no interface ever exists in the root namespace.
    ip -n "$br" link add "vh$i" type veth peer name eth0 netns "$ns"
    ip -n "$br" link set "vh$i" master br0
    ip -n "$br" link set "vh$i" up
    ip -n "$ns" addr add "$subnet.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  trap - ERR
  for ((i = 0; i < n; i++)); do
    echo "$prefix-h$i $subnet.$((i + 1))"
  done
}

# IPv6 off inside a namespace (best effort: keeps captures to our traffic).
nosix() {
  ip netns exec "$1" sh -c \
    'for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6; do
       [ -w "$f" ] && echo 1 > "$f"; done' >/dev/null 2>&1 || true
}

cmd_down() {
  [ $# -ge 1 ] || die "usage: down PREFIX"
  local prefix="$1" ns pids round
  check_prefix "$prefix"
  for round in 1 2 3 4 5 6 7 8 9 10; do
    pids=""
    for ns in $(list_ns "$prefix"); do
      pids="$pids $(ip netns pids "$ns" 2>/dev/null || true)"
    done
    pids="$(echo $pids)"
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  for ns in $(list_ns "$prefix"); do
    ip netns del "$ns" 2>/dev/null || true
  done
  return 0
}

cmd_demo() {
  [ $# -ge 1 ] || die "usage: demo SPEC [extra secure-ml args]"
  local spec="$1"; shift
  local bin="${SECURE_ML:-$here/.venv/bin/secure-ml}"
  local prefix="${NETNS_PREFIX:-smld$$}" subnet="${NETNS_SUBNET:-10.231.7}"
  local port="${MASTER_PORT:-29500}" outroot="${NETNS_OUT:-runs/netns}"
  [ "$(id -u)" = 0 ] || die "demo needs root (network namespaces)"
  [ -x "$bin" ] || die "no secure-ml at $bin (set SECURE_ML)"

  # The roster, with the same --set overrides the parties get.
  local sets=() args=("$@") j
  for ((j = 0; j < ${#args[@]}; j++)); do
    case "${args[j]}" in
      --set) sets+=(--set "${args[j + 1]:-}"); j=$((j + 1)) ;;
      --set=*) sets+=("${args[j]}") ;;
    esac
  done
  local roster
  roster="$("$bin" spec check "$spec" ${sets[@]+"${sets[@]}"})" || die "spec check failed"
  echo "$roster"
  local ranks=() names=() roles=() line
  while IFS= read -r line; do
    if [[ "$line" =~ ^[[:space:]]*rank[[:space:]]+([0-9]+):[[:space:]]+([^[:space:]]+)[[:space:]]+\[([^]]*)\] ]]; then
      ranks+=("${BASH_REMATCH[1]}"); names+=("${BASH_REMATCH[2]}"); roles+=("${BASH_REMATCH[3]}")
    fi
  done <<<"$roster"
  local n=${#ranks[@]}
  [ "$n" -ge 1 ] || die "no 'rank R: NAME [roles]' lines in spec check output"
  # The dealer is the last rank listed with the role `dealer`.
  local dealer=-1
  for ((j = 0; j < n; j++)); do
    [[ ",${roles[j]// /}," == *,dealer,* ]] && dealer="${ranks[j]}"
  done

  # Each process gets its own key folder (its NAME.key, every NAME.pub), as
  # organisations on separate machines would; the channels are encrypted.
  local keydir="" keyflag=0 a
  if [ "${NETNS_KEYS:-1}" = 1 ] && "$bin" keys --help >/dev/null 2>&1; then
    keyflag=1
    for a in "$@"; do case "$a" in --keys | --keys=*) keyflag=0 ;; esac; done
  fi
  if [ "$keyflag" = 1 ]; then
    keydir="$(mktemp -d "${TMPDIR:-/tmp}/netns-keys.XXXXXX")"
  fi
  trap "disown -a 2>/dev/null; cmd_down '$prefix'; [ -z '$keydir' ] || rm -rf '$keydir'" EXIT
  trap 'echo "netns.sh: interrupted" >&2; exit 130' INT TERM
  if [ "$keyflag" = 1 ]; then
    for ((j = 0; j < n; j++)); do
      "$bin" keys init --party "${names[j]}" --out "$keydir/${names[j]}" >/dev/null
    done
    for ((j = 0; j < n; j++)); do
      for a in "${names[@]}"; do
        [ "$a" = "${names[j]}" ] || cp "$keydir/$a/$a.pub" "$keydir/${names[j]}/"
      done
    done
  fi
  cmd_up "$prefix" "$n" "$subnet"
  local master="$subnet.1"
  local pids=() r name
  for ((j = 0; j < n; j++)); do
    r="${ranks[j]}"; name="${names[j]}"
    local cmd=("$bin")
    if [ "$r" = "$dealer" ]; then
      cmd+=(dealer "$spec")
    else
      cmd+=(party "$spec" --rank "$r")
    fi
    cmd+=(--master-addr "$master" --master-port "$port" --out "$outroot/$name")
    [ "$keyflag" = 0 ] || cmd+=(--keys "$keydir/$name")
    cmd+=("$@")
    echo "$prefix-h$r ($subnet.$((r + 1))): ${cmd[*]}"
    ip netns exec "$prefix-h$r" env GLOO_SOCKET_IFNAME=eth0 OMP_NUM_THREADS=1 \
      MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1 "${cmd[@]}" \
      > >(sed -u "s/^/[$name] /") 2>&1 &
    pids+=($!)
  done
  # Wait for all. Once one fails, the rest get NETNS_GRACE seconds (default
  # 60) to notice and exit on their own before teardown kills them.
  local failed=0 code pid left=$n deadline=""
  declare -A rank_of=()
  for ((j = 0; j < n; j++)); do rank_of[${pids[j]}]=$j; done
  while [ "$left" -gt 0 ]; do
    code=0; pid=""
    if [ -n "$deadline" ]; then
      local rest=$((deadline - SECONDS))
      if [ "$rest" -le 0 ]; then
        echo "netns.sh: $left process(es) still running after a failure; stopping them" >&2
        break
      fi
      # wait -n has no timeout: poll.
      for pid in "${!rank_of[@]}"; do
        kill -0 "$pid" 2>/dev/null || break
        pid=""
      done
      if [ -z "$pid" ]; then sleep 0.5; continue; fi
      wait "$pid" || code=$?
    else
      wait -n -p pid "${!rank_of[@]}" || code=$?
    fi
    j=${rank_of[$pid]}; unset "rank_of[$pid]"; left=$((left - 1))
    echo "rank ${ranks[j]} ${names[j]}: exit $code"
    if [ "$code" != 0 ]; then
      failed=1
      [ -n "$deadline" ] || deadline=$((SECONDS + ${NETNS_GRACE:-60}))
    fi
  done
  for pid in "${!rank_of[@]}"; do
    j=${rank_of[$pid]}
    echo "rank ${ranks[j]} ${names[j]}: killed (still running)"
  done
  return "$failed"
}

[ $# -ge 1 ] || die "usage: $0 up PREFIX N [SUBNET] | down PREFIX | demo SPEC [args]"
sub="$1"; shift
case "$sub" in
  up) cmd_up "$@" ;;
  down) cmd_down "$@" ;;
  demo) cmd_demo "$@" ;;
  *) die "unknown subcommand '$sub' (up, down, demo)" ;;
esac
