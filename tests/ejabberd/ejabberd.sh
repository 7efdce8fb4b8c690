#!/usr/bin/env bash
# Runs Debian's ejabberd as pmn's second test server: loopback only, the same two households and
# test CA as the Prosody one (tests/prosody/prosody.sh provides both), as the current user, from a
# private directory. The commands match prosody.sh, so pmn-testkit drives either:
#
#   ejabberd.sh install                      install ejabberd (+ prosody, for the certificates)
#   ejabberd.sh start DIR PORT               start in the background, return once it accepts c2s
#   ejabberd.sh run DIR PORT                 same, in the foreground: print READY, stop on stdin EOF
#   ejabberd.sh register DIR USER HOST PW    register one more user (works while running)
#   ejabberd.sh stop DIR                     stop the ejabberd of DIR (idempotent)
#
# DIR gets conf/ (ejabberd.yml, ejabberdctl.cfg, inetrc), spool/ (Mnesia), logs/ejabberd.log,
# ca.pem, server.pem and ejabberd.pid. Each DIR is its own Erlang node (pmn<PORT>@localhost) with
# its own distribution port and cookie, so no epmd is left behind and servers can run side by side.
set -euo pipefail

SELF="$(realpath "${BASH_SOURCE[0]}")"
HERE="$(dirname "$SELF")"
PROSODY_SH="$HERE/../prosody/prosody.sh"
START_TIMEOUT="${PMN_EJABBERD_START_TIMEOUT:-30}"

die() {
	echo "ejabberd.sh: $*" >&2
	exit 1
}

