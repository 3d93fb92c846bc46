#!/usr/bin/env python3
"""Writes fuzz seeds from real captures: every frame podswitch's demo received and sent; and
synthetic seeds for what the demo does not send: IP fragments (plain and inside VXLAN, for one
and for two workers) and a 70,000-byte frame, in the pipeline target's long-length format
(mode bit 2: each frame is [port, 3-byte little-endian length, bytes]).

Usage: fuzz/seeds.py DIR_WITH_PCAPS   (for example target/podswitch-demo after `podswitchd --demo`)
       fuzz/seeds.py --synthetic      (the synthetic seeds only; they are committed)
"""
import os
import struct
import sys

PORTS = {"uplink": 0, "pod-a": 1, "pod-b": 2, "pod-c": 3, "host": 4}


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        yield data[off:off + incl]
        off += incl


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def ip4(s):
    return bytes(int(x) for x in s.split("."))


def eth(dst, src, payload, ethertype=0x0800):
    return mac(dst) + mac(src) + struct.pack("!H", ethertype) + payload


def ipv4(src, dst, proto, payload, ident=0x1234, flags_frag=0):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags_frag, 64, proto, 0, ip4(src), ip4(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def fragments(src, dst, datagram_len, ident):
    """Two IPv4 fragments of one UDP datagram (checksum 0: none, allowed over IPv4)."""
    data = bytes(i & 0xFF for i in range(datagram_len - 8))
    udp = struct.pack("!HHHH", 40000, 9, datagram_len, 0) + data
    first, rest = udp[:1480], udp[1480:]
    return [ipv4(src, dst, 17, first, ident, 0x2000), ipv4(src, dst, 17, rest, ident, 1480 // 8)]


def vxlan(inner):
    """The testbed's node-2 sending `inner` to this node through VXLAN (VNI 1)."""
    udp = struct.pack("!HHHH", 49152, 4789, 8 + 8 + len(inner), 0) + struct.pack("!II", 0x08000000, 1 << 8) + inner
    return eth("02:00:00:00:01:10", "02:00:00:00:01:11", ipv4("192.168.50.11", "192.168.50.10", 17, udp))


def long_format(mode, frames):
    out = bytes([mode])
    for port, fr in frames:
        out += bytes([port]) + struct.pack("<I", len(fr))[:3] + fr
    return out


def synthetic(here):
    router, pod_a = "02:00:00:00:00:01", "02:00:00:0a:00:02"
    plain = [(1, eth(router, pod_a, f)) for f in fragments("10.244.1.2", "10.244.1.3", 2008, 0x4242)]
    tunnel_inner = [eth("02:00:00:00:03:10", "02:00:00:00:03:11", f) for f in fragments("10.244.2.5", "10.244.1.3", 2008, 0x4343)]
    tunnelled = [(0, vxlan(f)) for f in tunnel_inner]
    huge = eth(router, pod_a, ipv4("10.244.1.2", "10.244.1.3", 17, struct.pack("!HHHH", 1, 9, 65507, 0)))
    huge += bytes(70000 - len(huge))
    seeds = {
        "pipeline": {
            "synthetic-fragments": long_format(4, plain),
            "synthetic-fragments-reversed": long_format(4, plain[::-1]),
            "synthetic-fragments-two-workers": long_format(6, plain),
            "synthetic-fragments-vxlan": long_format(4, tunnelled),
            "synthetic-fragments-vxlan-reject": long_format(5, tunnelled + plain),
            "synthetic-frame-70000": long_format(4, [(1, huge)]),
        },
        "parse_frame": {
            "synthetic-fragment-first": plain[0][1],
            "synthetic-fragment-later": plain[1][1],
            "synthetic-vxlan-fragment": tunnelled[0][1],
            "synthetic-frame-70000": huge,
        },
    }
    for target, blobs in seeds.items():
        d = os.path.join(here, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, blob in blobs.items():
            with open(os.path.join(d, name), "wb") as out:
                out.write(blob)
    print(f"{sum(len(b) for b in seeds.values())} synthetic seeds written")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    synthetic(here)
    if sys.argv[1:] == ["--synthetic"]:
        return
    src = sys.argv[1]
    n = 0
    for name in sorted(os.listdir(src)):
        if not name.endswith(".pcap"):
            continue
        port = PORTS.get(name.split(".")[0], 0)
        for i, fr in enumerate(frames(os.path.join(src, name))):
            tag = f"{name.replace('.', '-')}-{i}"
            for target, blob in (
                ("parse_frame", fr),
                ("pipeline", bytes([port, len(fr) // 8]) + fr[: (len(fr) // 8) * 8 + (len(fr) // 8 & 7)]),
            ):
                d = os.path.join(here, "corpus", target)
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, tag), "wb") as out:
                    out.write(blob)
            n += 1
        d = os.path.join(here, "corpus", "pcap_reader")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(src, name), "rb") as f, open(os.path.join(d, name), "wb") as out:
            out.write(f.read())
    d = os.path.join(here, "corpus", "config")
    os.makedirs(d, exist_ok=True)
    root = os.path.dirname(here)
    for sub in ("configs", "tests/bad-configs"):
        for name in sorted(os.listdir(os.path.join(root, sub))):
            if name.endswith(".toml"):
                with open(os.path.join(root, sub, name), "rb") as f, open(os.path.join(d, name), "wb") as out:
                    out.write(f.read())
    print(f"{n} frames written as seeds")


if __name__ == "__main__":
    main()
