#!/usr/bin/env bash
# Runs the Prosody that pmn's tests, benches and demo talk to: loopback only, two households
# (home.test, friend.test), a malicious host for in-path attack tests (tamper.test, with
# modules/mod_pmn_tamper.lua), a private test CA, users registered up front.
#
#   prosody.sh install                      install prosody + openssl if missing (idempotent, quiet)
#   prosody.sh start DIR PORT               start in the background, return once PORT accepts TCP
#   prosody.sh run DIR PORT                 same, but stay in the foreground: print READY, and stop
#                                           prosody when stdin reaches EOF (or on TERM/INT/HUP)
#   prosody.sh register DIR USER HOST PW    register one more user (works while running)
#   prosody.sh stop DIR                     stop the prosody of DIR (idempotent)
#   prosody.sh certs DIR                    put the test CA and leaf (ca.pem, server.crt,
#                                           server.key) into DIR, for the other test servers
#   prosody.sh users                        print the default accounts, "user host password" a line
#
# DIR gets ca.pem (the CA to trust), server.crt/server.key (leaf for home.test, friend.test,
# tamper.test and localhost), prosody.cfg.lua, data/, prosody.log, prosody.err, prosody.pid.
#
# Certificates and the registered default accounts are prepared once in a template directory
# (${CARGO_TARGET_DIR:-<repo>/target}/prosody-template-<hash of this script + config template>)
# and copied into DIR, so a start costs one Prosody boot and no prosodyctl runs.
#
# Environment:
#   PMN_PROSODY_START_TIMEOUT   seconds to wait for the port (default 10)
#   PMN_PROSODY_RM_DIR          if 1, `run` removes DIR after prosody has stopped
set -euo pipefail

SELF="$(realpath "${BASH_SOURCE[0]}")"
HERE="$(dirname "$SELF")"
REPO="$(cd "$HERE/../.." && pwd)"
CFG_TEMPLATE="$HERE/prosody.cfg.lua.in"
MODULES_DIR="$HERE/modules"
START_TIMEOUT="${PMN_PROSODY_START_TIMEOUT:-10}"

# The default test accounts: "user host password". The only list of them; pmn-testkit mirrors it.
DEFAULT_USERS=(
	"home home.test home-secret"          # Juliet's household network
	"home friend.test friend-secret"      # Romeo's household network
	"stranger home.test stranger-secret"  # someone with no rights anywhere
	"bench home.test bench-secret"        # benchmarks
	# tamper.test: the server attacks these accounts' tunnels (mod_pmn_tamper, by username)
	"flip tamper.test flip-secret"         # flips a bit in IBB blocks from seq 1 on
	"lateflip tamper.test lateflip-secret" # flips every IBB block once the account armed it
	"swap tamper.test swap-secret"         # substitutes the Jingle XTLS fingerprint
	"clean tamper.test clean-secret"       # left alone: the control case
)

die() {
	echo "prosody.sh: $*" >&2
	exit 1
}

