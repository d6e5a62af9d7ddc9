#!/bin/bash
# run.sh - the firmware suite: build the boards' images, boot them under
# QEMU (TCG) and test the box from the outside, like an administrator.
#
#   x86_64: build (and rebuild: same bytes), host-side image checks, then
#   one disk through its life: first boot -> mail through the proxy to a
#   backend on the host, relay refused, web page -> power cut -> boot:
#   config, secrets and data kept, file system clean -> bad images refused
#   with nothing written -> update to a newer signed image -> update to an
#   image whose daemon cannot start: falls back to the previous slot;
#   on boots 2 and 3 the web UI in headless Chromium (webui_box.py): log
#   in, a mail counted on the dashboard, a bad image refused and the newer
#   one flashed through the browser's upload, the box back on it;
#   then a fresh box with transparent=redirect (packet filter rules), and
#   one in-line with two NICs in namespaces, bridge + tproxy (tproxy.sh:
#   the server sees the client's address, v4 and v6).
#   rpi4 (aarch64) and rpi2 (armhf): build, boot the root under QEMU's
#   virt machine in 64 MB, see mailmoat serving SMTP and the web page.
# Figures (sizes, boot times, idle RAM) go to build/firmware-figures.
# FW_BOARDS="rpi4" runs a subset of the QEMU-virt boards (x86_64 always runs).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
cd "$TOP"
. "$HERE/lib.sh"
FAILED=0 QPID= BPID=
W=$TOP/build/fwtest
rm -rf "$W"; mkdir -p "$W"
FIG=$TOP/build/firmware-figures; : > "$FIG"
trap 'box_kill; [ -n "$BPID" ] && kill $BPID 2>/dev/null; type tp_cleanup >/dev/null 2>&1 && tp_cleanup' EXIT

echo "# building x86_64 (first build from scratch takes a few minutes)"
t0=$SECONDS
if firmware/firmware.sh x86_64 > "$W/build-x86_64.log" 2>&1; then
	ok "firmware build x86_64"
else
	nok "firmware build x86_64" "$(tail -n 3 "$W/build-x86_64.log" | tr '\n' ' ')"
	exit 1
fi
echo "build_x86_64_seconds $((SECONDS - t0))" >> "$FIG"
X=$TOP/build/x86_64
IMG=$X/mailmoat-x86_64.img
PUB=$TOP/build/keys/dev.pub KEY=$TOP/build/keys/dev.key
MMS=$TOP/build/host-tools/mmsign
cat "$X/SIZES" | sed 's/^/x86_64 /' >> "$FIG"
check "image carries the real daemon" grep -q 'daemon=real' "$X/SIZES"
rootfs=$(awk '/^rootfs.squashfs/{print $2}' "$X/SIZES")
nokern=$(awk '/^image_without_kernel/{print $2}' "$X/SIZES")
check "x86_64 root file system under 4 MB ($rootfs B)" test "$rootfs" -lt 4000000
check "x86_64 image without kernel under 6 MB ($nokern B)" test "$nokern" -lt 6000000

# Reproducible: a second build into another directory gives the same bytes.
MM_FW_OUT=$W/again firmware/firmware.sh x86_64 > "$W/build-again.log" 2>&1
check "rebuild gives the same image bytes" cmp -s "$IMG" "$W/again/mailmoat-x86_64.img"

# --- image variants (all signed with the dev key unless said) ---------------
code=$(cat "$X/rootfs/etc/mailmoat/version_code")
ver=$(cat "$X/rootfs/etc/mailmoat/version")
MM_FW_OUT=$W/v2 MM_FW_VERSION=$ver+fwtest2 MM_FW_CODE=$((code + 1)) \
	firmware/firmware.sh x86_64 > "$W/build-v2.log" 2>&1 || nok "build v2 image"
MM_FW_OUT=$W/broken MM_FW_VERSION=$ver+broken MM_FW_CODE=$((code + 2)) MM_FW_BREAK_DAEMON=1 \
	firmware/firmware.sh x86_64 > "$W/build-broken.log" 2>&1 || nok "build broken image"
