#!/bin/bash
# tls/run.sh - proxy/tls.c against real TLS clients.
#
# Builds tests/tls/tls_echo.c with proxy/tls.c, util.c and log.c (not
# libmailmoat.a, so that this suite does not depend on every other module
# building), starts it on 127.0.0.1 with a key and certificate it has to
# generate in a temp dir, then drives it with `openssl s_client -starttls
# smtp` and `swaks --tls`: TLS 1.2 negotiated, ECDHE + AEAD, the server's
# cipher order, TLS 1.1 and TLS 1.3-only refused by the server, 100 KB of
# lines echoed through TLS, plaintext garbage after STARTTLS closes that
# connection only, Python ssl with host name checks, renegotiation
# declined, admin-installed RSA and P-384 keys.  Then the real daemon
# (when built): first boot makes the key and cert, swaks --tls delivers
# through it.  Then ("fwcfg:" names) the unit test and this suite again
# against mbedTLS built with firmware/mbedtls_config.h, when the firmware
# sources are there.  One "ok - NAME" / "not ok - NAME" line per test.
# KEEP=1 keeps the temp dir; ECHO_CFLAGS adds compiler flags (sanitizers).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/host}
tmp=$(mktemp -d /tmp/tls-suite.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	[ -n "${KEEP:-}" ] && echo "# kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT
status=0
ok() { echo "ok - $1"; }
notok() { echo "not ok - $1"; status=1; }
check() { # check NAME CMD... - ok if CMD succeeds
	local name=$1; shift
	if "$@"; then ok "$name"; else notok "$name"; fi
}

HOST=mx.tls-test.example
mkdir -p "$BUILD/tests"
ECHO=$BUILD/tests/tls_echo${FWCFG:+_fw}
# ECHO_CFLAGS="-fsanitize=address,undefined" runs the suite on a sanitizer build.
if ! cc -std=c11 -O2 -g ${ECHO_CFLAGS:-} -Wall -Wextra -Wno-unused-parameter \
	-Wno-missing-field-initializers -Iproxy -D_GNU_SOURCE \
	-o "$ECHO" tests/tls/tls_echo.c proxy/tls.c proxy/util.c proxy/log.c \
	-luv -lmbedtls -lmbedx509 -lmbedcrypto 2>"$tmp/cc.log"; then
	cat "$tmp/cc.log" >&2
	notok "tls_echo builds"
	exit 1
fi
ok "tls_echo builds"

# start_echo - run tls_echo in the background, wait for its port.
start_echo() {
	rm -f "$tmp/port"
	"$ECHO" "$tmp/port" "$tmp/tls.crt" "$tmp/tls.key" "$HOST" \
		2>>"$tmp/echo.log" &
	pid=$!
	for _ in $(seq 100); do
		grep -q . "$tmp/port" 2>/dev/null && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	PORT=$(cat "$tmp/port" 2>/dev/null)
	[ -n "$PORT" ]
}

check "tls_echo starts and generates key + cert" start_echo
[ -n "${PORT:-}" ] || exit 1

check "generated key file is mode 0600" \
	test "$(stat -c %a "$tmp/tls.key")" = 600
check "openssl reads the generated cert: CN and SAN are the hostname" \
	bash -c "openssl x509 -in '$tmp/tls.crt' -noout -subject -ext subjectAltName \
		>'$tmp/x509.txt' 2>&1 &&
		grep -q 'CN *= *$HOST' '$tmp/x509.txt' &&
		grep -q 'DNS:$HOST' '$tmp/x509.txt'"
check "openssl reads the generated key: EC P-256, matches the cert" \
	bash -c "openssl pkey -in '$tmp/tls.key' -noout -text 2>/dev/null |
		grep -q 'prime256v1' &&
		[ \"\$(openssl pkey -in '$tmp/tls.key' -pubout 2>/dev/null)\" = \
		   \"\$(openssl x509 -in '$tmp/tls.crt' -noout -pubkey 2>/dev/null)\" ]"

# sclient NAME INPUT ARGS... - one s_client session; output in $tmp/NAME.out
sclient() {
	local name=$1 input=$2; shift 2
	printf '%b' "$input" | timeout 20 openssl s_client -starttls smtp \
		-connect "127.0.0.1:$PORT" -ign_eof -nocommands "$@" \
		>"$tmp/$name.out" 2>&1
}

# TLS 1.2, verifying the generated cert and host name, echo through it.
sclient t12 'HELLO THROUGH TLS\r\nQUIT\r\n' -tls1_2 \
	-CAfile "$tmp/tls.crt" -verify_return_error -verify_hostname "$HOST"
check "s_client -tls1_2: handshake, protocol TLSv1.2" \
	grep -q 'Protocol *: TLSv1.2' "$tmp/t12.out"
check "s_client -tls1_2: ECDHE-ECDSA-AES256-GCM-SHA384 (server's first choice)" \
	grep -q 'Cipher is ECDHE-ECDSA-AES256-GCM-SHA384' "$tmp/t12.out"
check "s_client verifies the self-signed cert and host name" \
	grep -q 'Verify return code: 0 (ok)' "$tmp/t12.out"
check "plaintext echoed through TLS" \
	grep -q '^250 echo: HELLO THROUGH TLS' "$tmp/t12.out"
check "QUIT through TLS answered 221" grep -q '^221 2.0.0 bye' "$tmp/t12.out"
check "close_notify sent after 221 (no unexpected eof at the client)" \
	bash -c "grep -q '^closed' '$tmp/t12.out' &&
		! grep -qi 'unexpected eof' '$tmp/t12.out'"
check "server side logged TLSv1.2 and the suite" \
	grep -q '^ready TLSv1.2 TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384' "$tmp/echo.log"

# A default client offers TLS 1.3 and 1.2: we settle on 1.2.
sclient tdef 'QUIT\r\n'
check "s_client default (offers TLS 1.3): falls back to TLSv1.2" \
	grep -q 'Protocol *: TLSv1.2' "$tmp/tdef.out"

# The server's order wins over the client's.
sclient order 'QUIT\r\n' -tls1_2 \
	-cipher 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384'
check "server cipher order: AES256-GCM chosen over the client's AES128-GCM" \
	grep -q 'Cipher is ECDHE-ECDSA-AES256-GCM-SHA384' "$tmp/order.out"
sclient chacha 'QUIT\r\n' -tls1_2 -cipher 'ECDHE-ECDSA-CHACHA20-POLY1305'
check "ChaCha20-Poly1305 client gets ECDHE-ECDSA-CHACHA20-POLY1305" \
	grep -q 'Cipher is ECDHE-ECDSA-CHACHA20-POLY1305' "$tmp/chacha.out"
sclient cbc 'QUIT\r\n' -tls1_2 -cipher 'ECDHE-ECDSA-AES128-SHA256'
check "CBC-only TLS 1.2 client gets the ECDHE CBC fallback" \
	grep -q 'Cipher is ECDHE-ECDSA-AES128-SHA256' "$tmp/cbc.out"
sclient nokx 'QUIT\r\n' -tls1_2 -cipher 'AES256-GCM-SHA384:AES128-SHA'
check "client without ECDHE suites: handshake refused" \
	bash -c "! grep -q 'Cipher is [A-Z]' '$tmp/nokx.out' &&
		grep -qi 'handshake failure' '$tmp/nokx.out'"

# TLS 1.1: seclevel 0 so that OpenSSL really offers it; the refusal must
# come from our server (a protocol_version alert), not from the client.
sclient t11 'QUIT\r\n' -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'
check "s_client -tls1_1: refused by the server (protocol version alert)" \
	bash -c "! grep -q 'Cipher is [A-Z]' '$tmp/t11.out' &&
		grep -qi 'alert protocol version' '$tmp/t11.out'"
sclient t13 'QUIT\r\n' -tls1_3
check "s_client -tls1_3 only: refused (mbedTLS 2.28 has no TLS 1.3)" \
	bash -c "! grep -q 'Cipher is [A-Z]' '$tmp/t13.out'"

# 100 KB of lines (2000 x 50 bytes) echoed back through TLS.
/usr/bin/python3 -c '
import sys
for i in range(2000):
    sys.stdout.write("LINE %05d %s\r\n" % (i, "x" * 38))
sys.stdout.write("QUIT\r\n")' >"$tmp/bulk.in"
timeout 60 openssl s_client -starttls smtp -connect "127.0.0.1:$PORT" \
	-ign_eof -nocommands -quiet <"$tmp/bulk.in" >"$tmp/bulk.out" 2>&1
check "100 KB of lines echoed through TLS (2000 replies, in order)" \
	bash -c "[ \$(grep -c '^250 echo: LINE ' '$tmp/bulk.out') = 2000 ] &&
		grep '^250 echo: LINE ' '$tmp/bulk.out' | sed 's/^250 echo: //; s/\r\$//' |
		cmp -s - <(head -n 2000 '$tmp/bulk.in' | sed 's/\r\$//')"

# Plaintext after STARTTLS: the handshake fails, the server says why,
# closes that connection, and keeps serving.
garbage() {
	/usr/bin/python3 - "$PORT" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
f = s.makefile("rb")
def reply():
    while True:
        l = f.readline()
        if not l or l[3:4] != b"-":
            return l
reply()
s.sendall(b"EHLO x\r\n"); reply()
s.sendall(b"STARTTLS\r\n")
if not reply().startswith(b"220"):
    sys.exit(1)
s.sendall(b"EHLO plaintext.after.starttls\r\n")
rest = f.read()     # an alert maybe, then EOF: the server closed
sys.exit(0 if b"250" not in rest else 1)
EOF
}
check "plaintext after STARTTLS: connection closed, no reply" garbage
check "server logged the handshake error" grep -q '^tls error: handshake' "$tmp/echo.log"
random_bytes() {
	/usr/bin/python3 - "$PORT" <<'EOF'
import os, random, socket, sys
random.seed(7)
for i in range(50):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"STARTTLS\r\n"); f.readline()
    hdr = bytes([22, 3, random.choice([1, 3]), 0, 200]) if i % 2 else b""
    try:
        s.sendall(hdr + os.urandom(random.randint(1, 3000)))
        s.shutdown(socket.SHUT_WR)
        f.read()
    except OSError:
        pass
    s.close()
EOF
}
check "50 connections sending random bytes after STARTTLS: no crash" \
	bash -c "$(declare -f random_bytes); PORT=$PORT random_bytes && kill -0 $pid"
sclient after 'QUIT\r\n' -tls1_2
check "server still serves TLS after the bad clients" \
	grep -q 'Protocol *: TLSv1.2' "$tmp/after.out"

# swaks (Perl IO::Socket::SSL): a whole transaction over STARTTLS.
if command -v swaks >/dev/null; then
	timeout 30 swaks --server "127.0.0.1:$PORT" --tls --helo client.test \
		--from a@client.test --to b@$HOST --body "hello over tls" \
		>"$tmp/swaks.out" 2>&1
	check "swaks --tls: transaction completes over TLS 1.2" \
		bash -c "grep -q 'TLS started with cipher TLSv1.2:ECDHE-ECDSA' '$tmp/swaks.out' &&
			grep -q '<~  250 2.0.0 queued' '$tmp/swaks.out'"
else
	notok "swaks --tls (swaks not installed)"
fi

# Python's ssl (OpenSSL 3) with full verification, host name included.
pyssl() {
	/usr/bin/python3 - "$PORT" "$tmp/tls.crt" "$HOST" <<'EOF'
import socket, ssl, sys
port, cafile, host = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port), timeout=10)
f = s.makefile("rb")
f.readline()
s.sendall(b"STARTTLS\r\n")
assert f.readline().startswith(b"220")
ctx = ssl.create_default_context(cafile=cafile)  # check_hostname on
t = ctx.wrap_socket(s, server_hostname=host)
assert t.version() == "TLSv1.2", t.version()
t.sendall(b"PYTHON\r\nQUIT\r\n")
data = b""
while True:
    d = t.recv(4096)
    if not d:
        break
    data += d
