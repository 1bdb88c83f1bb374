//! The cryptographic operations. Plaintext lives only in zeroizing buffers and the response.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{dry_run, require_usable, resolve, Cx, Req};
use crate::authz::authorize;
use crate::ciphertext;
use crate::engine::State;
use crate::error::{ApiError, Code};
use crate::keys::KeyRecord;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const ALGORITHMS: &[&str] = &[
    "SYMMETRIC_DEFAULT",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "SM2PKE",
];

/// An `EncryptionAlgorithm`-like member: a symmetric key only does SYMMETRIC_DEFAULT.
fn algorithm(req: &Req, name: &str, key: Option<&KeyRecord>) -> Result<(), ApiError> {
    if let Some(a) = req.enum_opt(name, ALGORITHMS)? {
        if a != "SYMMETRIC_DEFAULT" {
            let arn = key.map(|k| k.meta.arn.as_str()).unwrap_or("the key");
            return Err(ApiError::new(
                Code::InvalidKeyUsageException,
                format!("{arn} key usage is ENCRYPT_DECRYPT which is not valid for {a}."),
            ));
        }
    }
    Ok(())
}

fn seal(key: &KeyRecord, plaintext: &[u8], context: &BTreeMap<String, String>) -> Vec<u8> {
    let m = key.current();
    ciphertext::seal(&key.uuid, m.version, &m.bytes, plaintext, context)
}

/// Finds, authorizes and opens a ciphertext blob. Returns the key id and the plaintext.
fn open_blob(
    cx: &mut Cx<'_>,
    st: &State,
    blob: &[u8],
    key_id: Option<&str>,
    context: &BTreeMap<String, String>,
    tokens: &[String],
    action: &str,
) -> Result<(String, Zeroizing<Vec<u8>>), ApiError> {
    let parsed = ciphertext::parse(blob).ok_or_else(ApiError::invalid_ciphertext)?;
    let blob_key = parsed.key_id.hyphenated().to_string();
    if let Some(k) = key_id {
        let named = resolve(cx, st, k, true)?;
        if named != blob_key {
            return Err(ApiError::new(
                Code::IncorrectKeyException,
                "The key ID in the request does not identify a CMK that can perform this operation.",
            ));
        }
    }
    let key = match st.keys.get(&blob_key) {
        Some(k) if k.meta.region == cx.caller.region => k,
        // The blob names a key that is gone (deleted) or lives in another region.
        Some(_) => return Err(ApiError::invalid_ciphertext()),
        None => {
            return Err(ApiError::not_found(format!(
                "Key '{}' does not exist",
                super::key_arn(&cx.caller.region, &cx.caller.identity.account_id, &blob_key)
            )))
        }
    };
    cx.touch(key);
    authorize(cx, st, action, key, Some(context), tokens)?;
    require_usable(key)?;
    let material = key
        .material(parsed.material_version)
        .ok_or_else(ApiError::invalid_ciphertext)?;
    let plaintext = ciphertext::open(&parsed, &material.bytes, context)
        .ok_or_else(ApiError::invalid_ciphertext)?;
    Ok((blob_key, plaintext))
}