V2=$W/v2/mailmoat-x86_64.img BROKEN=$W/broken/mailmoat-x86_64.img
"$MMS" pack -b rpi4 -v "$ver+wrongboard" -c $((code + 5)) -k "$X/boot/vmlinuz" \
	-r "$W/v2/rootfs.squashfs" -s "$KEY" -o "$W/wrongboard.img"
roff=$(grep -a -m1 '^rootfs_offset=' "$V2" | cut -d= -f2)
cp "$V2" "$W/tampered.img"
printf '\x5a' | dd of="$W/tampered.img" bs=1 seek=$((roff + 5000)) conv=notrunc 2>/dev/null
sz=$(stat -c %s "$V2")
cp "$V2" "$W/unsigned.img"
dd if=/dev/zero of="$W/unsigned.img" bs=1 seek=$((sz - 512)) count=512 conv=notrunc 2>/dev/null
head -c $((sz / 2)) "$V2" > "$W/truncated.img"
"$MMS" genkey "$W/other.key" "$W/other.pub"
"$MMS" pack -b x86_64 -v "$ver+otherkey" -c $((code + 6)) -k "$X/boot/vmlinuz" \
	-r "$W/v2/rootfs.squashfs" -s "$W/other.key" -o "$W/otherkey.img"

# Header parser and verifier against hostile headers (ASan/UBSan build).
if cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -g -fsanitize=address,undefined \
	-Ifirmware/tools -Itests/unit -o "$W/test_fwimg" tests/firmware/test_fwimg.c \
	firmware/tools/fwimg.c -lmbedcrypto > "$W/test_fwimg.log" 2>&1; then
	"$W/test_fwimg" "$PUB" "$IMG" || true
else
	nok "test_fwimg builds" "$(head -n 3 "$W/test_fwimg.log" | tr '\n' ' ')"
fi
# Host-side verifier (the same fwimg.c as on the box).
check "mmsign verifies the built image" eval '"$MMS" verify "$PUB" "$IMG" > /dev/null'
for v in tampered unsigned truncated otherkey; do
	if "$MMS" verify "$PUB" "$W/$v.img" > "$W/verify-$v.out" 2>&1; then
		nok "mmsign refuses the $v image"
	else
		ok "mmsign refuses the $v image ($(cat "$W/verify-$v.out"))"
	fi
done

# --- the backend on the host (10.0.2.2 from the box) ------------------------
BP=$(free_port)
/usr/bin/python3 tests/integ/backend.py --port "$BP" --spool "$W/spool" > "$W/backend.log" 2>&1 &
BPID=$!
i=0; until grep -q listening "$W/backend.log" || [ $i -gt 100 ]; do sleep 0.1; i=$((i + 1)); done

DISK=$W/disk.img
cp --sparse=always "$X/disk.img" "$DISK"
read -r _ S1 N1 < <(grep '^bootrec' "$X/layout")
read -r _ SA NA < <(grep '^slot_a' "$X/layout")
read -r _ SB NB < <(grep '^slot_b' "$X/layout")
read -r _ SD ND < <(grep '^data' "$X/layout")
CONF="mmconf.backend=10.0.2.2:$BP mmconf.hostname=mx.fwtest.example
 mmconf.local_domains=example.com mmconf.recipient_verify=list
 mmconf.action_dnsbl=off mmconf.action_rdns=off mmconf.action_dynamic=off
 mmconf.action_sender_mx=off mmconf.action_spf=off mmconf.action_greylist=off
 mmconf.greet_pause=1s mmconf.dns_timeout=2s mmconf.state_flush=2s
 mm.committimeout=40"
# The life of the main disk runs with greylisting on (issue 8 on the box):
# short delay, no auto-allow, so every pass comes from the triplet table.
CONF1="${CONF/mmconf.action_greylist=off/mmconf.action_greylist=tempfail}
 mmconf.greylist_delay=2s mmconf.greylist_auto_allow=0
 mmconf.action_dsn=reject mmconf.backscatter_block=30d"