assert b"250 echo: PYTHON\r\n221" in data, data
EOF
}
check "Python ssl: cert and host name verified, TLS 1.2, echo" pyssl
pywrong() {
	/usr/bin/python3 - "$PORT" "$tmp/tls.crt" <<'EOF'
import socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
f = s.makefile("rb")
f.readline()
s.sendall(b"STARTTLS\r\n"); f.readline()
ctx = ssl.create_default_context(cafile=sys.argv[2])
try:
    ctx.wrap_socket(s, server_hostname="other.example")
except ssl.SSLCertVerificationError:
    sys.exit(0)
sys.exit(1)
EOF
}
check "Python ssl: a different host name does not verify (SAN is exact)" pywrong

# Renegotiation is off: s_client's "R" command asks for it and the
# server declines with a no_renegotiation alert (OpenSSL then gives up
# the connection).  stdin is a FIFO kept open until each reply is seen,
# so s_client does not quit at EOF; wait_for polls with a 20 s ceiling.
wait_for() { # wait_for PATTERN FILE
	for _ in $(seq 400); do
		grep -q "$1" "$2" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}
reneg() {
	local fifo=$tmp/reneg.in out=$tmp/reneg.out spid rc=0
	mkfifo "$fifo"
	timeout 30 openssl s_client -starttls smtp -connect "127.0.0.1:$PORT" \
		-tls1_2 <"$fifo" >"$out" 2>&1 &
	spid=$!
	# s_client may be gone (a broken server): no SIGPIPE death for us.
	trap '' PIPE
	exec 7>"$fifo"
	printf 'BEFORE\r\n' >&7
	wait_for '^250 echo: BEFORE' "$out" || rc=1
	printf 'R\n' >&7
	wait_for 'no renegotiation' "$out" || rc=1
	exec 7>&-
	trap - PIPE
	wait "$spid"
	grep -q '^RENEGOTIATING' "$out" && ! grep -q '^250 echo: R' "$out" &&
		[ $rc = 0 ]
}
check "renegotiation request declined (no_renegotiation alert)" reneg

