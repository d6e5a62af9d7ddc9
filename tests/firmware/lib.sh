# lib.sh - helpers of the firmware suite (sourced by run.sh): boot a board
# disk under QEMU in the background, wait for what the box prints or
# serves, talk SMTP and HTTP to it through the forwarded ports.

# ok/nok NAME [why] - TAP-ish result lines
ok() { echo "ok - $1"; }
nok() { echo "not ok - $1${2:+: $2}"; FAILED=$((FAILED + 1)); }
# check NAME CMD... - ok if CMD succeeds
check() { local n=$1; shift; if "$@"; then ok "$n"; else nok "$n"; fi; }

# free_port - an unused TCP port on 127.0.0.1
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# box_start BOARD BOOTDIR DISK LOG APPEND... - start QEMU in the background
# (BOX_WRAP: a command QEMU runs under, e.g. tapns.py NS:TAP... --)
box_start() {
	local b=$1 bd=$2 dk=$3 lg=$4; shift 4
	SP=$(free_port); HP=$(free_port)
	BOX_T0=$(date +%s.%N)
	# shellcheck disable=SC2086
	${BOX_WRAP:-} "$TOP/firmware/qemu.sh" "$b" "$bd" "$dk" "$SP" "$HP" "$@" > "$lg" 2>&1 &
	QPID=$!
}

# box_kill - power cut: SIGKILL QEMU
box_kill() {
	[ -n "${QPID:-}" ] && kill -9 "$QPID" 2>/dev/null
	wait "$QPID" 2>/dev/null
	QPID=
}

# box_wait_exit SECS - wait for QEMU to end by itself (reboot/poweroff)
box_wait_exit() {
	local i=0
	while kill -0 "$QPID" 2>/dev/null; do
		i=$((i + 1)); [ $i -gt $(($1 * 10)) ] && return 1
		sleep 0.1
	done
	wait "$QPID" 2>/dev/null; QPID=
	return 0
}

# box_wait_log LOG REGEX SECS - wait until the console shows REGEX
box_wait_log() {
	local i=0
	until grep -qE "$2" "$1" 2>/dev/null; do
		i=$((i + 1)); [ $i -gt $(($3 * 10)) ] && return 1
		kill -0 "$QPID" 2>/dev/null || { grep -qE "$2" "$1"; return; }
		sleep 0.1
	done
}

# box_banner SECS - poll the forwarded SMTP port until a 220 greeting
# (or one starting with $BANNER_OK, e.g. 554 for a blocked client);
# sets BANNER and BOOT_SECS (QEMU start to greeting)
box_banner() {
	local i=0; BANNER=
	while [ $i -lt $(($1 * 2)) ]; do
		BANNER=$(timeout 8 /usr/bin/python3 "$HERE/smtpprobe.py" 127.0.0.1 "$SP" 2>/dev/null) &&
			case $BANNER in "${BANNER_OK:-220}"*) break ;; esac
		kill -0 "$QPID" 2>/dev/null || return 1
		sleep 0.5; i=$((i + 1))
	done
	case $BANNER in "${BANNER_OK:-220}"*) ;; *) return 1 ;; esac
	BOOT_SECS=$(echo "$(date +%s.%N) $BOX_T0" | awk '{printf "%.1f", $1 - $2}')
}

# web_login - a fresh session of the web UI (its login form, not HTTP
# basic auth) in $W/web.jar; after a reboot the old one is gone
web_login() {
	rm -f "$W/web.jar"
	curl -s -m 60 -c "$W/web.jar" -o /dev/null -d user=admin \
		--data-urlencode "password=$PW" "http://127.0.0.1:$HP/cgi-bin/login"
}

# http_get PATH [curl args] - body of a logged-in GET to the box
http_get() {
	local p=$1; shift
	web_login
	curl -s -m 20 -b "$W/web.jar" "$@" "http://127.0.0.1:$HP$p"
}

# flash IMAGE - upload IMAGE to /cgi-bin/flash (session + CSRF header);
# prints "CODE BODY"
flash() {
	local csrf
	web_login
	csrf=$(curl -s -m 20 -b "$W/web.jar" "http://127.0.0.1:$HP/cgi-bin/password" |
		sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -n 1)
	curl -s -m 120 -b "$W/web.jar" -H "X-Mailmoat-CSRF: $csrf" \
		-H 'Content-Type: application/x-mailmoat-image' \
		--data-binary @"$1" -w ' HTTP%{http_code}' \
		"http://127.0.0.1:$HP/cgi-bin/flash" 2>/dev/null
}

# region_sum DISK START SIZE - sha256 of a sector range of a disk image
region_sum() {
	dd if="$1" bs=512 skip="$2" count="$3" 2>/dev/null | sha256sum | cut -c1-64
}

# web_post PATH FIELD=VALUE... - a logged-in form POST with the session's
# CSRF token; prints the page
web_post() {
	local p=$1 csrf a; shift
	web_login
	csrf=$(curl -s -m 20 -b "$W/web.jar" "http://127.0.0.1:$HP/cgi-bin/password" |
		sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -n 1)
	set -- "$@" "csrf=$csrf"
	for a; do set -- "$@" --data-urlencode "$a"; shift; done
	curl -s -m 20 -b "$W/web.jar" "$@" "http://127.0.0.1:$HP$p"
}

# webui_box STEP ARGS... - one step of webui_box.py (headless Chromium)
# against the box: its ok/not ok lines; a failure counts
webui_box() {
	local out rc
	out=$(/usr/bin/python3 "$HERE/webui_box.py" "$1" "$HP" "$PW" "${@:2}" \
		2> "$W/webui-box-$1.err")
	rc=$?
	[ -n "$out" ] && printf '%s\n' "$out"
	if [ $rc != 0 ]; then
		grep -q '^not ok' <<< "$out" && FAILED=$((FAILED + 1)) ||
			nok "box-webui:$1" "$(tail -n 2 "$W/webui-box-$1.err" | tr '\n' ' ')"
	fi
}