GL451='451 4.7.1 Greylisting in action, please come back in a few minutes'
# grey_send TAG LOG - one mail of the greylisted triplet (client 10.0.2.2,
# alice@example.net, bob@example.com) with Subject TAG
grey_send() {
	swaks --server 127.0.0.1 --port "$SP" --helo client.example.net --from alice@example.net \
		--to bob@example.com --header "Subject: $1" --timeout 60 > "$2" 2>&1
}
# grey_passes TAG LOG WHAT - the triplet passes at once: no 451, delivered
grey_passes() {
	grey_send "$1" "$2"
	if ! grep -q '<\*\* *451' "$2" && grep -lqs "$1" "$W"/spool/msg-*.eml; then
		ok "$3: greylisted triplet passes at once, delivered"
	else
		nok "$3: greylisted triplet passes at once, delivered" \
			"$(grep -m1 '<\*\*' "$2" | tr '\n' ' ')"
	fi
}

# --- boot 1: factory-new disk ------------------------------------------------
box_start x86_64 "$X/boot" "$DISK" "$W/boot1.log" $CONF1
if box_banner 240; then
	ok "boot 1 (first boot): SMTP banner after ${BOOT_SECS}s: $BANNER"
	echo "x86_64_tcg_first_boot_to_banner_s $BOOT_SECS" >> "$FIG"
else
	nok "boot 1 (first boot): SMTP banner" "$(tail -n 5 "$W/boot1.log" | tr '\n' ' ')"
fi
PW=$(sed -n 's/.*admin password for the web UI: user admin password \([A-Za-z0-9]*\).*/\1/p' "$W/boot1.log" | head -n 1)
check "first boot printed an admin password" test -n "$PW"
check "banner names the configured host" grep -q 'mx.fwtest.example' <<< "$BANNER"

# Greylisting: the first attempt of the triplet is told to come back; the
# retry after greylist_delay (2s) is delivered.
grey_send fwtest-grey-1 "$W/swaks-grey1.log"
if grep -qF "<** $GL451" "$W/swaks-grey1.log" && ! grep -lqs fwtest-grey-1 "$W"/spool/msg-*.eml; then
	ok "greylisting: first attempt of a triplet gets $GL451"
else
	nok "greylisting: first attempt of a triplet gets 451 4.7.1" \
		"$(grep -m1 '<\*\*' "$W/swaks-grey1.log" | tr '\n' ' ')"
fi
sleep 4
grey_send fwtest-grey-2 "$W/swaks-grey2.log"
if grep -lqs fwtest-grey-2 "$W"/spool/msg-*.eml && ! grep -q '<\*\* *451' "$W/swaks-grey2.log"; then
	ok "greylisting: the retry after greylist_delay is delivered"
else
	nok "greylisting: the retry after greylist_delay is delivered" \
		"$(grep -m1 '<\*\*' "$W/swaks-grey2.log" | tr '\n' ' ')"
fi

swaks --server 127.0.0.1 --port "$SP" --helo client.example.net --from alice@example.net \
	--to bob@example.com --header "Subject: fwtest-mail-1" --timeout 60 > "$W/swaks1.log" 2>&1
check "mail through the proxy reaches the backend" grep -lqs 'fwtest-mail-1' "$W"/spool/msg-*.eml
swaks --server 127.0.0.1 --port "$SP" --helo client.example.net --from alice@example.net \
	--to bob@example.com --header "Subject: fwtest-mail-tls" --tls --timeout 60 > "$W/swaks-tls.log" 2>&1
tls=$(grep -m1 'TLS started' "$W/swaks-tls.log" | sed 's/^=== //')
if [ -n "$tls" ] && grep -lqs 'fwtest-mail-tls' "$W"/spool/msg-*.eml; then
	ok "STARTTLS on the box, mail delivered ($tls)"
else
	nok "STARTTLS on the box, mail delivered" "$(grep -m2 -i 'tls' "$W/swaks-tls.log" | tr '\n' ' ')"