# A short, deterministic libFuzzer run over tls_input (ASan + UBSan),
# from real ClientHellos.  Longer runs: see tests/tls/fuzz_tls.c.
fuzz() {
	local f=$BUILD/tests/fuzz_tls${FWCFG:+_fw}
	clang -g -O1 -fsanitize=fuzzer,address,undefined ${ECHO_CFLAGS:-} \
		-Iproxy -D_GNU_SOURCE -o "$f" tests/tls/fuzz_tls.c proxy/tls.c \
		proxy/util.c proxy/log.c -luv -lmbedtls -lmbedx509 -lmbedcrypto \
		-lpthread 2>"$tmp/fuzz-cc.log" || { cat "$tmp/fuzz-cc.log"; return 1; }
	mkdir -p "$tmp/fuzz-corpus"
	# tests/fuzz/corpus/tls: the kept corpus of bench/fuzz-campaign.sh
	FUZZ_TLS_DIR=$tmp "$f" -seed=1 -runs=30000 -max_len=4096 \
		"$tmp/fuzz-corpus" tests/tls/seeds \
		$([ -d tests/fuzz/corpus/tls ] && echo tests/fuzz/corpus/tls) \
		>"$tmp/fuzz.log" 2>&1 ||
		{ grep -E 'ERROR|SUMMARY' "$tmp/fuzz.log" | head -5; return 1; }
}
if command -v clang >/dev/null; then
	check "fuzz: 30000 libFuzzer inputs through tls_input, no crash or leak" fuzz
