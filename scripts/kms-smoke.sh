#!/usr/bin/env bash
# Drives a running `keyward kms serve` with the aws CLI, through the customer's key lifecycle:
# create key → encrypt/decrypt with context → rotate → old ciphertext decrypts → disable → each call
# fails with AWS's error → enable → schedule deletion → cancel; aliases and tags; and
# `aws cloudtrail lookup-events` shows the calls, failed ones included.
#
#   KEYWARD_KMS_ENDPOINT=http://127.0.0.1:4599 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
#     AWS_DEFAULT_REGION=us-east-1 scripts/kms-smoke.sh
#
# Exits non-zero, naming the step, at the first difference from what AWS KMS answers.
set -euo pipefail

endpoint="${KEYWARD_KMS_ENDPOINT:?set KEYWARD_KMS_ENDPOINT to the server, e.g. http://127.0.0.1:4599}"
command -v aws >/dev/null || { echo "kms-smoke: the aws CLI is not on PATH (scripts/test installs it into .venv)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

kms() { aws --endpoint-url "$endpoint" --output json kms "$@"; }
step() { printf 'kms-smoke: %s\n' "$*"; }
fail() { printf 'kms-smoke: FAILED: %s\n' "$*" >&2; exit 1; }

# expect_error CODE command...: the command must fail with AWS error CODE.
expect_error() {
    local code=$1; shift
    if "$@" >"$work/out" 2>"$work/err"; then
        fail "expected $code from: $* (it succeeded: $(cat "$work/out"))"
    fi
    grep -q "($code)" "$work/err" || fail "expected $code from: $*, got: $(cat "$work/err")"
}

step "create key with a tag"
kms create-key --description "kms-smoke key" --tags TagKey=team,TagValue=storage >"$work/key.json"
key_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["KeyMetadata"]["KeyId"])' <"$work/key.json")
key_arn=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["KeyMetadata"]["Arn"])' <"$work/key.json")
[[ $key_arn == arn:aws:kms:*:key/$key_id ]] || fail "unexpected key ARN $key_arn"

step "encrypt and decrypt with an encryption context"
printf 'customer secret' >"$work/plain"
kms encrypt --key-id "$key_id" --plaintext "fileb://$work/plain" --encryption-context purpose=smoke,cluster=c1 \
    --query CiphertextBlob --output text | base64 -d >"$work/ct-v1"
kms decrypt --ciphertext-blob "fileb://$work/ct-v1" --encryption-context purpose=smoke,cluster=c1 \
    --query Plaintext --output text | base64 -d >"$work/plain-back"
cmp -s "$work/plain" "$work/plain-back" || fail "decrypt did not return the plaintext"
expect_error InvalidCiphertextException kms decrypt --ciphertext-blob "fileb://$work/ct-v1" --encryption-context purpose=other,cluster=c1
expect_error InvalidCiphertextException kms decrypt --ciphertext-blob "fileb://$work/ct-v1"

step "rotate on demand; the old ciphertext still decrypts"
kms rotate-key-on-demand --key-id "$key_id" >/dev/null
rotations=$(kms list-key-rotations --key-id "$key_id" --query 'length(Rotations)' --output text)
[ "$rotations" -ge 1 ] || fail "list-key-rotations shows no rotation"
kms decrypt --ciphertext-blob "fileb://$work/ct-v1" --encryption-context purpose=smoke,cluster=c1 \
    --query Plaintext --output text | base64 -d >"$work/plain-back"
cmp -s "$work/plain" "$work/plain-back" || fail "old ciphertext does not decrypt after rotation"
kms encrypt --key-id "$key_id" --plaintext "fileb://$work/plain" --query CiphertextBlob --output text | base64 -d >"$work/ct-v2"
cmp -s "$work/ct-v1" "$work/ct-v2" && fail "two encryptions gave the same ciphertext"
kms enable-key-rotation --key-id "$key_id" --rotation-period-in-days 90
[ "$(kms get-key-rotation-status --key-id "$key_id" --query KeyRotationEnabled --output text)" = True ] \
    || fail "rotation not enabled"