usage() {
	sed -n '2,14p' "$SELF" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

as_root() {
	if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

cmd_install() {
	local need=()
	command -v prosody >/dev/null 2>&1 && command -v prosodyctl >/dev/null 2>&1 || need+=(prosody)
	command -v openssl >/dev/null 2>&1 || need+=(openssl)
	((${#need[@]} == 0)) && return 0
	echo "prosody.sh: installing ${need[*]} with apt-get" >&2
	as_root apt-get update -qq >/dev/null
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
	command -v prosody >/dev/null 2>&1 || die "prosody is still missing after apt-get install"
}

# Absolute path of DIR, created if needed.
abs_dir() {
	mkdir -p "$1"
	(cd "$1" && pwd)
}

check_port() {
	# shellcheck disable=SC2015 # die when either test fails
	[[ $1 =~ ^[0-9]+$ ]] && (($1 > 0 && $1 < 65536)) || die "bad port '$1'"
}

# True when something accepts TCP on 127.0.0.1:$1.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True when pid $1 is alive (a zombie counts as dead: no init may reap it in a container).
alive() {
	local state
	[[ -n $1 ]] && kill -0 "$1" 2>/dev/null || return 1
	state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
	[[ $state != Z ]]
}

# Pid from DIR's pidfile if that process is a running prosody, else empty.
running_pid() {
	local pid
	pid="$(cat "$1/prosody.pid" 2>/dev/null || true)"
	if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q prosody; then
		echo "$pid"
	fi
}

# write_config DIR PORT: DIR/prosody.cfg.lua from the template.
write_config() {
	local dir="$1" port="$2" esc mods
	esc="$(printf '%s' "$dir" | sed 's/[\\&|]/\\&/g')"
	mods="$(printf '%s' "$MODULES_DIR" | sed 's/[\\&|]/\\&/g')"
	[[ $dir != *$'\n'* && $dir != *'"'* ]] || die "DIR must not contain quotes or newlines"
	[[ $MODULES_DIR != *$'\n'* && $MODULES_DIR != *'"'* ]] || die "the repository path must not contain quotes or newlines"
	sed -e "s|@DIR@|$esc|g" -e "s|@PORT@|$port|g" -e "s|@MODULES@|$mods|g" "$CFG_TEMPLATE" >"$dir/prosody.cfg.lua.tmp"
	mv -f "$dir/prosody.cfg.lua.tmp" "$dir/prosody.cfg.lua"
}

# make_certs DIR: test CA (ca.pem) and a CA-signed leaf (server.crt, server.key). rustls refuses a
# self-signed CA:TRUE certificate as a server certificate, hence the two levels.
make_certs() {
	local d="$1"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
		-subj "/CN=pmn test CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
		-subj "/CN=home.test" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
	cat >"$d/server.ext" <<-'EOF'
		subjectAltName = DNS:home.test, DNS:friend.test, DNS:tamper.test, DNS:localhost
		basicConstraints = critical, CA:FALSE
		keyUsage = critical, digitalSignature
		extendedKeyUsage = serverAuth
		subjectKeyIdentifier = hash
		authorityKeyIdentifier = keyid
	EOF
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
		-days 3650 -sha256 -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
	rm -f "$d/server.csr" "$d/server.ext"
	chmod 600 "$d/ca.key" "$d/server.key"
	openssl verify -CAfile "$d/ca.pem" "$d/server.crt" >/dev/null || die "generated certificate does not verify"
}

# Template directory (certs + data dir with the default accounts), built once per script/config
# version. Built in a temp dir and renamed into place, so concurrent starts are safe.
template_dir() {
	local target="${CARGO_TARGET_DIR:-$REPO/target}" key
	key="$(cat "$SELF" "$CFG_TEMPLATE" | sha256sum | cut -c1-16)"
	mkdir -p "$target"
	echo "$(cd "$target" && pwd)/prosody-template-$key"
}

ensure_template() {
	local t="$1" tmp u
	[[ -f $t/.complete ]] && return 0
	mkdir -p "$(dirname "$t")"
	tmp="$(mktemp -d "$t.tmp.XXXXXX")"
	make_certs "$tmp"
	mkdir -p "$tmp/data"
	write_config "$tmp" 5222
	for u in "${DEFAULT_USERS[@]}"; do
		# shellcheck disable=SC2086 # "user host password" on purpose
		prosodyctl --config "$tmp/prosody.cfg.lua" register $u >/dev/null ||
			{ rm -rf "$tmp"; die "prosodyctl register ${u% *} failed"; }
	done
	rm -f "$tmp/prosody.cfg.lua" "$tmp"/prosody.log "$tmp"/prosody.err
	touch "$tmp/.complete"
	mv -T "$tmp" "$t" 2>/dev/null || rm -rf "$tmp" # another process won the race: use its copy
	[[ -f $t/.complete ]] || die "could not create template $t"
}

# prepare DIR PORT: everything up to launching prosody. Sets DIR to the absolute path.
prepare() {
	check_port "$2"
	# shellcheck disable=SC2015 # die when either test fails
	command -v prosody >/dev/null 2>&1 && command -v prosodyctl >/dev/null 2>&1 ||
		die "prosody is not installed: run '$SELF install'"
	DIR="$(abs_dir "$1")"
	PORT="$2"
	[[ -z $(running_pid "$DIR") ]] || die "a prosody for $DIR is already running (pid $(running_pid "$DIR"))"
	! port_open "$PORT" || die "127.0.0.1:$PORT is already in use"
	if [[ ! -f $DIR/server.crt || ! -d $DIR/data ]]; then
		local t
		t="$(template_dir)"
		ensure_template "$t"
		cp -a "$t/." "$DIR/"
		rm -f "$DIR/.complete"
	fi
	mkdir -p "$DIR/certs" # prosody's default certificate directory; empty on purpose
	write_config "$DIR" "$PORT"
	local f
	for f in prosody.log prosody.err prosody.console; do
		[[ -f $DIR/$f ]] && mv -f "$DIR/$f" "$DIR/$f.old"
	done
	return 0
}

log_tail() {
	local f
	for f in prosody.err prosody.log prosody.console; do
		[[ -s $DIR/$f ]] || continue
		echo "--- tail of $DIR/$f ---" >&2
		tail -n 25 "$DIR/$f" >&2
	done
}

# launch: start prosody in the background (PID), wait until it listens on PORT.
launch() {
	prosody -F --config "$DIR/prosody.cfg.lua" </dev/null >"$DIR/prosody.console" 2>&1 &
	PID=$!
	local deadline=$((SECONDS + START_TIMEOUT)) ready="Activated service 'c2s' on [127.0.0.1]:$PORT"
	while :; do
		if ! alive "$PID"; then
			echo "prosody.sh: prosody exited during startup" >&2
			log_tail
			exit 1
		fi
		if grep -q "Failed to open server port\|Error binding\|Failed to load module" "$DIR/prosody.log" "$DIR/prosody.err" 2>/dev/null; then
			echo "prosody.sh: prosody failed to start on 127.0.0.1:$PORT" >&2
			kill_pid "$PID"
			log_tail
			exit 1
		fi
		# The pidfile (mod_posix) and the c2s port (mod_c2s) appear in module load order; clients
		# connecting before the remaining hosts are loaded simply wait in the listen backlog.
		if [[ $(cat "$DIR/prosody.pid" 2>/dev/null) == "$PID" ]] &&
			grep -qF "$ready" "$DIR/prosody.log" 2>/dev/null && port_open "$PORT"; then
			return 0
		fi
		if ((SECONDS >= deadline)); then
			echo "prosody.sh: 127.0.0.1:$PORT not accepting connections after ${START_TIMEOUT}s" >&2
			kill_pid "$PID"
			log_tail
			exit 1
		fi
		sleep 0.05
	done
}

# kill_pid PID: TERM, wait up to 10 s, then KILL.
kill_pid() {
	local pid="$1" i
	alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		alive "$pid" || return 0
		sleep 0.05
	done
	echo "prosody.sh: prosody (pid $pid) ignored SIGTERM for 10 s, killing it" >&2
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 40; i++)); do
		alive "$pid" || return 0
		sleep 0.05
	done
	die "prosody (pid $pid) did not exit"
}

cmd_start() {
	(($# == 2)) || usage
	prepare "$1" "$2"
	launch
}

cmd_run() {
	(($# == 2)) || usage
	PID=""
	CAT=""
	trap '' PIPE
	trap 'on_exit' EXIT
	trap 'exit 143' TERM
	trap 'exit 130' INT
	trap 'exit 129' HUP
	prepare "$1" "$2"
	launch
	echo READY
	# Wait for EOF on stdin. A background job gets /dev/null as stdin, so hand it the real one via
	# fd 3; `wait` (unlike a foreground command) lets the signal traps run at once.
	exec 3<&0
	cat <&3 >/dev/null &
	CAT=$!
	wait "$CAT" || true
}

on_exit() {
	local rc=$?
	set +e
	trap '' TERM INT HUP # finish the cleanup even if signalled again
	if [[ -n ${CAT:-} ]]; then kill "$CAT" 2>/dev/null; fi
	if [[ -n ${PID:-} ]]; then kill_pid "$PID"; fi
	if [[ ${PMN_PROSODY_RM_DIR:-} == 1 && -n ${DIR:-} ]]; then
		rm -rf "$DIR"
	fi
	exit "$rc"
}

cmd_register() {
	(($# == 4)) || usage
	local dir
	dir="$(abs_dir "$1")"
	[[ -f $dir/prosody.cfg.lua ]] || die "$dir/prosody.cfg.lua missing: start the server first"
	prosodyctl --config "$dir/prosody.cfg.lua" register "$2" "$3" "$4" >/dev/null ||
		die "prosodyctl register $2@$3 failed"
}

cmd_stop() {
	(($# == 1)) || usage
	[[ -d $1 ]] || return 0
	local dir pid
	dir="$(cd "$1" && pwd)"
	pid="$(running_pid "$dir")"
	if [[ -n $pid ]]; then kill_pid "$pid"; fi
	rm -f "$dir/prosody.pid"
}

cmd_certs() {
	(($# == 1)) || usage
	local dir t
	dir="$(abs_dir "$1")"
	command -v prosodyctl >/dev/null 2>&1 || die "prosody is not installed: run '$SELF install'"
	t="$(template_dir)"
	ensure_template "$t"
	cp "$t/ca.pem" "$t/server.crt" "$t/server.key" "$dir/"
}

cmd_users() {
	printf '%s\n' "${DEFAULT_USERS[@]}"
}

case "${1:-}" in
install) shift; cmd_install "$@" ;;
certs) shift; cmd_certs "$@" ;;
users) shift; cmd_users "$@" ;;
start) shift; cmd_start "$@" ;;
run) shift; cmd_run "$@" ;;
register) shift; cmd_register "$@" ;;
stop) shift; cmd_stop "$@" ;;
*) usage ;;
esac