else
	echo "# fuzz case skipped: no clang"
fi

# A restart loads the files instead of regenerating them.
sum_before=$(cat "$tmp/tls.key" "$tmp/tls.crt" | md5sum)
kill "$pid"; wait "$pid" 2>/dev/null; pid=
check "restart: tls_echo starts again" start_echo
check "restart: key and cert loaded, not regenerated" \
	test "$(cat "$tmp/tls.key" "$tmp/tls.crt" | md5sum)" = "$sum_before"

# Keys the admin installs: RSA 2048 (ECDHE-RSA suites) and EC P-384,
# made by openssl, PKCS#8 PEM.
admin_key() { # admin_key NAME OPENSSL-KEY-ARGS...
	local name=$1; shift
	openssl req -x509 -newkey "$@" -nodes -days 30 -subj "/CN=$HOST" \
		-keyout "$tmp/$name.key" -out "$tmp/$name.crt" >/dev/null 2>&1
}
kill "$pid"; wait "$pid" 2>/dev/null; pid=
if admin_key rsa rsa:2048 &&
	cp "$tmp/rsa.key" "$tmp/tls.key" && cp "$tmp/rsa.crt" "$tmp/tls.crt" &&
	start_echo; then
	sclient rsa 'QUIT\r\n' -CAfile "$tmp/tls.crt" -verify_return_error
	check "admin RSA key: ECDHE-RSA-AES256-GCM-SHA384, verified" \
		bash -c "grep -q 'Cipher is ECDHE-RSA-AES256-GCM-SHA384' '$tmp/rsa.out' &&
			grep -q 'Verify return code: 0' '$tmp/rsa.out'"
	kill "$pid"; wait "$pid" 2>/dev/null; pid=