usage() {
	sed -n '2,13p' "$SELF" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

as_root() {
	if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

cmd_install() {
	bash "$PROSODY_SH" install
	command -v ejabberdctl >/dev/null 2>&1 && return 0
	echo "ejabberd.sh: installing ejabberd with apt-get" >&2
	as_root apt-get update -qq >/dev/null
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ejabberd >/dev/null
	command -v ejabberdctl >/dev/null 2>&1 || die "ejabberdctl is still missing after apt-get install"
}

abs_dir() {
	mkdir -p "$1"
	(cd "$1" && pwd)
}

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

ctl() {
	ejabberdctl --config-dir "$DIR/conf" --spool "$DIR/spool" --logs "$DIR/logs" "$@"
}

beam_pid() {
	local pid
	pid="$(cat "$DIR/ejabberd.pid" 2>/dev/null || true)"
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

# prepare DIR PORT: config, certificates, a node name of its own. Keeps spool/ (the accounts) so
# a restart after a crash finds them again.
prepare() {
	[[ $2 =~ ^[0-9]+$ ]] || die "bad port '$2'"
	command -v ejabberdctl >/dev/null 2>&1 || die "ejabberd is not installed: run '$SELF install'"
	DIR="$(abs_dir "$1")"
	PORT="$2"
	[[ -z $(beam_pid) ]] || die "an ejabberd for $DIR is already running"
	! port_open "$PORT" || die "127.0.0.1:$PORT is already in use"
	mkdir -p "$DIR/conf" "$DIR/spool" "$DIR/logs"
	if [[ ! -f $DIR/server.pem ]]; then
		bash "$PROSODY_SH" certs "$DIR"
		cat "$DIR/server.crt" "$DIR/server.key" >"$DIR/server.pem"
		chmod 600 "$DIR/server.pem"
	fi
	local esc
	esc="$(printf '%s' "$DIR" | sed 's/[\\&|]/\\&/g')"
	sed -e "s|@DIR@|$esc|g" -e "s|@PORT@|$PORT|g" "$HERE/ejabberd.yml.in" >"$DIR/conf/ejabberd.yml"
	cp /etc/ejabberd/inetrc "$DIR/conf/inetrc"
	if [[ ! -f $DIR/conf/ejabberdctl.cfg ]]; then
		cat >"$DIR/conf/ejabberdctl.cfg" <<-CFG
			EXEC_CMD=as_current_user
			ERLANG_NODE=pmn$PORT@localhost
			ERL_DIST_PORT=$(free_port)
			ERL_OPTIONS="-setcookie pmn$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n') -kernel inet_dist_use_interface {127,0,0,1}"
			EJABBERD_PID_PATH=$DIR/ejabberd.pid
		CFG
	fi
	if [[ -f $DIR/logs/ejabberd.log ]]; then mv -f "$DIR/logs/ejabberd.log" "$DIR/logs/ejabberd.log.old"; fi
}

launch() {
	ctl start >"$DIR/logs/ejabberdctl.out" 2>&1 || {
		cat "$DIR/logs/ejabberdctl.out" >&2
		die "ejabberdctl start failed"
	}
	local deadline=$((SECONDS + START_TIMEOUT))
	until grep -qF "Start accepting TCP connections at 127.0.0.1:$PORT" "$DIR/logs/ejabberd.log" 2>/dev/null &&
		port_open "$PORT"; do
		if ((SECONDS >= deadline)); then
			tail -n 20 "$DIR/logs/ejabberd.log" >&2 2>/dev/null || true
			die "ejabberd did not accept connections on 127.0.0.1:$PORT within ${START_TIMEOUT}s"
		fi
		sleep 0.1
	done
}

# The default accounts of the two households this server hosts (registered once; a restart keeps
# them in spool/). Each ejabberdctl call boots an Erlang VM, so they run side by side.
register_defaults() {
	[[ -f $DIR/spool/.pmn-accounts ]] && return 0
	local user host pw pids=()
	while read -r user host pw; do
		[[ $host == home.test || $host == friend.test ]] || continue
		ctl register "$user" "$host" "$pw" >/dev/null 2>&1 &
		pids+=($!)
	done < <(bash "$PROSODY_SH" users)
	local pid
	for pid in "${pids[@]}"; do wait "$pid" || die "registering the default accounts failed"; done
	# Mnesia keeps fresh writes in its log until it dumps them: a server killed (SIGKILL, as the
	# crash tests do) soon after has lost the accounts. A graceful restart writes them for good.
	stop_dir
	launch
	touch "$DIR/spool/.pmn-accounts"
}

stop_dir() {
	local pid i
	pid="$(beam_pid)"
	[[ -n $pid ]] || return 0
	ctl stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
}

cmd_start() {
	(($# == 2)) || usage
	prepare "$1" "$2"
	launch
	register_defaults
}

cmd_run() {
	(($# == 2)) || usage
	trap 'on_exit' EXIT
	trap 'exit 143' TERM
	trap 'exit 130' INT
	trap 'exit 129' HUP
	cmd_start "$1" "$2"
	echo READY
	exec 3<&0
	cat <&3 >/dev/null &
	CAT=$!
	wait "$CAT" || true
}

on_exit() {
	local rc=$?
	set +e
	trap '' TERM INT HUP
	if [[ -n ${CAT:-} ]]; then kill "$CAT" 2>/dev/null; fi
	if [[ -n ${DIR:-} ]]; then stop_dir; fi
	if [[ ${PMN_PROSODY_RM_DIR:-} == 1 && -n ${DIR:-} ]]; then rm -rf "$DIR"; fi
	exit "$rc"
}

cmd_register() {
	(($# == 4)) || usage
	DIR="$(abs_dir "$1")"
	ctl register "$2" "$3" "$4" >/dev/null || die "ejabberdctl register $2@$3 failed"
}

cmd_stop() {
	(($# == 1)) || usage
	[[ -d $1 ]] || return 0
	DIR="$(cd "$1" && pwd)"
	stop_dir
}

case "${1:-}" in
install) shift; cmd_install "$@" ;;
start) shift; cmd_start "$@" ;;
run) shift; cmd_run "$@" ;;
register) shift; cmd_register "$@" ;;
stop) shift; cmd_stop "$@" ;;
*) usage ;;
esac
