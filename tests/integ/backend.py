#!/usr/bin/python3
"""backend.py - the internal mail server of the integration tests.

A real SMTP server (Debian's aiosmtpd) standing in for the office mail
server behind mailmoat, with the failure modes the relay must survive.

    /usr/bin/python3 tests/integ/backend.py --port PORT --spool DIR

The behaviour is read from DIR/mode.json at every new connection, so a
test changes it between sessions without restarting the server (write it
atomically: tests/lib/mm.py's Backend.set_mode does).  Keys (all optional):

    refuse_rcpt      regex: matching recipients get 550 5.1.1
    tempfail_rcpt    regex: matching recipients get 450 4.2.1
    fail_stage       banner|ehlo|mail|rcpt|data|dot: answer 4xx there
                     (banner: 421 and close)
    fail_code        the reply used by fail_stage (default a 4xx per stage)
    slow_stage       banner|ehlo|mail|rcpt|data|dot: sleep slow_seconds
    slow_seconds     default 30
    drop             mid-data: close after the first body bytes
                     after-dot:  close after the whole message, no reply
                     after-rcpt: answer the first RCPT 250, then reset
                     the connection (RST), after rst_delay seconds
                     (default 0: at once)
    dot_reply        final reply for an accepted message
                     (default "250 2.0.0 Ok: queued as Q<n>"; may be
                     multi-line, lines joined by \\r\\n)
    lenient_eol      true: bare CR and bare LF count as line ends, like the
                     lax servers SMTP smuggling abuses (CVE-2023-51764..)
    max_conns        N: a connection beyond N open ones gets "421 4.3.2 Too
                     many connections" as its banner and is closed (a small
                     office server's process limit)

What it records, so tests can assert "delivered exactly once" or
"nothing delivered":

    DIR/msg-<n>.eml       every message we answered 2xx for: the content
                          exactly as received (dot-unstuffed, CRLF lines)
    DIR/msg-<n>.json      its envelope {mail_from, rcpt_tos, conn, reply}
    DIR/conn-<n>.raw      every byte each connection sent us
    DIR/events.jsonl      one line per event: connect, ehlo, mail, rcpt,
                          data, dot, rset, quit, lost
The server prints "listening PORT" on stdout once it accepts connections.
"""
import argparse
import asyncio
import itertools
import json
import os
import re
import socket
import struct
import sys

from aiosmtpd.smtp import SMTP

DEFAULT_FAIL = {
    "banner": "421 4.3.2 Backend service not available",
    "ehlo": "421 4.3.2 Backend busy",
    "mail": "451 4.3.0 Backend MAIL tempfail",
    "rcpt": "451 4.3.0 Backend RCPT tempfail",
    "data": "451 4.3.0 Backend DATA tempfail",
    "dot": "451 4.3.0 Backend end-of-data tempfail",
}

conn_ids = itertools.count(1)
open_conns = set()
msg_ids = itertools.count(1)


