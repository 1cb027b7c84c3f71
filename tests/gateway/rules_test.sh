#!/usr/bin/env bash
# `syngate rules up|down|show` against real iptables in a private network namespace, for both the
# nft and the legacy backend: exact rules (ICMP errors about the services included), idempotence,
# mode switches, IPv6, clean removal.
source "$(dirname "$0")/lib.sh"
lab_init "$@"
ns_add "$NS_GW"
SG() { in_ns "$NS_GW" "$SYNGATE_BIN" "$@"; }
# ICMP errors quoting a segment to / from the service (u32 on the quote, as iptables prints it).
ICMP_TO='0x0>>0x16&0x3c@0x0>>0x18=0x3,0xb,0xc&&0x0>>0x16&0x3c@0x10>>0x10&0xff=0x6&&0x0>>0x16&0x3c@0xc&0x1fff=0x0&&0x0>>0x16&0x3c@0x18=0xa0a0302&&0x0>>0x16&0x3c@0x8>>0x16&0x3c@0x8&0xffff=0x50'
ICMP_FROM='0x0>>0x16&0x3c@0x0>>0x18=0x3,0xb,0xc&&0x0>>0x16&0x3c@0x10>>0x10&0xff=0x6&&0x0>>0x16&0x3c@0xc&0x1fff=0x0&&0x0>>0x16&0x3c@0x14=0xa0a0302&&0x0>>0x16&0x3c@0x8>>0x16&0x3c@0x8>>0x10=0x50'
ICMP6_FROM='0x28>>0x18=0x1:0x4&&0x4>>0x8&0xff=0x3a&&0x34>>0x8&0xff=0x6&&0x38=0x20010db8&&0x3c=0x0&&0x40=0x0&&0x44=0x2&&0x58>>0x10=0x1bb'

conf() {  # conf BACKEND MODE EXTRA_SERVICES
  cat > "$LAB_DIR/r.toml" <<CONF
[gateway]
secret_file = "$LAB_DIR/secrets"
state_dir = "$LAB_DIR/state"
iptables = "$1"
mode = "$2"
fail_open = ${4:-false}
[[service]]
address = "10.10.3.2"
port = 80
${3:-}
CONF
}

for backend in nft legacy; do
  other=$([[ $backend == nft ]] && echo legacy || echo nft)
  ipt="iptables-$backend"; ip6t="ip6tables-$backend"
  command -v "$ipt" >/dev/null || { log "no $ipt here, skipping that backend"; continue; }
  conf "$backend" both
  SG rules up --config "$LAB_DIR/r.toml" >/dev/null
  mangle=$(in_ns "$NS_GW" "$ipt" -w -t mangle -S)
  raw=$(in_ns "$NS_GW" "$ipt" -w -t raw -S)
  for want in \
    "-A FORWARD -p tcp -j SYNGATE" "-A INPUT -p tcp -j SYNGATE" "-A OUTPUT -p tcp -j SYNGATE" \
    "-A SYNGATE -m mark --mark 0x5347 -j RETURN" \
    "-A SYNGATE -d 10.10.3.2/32 -p tcp -m tcp --dport 80 --tcp-flags FIN,SYN,RST,ACK SYN -j NFQUEUE --queue-num 0" \
    "-A SYNGATE -d 10.10.3.2/32 -p tcp -m tcp --dport 80 -j NFQUEUE --queue-num 8" \
    "-A SYNGATE -s 10.10.3.2/32 -p tcp -m tcp --sport 80 -j NFQUEUE --queue-num 8" \
    "-A FORWARD -p icmp -j SYNGATE" "-A INPUT -p icmp -j SYNGATE" \
    "-A SYNGATE -p icmp ! -f -m u32 --u32 \"$ICMP_TO\" -j NFQUEUE --queue-num 8" \
    "-A SYNGATE -p icmp ! -f -m u32 --u32 \"$ICMP_FROM\" -j NFQUEUE --queue-num 8"; do
    grep -qxF -- "$want" <<<"$mangle" || fail "$backend mangle lacks: $want
$mangle"
  done
  # An ICMP error this box sends itself is not queued (it may quote either side of the translation).
  grep -qF -- "-A OUTPUT -p icmp" <<<"$mangle" && fail "$backend: ICMP jump from mangle OUTPUT"
  for want in "-A PREROUTING -p tcp -j SYNGATE" "-A OUTPUT -p tcp -j SYNGATE" \
    "-A SYNGATE -d 10.10.3.2/32 -p tcp -m tcp --dport 80 -j CT --notrack" \
    "-A SYNGATE -s 10.10.3.2/32 -p tcp -m tcp --sport 80 -j CT --notrack" \
    "-A PREROUTING -p icmp -j SYNGATE" "-A OUTPUT -p icmp -j SYNGATE" \
    "-A SYNGATE -p icmp ! -f -m u32 --u32 \"$ICMP_TO\" -j CT --notrack" \
    "-A SYNGATE -p icmp ! -f -m u32 --u32 \"$ICMP_FROM\" -j CT --notrack"; do
    grep -qxF -- "$want" <<<"$raw" || fail "$backend raw lacks: $want