else
	notok "admin RSA key: ECDHE-RSA-AES256-GCM-SHA384, verified"
fi
if admin_key p384 ec -pkeyopt ec_paramgen_curve:P-384 &&
	cp "$tmp/p384.key" "$tmp/tls.key" && cp "$tmp/p384.crt" "$tmp/tls.crt" &&
	start_echo; then
	sclient p384 'QUIT\r\n' -CAfile "$tmp/tls.crt" -verify_return_error
	check "admin EC P-384 key: ECDHE-ECDSA, verified" \
		bash -c "grep -q 'Cipher is ECDHE-ECDSA-AES256-GCM-SHA384' '$tmp/p384.out' &&
			grep -q 'Verify return code: 0' '$tmp/p384.out'"
	kill "$pid"; wait "$pid" 2>/dev/null; pid=
else
	notok "admin EC P-384 key: ECDHE-ECDSA, verified"
fi
# A key that does not match the certificate: tls_echo must refuse to start.
cp "$tmp/rsa.key" "$tmp/tls.key"
if timeout 10 "$ECHO" "$tmp/port2" "$tmp/tls.crt" "$tmp/tls.key" "$HOST" \
	2>"$tmp/mismatch.log"; then
	notok "key not matching the cert: tls_global_init fails"
else
	check "key not matching the cert: tls_global_init fails" \
		grep -q 'does not match' "$tmp/mismatch.log"
fi

# The real daemon, when it is built: first boot with tls_cert/tls_key in
# a directory that does not exist yet, swaks --tls through it to an
# aiosmtpd backend, then a clean SIGTERM exit.  (tests/integ covers the
# SMTP side of STARTTLS in depth; this checks tls.c inside mailmoat.)
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # wait_port PORT PID - up to 20 s for a listener
	for _ in $(seq 400); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
daemon_case() {
	local d=$tmp/daemon mport bport bpid mpid rc=0 mrc
	mkdir -p "$d/state"
	mport=$(free_port); bport=$(free_port)
	/usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$bport" \
		-c aiosmtpd.handlers.Debugging stdout >"$d/backend.out" 2>&1 &
	bpid=$!
	printf '@example.com\n' >"$d/recipients"
	cat >"$d/mailmoat.conf" <<EOF
listen = 127.0.0.1:$mport
backend = 127.0.0.1:$bport
hostname = $HOST
local_domains = example.com
recipients = $d/recipients
recipient_verify = list
dns_servers = 127.0.0.1:$(free_port)
greet_pause = 0
state_dir = $d/state
control_socket = $d/ctl.sock
tls_cert = $d/tls/cert.pem
tls_key = $d/tls/key.pem
action_dnsbl = off
action_rdns = off
action_dynamic = off
action_helo = off
action_sender_tld = off
action_sender_mx = off
action_spf = off
action_greylist = off
action_dsn = off
action_scanner = off
EOF
	build/host/mailmoat -c "$d/mailmoat.conf" >"$d/daemon.log" 2>&1 &
	mpid=$!
	if wait_port "$bport" "$bpid" && wait_port "$mport" "$mpid"; then
		check "daemon: first boot creates the TLS dir, key (0600) and cert" \
			bash -c "[ \$(stat -c %a '$d/tls/key.pem') = 600 ] &&
				openssl x509 -in '$d/tls/cert.pem' -noout -subject |
				grep -q '$HOST'"
		timeout 30 swaks --server "127.0.0.1:$mport" --tls \
			--helo client.test --from a@client.test \
			--to bob@example.com --header "Subject: tls suite" \
			>"$d/swaks.out" 2>&1
		check "daemon: swaks --tls delivers over TLSv1.2 ECDHE-ECDSA AES256-GCM" \
			bash -c "grep -q 'TLS started with cipher TLSv1.2:ECDHE-ECDSA-AES256-GCM-SHA384' '$d/swaks.out' &&
				grep -q '<~  250 ' '$d/swaks.out' &&
				grep -q 'Subject: tls suite' '$d/backend.out'"
		PORT=$mport sclient daemon11 'QUIT\r\n' -tls1_1 \
			-cipher 'DEFAULT:@SECLEVEL=0'
		check "daemon: TLS 1.1 refused" \
			bash -c "grep -qi 'alert protocol version' '$tmp/daemon11.out'"
	else
		rc=1
		notok "daemon: mailmoat and a backend start"
		sed 's/^/#   /' "$d/daemon.log" | tail -20
	fi
	kill -TERM "$mpid" 2>/dev/null
	wait "$mpid"
	mrc=$?
	[ $rc = 0 ] && check "daemon: clean exit (status 0) on SIGTERM" \
		test "$mrc" = 0
	kill "$bpid" 2>/dev/null
	wait "$bpid" 2>/dev/null
}
if [ -n "${FWCFG:-}" ]; then
	: # the daemon is built against the system mbedTLS: done once