fi
n_before=$(ls "$W"/spool/msg-*.eml 2>/dev/null | wc -l)
swaks --server 127.0.0.1 --port "$SP" --helo client.example.net --from alice@example.net \
	--to victim@elsewhere.org --header "Subject: fwtest-relay" --timeout 60 > "$W/swaks2.log" 2>&1
n_after=$(ls "$W"/spool/msg-*.eml 2>/dev/null | wc -l)
if grep -q '<\*\* *550' "$W/swaks2.log" && [ "$n_before" = "$n_after" ]; then
	ok "relay attempt refused ($(grep -m1 '<\*\* *550' "$W/swaks2.log" | sed 's/^ *<\*\* *//'))"
else
	nok "relay attempt refused" "$(grep -m1 'RCPT TO' -A1 "$W/swaks2.log" | tr '\n' ' ')"
fi

page=$(http_get /cgi-bin/status)
check "web status page answers with the version" grep -q "<td>$ver</td>" <<< "$page"
check "web status page shows mailmoatctl stats" grep -q 'connections_total' <<< "$page"
code303=$(curl -s -o /dev/null -w '%{http_code}' -m 20 "http://127.0.0.1:$HP/cgi-bin/status")
check "web page needs the login (got $code303 without: to the login form)" test "$code303" = 303
mem=$(sed -n 's/.*<tr><th>memory used (KiB)<\/th><td>\([0-9]*\)<.*/\1/p' <<< "$page")
[ -n "$mem" ] && echo "x86_64_idle_memory_used_kib $mem" >> "$FIG"

# --- power cut during operation ----------------------------------------------
# Backscatter (issue 12): a bounce for mail we never sent (its Message-ID
# is not in our domains) is refused and blocks the sending host, which is
# 10.0.2.2, the host itself (QEMU user networking): from then on every
# connection gets 554 at connect.  It is lifted after boot 2, through the
# web UI's lists page (`backscatter del`).
printf '%s\r\n' 'From: MAILER-DAEMON@far.example' 'To: bob@example.com' \
	'Subject: Undelivered Mail Returned to Sender' 'MIME-Version: 1.0' \
	'Content-Type: multipart/report; report-type=delivery-status; boundary=B' '' \
	'--B' 'Content-Type: text/plain' '' 'failed' '--B' \
	'Content-Type: message/delivery-status' '' 'Action: failed' 'Status: 5.1.1' \
	'--B' 'Content-Type: message/rfc822' '' 'From: bob@example.com' \
	'To: carol@far.example' 'Message-ID: <fwtest.1@far.example>' 'Subject: hi' '' \
	'hello' '--B--' > "$W/bounce.eml"
dsn_send() {
	swaks --server 127.0.0.1 --port "$SP" --helo client.example.net --from '<>' \
		--to bob@example.com --data @"$W/bounce.eml" --timeout 60 > "$1" 2>&1
}
dsn_send "$W/swaks-dsn1.log"
# its own triplet (<>, bob) is greylisted first: come back after the delay
if grep -q '<\*\* *451' "$W/swaks-dsn1.log"; then sleep 4; dsn_send "$W/swaks-dsn2.log"; fi
if grep -q '<\*\* *550 5.7.1 Delivery status notification refused' "$W"/swaks-dsn*.log && ! grep -lqs 'fwtest.1@far.example' "$W"/spool/msg-*.eml; then
	ok "backscatter: a DSN for mail we never sent refused ($(grep -h -m1 '<\*\* *5' "$W"/swaks-dsn*.log | sed 's/^ *<\*\* *//' | cut -c1-60))"
else
	nok "backscatter: a DSN for mail we never sent refused" "$(grep -h '<\*\*' "$W"/swaks-dsn*.log | tr '\n' ' ')"
fi
b=$(timeout 8 /usr/bin/python3 "$HERE/smtpprobe.py" 127.0.0.1 "$SP")
check "backscatter: the sending host is blocked at connect ($b)" \
	grep -q '^554 5.7.1 Blocked for sending backscatter.*10.0.2.2' <<< "$b"