step "disable: every cryptographic call fails with DisabledException"
kms disable-key --key-id "$key_id"
[ "$(kms describe-key --key-id "$key_id" --query KeyMetadata.KeyState --output text)" = Disabled ] || fail "key not Disabled"
expect_error DisabledException kms encrypt --key-id "$key_id" --plaintext "fileb://$work/plain"
expect_error DisabledException kms decrypt --ciphertext-blob "fileb://$work/ct-v1" --encryption-context purpose=smoke,cluster=c1
expect_error DisabledException kms generate-data-key --key-id "$key_id" --key-spec AES_256
expect_error DisabledException kms generate-data-key-without-plaintext --key-id "$key_id" --key-spec AES_256
kms enable-key --key-id "$key_id"
kms decrypt --ciphertext-blob "fileb://$work/ct-v1" --encryption-context purpose=smoke,cluster=c1 >/dev/null

step "aliases"
kms create-alias --alias-name alias/kms-smoke --target-key-id "$key_id"
expect_error AlreadyExistsException kms create-alias --alias-name alias/kms-smoke --target-key-id "$key_id"
kms generate-data-key --key-id alias/kms-smoke --key-spec AES_256 >/dev/null
alias_target=$(kms list-aliases --key-id "$key_id" --query 'Aliases[?AliasName==`alias/kms-smoke`].TargetKeyId' --output text)
[ "$alias_target" = "$key_id" ] || fail "list-aliases does not show alias/kms-smoke → $key_id"
kms create-key --description "second" --query KeyMetadata.KeyId --output text >"$work/key2"
kms update-alias --alias-name alias/kms-smoke --target-key-id "$(cat "$work/key2")"
[ "$(kms describe-key --key-id alias/kms-smoke --query KeyMetadata.KeyId --output text)" = "$(cat "$work/key2")" ] \
    || fail "update-alias did not move the alias"
kms delete-alias --alias-name alias/kms-smoke
expect_error NotFoundException kms describe-key --key-id alias/kms-smoke

step "tags"
kms tag-resource --key-id "$key_id" --tags TagKey=env,TagValue=smoke
tags=$(kms list-resource-tags --key-id "$key_id" --query 'Tags[].TagKey' --output text)
[[ $tags == *env* && $tags == *team* ]] || fail "list-resource-tags shows '$tags'"
kms untag-resource --key-id "$key_id" --tag-keys team
tags=$(kms list-resource-tags --key-id "$key_id" --query 'Tags[].TagKey' --output text)
[[ $tags != *team* ]] || fail "untag-resource left 'team'"

step "schedule deletion, refused while pending, cancel (back to Disabled)"
state=$(kms schedule-key-deletion --key-id "$key_id" --pending-window-in-days 7 --query KeyState --output text)
[ "$state" = PendingDeletion ] || fail "schedule-key-deletion answered state $state"
expect_error KMSInvalidStateException kms encrypt --key-id "$key_id" --plaintext "fileb://$work/plain"
expect_error KMSInvalidStateException kms decrypt --ciphertext-blob "fileb://$work/ct-v1" --encryption-context purpose=smoke,cluster=c1
kms cancel-key-deletion --key-id "$key_id" >/dev/null
[ "$(kms describe-key --key-id "$key_id" --query KeyMetadata.KeyState --output text)" = Disabled ] \
    || fail "cancel-key-deletion did not leave the key Disabled"
kms enable-key --key-id "$key_id"

step "bad input"
expect_error NotFoundException kms describe-key --key-id 11111111-2222-3333-4444-555555555555
expect_error ValidationException kms generate-random --number-of-bytes 2048

step "cloudtrail lookup-events shows the calls, failed ones included"
aws --endpoint-url "$endpoint" --output json cloudtrail lookup-events \
    --lookup-attributes AttributeKey=EventName,AttributeValue=Encrypt >"$work/events.json"
python3 - "$work/events.json" "$key_arn" <<'PY'
import json, sys
events = json.load(open(sys.argv[1]))["Events"]
records = [json.loads(e["CloudTrailEvent"]) for e in events]
assert records, "no Encrypt events"
assert all(r["eventName"] == "Encrypt" and r["eventSource"] == "kms.amazonaws.com" for r in records), records
codes = {r.get("errorCode") for r in records}
for code in ("DisabledException", "KMSInvalidStateException", None):
    assert code in codes, f"no Encrypt event with errorCode {code}: {codes}"
assert any(res.get("ARN") == sys.argv[2] for r in records for res in r.get("resources") or []), "no event names the key"
PY
failed=$(aws --endpoint-url "$endpoint" --output json cloudtrail lookup-events --max-results 50 \
    --query 'length(Events[?contains(CloudTrailEvent, `errorCode`)])' --output text)
[ "$failed" -ge 1 ] || fail "lookup-events shows no failed call"

step "ok"
