#!/usr/bin/env bash
# The state directory and its flow tables (gateway.state_dir):
#   stale      tables left by a syngate of a deleted namespace are not taken over by a syngate in a
#              fresh one (the kernel reuses the namespace's inode number, not its cookie);
#   twons      two instances with the same config and state_dir, one per namespace, both run;
#   sameqs     a second syngate in the same namespace, other queue numbers: under the same instance
#              name it refuses to start, under another it runs; neither deletes the running one's
#              tables;
#   trustdir   a state_dir open to other users or owned by another is refused;
#   trusttable a table another user could write is replaced by a fresh 0600 one, not adopted;
#   trustlink  draining-services.tmp is never followed through a symlink;
#   reserve    the tables are reserved on their filesystem: a full tmpfs (in a private mount
#              namespace) refuses the start with a message, where it used to SIGBUS the daemon;
#   bigfile    a 2 GiB table file of the wrong size costs the restart nothing (header read only);
#   flows      `syngate flows` lists the connections held (text, --json, --state), as they close,
#              and from the saved tables once syngate has stopped; no table: exit 1;
#   legacy     (only with SYNGATE_OLD=path of a syngate that kept its tables directly in state_dir,
#              e.g. 901d793) an upgrade from it keeps every connection.
#   state_test.sh SYNGATE [PART...]   (default: every part but legacy)
source "$(dirname "$0")/lib.sh"
lab_init "$1"
shift
parts=("$@")
(( ${#parts[@]} )) || parts=(stale twons sameqs trustdir trusttable trustlink reserve bigfile flows)

# Every table file of the lab's state_dir, wherever the running release puts them.
tables() { find "$LAB_DIR/state" -name 'flows-q*.bin' -type f 2>/dev/null | sort; }
stop_syngate() {
  kill -TERM "$SYNGATE_PID" 2>/dev/null || true
  wait "$SYNGATE_PID" 2>/dev/null || true
}
# run_once NS CONFIG: a syngate that is expected to refuse to start; prints its output.
run_once() { timeout 10 ip netns exec "$1" "$SYNGATE_BIN" run --config "$2" 2>&1 || true; }

# Idle connections through the gateway to the echo server on 7000, held by a client in the
# background until $LAB_DIR/release exists.
hold_connections() {  # hold_connections N
  cat > "$LAB_DIR/hold.py" <<'PY'
import os, socket, sys, time
conns = []
for i in range(int(sys.argv[1])):
    c = socket.create_connection(("10.10.3.2", 7000), timeout=5)
    assert c.makefile("rb").readline() == b"hello\n"
    conns.append(c)
print("held", len(conns), flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.1)
PY
  rm -f "$LAB_DIR/release" "$LAB_DIR/hold.out"
  BG_LOG=$LAB_DIR/hold.out bg "$NS_CLI" /usr/bin/python3 "$LAB_DIR/hold.py" "$1" "$LAB_DIR/release"
  for _ in $(seq 100); do grep -q held "$LAB_DIR/hold.out" 2>/dev/null && return 0; sleep 0.05; done
  fail "connections did not open: $(cat "$LAB_DIR/hold.out")"
}

# wait_flows N: until the gateway's table holds at least N flows (counters publish every 100 ms).
wait_flows() {
  for _ in $(seq 40); do (( $(metric_sum syngate_flows_active) >= $1 )) && return 0; sleep 0.05; done
  return 1
}

echo_config() {
  write_config "${1:-}" "${2:-}" '[[service]]
address = "10.10.3.2"
port = 7000'
}

part_stale() {
  log "stale: tables of a deleted namespace's syngate"
  lab_up
  start_echo 7000
  echo_config
  start_syngate
  hold_connections 5
  local ino_before
  ino_before=$(in_ns "$NS_GW" stat -Lc %i /proc/self/ns/net)
  wait_flows 5 || fail "stale: the flows are not in the table"
  kill -KILL "$SYNGATE_PID"
  wait "$SYNGATE_PID" 2>/dev/null || true
  # The namespaces go, with every connection in them; new ones come (often under the same inode
  # numbers), and a syngate starts there with the same config and state_dir.
  lab_reset
  lab_up
  start_echo 7000
  start_syngate
  local ino_after restored
  ino_after=$(in_ns "$NS_GW" stat -Lc %i /proc/self/ns/net)
  sleep 0.5  # the workers publish their counters every 100 ms
  restored=$(metric_sum syngate_flows_restored_total)
  log "stale: gateway namespace inode $ino_before, then $ino_after; $restored flows taken over"
  (( restored == 0 )) || fail "stale: a syngate in a fresh namespace took over $restored flows of a deleted one"
  (( $(metric_sum syngate_flows_active) == 0 )) || fail "stale: flows of a deleted namespace are live"
  if [[ $ino_before == "$ino_after" ]]; then
    grep -q "no longer exists" "$LAB_DIR/syngate.log" || fail "stale: the log does not say why the tables were dropped"
  fi
  stop_syngate
  lab_reset
  pass "stale: a fresh namespace's syngate took over none of a deleted namespace's 5 flows"
}

part_twons() {
  log "twons: one instance per namespace, same config and state_dir"
  lab_up
  start_echo 7000
  echo_config
  start_syngate
  local first=$SYNGATE_PID
  # The same config in another namespace (atk stands in for a second gateway).
  in_ns "$NS_ATK" "$SYNGATE_BIN" rules up --config "$LAB_DIR/syngate.toml" >/dev/null
  BG_LOG=$LAB_DIR/second.log bg "$NS_ATK" "$SYNGATE_BIN" run --config "$LAB_DIR/syngate.toml"
  local second=$BG_PID
  for _ in $(seq 100); do grep -q "syngate running" "$LAB_DIR/second.log" 2>/dev/null && break; sleep 0.05; done
  grep -q "syngate running" "$LAB_DIR/second.log" || fail "twons: the second instance did not start: $(tail -3 "$LAB_DIR/second.log")"
  kill -0 "$first" || fail "twons: the first instance died"
  (( $(tables | wc -l) == 2 )) || fail "twons: expected one table per instance, found: $(tables)"
  hold_connections 3
  wait_flows 3 || fail "twons: the first instance does not proxy"
  touch "$LAB_DIR/release"
  kill -TERM "$second"; wait "$second" 2>/dev/null || true
  stop_syngate
  lab_reset
  pass "twons: two instances in two namespaces with one config, each with its own table"
}

part_sameqs() {
  log "sameqs: a second syngate in the same namespace with other queue numbers"
  lab_up
  start_echo 7000
  echo_config
  start_syngate
  hold_connections 3
  local table inode
  table=$(tables)
  inode=$(stat -c %i "$table")
  # Another config file named like the first (so the same instance name), other queues, chain
  # and metrics port.
  mkdir -p "$LAB_DIR/b"
  sed -e 's/^stats_interval_s = 0$/stats_interval_s = 0\nsyn_queue = 20\nflow_queue = 28\nchain = "SGB"\nmetrics_address = "127.0.0.1:9471"/' \
    "$LAB_DIR/syngate.toml" > "$LAB_DIR/b/syngate.toml"
  local out
  out=$(run_once "$NS_GW" "$LAB_DIR/b/syngate.toml")
  [[ -e $table && $(stat -c %i "$table") == "$inode" ]] || fail "sameqs: the second syngate deleted the running one's table"
  grep -q "another syngate (pid $SYNGATE_PID) runs as instance \"syngate\"" <<<"$out" ||
    fail "sameqs: the second syngate under the same name did not refuse clearly: $(tail -3 <<<"$out")"
  # The same under its own name: it runs beside the first.
  cp "$LAB_DIR/b/syngate.toml" "$LAB_DIR/edge.toml"
  BG_LOG=$LAB_DIR/edge.log bg "$NS_GW" "$SYNGATE_BIN" run --config "$LAB_DIR/edge.toml"
  local edge=$BG_PID
  for _ in $(seq 100); do grep -q "syngate running" "$LAB_DIR/edge.log" 2>/dev/null && break; sleep 0.05; done
  grep -q "syngate running" "$LAB_DIR/edge.log" || fail "sameqs: instance edge did not start: $(tail -3 "$LAB_DIR/edge.log")"
  [[ -e $table && $(stat -c %i "$table") == "$inode" ]] || fail "sameqs: instance edge deleted the running one's table"
  wait_flows 3 || fail "sameqs: the first instance lost its flows"
  touch "$LAB_DIR/release"
  kill -TERM "$edge"; wait "$edge" 2>/dev/null || true
  stop_syngate
  lab_reset
  pass "sameqs: the same name refused (\"$(grep -o 'another syngate.*namespace' <<<"$out" | head -1)\"), another name runs beside it; the running table kept"
}

part_trustdir() {
  log "trustdir: a state_dir open to other users, or another user's"
  lab_up
  echo_config
  mkdir -p "$LAB_DIR/state"
  local out
  chmod 0777 "$LAB_DIR/state"
  out=$(run_once "$NS_GW" "$LAB_DIR/syngate.toml")
  grep -q "lets other users write" <<<"$out" || fail "trustdir: a 0777 state_dir was used: $(tail -2 <<<"$out")"
  chmod 0700 "$LAB_DIR/state"
  chown nobody "$LAB_DIR/state"
  out=$(run_once "$NS_GW" "$LAB_DIR/syngate.toml")
  grep -q "owned by uid $(id -u nobody)" <<<"$out" || fail "trustdir: a state_dir owned by nobody was used: $(tail -2 <<<"$out")"
  lab_reset
  pass "trustdir: a 0777 state_dir and one owned by nobody refused"
}

part_trusttable() {
  log "trusttable: a table another user could write"
  lab_up
  start_echo 7000
  echo_config
  start_syngate
  stop_syngate
  local table
  table=$(tables)
  chmod 0666 "$table"
  chown nobody "$table"
  start_syngate
  [[ $(stat -c '%a %U' "$table") == "600 root" ]] || fail "trusttable: the 0666 table of nobody was adopted: $(stat -c '%a %U' "$table")"
  grep -q "not trusted" "$LAB_DIR/syngate.log" || fail "trusttable: the log does not say why the table was replaced"
  stop_syngate
  lab_reset
  pass "trusttable: a 0666 table of nobody replaced by a 0600 one of root"
}

part_trustlink() {
  log "trustlink: draining-services.tmp planted as a symlink"
  lab_up
  start_echo 7000
  echo_config
  start_syngate
  local dir
  dir=$(dirname "$(tables)")
  echo precious > "$LAB_DIR/victim"
  ln -sf "$LAB_DIR/victim" "$dir/draining-services.tmp"
  hold_connections 1
  write_config  # 7000 removed: it drains, and the daemon lists it in draining-services
  kill -HUP "$SYNGATE_PID"
  for _ in $(seq 60); do grep -q "10.10.3.2 7000" "$dir/draining-services" 2>/dev/null && break; sleep 0.1; done
  [[ $(cat "$LAB_DIR/victim") == precious ]] || fail "trustlink: draining-services.tmp followed a symlink: root overwrote $LAB_DIR/victim with: $(cat "$LAB_DIR/victim")"
  grep -q "10.10.3.2 7000" "$dir/draining-services" || fail "trustlink: draining-services was not written"
  touch "$LAB_DIR/release"
  stop_syngate
  lab_reset
  pass "trustlink: the planted symlink was not followed; draining-services written"
}

part_reserve() {
  log "reserve: a full tmpfs (private mount namespace)"
  lab_up
  start_echo 7000
  # The backend never answers port 7001: every handshake that carries data holds an early-data
  # slot (one 4 KiB page each) while syngate retries the backend.
  in_ns "$NS_SRV" iptables -A INPUT -p tcp --dport 7001 -j DROP
  local tiny=$LAB_DIR/tiny
  mkdir -p "$tiny"
  cat > "$LAB_DIR/syngate.toml" <<CONF
[gateway]
secret_file = "$LAB_DIR/secrets"
state_dir = "$tiny/state"
stats_interval_s = 0
[engine]
max_flows = 1024
early_data_bytes = 4096
early_data_slots = 256
[xdp]
mode = "off"
[[service]]
address = "10.10.3.2"
port = 7001
CONF
  in_ns "$NS_GW" "$SYNGATE_BIN" rules up --config "$LAB_DIR/syngate.toml" >/dev/null
  # 1 MiB of tmpfs of which 768 KiB are taken: the table (1.1 MiB) cannot fit, its flow entries
  # (96 KiB) can. The mount exists only in the mount namespace syngate runs in.
  unshare -m --propagation private bash -c '
    mount -t tmpfs -o size=1m,mode=0700 syngate-test "$1" &&
    dd if=/dev/zero of="$1/filler" bs=64k count=12 status=none &&
    exec ip netns exec "$2" "$3" run --config "$4"' _ "$tiny" "$NS_GW" "$SYNGATE_BIN" "$LAB_DIR/syngate.toml" \
    >"$LAB_DIR/tiny.log" 2>&1 &
  local pid=$!
  track_pid "$pid"
  for _ in $(seq 100); do grep -qE "syngate running|startup failed|critical" "$LAB_DIR/tiny.log" && break; sleep 0.05; done
  if grep -q "syngate running" "$LAB_DIR/tiny.log"; then
    log "reserve: syngate started on a table it cannot hold; 60 handshakes with data"
    for i in $(seq 60); do
      in_ns "$NS_CLI" curl -s --max-time 3 -o /dev/null http://10.10.3.2:7001/ &
    done
    sleep 4
  fi
  local rc=0
  wait_exit "$pid" 5 || true  # a refusal exits
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    fail "reserve: syngate ran on a table its filesystem cannot hold: $(tail -3 "$LAB_DIR/tiny.log")"
  fi
  wait "$pid" || rc=$?
  (( rc != 135 && rc < 128 )) || fail "reserve: syngate was killed by signal $((rc - 128)) (exit $rc): $(tail -2 "$LAB_DIR/tiny.log")"
  grep -q "cannot reserve" "$LAB_DIR/tiny.log" || fail "reserve: no clear message: $(tail -3 "$LAB_DIR/tiny.log")"
  # With room, the table's every block is allocated up front.
  write_config
  start_syngate
  local table
  table=$(tables)
  (( $(stat -c '%b * %B' "$table") >= $(stat -c %s "$table") )) ||
    fail "reserve: the table is sparse ($(stat -c '%b blocks of %B, size %s' "$table"))"
  stop_syngate
  lab_reset
  pass "reserve: a full tmpfs refused with \"$(grep -o 'cannot reserve[^;]*' "$LAB_DIR/tiny.log" | head -1)\"; with room every block is allocated"
}

part_bigfile() {
  log "bigfile: a 2 GiB table file of the wrong size"
  lab_up
  start_echo 7000
  echo_config
  start_syngate
  stop_syngate
  local table
  table=$(tables)
  truncate -s 2G "$table"
  local t0 t1
  t0=$(date +%s%N)
  start_syngate
  t1=$(date +%s%N)
  local ms=$(((t1 - t0) / 1000000)) rss
  rss=$(rss_kb "$SYNGATE_PID")
  log "bigfile: started in $ms ms, RSS $((rss / 1024)) MiB"
  (( ms < 3000 )) || fail "bigfile: the start took $ms ms"
  (( rss < 200 * 1024 )) || fail "bigfile: RSS $((rss / 1024)) MiB after the start"
  (( $(stat -c %s "$table") < 1024 * 1024 * 1024 )) || fail "bigfile: the 2 GiB file is still there"
  stop_syngate
  lab_reset
  pass "bigfile: a 2 GiB table of the wrong size cost the start $ms ms (RSS $((rss / 1024)) MiB)"
}

part_legacy() {
  [[ -n ${SYNGATE_OLD:-} ]] || fail "legacy: set SYNGATE_OLD to the earlier release's syngate"
  log "legacy: an upgrade from $SYNGATE_OLD"
  lab_up
  start_echo 7000
  echo_config
  local new=$SYNGATE_BIN
  SYNGATE_BIN=$SYNGATE_OLD start_syngate
  hold_connections 4
  wait_flows 4 || fail "legacy: the flows are not in the old release's table"
  [[ -f $LAB_DIR/state/flows-q8.bin ]] || fail "legacy: $SYNGATE_OLD does not keep its tables in state_dir itself"
  stop_syngate
  SYNGATE_BIN=$new start_syngate
  local restored
  for _ in $(seq 40); do
    restored=$(metric_sum syngate_flows_restored_total)
    (( restored >= 4 )) && break
    sleep 0.05
  done
  (( restored >= 4 )) || fail "legacy: the upgrade took over $restored of 4 flows: $(tail -8 "$LAB_DIR/syngate.log")"
  [[ ! -e $LAB_DIR/state/flows-q8.bin ]] || fail "legacy: the old table is still in state_dir"
  touch "$LAB_DIR/release"
  stop_syngate
  lab_reset
  pass "legacy: the upgrade took over the earlier release's $restored flows"
}

# flows_json [ARGS...]: `syngate flows --json` in the gateway's namespace.
flows_json() { in_ns "$NS_GW" "$SYNGATE_BIN" flows --config "$LAB_DIR/syngate.toml" --json "$@"; }
# count_flows STATE [ARGS...]: how many listed flows are in STATE to the echo service.
count_flows() {
  local state=$1
  shift
  flows_json "$@" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print(sum(1 for f in j["flows"] if f["state"] == sys.argv[1] and f["backend"] == "10.10.3.2:7000"
          and f["client"].startswith("10.10.1.")))' "$state"
}

part_flows() {
  log "flows: syngate flows lists what the tables hold"
  lab_up
  start_echo 7000
  echo_config
  local rc=0
  in_ns "$NS_GW" "$SYNGATE_BIN" flows --config "$LAB_DIR/syngate.toml" >"$LAB_DIR/flows.out" 2>&1 || rc=$?
  (( rc == 1 )) || fail "flows: before any start, exit $rc (want 1): $(cat "$LAB_DIR/flows.out")"
  grep -q "no flow table" "$LAB_DIR/flows.out" || fail "flows: no reason given: $(cat "$LAB_DIR/flows.out")"
  start_syngate
  hold_connections 3
  wait_flows 3 || fail "flows: the connections are not in the table"
  local n
  n=$(count_flows established)
  (( n == 3 )) || fail "flows: $n established flows listed, want 3: $(flows_json)"
  n=$(count_flows established --state linger)
  (( n == 0 )) || fail "flows: --state linger listed $n established flows"
  in_ns "$NS_GW" "$SYNGATE_BIN" flows --config "$LAB_DIR/syngate.toml" >"$LAB_DIR/flows.out" ||
    fail "flows: the text listing failed"
  (( $(grep -c "10.10.3.2:7000 *established" "$LAB_DIR/flows.out") == 3 )) ||
    fail "flows: the text listing does not show 3 established flows: $(cat "$LAB_DIR/flows.out")"
  grep -q "3 of [0-9]* entries live" "$LAB_DIR/flows.out" || fail "flows: no table summary: $(cat "$LAB_DIR/flows.out")"
  log "flows: $(cat "$LAB_DIR/flows.out")"
  # The client closes: the flows close in the table (the kernel path's closes at the next sweep).
  touch "$LAB_DIR/release"
  local closed=0
  for _ in $(seq 60); do
    closed=$(( $(count_flows closing) + $(count_flows linger) ))
    (( closed == 3 )) && break
    sleep 0.1
  done
  (( closed == 3 )) || fail "flows: $closed of 3 flows listed closing or lingering after the close: $(flows_json)"
  # Stopped, the saved tables still answer.
  stop_syngate
  n=$(( $(count_flows closing) + $(count_flows linger) ))
  (( n == 3 )) || fail "flows: the saved tables list $n of 3 flows"
  rc=0
  in_ns "$NS_GW" "$SYNGATE_BIN" flows --config "$LAB_DIR/nope.toml" >"$LAB_DIR/flows.out" 2>&1 || rc=$?
  (( rc == 2 )) || fail "flows: a missing configuration: exit $rc (want 2)"
  lab_reset
  pass "flows: 3 held connections listed established, then closing, and from the saved tables"
}

for p in "${parts[@]}"; do
  rm -rf "$LAB_DIR/state" "$LAB_DIR/syngate.log"
  "part_$p"
done
