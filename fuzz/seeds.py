#!/usr/bin/env python3
"""Writes fuzz seeds from real captures: every frame podswitch's demo received and sent.

Usage: fuzz/seeds.py DIR_WITH_PCAPS   (for example target/podswitch-demo after `podswitchd --demo`)
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


def main():
    src = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
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
