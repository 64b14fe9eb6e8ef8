#!/usr/bin/env bash
# scripts/services.sh: make sure PostgreSQL and Redis are reachable for Mutuo.
#
#   scripts/services.sh                   ensure Postgres and Redis (what `make services` runs)
#   scripts/services.sh createdb [NAME]   create the app database if missing
#                                         (NAME defaults to DATABASE_URL's database, else "mutuo")
#
# Postgres and Redis are each handled in this order:
#   reachable           -> do nothing (prints one line)
#   local, stopped      -> start it (systemctl when systemd runs, else pg_ctlcluster /
#                          redis-server --daemonize, then `service`), wait up to $SERVICES_WAIT s
#   local, not installed-> apt-get update && apt-get install -y postgresql / redis-server, start it
#   not local           -> never install or start anything: fail with a clear message
# Then Postgres must accept `psql -w` as the URL's user without a password. If a local server
# asks for one (fresh Debian: scram over TCP), trust lines for 127.0.0.1/32 and ::1/128 go at
# the top of pg_hba.conf and the cluster is reloaded. This happens only when needed.
#
# Environment:
#   DATABASE_URL    Postgres to ensure (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
#   REDIS_URL       Redis to ensure    (default redis://127.0.0.1:6379/0)
#   SERVICES_PG_VAR / SERVICES_REDIS_VAR
#                   variable names to mention in error messages (default DATABASE_URL / REDIS_URL)
#   SERVICES_WAIT   seconds to wait for a service after starting it (default 30)
#   SERVICES_DRY_RUN=1
#                   probe for real, but print every command that would change the machine
#                   (apt-get, start, pg_hba.conf edit, reload, CREATE DATABASE) instead of running it
#   SERVICES_PRETEND_ABSENT="postgres redis"
#                   dry-run only: act as if these weren't installed (to exercise the install path)
#
# Exit status is non-zero, with a message on stderr, when a service can't be made reachable.
# Nothing is ever skipped: under CI=true a missing service fails the run like anywhere else.
set -euo pipefail

PG_DEFAULT_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
REDIS_DEFAULT_URL='redis://127.0.0.1:6379/0'
PG_URL=${DATABASE_URL:-$PG_DEFAULT_URL}
REDIS_URL_=${REDIS_URL:-$REDIS_DEFAULT_URL}
WAIT=${SERVICES_WAIT:-30}
DRY_RUN=${SERVICES_DRY_RUN:-0}
[[ $DRY_RUN == 1 || $DRY_RUN == true ]] && DRY_RUN=1 || DRY_RUN=0
PRETEND_ABSENT=""
((DRY_RUN)) && PRETEND_ABSENT=${SERVICES_PRETEND_ABSENT:-}
# Names used in messages (the Makefile's test target passes TEST_DATABASE_URL/TEST_REDIS_URL).
PG_VAR=${SERVICES_PG_VAR:-DATABASE_URL}
RD_VAR=${SERVICES_REDIS_VAR:-REDIS_URL}
HBA_MARKER='# mutuo scripts/services.sh: trust local TCP for development'
LOCK_FILE=${TMPDIR:-/tmp}/mutuo-services.lock

export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}
export DEBIAN_FRONTEND=noninteractive

