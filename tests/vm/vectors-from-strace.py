#!/usr/bin/env python3
"""Turns the strace dumps of capture-vectors.sh into the byte-vector fixtures.

Usage: vectors-from-strace.py DUMP_DIR OUT_DIR

Each fixture keeps, per IPVS netlink message that ipvsadm sent ("send") or the
kernel answered ("recv"), one line of hex. Family look-ups (nlctrl) and MSG_PEEK
reads (the same bytes read twice) are left out. A recv buffer may hold several
messages (a dump); they are split here, one line each.
"""
import pathlib
import re
import struct
import sys

CALL = re.compile(r"^(sendmsg|recvmsg|sendto|recvfrom)\(")
HEX = re.compile(r"^ \| [0-9a-f]{5}  ((?:[0-9a-f]{2} {1,2}){1,16})")


def calls(text):
    """Yields (direction, bytes) per syscall, in order."""
    cur = None
    for line in text.splitlines():
        m = CALL.match(line)
        if m:
            if cur and cur[2]:
                yield cur[0], bytes(cur[2])
            peek = "MSG_PEEK" in line
            cur = None if peek else ("send" if m.group(1).startswith("send") else "recv", line, bytearray())
            continue
        h = HEX.match(line)
        if h and cur is not None:
            cur[2].extend(bytes.fromhex(h.group(1).replace(" ", "")))
    if cur and cur[2]:
        yield cur[0], bytes(cur[2])


def messages(buf):
    off = 0
    while off + 16 <= len(buf):
        (length, mtype) = struct.unpack_from("<IH", buf, off)
        if length < 16:
            break
        yield mtype, buf[off : off + length]
        off += (length + 3) & ~3


def main():
    src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    dst.mkdir(parents=True, exist_ok=True)
    for dump in sorted(src.glob("*.txt")):
        text = dump.read_text()
        head = text.splitlines()[0].lstrip("# ")
        lines = [f"# {head}", "# captured in the test VM by tests/vm/capture-vectors.sh"]
        for direction, buf in calls(text):
            for mtype, msg in messages(buf):
                if mtype == 0x10:  # nlctrl: the family look-up, not IPVS
                    continue
                if mtype == 2 and len(msg) >= 36 and struct.unpack_from("<H", msg, 24)[0] == 0x10:
                    continue  # the ack of a family look-up
                lines.append(f"{direction} {msg.hex()}")
        name = dump.stem.split("-", 1)[1]
        (dst / f"{name}.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