class Recorder:
    """Writes the spool: messages, raw bytes, events."""

    def __init__(self, spool):
        self.spool = spool
        os.makedirs(spool, exist_ok=True)
        self.events = open(os.path.join(spool, "events.jsonl"), "a",
                           buffering=1)

    def mode(self):
        try:
            with open(os.path.join(self.spool, "mode.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def event(self, conn, kind, **kw):
        kw.update(conn=conn, ev=kind)
        self.events.write(json.dumps(kw) + "\n")

    def message(self, n, conn, envelope, content, reply):
        base = os.path.join(self.spool, "msg-%04d" % n)
        with open(base + ".tmp", "wb") as f:
            f.write(content)
        meta = {"conn": conn, "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "mail_options": envelope.mail_options, "reply": reply}
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".tmp", base + ".eml")
        return n


class Handler:
    """aiosmtpd handler: decisions per stage from the connection's mode."""

    def __init__(self, rec):
        self.rec = rec

    async def _stage(self, server, stage):
        m = server.mm_mode
        if m.get("slow_stage") == stage:
            await asyncio.sleep(float(m.get("slow_seconds", 30)))
        if m.get("fail_stage") == stage:
            return m.get("fail_code", DEFAULT_FAIL[stage])
        return None

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        self.rec.event(server.mm_conn, "ehlo", arg=hostname)
        r = await self._stage(server, "ehlo")
        if r:
            return [r]
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        self.rec.event(server.mm_conn, "helo", arg=hostname)
        r = await self._stage(server, "ehlo")
        if r:
            return r
        session.host_name = hostname
        return "250 {}".format(server.hostname)

    async def handle_MAIL(self, server, session, envelope, address,
                          mail_options):
        self.rec.event(server.mm_conn, "mail", arg=address,
                       options=mail_options)
        r = await self._stage(server, "mail")
        if r:
            return r
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        self.rec.event(server.mm_conn, "rcpt", arg=address)
        m = server.mm_mode
        r = await self._stage(server, "rcpt")
        if r:
            return r
        if m.get("refuse_rcpt") and re.search(m["refuse_rcpt"], address):
            return "550 5.1.1 <%s>: Recipient address rejected: " \
                   "User unknown in local recipient table" % address
        if m.get("tempfail_rcpt") and re.search(m["tempfail_rcpt"], address):
            return "450 4.2.1 <%s>: Recipient temporarily unavailable" \
                   % address
        envelope.rcpt_tos.append(address)
        if m.get("drop") == "after-rcpt":
            # the 250 goes out, then an RST (SO_LINGER 0): the peer's
            # next write fails at once
            transport = server.transport

            def reset():
                sock = transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack("ii", 1, 0))
                transport.abort()
                self.rec.event(server.mm_conn, "dropped-after-rcpt")

            delay = float(m.get("rst_delay", 0))
            if delay <= 0:
                transport.write(b"250 2.1.5 Ok\r\n")
                reset()
                return "250 2.1.5 (never sent: connection reset)"
            asyncio.get_running_loop().call_later(delay, reset)
        return "250 2.1.5 Ok"

    async def handle_RSET(self, server, session, envelope):
        self.rec.event(server.mm_conn, "rset")
        return "250 2.0.0 Ok"

    async def handle_DATA(self, server, session, envelope):
        m = server.mm_mode
        self.rec.event(server.mm_conn, "dot", size=len(envelope.content))
        if m.get("drop") == "after-dot":
            self.rec.event(server.mm_conn, "dropped-after-dot")
            server.transport.close()
            return "250 2.0.0 (never sent: connection closed)"
        r = await self._stage(server, "dot")
        if r:
            return r
        n = next(msg_ids)
        reply = m.get("dot_reply", "250 2.0.0 Ok: queued as Q%d" % n)
        self.rec.message(n, server.mm_conn, envelope, envelope.content,
                         reply)
        return reply


class MmSMTP(SMTP):
    """aiosmtpd's SMTP with the stage hooks aiosmtpd has no handler for."""

    def __init__(self, handler, rec, **kw):
        super().__init__(handler, **kw)
        self.rec = rec
        self.mm_conn = next(conn_ids)
        self.mm_mode = rec.mode()
        self.mm_raw = open(os.path.join(rec.spool, "conn-%d.raw"
                                        % self.mm_conn), "wb", buffering=0)
        self.mm_prev_cr = False

    def connection_made(self, transport):
        self.rec.event(self.mm_conn, "connect")
        open_conns.add(self.mm_conn)
        super().connection_made(transport)

    def connection_lost(self, exc):
        self.rec.event(self.mm_conn, "lost")
        open_conns.discard(self.mm_conn)
        self.mm_raw.close()
        super().connection_lost(exc)

    def eof_received(self):
        # The peer closed its side: end the connection even while a
        # handler sleeps (slow modes), so that "lost" is recorded.
        r = super().eof_received()
        if self.transport is not None:
            self.transport.close()
        return r

    def data_received(self, data):
        self.mm_raw.write(data)
        if self.mm_mode.get("lenient_eol"):
            data = self._lenient(data)
        super().data_received(data)

    def _lenient(self, data):
        """Turn every bare CR and bare LF into CRLF, as a lax server
        effectively does when it takes either as a line end.  A CR at the
        end of a read waits for the next read to know what it is."""
        out = bytearray()
        for b in data:
            if self.mm_prev_cr:
                self.mm_prev_cr = False
                out += b"\r\n"
                if b == 0x0A:
                    continue
            if b == 0x0D:
                self.mm_prev_cr = True
            elif b == 0x0A:
                out += b"\r\n"
            else:
                out.append(b)
        return bytes(out)

    async def _handle_client(self):
        stage_mode = self.mm_mode
        cap = stage_mode.get("max_conns")
        if cap is not None and len(open_conns) > int(cap):
            self.rec.event(self.mm_conn, "over-cap")
            await self.push("421 4.3.2 Too many connections")
            self.transport.close()
            return
        if stage_mode.get("slow_stage") == "banner":
            await asyncio.sleep(float(stage_mode.get("slow_seconds", 30)))
        if stage_mode.get("fail_stage") == "banner":
            code = stage_mode.get("fail_code", DEFAULT_FAIL["banner"])
            self.rec.event(self.mm_conn, "banner-refused")
            await self.push(code)
            self.transport.close()
            return
        await super()._handle_client()

    async def smtp_DATA(self, arg):
        self.rec.event(self.mm_conn, "data")
        m = self.mm_mode
        if self.envelope.rcpt_tos:
            if m.get("slow_stage") == "data":
                await asyncio.sleep(float(m.get("slow_seconds", 30)))
            if m.get("fail_stage") == "data":
                await self.push(m.get("fail_code", DEFAULT_FAIL["data"]))
                return
            if m.get("drop") == "mid-data":
                await self.push("354 End data with <CR><LF>.<CR><LF>")
                await self._reader.read(1)
                self.rec.event(self.mm_conn, "dropped-mid-data")
                self.transport.close()
                return
        await super().smtp_DATA(arg)

    async def smtp_QUIT(self, arg):
        self.rec.event(self.mm_conn, "quit")
        await super().smtp_QUIT(arg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--spool", required=True)
    ap.add_argument("--hostname", default="backend.example.com")
    a = ap.parse_args()
    rec = Recorder(a.spool)
    handler = Handler(rec)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def factory():
        return MmSMTP(handler, rec, hostname=a.hostname,
                      data_size_limit=None, enable_SMTPUTF8=False,
                      decode_data=False, ident="mm-backend",
                      loop=loop)

    server = loop.run_until_complete(
        loop.create_server(factory, host=a.host, port=a.port,
                           reuse_address=True))
    print("listening %d" % a.port, flush=True)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
