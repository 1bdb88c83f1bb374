"""The official AWS Encryption SDK for Python (the library inside aws-encryption-cli)
with a raw AES-256 wrapping key: encrypts and decrypts messages for keyward's tests
without a KMS.

usage: esdk_raw.py encrypt|decrypt --suite 0478|0578 --frame N --context JSON < in > out
The wrapping key, namespace and name are fixed test values (see README.md).
"""

import argparse
import json
import sys

import aws_encryption_sdk
from aws_encryption_sdk.identifiers import (
    Algorithm,
    CommitmentPolicy,
    EncryptionKeyType,
    WrappingAlgorithm,
)
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKey, RawMasterKeyProvider

NAMESPACE = "keyward-vectors"
KEY_NAME = b"vector-key-1"
WRAPPING_KEY = bytes(range(32))
SUITES = {
    "0478": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
    "0578": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
}


class Provider(RawMasterKeyProvider):
    provider_id = NAMESPACE

    def _get_raw_key(self, key_id):
        return WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=WRAPPING_KEY,
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        )


def provider():
    p = Provider()
    p.add_master_key(KEY_NAME)
    return p


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["encrypt", "decrypt"])
    parser.add_argument("--suite", default="0478")
    parser.add_argument("--frame", type=int, default=4096)
    parser.add_argument("--context", default="{}")
    args = parser.parse_args()
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    data = sys.stdin.buffer.read()
    context = json.loads(args.context)
    if args.mode == "encrypt":
        out, _ = client.encrypt(
            source=data,
            key_provider=provider(),
            encryption_context=context,
            frame_length=args.frame,
            algorithm=SUITES[args.suite],
        )
    else:
        out, header = client.decrypt(source=data, key_provider=provider())
        for k, v in context.items():
            if header.encryption_context.get(k) != v:
                sys.exit("encryption context mismatch on %r" % k)
    sys.stdout.buffer.write(out)


if __name__ == "__main__":
    main()