box_wait_log "$W/boot1.log" 'mailmoat is serving' 60
# the daemon's state (its counters) is flushed to the data partition every
# state_flush (2s here): what was flushed before the cut must come back
accepted_of() { sed -n 's/.*&quot;accepted&quot;:\([0-9]*\).*/\1/p'; }
acc1=$(http_get /cgi-bin/status | accepted_of)
sleep 4
box_kill
ok "power cut (QEMU killed) during operation"
box_start x86_64 "$X/boot" "$DISK" "$W/boot2.log" $CONF1 mmconf.hostname=must-not-apply.example
# the host is still blocked: its greeting is the 554
if BANNER_OK=554 box_banner 180; then
	ok "boot 2 after power cut: SMTP answers after ${BOOT_SECS}s"
	echo "x86_64_tcg_boot_to_banner_s $BOOT_SECS" >> "$FIG"
else
	nok "boot 2 after power cut: SMTP answers" "$BANNER"
fi
check "backscatter block kept across the power cut ($BANNER)" \
	grep -q '^554 5.7.1 Blocked for sending backscatter.*10.0.2.2' <<< "$BANNER"
r=$(web_post /cgi-bin/lists list=backscatter entry=10.0.2.2 op=del)
check "backscatter block lifted through the web UI (lists: backscatter del)" \
	eval 'test -n "$r" && ! grep -q "refused: " <<< "$r"'
check "boot 2: SMTP banner (220) once the block is lifted" box_banner 30
check "config kept across power cut (banner: $BANNER)" grep -q 'mx.fwtest.example' <<< "$BANNER"
check "data partition not reformatted" eval "! grep -q 'formatting the data partition' '$W/boot2.log'"
check "no new admin password on boot 2" eval "! grep -q 'admin password' '$W/boot2.log'"
page2=$(http_get /cgi-bin/status)
check "old admin password still valid" grep -q 'connections_total' <<< "$page2"
acc2=$(accepted_of <<< "$page2")
check "flushed daemon state kept across the power cut (accepted: $acc1 before, $acc2 after)" \
	test -n "$acc1" -a "${acc1:-0}" -ge 2 -a "${acc2:-0}" -ge "${acc1:-1}"
# the passed triplet was flushed before the cut: it passes at once
grey_passes fwtest-mail-2 "$W/swaks3.log" "after the power cut"
# The web UI in a real browser (issue 10): log in through the form, the
# dashboard, a mail through the box's proxy counted there and in metrics.
webui_box dashboard "$SP"

# --- bad images are refused, nothing written ---------------------------------
box_wait_log "$W/boot2.log" 'mailmoat is serving' 60
sb=$(region_sum "$DISK" "$SB" "$NB"); br=$(region_sum "$DISK" "$S1" 1)
for v in tampered unsigned truncated wrongboard otherkey; do
	r=$(flash "$W/$v.img")
	case $r in *refused:*HTTP400) ok "box refuses the $v image: $(echo "${r%% HTTP*}" | tr -d "\n")" ;;
	*) nok "box refuses the $v image" "$r" ;; esac
done
r=$(flash "$IMG")
case $r in *"not newer"*HTTP400) ok "box refuses an image that is not newer" ;;
*) nok "box refuses an image that is not newer" "$r" ;; esac
# ... and through the browser's file upload on the firmware page
webui_box bad "$W/tampered.img"
check "refused images (curl and the browser) wrote nothing (slot B and boot record unchanged)" \
	test "$sb" = "$(region_sum "$DISK" "$SB" "$NB")" -a "$br" = "$(region_sum "$DISK" "$S1" 1)"

# --- update to a newer signed image (in the browser) ----------------------------
webui_box good "$V2"
if box_wait_exit 60; then ok "box reboots after the update"; else nok "box reboots after the update"; box_kill; fi
box_start x86_64 "$X/boot" "$DISK" "$W/boot3.log" $CONF1
box_banner 180 || nok "boot 3 (trial of slot B): SMTP banner"
box_wait_log "$W/boot3.log" 'slot B committed' 90
webui_box back "$ver+fwtest2" "$ver"
page=$(http_get /cgi-bin/status)
check "box runs the new version ($ver+fwtest2) from slot B" \
	grep -q "<td>$ver+fwtest2</td>" <<< "$page"
