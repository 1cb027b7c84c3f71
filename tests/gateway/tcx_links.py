#!/usr/bin/env python3
"""Lists the kernel's tcx links (the tc hook's BPF links, Linux 6.6+) as "IFINDEX DIRECTION
PROGRAM_NAME" lines, one per link. Debian 12's bpftool predates tcx and prints such a link as
"type 11" without its interface, so this asks the kernel itself (bpf(2): next link id, an fd for
it, its info). An ifindex is per network namespace: the caller matches it with the name too."""
import ctypes
import os
import struct
import sys

SYS_BPF = 321  # x86_64
BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_GET_FD_BY_ID, BPF_LINK_GET_FD_BY_ID, BPF_LINK_GET_NEXT_ID = 15, 13, 30, 31
BPF_LINK_TYPE_TCX = 11
BPF_TCX_INGRESS, BPF_TCX_EGRESS = 46, 47

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(bytes(attr), 128)
    r = libc.syscall(SYS_BPF, cmd, buf, 128)
    return r, buf


def info(fd, size):
    out = ctypes.create_string_buffer(size)
    r, _ = bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("=IIQ", fd, size, ctypes.addressof(out)))
    if r < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return out.raw


def prog_name(prog_id):
    fd, _ = bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("=III", prog_id, 0, 0))
    if fd < 0:
        return "?"
    try:
        raw = info(fd, 256)
        return raw[64:80].split(b"\0")[0].decode()  # struct bpf_prog_info: name[16] at 64
    finally:
        os.close(fd)


link_id = 0
while True:
    r, buf = bpf(BPF_LINK_GET_NEXT_ID, struct.pack("=III", link_id, 0, 0))
    if r < 0:
        break
    link_id = struct.unpack_from("=I", buf.raw, 4)[0]
    fd, _ = bpf(BPF_LINK_GET_FD_BY_ID, struct.pack("=III", link_id, 0, 0))
    if fd < 0:
        continue
    try:
        raw = info(fd, 64)
    finally:
        os.close(fd)
    link_type, _, prog_id = struct.unpack_from("=III", raw, 0)
    if link_type != BPF_LINK_TYPE_TCX:
        continue
    ifindex, attach = struct.unpack_from("=II", raw, 16)
    direction = {BPF_TCX_INGRESS: "ingress", BPF_TCX_EGRESS: "egress"}.get(attach, str(attach))
    print(ifindex, direction, prog_name(prog_id))
sys.exit(0)
