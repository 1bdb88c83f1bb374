#!/usr/bin/env python3
"""Drives a running `keyward kms serve` with boto3: the key lifecycle, AWS's errors by name, aliases,
tags, and CloudTrail LookupEvents including failed calls.

    KEYWARD_KMS_ENDPOINT=http://127.0.0.1:4599 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
      AWS_DEFAULT_REGION=us-east-1 python scripts/kms-smoke.py
"""
import json
import os
import sys

try:
    import boto3
    from botocore.exceptions import ClientError
except ImportError:
    sys.exit("kms-smoke.py: boto3 is not installed (scripts/test installs it into .venv)")

endpoint = os.environ["KEYWARD_KMS_ENDPOINT"]
region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
kms = boto3.client("kms", endpoint_url=endpoint, region_name=region)
trail = boto3.client("cloudtrail", endpoint_url=endpoint, region_name=region)


def step(text):
    print(f"kms-smoke.py: {text}", flush=True)


def expect_error(code, status, call, **kwargs):
    try:
        call(**kwargs)
    except ClientError as error:
        got = error.response["Error"]["Code"]
        got_status = error.response["ResponseMetadata"]["HTTPStatusCode"]
        assert got == code, f"expected {code}, got {got}: {error}"
        assert got_status == status, f"expected HTTP {status} for {code}, got {got_status}"
        assert error.response["ResponseMetadata"].get("RequestId"), "error without a request id"
        return error
    raise AssertionError(f"expected {code} from {call.__name__}({kwargs}), it succeeded")


step("create key")
key = kms.create_key(Description="boto3 smoke", Tags=[{"TagKey": "team", "TagValue": "storage"}])["KeyMetadata"]
key_id, key_arn = key["KeyId"], key["Arn"]
assert key["KeyState"] == "Enabled" and key["KeySpec"] == "SYMMETRIC_DEFAULT", key
assert key["KeyUsage"] == "ENCRYPT_DECRYPT" and key["Origin"] == "AWS_KMS", key
assert any(k["KeyId"] == key_id for k in kms.list_keys()["Keys"])

step("data key with an encryption context")
context = {"cluster": "c1", "class": "documents"}
data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)
assert len(data_key["Plaintext"]) == 32 and data_key["KeyId"] == key_arn, data_key["KeyId"]
back = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext=context)
assert back["Plaintext"] == data_key["Plaintext"] and back["KeyId"] == key_arn
expect_error("InvalidCiphertextException", 400, kms.decrypt, CiphertextBlob=data_key["CiphertextBlob"],
             EncryptionContext={"cluster": "c2", "class": "documents"})

step("rotate; the old data key still decrypts")
kms.rotate_key_on_demand(KeyId=key_id)
assert kms.list_key_rotations(KeyId=key_id)["Rotations"], "no rotation listed"
assert kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext=context)["Plaintext"] == data_key["Plaintext"]

step("disable → DisabledException; enable")
kms.disable_key(KeyId=key_id)
expect_error("DisabledException", 400, kms.generate_data_key, KeyId=key_id, KeySpec="AES_256")
expect_error("DisabledException", 400, kms.decrypt, CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext=context)
expect_error("DisabledException", 400, kms.encrypt, KeyId=key_id, Plaintext=b"x")
kms.enable_key(KeyId=key_id)

step("aliases and tags")
kms.create_alias(AliasName="alias/boto3-smoke", TargetKeyId=key_id)
assert kms.encrypt(KeyId="alias/boto3-smoke", Plaintext=b"x")["KeyId"] == key_arn
alias_arn = key_arn.split(":key/")[0] + ":alias/boto3-smoke"
assert kms.describe_key(KeyId=alias_arn)["KeyMetadata"]["KeyId"] == key_id
kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "env", "TagValue": "smoke"}])
tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}
assert tags == {"team": "storage", "env": "smoke"}, tags

step("schedule deletion → KMSInvalidStateException; cancel → Disabled")
assert kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)["KeyState"] == "PendingDeletion"
expect_error("KMSInvalidStateException", 400, kms.generate_data_key, KeyId=key_id, KeySpec="AES_256")
kms.cancel_key_deletion(KeyId=key_id)
assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
expect_error("NotFoundException", 400, kms.describe_key, KeyId="alias/does-not-exist")

step("lookup-events: failed calls included, paged")
events, token = [], None
while True:
    page = trail.lookup_events(MaxResults=50, **({"NextToken": token} if token else {}),
                               LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": key_arn}])
    events += page["Events"]
    token = page.get("NextToken")
    if not token:
        break
records = [json.loads(e["CloudTrailEvent"]) for e in events]
names = {r["eventName"] for r in records}
for name in ("CreateKey", "GenerateDataKey", "Decrypt", "DisableKey", "ScheduleKeyDeletion"):
    assert name in names, f"{name} missing from the trail: {names}"
errors = {(r["eventName"], r.get("errorCode")) for r in records}
assert ("GenerateDataKey", "DisabledException") in errors, errors
assert ("GenerateDataKey", "KMSInvalidStateException") in errors, errors
for r in records:
    assert r["eventSource"] == "kms.amazonaws.com" and r["awsRegion"] == region, r
    assert "Plaintext" not in json.dumps(r.get("requestParameters") or {}), "plaintext in the trail"
step("ok")