check "new slot committed after mailmoat served" grep -q 'slot B committed' "$W/boot3.log"
check "config kept across the update" grep -q 'mx.fwtest.example' <<< "$BANNER"
grey_passes fwtest-mail-3 "$W/swaks4.log" "on the new version (slot B)"

# --- update to an image whose daemon cannot start: fallback -------------------
r=$(flash "$BROKEN")
case $r in *flashed:*"slot A"*HTTP200) ok "box accepts the (broken) newer image into slot A" ;;
*) nok "box accepts the (broken) newer image into slot A" "$r" ;; esac
box_wait_exit 60 || box_kill
box_start x86_64 "$X/boot" "$DISK" "$W/boot4.log" $CONF1
if box_wait_exit 240 && grep -q 'did not come up' "$W/boot4.log"; then
	ok "trial boot of the broken slot gives up and reboots"
else
	nok "trial boot of the broken slot gives up and reboots"; box_kill
fi
n=$(grep -a -c 'mailmoat-run: mailmoat exited' "$W/boot4.log")
check "init restarts a daemon that exits ($n restarts seen)" test "$n" -ge 2
# Power on again, now in 72 MB of RAM (the smallest that boots the Debian
# cloud kernel under QEMU -kernel; 64 MB hangs before the first kernel line):
# the selector falls back to slot B.
MM_QEMU_MEM=72 box_start x86_64 "$X/boot" "$DISK" "$W/boot5.log" $CONF1
box_banner 180 || nok "boot 5 (fallback): SMTP banner"
check "boot selector fell back to the old slot" grep -q 'failed its trial boot: falling back to slot B' "$W/boot5.log"
page=$(http_get /cgi-bin/status)
check "box is back on the previous version, in 72 MB RAM" grep -q "<td>$ver+fwtest2</td>" <<< "$page"
mem=$(sed -n 's/.*<tr><th>memory used (KiB)<\/th><td>\([0-9]*\)<.*/\1/p' <<< "$page")
[ -n "$mem" ] && echo "x86_64_72MB_box_memory_used_kib $mem" >> "$FIG"
box_kill

# The data partition after all this: journal replayed (as the kernel does
# at mount), then a full check must find nothing to fix.
dd if="$DISK" of="$W/data.ext4" bs=512 skip="$SD" count="$ND" 2>/dev/null
e2fsck -E journal_only -y "$W/data.ext4" > /dev/null 2>&1
if e2fsck -fn "$W/data.ext4" > "$W/fsck.log" 2>&1; then
	ok "data file system clean after power cuts and updates"
else
	nok "data file system clean after power cuts and updates" "$(tail -n 3 "$W/fsck.log" | tr '\n' ' ')"
fi
debugfs -R 'cat /etc/mailmoat.conf' "$W/data.ext4" 2>/dev/null > "$W/data-conf"
check "config file on the data partition keeps the provisioned hostname" \
	grep -q '^hostname = mx.fwtest.example' "$W/data-conf"
check "TLS key kept on the data partition" test -n "$(debugfs -R 'stat /tls/key.pem' "$W/data.ext4" 2>/dev/null | grep -m1 Size)"
bc=$(debugfs -R 'cat /boot-count' "$W/data.ext4" 2>/dev/null)
check "boot counter on the data partition counted every boot ($bc)" test "$bc" = 5

# --- transparent interception ---------------------------------------------------
# The daemon listens on 2525 only; SMTP to the box's port 25 can reach it
# only through the REDIRECT rule rcS installs (mailmoat-intercept) for
# transparent = redirect, and only for our addresses (local_addresses).
cp --sparse=always "$X/disk.img" "$W/disk-tp.img"
# This box also gets a static address instead of DHCP (provisioned like the
# config, at first boot), so the backend is reached through it.
box_start x86_64 "$X/boot" "$W/disk-tp.img" "$W/boot-tp.log" $CONF \
	mmconf.transparent=redirect mmconf.listen=0.0.0.0:2525 mmconf.local_addresses=10.0.2.15 \
	mmnet.NET_MODE=static mmnet.NET_ADDR=10.0.2.15/24 mmnet.NET_GW=10.0.2.2 \
	mmnet.NET_DNS=10.0.2.3