elif [ -x build/host/mailmoat ] && /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null; then
	daemon_case
else
	echo "# daemon cases skipped: build/host/mailmoat not built (run make)"
fi

# Everything again (unit test and this suite, names prefixed "fwcfg:")
# against mbedTLS built on the host with the firmware's trimmed config,
# so a trim that breaks STARTTLS shows up here.  Needs the Debian source
# that firmware/sources.sh fetches; built once per config (stamp).
fwcfg() {
	local src=build/src/mbedtls-2.28.3 cfgh=$PWD/firmware/mbedtls_config.h
	local b=$BUILD/tls-mbedtls-fw stamp flags
	stamp=$(md5sum "$cfgh" | cut -c1-32)
	if [ "$(cat "$b/.stamp" 2>/dev/null)" != "$stamp" ]; then
		rm -rf "$b"
		if ! cmake -S "$src" -B "$b" -DENABLE_PROGRAMS=OFF \
			-DENABLE_TESTING=OFF -DUSE_SHARED_MBEDTLS_LIBRARY=OFF \
			-DCMAKE_BUILD_TYPE=Release \
			-DCMAKE_C_FLAGS="-DMBEDTLS_CONFIG_FILE='\"$cfgh\"'" \
			>"$tmp/fw-mbedtls.log" 2>&1 ||
			! make -C "$b" -j2 >>"$tmp/fw-mbedtls.log" 2>&1; then
			tail -20 "$tmp/fw-mbedtls.log" | sed 's/^/#   /'
			notok "fwcfg: mbedTLS builds with firmware/mbedtls_config.h"
			return
		fi
		echo "$stamp" >"$b/.stamp"
	fi
	flags="-I$src/include -DMBEDTLS_CONFIG_FILE=\"$cfgh\" -L$b/library"
	if cc -std=c11 -O2 -g $flags -Iproxy -Itests/unit -D_GNU_SOURCE \
		-o "$BUILD/tests/test_tls_fw" tests/unit/test_tls.c proxy/tls.c \
		proxy/util.c proxy/log.c -luv -lmbedtls -lmbedx509 -lmbedcrypto \
		-lpthread 2>"$tmp/fw-cc.log"; then
		"$BUILD/tests/test_tls_fw" 2>/dev/null |
			sed 's/^\(not \)\{0,1\}ok - /&fwcfg:/' | tee "$tmp/fw-unit.out"
		grep -q '^not ok' "$tmp/fw-unit.out" && status=1
		[ "$(grep -c '^ok' "$tmp/fw-unit.out")" -gt 20 ] ||
			notok "fwcfg: test_tls ran"
	else
		sed 's/^/#   /' "$tmp/fw-cc.log" | tail -20
		notok "fwcfg: test_tls builds"
	fi
	FWCFG=1 ECHO_CFLAGS="$flags" "$0" | tee "$tmp/fw-suite.out" |
		sed 's/^\(not \)\{0,1\}ok - /&fwcfg:/'
	grep -q '^not ok' "$tmp/fw-suite.out" && status=1
}
if [ -n "${FWCFG:-}" ]; then
	:
elif [ -d build/src/mbedtls-2.28.3 ] && [ -f firmware/mbedtls_config.h ] &&
	command -v cmake >/dev/null; then
	fwcfg
else
	echo "# fwcfg cases skipped: no build/src/mbedtls-2.28.3 (firmware/sources.sh)"
fi

if [ "$status" != 0 ]; then
	echo "# tls_echo log:"; sed 's/^/#   /' "$tmp/echo.log" | tail -40
fi
exit 0
