#!/usr/bin/python3
"""tapns.py - run a command (QEMU) holding tap devices of other network
namespaces, so that a booted box's network interfaces are wired into
namespaces the test built, never into the host's own network.

  tapns.py NS:TAP [NS:TAP ...] -- COMMAND ARGS...

For each NS:TAP it enters the namespace /run/netns/NS, opens /dev/net/tun
there and attaches to the existing tap device TAP (ip tuntap add ... mode
tap, made by the caller), then returns to its own namespace.  The fds are
left open and inheritable; COMMAND is exec'd with MM_TAP_FDS = their
numbers, space separated, in the order given (firmware/qemu.sh turns them
into -netdev tap,fd=N: the box's eth0, eth1, ...).
"""
import ctypes
import fcntl
import os
import struct
import sys

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000

libc = ctypes.CDLL(None, use_errno=True)


def setns(fd, what):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns %s: %s" % (what, os.strerror(e)))


def main():
    if "--" not in sys.argv:
        sys.exit("usage: tapns.py NS:TAP [NS:TAP ...] -- COMMAND ARGS...")
    i = sys.argv.index("--")
    taps, cmd = sys.argv[1:i], sys.argv[i + 1:]
    if not taps or not cmd:
        sys.exit("usage: tapns.py NS:TAP [NS:TAP ...] -- COMMAND ARGS...")
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    fds = []
    for t in taps:
        ns, tap = t.split(":", 1)
        nsfd = os.open("/run/netns/" + ns, os.O_RDONLY)
        setns(nsfd, ns)
        os.close(nsfd)
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tap.encode(), IFF_TAP | IFF_NO_PI))
        os.set_inheritable(fd, True)
        fds.append(fd)
        setns(home, "back home")
    os.close(home)
    os.environ["MM_TAP_FDS"] = " ".join(str(fd) for fd in fds)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