log() { printf '%s\n' "$*"; }
err() { printf 'services: %s\n' "$*" >&2; }
die() { err "$@"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# run CMD...: run a command that changes the machine (printed instead under dry-run).
run() {
	if ((DRY_RUN)); then
		printf '[dry-run] %s\n' "$*" >&2
		return 0
	fi
	"$@" 9>&- # daemons must not inherit the lock
}

# as_root CMD...: run CMD as root (directly, or through passwordless sudo).
as_root() {
	if ((EUID == 0)); then
		run "$@"
	elif have sudo && sudo -n true 2>/dev/null; then
		run sudo -n "$@"
	else
		((DRY_RUN)) && { run "$@"; return 0; }
		err "need root to run: $*"
		return 1
	fi
}

systemd_running() { [[ -d /run/systemd/system ]] && have systemctl; }

# Serialise installs/starts/pg_hba edits between concurrent runs (parallel `make test`s).
lock() {
	[[ ${_LOCKED:-0} == 1 ]] && return 0
	if have flock && { exec 9>>"$LOCK_FILE"; } 2>/dev/null; then
		flock -w 600 9 || true
	fi
	_LOCKED=1
}

# parse_url URL PREFIX: sets PREFIX_{SCHEME,USER,HOST,PORT,DB,AUTH,QUERY}. Understands
# scheme://[user[:pass]@]host[:port][/db][?query] (host may be [v6]) and, for Postgres,
# key=value strings (host=… port=… user=… dbname=…).
parse_url() {
	local url=$1 p=$2 scheme="" user="" pass="" host="" port="" db="" auth="" query="" rest hostport kv
	if [[ $url == *://* ]]; then
		scheme=${url%%://*}
		rest=${url#*://}
		[[ $rest == *\?* ]] && query=${rest#*\?}
		rest=${rest%%\?*}
		rest=${rest%%#*}
		if [[ $rest == */* ]]; then db=${rest#*/}; rest=${rest%%/*}; fi
		auth=$rest
		if [[ $rest == *@* ]]; then
			user=${rest%@*}; hostport=${rest##*@}
			[[ $user == *:* ]] && pass=${user#*:}
			user=${user%%:*}
		else
			hostport=$rest
		fi
		if [[ $hostport == \[*\]* ]]; then
			host=${hostport#\[}; host=${host%%\]*}; port=${hostport##*\]}; port=${port#:}
		elif [[ $hostport == *:* ]]; then
			host=${hostport%%:*}; port=${hostport##*:}
		else
			host=$hostport
		fi
		# host=/port= in the query override the authority (libpq accepts that).
		for kv in ${query//&/ }; do
			case $kv in host=*) host=${kv#host=} ;; port=*) port=${kv#port=} ;; esac
		done
	else
		scheme=kv
		for kv in $url; do
			case $kv in
			host=*) host=${kv#host=} ;; port=*) port=${kv#port=} ;;
			user=*) user=${kv#user=} ;; dbname=*) db=${kv#dbname=} ;;
			esac
		done
	fi
	printf -v "${p}_SCHEME" %s "$scheme"
	printf -v "${p}_USER" %s "$user"
	printf -v "${p}_PASS" %s "$pass"
	printf -v "${p}_HOST" %s "$host"
	printf -v "${p}_PORT" %s "$port"
	printf -v "${p}_DB" %s "$db"
	printf -v "${p}_AUTH" %s "$auth"
	printf -v "${p}_QUERY" %s "$query"
}

is_local_host() {
	case $1 in "" | localhost | 127.0.0.1 | ::1 | /*) return 0 ;; *) return 1 ;; esac
}

# tcp_open HOST PORT: can we open a TCP connection (used when the clients are absent)?
tcp_open() {
	local h=${1:-127.0.0.1}
	[[ $h == /* ]] && h=127.0.0.1
	timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$h" "$2" 2>/dev/null
}

# ---------------------------------------------------------------- PostgreSQL

parse_url "$PG_URL" PG
PG_PORT=${PG_PORT:-5432}
PG_WHERE=${PG_HOST:-local socket}:$PG_PORT
[[ $PG_HOST == *:* ]] && PG_WHERE="[$PG_HOST]:$PG_PORT"

# The same server, database "postgres": always there, so auth checks and CREATE DATABASE
# don't depend on the app database existing yet.
pg_admin_url() {
	if [[ $PG_SCHEME == kv ]]; then
		local out="" kv
		for kv in $PG_URL; do [[ $kv == dbname=* ]] || out+="$kv "; done
		printf '%sdbname=postgres' "$out"
	else
		printf '%s://%s/postgres%s' "$PG_SCHEME" "$PG_AUTH" "${PG_QUERY:+?$PG_QUERY}"
	fi
}

# probe_pg: 0 accepting connections, 1 starting/rejecting, 2 no answer.
probe_pg() {
	if have pg_isready; then
		local rc=0
		pg_isready -q -t 3 -d "$PG_URL" >/dev/null 2>&1 || rc=$?
		case $rc in 0) return 0 ;; 1) return 1 ;; *) return 2 ;; esac
	fi
	tcp_open "$PG_HOST" "$PG_PORT" && return 0 || return 2
}

pg_installed() {
	[[ " $PRETEND_ABSENT " == *" postgres "* ]] && return 1
	compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null && have pg_ctlcluster
}

# pg_cluster: the Debian cluster for $PG_PORT as "VERSION NAME STATUS LOGFILE" (empty if none).
pg_cluster() {
	[[ " $PRETEND_ABSENT " == *" postgres "* ]] && return 0
	have pg_lsclusters || return 0
	pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2, $4, $7; exit }'
}

pg_newest_version() {
	local d v=""
	for d in /usr/lib/postgresql/*/bin/postgres; do
		[[ -e $d ]] || continue
		d=${d#/usr/lib/postgresql/}; d=${d%%/*}
		[[ -z $v ]] || (( ${d%%.*} > ${v%%.*} )) && v=$d
	done
	printf '%s' "$v"
}

pg_start() {
	local c ver name status
	c=$(pg_cluster)
	if [[ -z $c ]]; then
		if [[ " $PRETEND_ABSENT " == *" postgres "* ]] || [[ -z $(ls -A /etc/postgresql 2>/dev/null) ]]; then
			ver=$(pg_newest_version); ver=${ver:-15}
			log "postgres: no cluster yet; creating ${ver}/main on port $PG_PORT"
			as_root pg_createcluster -p "$PG_PORT" "$ver" main >/dev/null || return 1
			((DRY_RUN)) || c=$(pg_cluster)
			[[ -n $c ]] || c="$ver main down -"
		else
			err "postgres: no local PostgreSQL cluster is configured for port $PG_PORT; clusters:"
			pg_lsclusters >&2 2>/dev/null || ls /etc/postgresql >&2
			return 1
		fi
	fi
	read -r ver name status PG_LOGFILE <<<"$c"
	if [[ $status == online* ]]; then
		log "postgres: cluster $ver/$name is online but not answering yet; waiting"
		return 0
	fi
	log "postgres: starting cluster $ver/$name"
	as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql || true
	if systemd_running && as_root systemctl start "postgresql@$ver-$name" 2>/dev/null; then
		return 0
	fi
	as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start && return 0
	if have service && [[ $PG_PORT == 5432 ]]; then
		as_root service postgresql start && return 0
	fi
	return 0 # maybe a concurrent run started it: the wait decides
}

pg_reload() {
	local c ver name
	c=$(pg_cluster)
	read -r ver name _ _ <<<"$c"
	if [[ -n $ver ]]; then
		as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload && return 0
	fi
	as_root runuser -u postgres -- psql -XAtq -c 'select pg_reload_conf()' >/dev/null
}

pg_hba_file() {
	local c ver name f
	c=$(pg_cluster)
	read -r ver name _ _ <<<"$c"
	f=/etc/postgresql/$ver/$name/pg_hba.conf
	if [[ -n $ver && -f $f ]]; then printf '%s' "$f"; return 0; fi
	# Not a Debian layout: ask the server over its Unix socket as the postgres OS user.
	have runuser && runuser -u postgres -- psql -XAtq -p "$PG_PORT" -c 'show hba_file' 2>/dev/null
}

# pg_psql ARGS...: psql against the admin URL, never prompting for a password.
pg_psql() { psql -X -w -Atq -v ON_ERROR_STOP=1 -d "$(pg_admin_url)" "$@"; }

pg_auth_error() {
	[[ $1 == *"password authentication failed"* || $1 == *"no password supplied"* ||
		$1 == *"no pg_hba.conf entry"* || $1 == *"Ident authentication failed"* ||
		$1 == *"Peer authentication failed"* ]]
}

# pg_usable: psql connects as the URL's user; fixes pg_hba.conf for a local server if needed.
pg_usable() {
	local out hba tmp
	if ! have psql; then
		log "postgres: ready at $PG_WHERE (psql absent: login not checked)"
		return 0
	fi
	out=$(pg_psql -c 'select 1' 2>&1) && return 0
	if ! is_local_host "$PG_HOST" || ! pg_auth_error "$out"; then
		err "postgres: reachable at $PG_WHERE but psql can't log in: $out"
		return 1
	fi
	lock
	out=$(pg_psql -c 'select 1' 2>&1) && return 0 # a concurrent run fixed it
	hba=$(pg_hba_file)
	[[ -n $hba ]] || { err "postgres: login refused ($out) and pg_hba.conf not found"; return 1; }
	if grep -qxF "$HBA_MARKER" "$hba" 2>/dev/null; then
		err "postgres: login refused although $hba already trusts 127.0.0.1/::1: $out"
		return 1
	fi
	log "postgres: local login needs a password; adding trust lines for 127.0.0.1/32 and ::1/128 to $hba"
	if ((DRY_RUN)); then
		run "insert '$HBA_MARKER' + 'host all all 127.0.0.1/32 trust' + 'host all all ::1/128 trust' at the top of $hba (backup $hba.mutuo-bak)"
	else
		tmp=$(mktemp)
		{
			printf '%s\n' "$HBA_MARKER" 'host    all    all    127.0.0.1/32    trust' 'host    all    all    ::1/128         trust' ''
			cat "$hba"
		} >"$tmp"
		as_root cp -p "$hba" "$hba.mutuo-bak" && as_root sh -c 'cat "$1" > "$2"' sh "$tmp" "$hba"
		local rc=$?
		rm -f "$tmp"
		((rc == 0)) || { err "postgres: could not write $hba"; return 1; }
	fi
	pg_reload || { err "postgres: could not reload the cluster after editing $hba"; return 1; }
	((DRY_RUN)) && return 0
	local i
	for ((i = 0; i < 10; i++)); do
		out=$(pg_psql -c 'select 1' 2>&1) && return 0
		sleep 0.5
	done
	err "postgres: still can't log in after trusting local TCP: $out"
	return 1
}

# ---------------------------------------------------------------- Redis

parse_url "$REDIS_URL_" RD
RD_PORT=${RD_PORT:-6379}
RD_WHERE=${RD_HOST:-127.0.0.1}:$RD_PORT
[[ $RD_HOST == *:* ]] && RD_WHERE="[$RD_HOST]:$RD_PORT"
RD_REPLY=""

# probe_redis: 0 PONG, 1 answered something else (in RD_REPLY), 2 no answer.
probe_redis() {
	if have redis-cli; then
		local args=(-h "${RD_HOST:-127.0.0.1}" -p "$RD_PORT")
		[[ -n $RD_USER ]] && args+=(--user "$RD_USER")
		[[ -n $RD_PASS ]] && args+=(-a "$RD_PASS")
		[[ $RD_SCHEME == rediss ]] && args+=(--tls)
		RD_REPLY=$(timeout 5 redis-cli --no-auth-warning "${args[@]}" ping 2>&1) || true
		[[ $RD_REPLY == PONG ]] && return 0
		[[ -z $RD_REPLY || $RD_REPLY == *"Connection refused"* || $RD_REPLY == *"Could not connect"* ||
			$RD_REPLY == *"Name or service not known"* || $RD_REPLY == *"timed out"* ]] && return 2
		return 1
	fi
	local h=${RD_HOST:-127.0.0.1}
	RD_REPLY=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "PING\r\n" >&3 && IFS= read -r l <&3 && printf %s "${l%$'"'"'\r'"'"'}"' "$h" "$RD_PORT" 2>/dev/null) || true
	[[ $RD_REPLY == +PONG ]] && return 0
	[[ -z $RD_REPLY ]] && return 2
	return 1
}

redis_installed() {
	[[ " $PRETEND_ABSENT " == *" redis "* ]] && return 1
	have redis-server
}

redis_start() {
	local logfile=/var/log/redis/ci.log
	[[ $RD_PORT == 6379 ]] || logfile=/var/log/redis/ci-$RD_PORT.log
	log "redis: starting redis-server on port $RD_PORT"
	if systemd_running && [[ $RD_PORT == 6379 ]] && as_root systemctl start redis-server 2>/dev/null; then
		return 0
	fi
	as_root mkdir -p /var/lib/redis /var/log/redis || true
	local args=(--daemonize yes --port "$RD_PORT" --save "" --appendonly no --dir /var/lib/redis --logfile "$logfile")
	# "-::1" (bind ::1 if it exists) needs Redis 7; fall back to IPv4 only.
	as_root redis-server --bind 127.0.0.1 -::1 "${args[@]}" && return 0
	as_root redis-server --bind 127.0.0.1 "${args[@]}" && return 0
	if have service && [[ $RD_PORT == 6379 ]]; then
		as_root service redis-server start && return 0
	fi
	return 0 # maybe a concurrent run started it: the wait decides
}

# ---------------------------------------------------------------- common

# wait_for NAME PROBE: wait up to $WAIT seconds for PROBE to succeed.
wait_for() {
	local name=$1 probe=$2 i
	if ((DRY_RUN)); then
		run "wait up to ${WAIT}s for $name"
		return 0
	fi
	for ((i = 0; i < WAIT * 2; i++)); do
		"$probe" && return 0
		sleep 0.5
	done
	"$probe"
}

apt_install() {
	have apt-get || { err "apt-get not found: install $* yourself, or point DATABASE_URL/REDIS_URL at running servers"; return 1; }
	log "services: installing $* from Debian packages"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null || return 1
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" </dev/null
}

ensure() {
	local pg_state=ok rd_state=ok pg_how="already running" rd_how="already running" failed=0 rc
	rc=0; probe_pg || rc=$?
	((rc == 0)) || pg_state=down
	rc=0; probe_redis || rc=$?
	case $rc in 0) ;; 1) rd_state=bad ;; *) rd_state=down ;; esac

	if [[ $rd_state == bad ]]; then
		err "redis: something answers at $RD_WHERE but PING returned: $RD_REPLY"
		failed=1
	fi
	if [[ $pg_state == down ]] && ! is_local_host "$PG_HOST"; then
		err "postgres: not reachable at $PG_WHERE ($PG_VAR points to another host, so nothing is installed or started here)"
		failed=1; pg_state=remote
	fi
	if [[ $rd_state == down ]] && ! is_local_host "$RD_HOST"; then
		err "redis: not reachable at $RD_WHERE ($RD_VAR points to another host, so nothing is installed or started here)"
		failed=1; rd_state=remote
	fi

	if [[ $pg_state == down || $rd_state == down ]]; then
		lock
		# Re-probe under the lock: a concurrent run may have done the work.
		if [[ $pg_state == down ]] && probe_pg; then pg_state=ok; fi
		if [[ $rd_state == down ]] && probe_redis; then rd_state=ok; fi
		local pkgs=()
		if [[ $pg_state == down ]]; then
			pg_how=started
			pg_installed || { pkgs+=(postgresql); pg_how="installed and started"; }
		fi
		if [[ $rd_state == down ]]; then
			rd_how=started
			redis_installed || { pkgs+=(redis-server); rd_how="installed and started"; }
		fi
		if ((${#pkgs[@]})); then
			apt_install "${pkgs[@]}" || { err "could not install ${pkgs[*]}"; exit 1; }
		fi
		# The Debian packages may have started them already; otherwise start them now.
		if [[ $pg_state == down ]] && ! probe_pg && ! pg_start; then
			failed=1; pg_state=broken
		fi
		if [[ $rd_state == down ]] && ! probe_redis; then redis_start || true; fi
		if [[ $pg_state == down ]]; then
			if wait_for postgres probe_pg; then
				pg_state=ok
			else
				err "postgres: not reachable at $PG_WHERE ${WAIT}s after starting it"
				[[ -n ${PG_LOGFILE:-} && -r ${PG_LOGFILE:-} ]] && tail -n 15 "$PG_LOGFILE" >&2
				failed=1
			fi
		fi
		if [[ $rd_state == down ]]; then
			if wait_for redis probe_redis; then
				rd_state=ok
			else
				err "redis: not reachable at $RD_WHERE ${WAIT}s after starting it${RD_REPLY:+ ($RD_REPLY)}"
				local lf=/var/log/redis/ci.log
				[[ $RD_PORT == 6379 ]] || lf=/var/log/redis/ci-$RD_PORT.log
				[[ -r $lf ]] && tail -n 15 "$lf" >&2
				failed=1
			fi
		fi
	fi

	if [[ $pg_state == ok ]]; then
		if ((DRY_RUN)) && [[ $pg_how != "already running" ]]; then
			log "postgres: [dry-run] would check login at $PG_WHERE"
		elif pg_usable; then
			have psql && log "postgres: ready at $PG_WHERE ($pg_how)"
		else
			failed=1
		fi
	fi
	if [[ $rd_state == ok ]]; then
		if ((DRY_RUN)) && [[ $rd_how != "already running" ]]; then
			log "redis: [dry-run] would be ready at $RD_WHERE ($rd_how)"
		else
			log "redis: ready at $RD_WHERE ($rd_how)"
		fi
	fi
	if ((failed)); then
		err "PostgreSQL and Redis are required (run \`make services\`; set $PG_VAR/$RD_VAR to use other servers)"
		exit 1
	fi
}

createdb_cmd() {
	# Without DATABASE_URL the check above used the "postgres" database; the app's is mutuo.
	local name=${1:-} found out
	[[ -n $name || -z ${DATABASE_URL:-} ]] || name=$PG_DB
	[[ -n $name ]] || name=mutuo
	[[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "createdb: unsupported database name '$name'"
	have psql || die "createdb: psql not found (apt-get install postgresql-client), or create database $name yourself"
	found=$(pg_psql -c "select 1 from pg_database where datname = '$name'" 2>&1) ||
		die "createdb: can't query $PG_WHERE: $found"
	[[ $found == 1 ]] && return 0
	if ((DRY_RUN)); then
		run "psql -c 'CREATE DATABASE \"$name\"'"
		return 0
	fi
	if ! out=$(pg_psql -c "CREATE DATABASE \"$name\"" 2>&1); then
		[[ $out == *"already exists"* ]] || die "createdb: $out"
	fi
	log "postgres: created database $name"
}

case ${1:-ensure} in
ensure) ensure ;;
createdb) shift; createdb_cmd "$@" ;;
-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" ;;
*) die "usage: $0 [ensure | createdb [NAME]]" ;;
esac
