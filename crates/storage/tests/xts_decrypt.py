#!/usr/bin/env python3
"""Decrypt a keyward volume file independently of keyward, the way
`cryptsetup open --type plain -c aes-xts-plain64 -s 512 --sector-size 4096
--iv-large-sectors --offset 8` reads it, and print the SHA-256 of the plaintext.

usage: xts_decrypt.py VOLUME_FILE KEY_HEX [PLAINTEXT_OUT]

Only the volume size is taken from the header (u64 LE at byte 24); the data
starts at 8 x 512 bytes, sector n is AES-256-XTS with the 64-byte key and the
tweak n as a 16-byte little-endian integer (Python `cryptography`, i.e. OpenSSL).
"""
import hashlib
import struct
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SECTOR = 4096
OFFSET = 8 * 512


def main() -> None:
    path, key_hex = sys.argv[1], sys.argv[2]
    out = open(sys.argv[3], "wb") if len(sys.argv) > 3 else None
    key = bytes.fromhex(key_hex)
    assert len(key) == 64, "an aes-xts-plain64 -s 512 key is 64 bytes"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        header = f.read(OFFSET)
        (size,) = struct.unpack_from("<Q", header, 24)
        for n in range(size // SECTOR):
            sector = f.read(SECTOR)
            assert len(sector) == SECTOR, f"sector {n} is short"
            dec = Cipher(algorithms.AES(key), modes.XTS(n.to_bytes(16, "little"))).decryptor()
            plain = dec.update(sector) + dec.finalize()
            digest.update(plain)
            if out:
                out.write(plain)
    print(digest.hexdigest())


if __name__ == "__main__":
    main()