if box_banner 180; then
	ok "transparent=redirect: port 25 reaches the daemon on 2525 ($BANNER)"
else
	nok "transparent=redirect: port 25 reaches the daemon on 2525" \
		"$(grep -a 'mailmoat-rc' "$W/boot-tp.log" | tail -n 3 | tr '\n' ' ')"
fi
check "packet filter rules reported installed (mailmoat-intercept, our addresses only)" grep -q 'transparent=redirect for 10.0.2.15 10.0.2.2 port 25 to port 2525 installed' "$W/boot-tp.log"
check "static network configuration applied" grep -q 'network: static 10.0.2.15/24 via 10.0.2.2' "$W/boot-tp.log"
swaks --server 127.0.0.1 --port "$SP" --helo client.example.net --from alice@example.net \
	--to bob@example.com --header "Subject: fwtest-mail-static" --timeout 60 > "$W/swaks-tp.log" 2>&1
check "mail through the redirect on a static address reaches the backend" \
	grep -lqs 'fwtest-mail-static' "$W"/spool/msg-*.eml
box_kill

# --- the box in-line: two NICs, bridge + tproxy ------------------------------
. "$HERE/tproxy.sh"

# --- rpi4 (aarch64) and rpi2 (armhf): build, boot the root on QEMU virt ------
for brd in rpi4 rpi2; do
	case " ${FW_BOARDS:-x86_64 rpi4 rpi2} " in *" $brd "*) ;; *) continue ;; esac
	case $brd in rpi4) qm=qemu-system-aarch64 ;; *) qm=qemu-system-arm ;; esac
	echo "# building $brd"
	t0=$SECONDS
	if ! firmware/firmware.sh $brd > "$W/build-$brd.log" 2>&1; then
		nok "firmware build $brd" "$(tail -n 3 "$W/build-$brd.log" | tr '\n' ' ')"
		continue
	fi
	ok "firmware build $brd"
	echo "build_${brd}_seconds $((SECONDS - t0))" >> "$FIG"
	R=$TOP/build/$brd
	sed "s/^/$brd /" "$R/SIZES" >> "$FIG"
	rootfs=$(awk '/^rootfs.squashfs/{print $2}' "$R/SIZES")
	check "$brd root file system under 4 MB ($rootfs B)" test "$rootfs" -lt 4000000
	check "$brd image carries the real daemon" grep -q 'daemon=real' "$R/SIZES"
	cp --sparse=always "$R/disk.img" "$W/$brd-disk.img"
	# 64 MB of RAM: real Pis have more, but the aim is 64.
	MM_QEMU_MEM=64 box_start $brd "$R/boot" "$W/$brd-disk.img" "$W/$brd-boot1.log" $CONF
	if box_banner 300; then
		ok "$brd root under $qm -M virt, 64 MB RAM: SMTP banner after ${BOOT_SECS}s: $BANNER"
		echo "${brd}_virt_tcg_first_boot_to_banner_s $BOOT_SECS" >> "$FIG"
		PW=$(sed -n 's/.*admin password for the web UI: user admin password \([A-Za-z0-9]*\).*/\1/p' "$W/$brd-boot1.log" | head -n 1)
		page=$(http_get /cgi-bin/status)
		check "$brd web status page answers" grep -q "<td>$brd</td>" <<< "$page"
		mem=$(sed -n 's/.*<tr><th>memory used (KiB)<\/th><td>\([0-9]*\)<.*/\1/p' <<< "$page")
		[ -n "$mem" ] && echo "${brd}_64MB_memory_used_kib $mem" >> "$FIG"
	else
		nok "$brd root under $qm -M virt: SMTP banner" \
			"$(tail -n 5 "$W/$brd-boot1.log" | tr '\n' ' ')"
	fi
	box_kill
done
echo "# figures: $FIG"
[ "$FAILED" = 0 ]