pub(crate) fn encrypt(cx: &mut Cx<'_>, st: &State, req: &Req) -> Result<Value, ApiError> {
    let key_id = req.key_id("KeyId")?;
    let plaintext = req
        .blob("Plaintext", 1, 4096)?
        .ok_or_else(|| ApiError::null("plaintext"))?;
    let context = req.context("EncryptionContext")?;
    let tokens = req.grant_tokens()?;
    let id = resolve(cx, st, key_id, true)?;
    let key = &st.keys[&id];
    algorithm(req, "EncryptionAlgorithm", Some(key))?;
    authorize(cx, st, "Encrypt", key, Some(&context), &tokens)?;
    require_usable(key)?;
    dry_run(req)?;
    let blob = seal(key, &plaintext, &context);
    Ok(json!({
        "CiphertextBlob": b64(&blob),
        "KeyId": key.meta.arn,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

pub(crate) fn decrypt(cx: &mut Cx<'_>, st: &State, req: &Req) -> Result<Value, ApiError> {
    let blob = req
        .blob("CiphertextBlob", 1, 6144)?
        .ok_or_else(|| ApiError::null("ciphertextBlob"))?;
    let key_id = req.key_id_opt("KeyId")?;
    let context = req.context("EncryptionContext")?;
    let tokens = req.grant_tokens()?;
    algorithm(req, "EncryptionAlgorithm", None)?;
    if req.map().contains_key("Recipient") {
        return Err(ApiError::new(
            Code::UnsupportedOperationException,
            "Recipient is not supported.",
        ));
    }
    let (id, plaintext) = open_blob(cx, st, &blob, key_id, &context, &tokens, "Decrypt")?;
    dry_run(req)?;
    Ok(json!({
        "KeyId": st.keys[&id].meta.arn,
        "Plaintext": b64(&plaintext),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

pub(crate) fn re_encrypt(cx: &mut Cx<'_>, st: &State, req: &Req) -> Result<Value, ApiError> {
    let blob = req
        .blob("CiphertextBlob", 1, 6144)?
        .ok_or_else(|| ApiError::null("ciphertextBlob"))?;
    let source_context = req.context("SourceEncryptionContext")?;
    let source_key = req.key_id_opt("SourceKeyId")?;
    let destination = req.key_id("DestinationKeyId")?;
    let destination_context = req.context("DestinationEncryptionContext")?;
    let tokens = req.grant_tokens()?;
    algorithm(req, "SourceEncryptionAlgorithm", None)?;
    algorithm(req, "DestinationEncryptionAlgorithm", None)?;
    let (source_id, plaintext) = open_blob(
        cx,
        st,
        &blob,
        source_key,
        &source_context,
        &tokens,
        "ReEncryptFrom",
    )?;
    let dest_id = resolve(cx, st, destination, true)?;
    let dest = &st.keys[&dest_id];
    authorize(
        cx,
        st,
        "ReEncryptTo",
        dest,
        Some(&destination_context),
        &tokens,
    )?;
    require_usable(dest)?;
    dry_run(req)?;
    let out = seal(dest, &plaintext, &destination_context);
    Ok(json!({
        "CiphertextBlob": b64(&out),
        "SourceKeyId": st.keys[&source_id].meta.arn,
        "KeyId": dest.meta.arn,
        "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

pub(crate) fn generate_data_key(
    cx: &mut Cx<'_>,
    st: &State,
    req: &Req,
    with_plaintext: bool,
) -> Result<Value, ApiError> {
    let key_id = req.key_id("KeyId")?;
    let context = req.context("EncryptionContext")?;
    let spec = req.enum_opt("KeySpec", &["AES_256", "AES_128"])?;
    let count = req.int_range("NumberOfBytes", 1, 1024)?;
    let tokens = req.grant_tokens()?;
    let len = match (spec, count) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::new(
                Code::ValidationException,
                "Please specify either number of bytes or key spec.",
            ))
        }
        (Some("AES_128"), None) => 16,
        (Some(_), None) => 32,
        (None, Some(n)) => n as usize,
    };
    if with_plaintext && req.map().contains_key("Recipient") {
        return Err(ApiError::new(
            Code::UnsupportedOperationException,
            "Recipient is not supported.",
        ));
    }
    let id = resolve(cx, st, key_id, true)?;
    let key = &st.keys[&id];
    let action = if with_plaintext {
        "GenerateDataKey"
    } else {
        "GenerateDataKeyWithoutPlaintext"
    };
    authorize(cx, st, action, key, Some(&context), &tokens)?;
    require_usable(key)?;
    dry_run(req)?;
    let mut data_key = Zeroizing::new(vec![0u8; len]);
    aws_lc_rs::rand::fill(&mut data_key).map_err(|_| ApiError::internal())?;
    let blob = seal(key, &data_key, &context);
    let mut out = json!({ "CiphertextBlob": b64(&blob), "KeyId": key.meta.arn });
    if with_plaintext {
        out["Plaintext"] = json!(b64(&data_key));
    }
    Ok(out)
}

pub(crate) fn generate_random(cx: &mut Cx<'_>, _st: &State, req: &Req) -> Result<Value, ApiError> {
    let n = req.int_range("NumberOfBytes", 1, 1024)?.ok_or_else(|| {
        ApiError::new(Code::ValidationException, "Please specify number of bytes.")
    })?;
    if req.str_opt("CustomKeyStoreId")?.is_some() || req.map().contains_key("Recipient") {
        return Err(ApiError::new(
            Code::UnsupportedOperationException,
            "CustomKeyStoreId and Recipient are not supported.",
        ));
    }
    crate::authz::authorize_account(cx, "GenerateRandom", "*")?;
    let mut bytes = Zeroizing::new(vec![0u8; n as usize]);
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ApiError::internal())?;
    Ok(json!({ "Plaintext": b64(&bytes) }))
}