$raw"
  done
  # the other backend was not touched
  if command -v "iptables-$other" >/dev/null; then
    in_ns "$NS_GW" "iptables-$other" -w -t mangle -S | grep -q SYNGATE && fail "$backend up also wrote iptables-$other"
  fi
  pass "$backend: rules up installs the expected raw and mangle rules"

  SG rules up --config "$LAB_DIR/r.toml" >/dev/null
  again=$(in_ns "$NS_GW" "$ipt" -w -t mangle -S)
  [[ $again == "$mangle" ]] || fail "$backend: second rules up changed the rules:
$again"
  pass "$backend: rules up is idempotent"

  SG rules show --config "$LAB_DIR/r.toml" | grep -qF -- "--queue-num 8" || fail "$backend: show lacks the flow rule"
  pass "$backend: rules show lists them"

  # mode router: only FORWARD keeps a jump; fail_open adds --queue-bypass; a v6 service appears
  conf "$backend" router '[[service]]
address = "2001:db8::2"
port = 443' true
  SG rules up --config "$LAB_DIR/r.toml" >/dev/null
  mangle=$(in_ns "$NS_GW" "$ipt" -w -t mangle -S)
  grep -qxF -- "-A FORWARD -p tcp -j SYNGATE" <<<"$mangle" || fail "$backend router: FORWARD jump missing"
  grep -qF -- "-A INPUT -p tcp -j SYNGATE" <<<"$mangle" && fail "$backend router: INPUT jump left over"
  grep -qF -- "-A OUTPUT -p tcp -j SYNGATE" <<<"$mangle" && fail "$backend router: OUTPUT jump left over"
  grep -qF -- "--queue-num 8 --queue-bypass" <<<"$mangle" || fail "$backend fail_open: no --queue-bypass"
  v6=$(in_ns "$NS_GW" "$ip6t" -w -t mangle -S)
  grep -qxF -- "-A SYNGATE -s 2001:db8::2/128 -p tcp -m tcp --sport 443 -j NFQUEUE --queue-num 8 --queue-bypass" <<<"$v6" \
    || fail "$backend: v6 rules missing:
$v6"
  grep -qxF -- "-A FORWARD -p ipv6-icmp -j SYNGATE" <<<"$v6" || fail "$backend: no ICMPv6 jump:
$v6"
  grep -qxF -- "-A SYNGATE -p ipv6-icmp -m u32 --u32 \"$ICMP6_FROM\" -j NFQUEUE --queue-num 8 --queue-bypass" <<<"$v6" \
    || fail "$backend: no ICMPv6 error rule:
$v6"
  grep -qF -- "-A INPUT -p icmp -j SYNGATE" <<<"$mangle" && fail "$backend router: ICMP INPUT jump left over"
  grep -qF -- "10.10.3.2" <<<"$v6" && fail "$backend: v4 service in ip6tables"
  pass "$backend: mode switch, fail_open bypass and IPv6 rules"

  SG rules down --config "$LAB_DIR/r.toml" >/dev/null
  for t in raw mangle; do
    for bin in "$ipt" "$ip6t"; do
      left=$(in_ns "$NS_GW" "$bin" -w -t $t -S | grep SYNGATE || true)
      [[ -z $left ]] || fail "$backend: rules down left in $bin -t $t: $left"
    done
  done
  SG rules down --config "$LAB_DIR/r.toml" >/dev/null || fail "$backend: second rules down failed"
  SG rules show --config "$LAB_DIR/r.toml" | grep -q "no syngate rules installed" || fail "$backend: show after down"
  pass "$backend: rules down removes exactly ours and is idempotent"
done

# auto: down finds the rules whichever backend put them there; other chains stay
in_ns "$NS_GW" iptables-legacy -w -t mangle -N KEEPME
conf legacy both
SG rules up --config "$LAB_DIR/r.toml" >/dev/null
conf auto both
SG rules down --config "$LAB_DIR/r.toml" >/dev/null
in_ns "$NS_GW" iptables-legacy -w -t mangle -S | grep -q SYNGATE && fail "auto down missed legacy rules"
in_ns "$NS_GW" iptables-legacy -w -t mangle -S | grep -qx -- "-N KEEPME" || fail "rules down removed a foreign chain"
pass "auto: rules down finds legacy rules and leaves other chains alone"

out=$(SG check --config /nonexistent.toml 2>&1) && fail "check accepted a missing file"
grep -q "/nonexistent.toml: cannot open" <<<"$out" || fail "check: missing file not reported: $out"
printf '[gateway]\nsecret_file = "/x"\nsyn_queues = 0\n[[service]]\naddress = "10.0.0.1"\nport = 80\n' > "$LAB_DIR/bad.toml"
out=$(SG check --config "$LAB_DIR/bad.toml" 2>&1) && fail "check accepted a bad config"
grep -qF "gateway.syn_queues: must be between 1 and 64 (got 0)" <<<"$out" || fail "check message: $out"
pass "check names the key and the reason: $out"
