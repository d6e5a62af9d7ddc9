#!/usr/bin/python3
"""office.py - the internal mail server of the netns tests (aiosmtpd).

Runs in the "office" namespace.  Every SMTP connection, every message and
every connection to the plain TCP port is appended as one JSON line to LOG:
  {"ev": "conn", "peer": IP, "local": IP}                  SMTP connection
  {"ev": "msg", "peer": IP, "local": IP, "xclient": ADDR|null,
   "proxy_src": IP|null, "rcpt": [...]}                     message accepted
  {"ev": "tcp", "peer": IP, "port": N}                      plain TCP port

  office.py LOG MODE PORT TCPPORT ADDR...
MODE: plain | xclient (offers XCLIENT, as Postfix with
smtpd_authorized_xclient_hosts) | proxy (expects a PROXY header first, as
Postfix with smtpd_upstream_proxy_protocol = haproxy; aiosmtpd parses it).
"""
import asyncio
import json
import sys

from aiosmtpd.smtp import SMTP

LOG, MODE, PORT, TCPPORT = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ADDRS = sys.argv[5:]


def note(**kv):
    with open(LOG, "a") as f:
        f.write(json.dumps(kv) + "\n")


class Handler:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if MODE == "xclient":
            responses.insert(len(responses) - 1, "250-XCLIENT ADDR NAME HELO PROTO")
        return responses

    async def handle_PROXY(self, server, session, envelope, proxy_data):
        return True  # a valid header (aiosmtpd parsed it) is accepted

    async def handle_DATA(self, server, session, envelope):
        pd = getattr(session, "proxy_data", None)
        note(ev="msg", peer=session.peer[0], local=server.local_ip,
             xclient=getattr(session, "xclient", {}).get("ADDR"),
             xclient_all=getattr(session, "xclient", None),
             proxy_src=str(pd.src_addr) if pd is not None and pd.src_addr else None,
             proxy_dst=str(pd.dst_addr) if pd is not None and pd.dst_addr else None,
             rcpt=envelope.rcpt_tos)
        return "250 2.0.0 Ok: queued"


class OfficeSMTP(SMTP):
    def connection_made(self, transport):
        super().connection_made(transport)
        sock = transport.get_extra_info("sockname")
        peer = transport.get_extra_info("peername")
        self.local_ip = sock[0]
        note(ev="conn", peer=peer[0], local=sock[0])

    async def smtp_XCLIENT(self, arg):
        if MODE != "xclient":
            await self.push("502 5.5.2 Error: command not recognized")
            return
        kv = dict(p.split("=", 1) for p in arg.split() if "=" in p)
        self.session.xclient = kv
        await self.push("220 office.test ESMTP (after XCLIENT)")


async def tcp_client(reader, writer):
    note(ev="tcp", peer=writer.get_extra_info("peername")[0], port=TCPPORT)
    writer.write(b"hello\n")
    await writer.drain()
    writer.close()


async def main():
    loop = asyncio.get_running_loop()
    kw = {"hostname": "office.test"}
    if MODE == "proxy":
        kw["proxy_protocol_timeout"] = 10
    for a in ADDRS:
        await loop.create_server(lambda: OfficeSMTP(Handler(), **kw), a, PORT)
        await asyncio.start_server(tcp_client, a, TCPPORT)
    note(ev="ready")
    await asyncio.Event().wait()


asyncio.run(main())
