//! A parsed request body with typed accessors that answer AWS's errors: wrong JSON types are
//! `SerializationException`, violated constraints `ValidationException` in AWS's wording.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::{ApiError, Code};

pub(crate) struct Req {
    map: Map<String, Value>,
}

/// AWS's member names in validation messages are lowerCamelCase (`keyId`).
pub(crate) fn member(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn type_error(name: &str, expected: &str) -> ApiError {
    ApiError::serialization(format!(
        "Unexpected JSON type for member '{}': expected {expected}",
        member(name)
    ))
}

impl Req {
    pub(crate) fn parse(body: &[u8]) -> Result<Req, ApiError> {
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Req { map: Map::new() });
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Req { map }),
            Ok(_) => Err(ApiError::serialization(
                "Start of structure or map found where not expected.",
            )),
            Err(_) => Err(ApiError::serialization(
                "The request body is not valid JSON.",
            )),
        }
    }

    pub(crate) fn map(&self) -> &Map<String, Value> {
        &self.map
    }

    fn get(&self, name: &str) -> Option<&Value> {
        match self.map.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub(crate) fn str_opt(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(type_error(name, "a string")),
        }
    }

    /// A string with AWS's length constraints.
    pub(crate) fn str_len(
        &self,
        name: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<&str>, ApiError> {
        let s = self.str_opt(name)?;
        if let Some(s) = s {
            let n = s.chars().count();
            if n < min {
                return Err(ApiError::too_short(s, &member(name), min));
            }
            if n > max {
                return Err(ApiError::too_long(s, &member(name), max));
            }
        }
        Ok(s)
    }

    pub(crate) fn str_len_req(&self, name: &str, min: usize, max: usize) -> Result<&str, ApiError> {
        self.str_len(name, min, max)?
            .ok_or_else(|| ApiError::null(&member(name)))
    }

    /// `KeyId`-like members: 1–2048 characters.
    pub(crate) fn key_id(&self, name: &str) -> Result<&str, ApiError> {
        self.str_len_req(name, 1, 2048)
    }

    pub(crate) fn key_id_opt(&self, name: &str) -> Result<Option<&str>, ApiError> {
        self.str_len(name, 1, 2048)
    }

    pub(crate) fn int_opt(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| type_error(name, "an integer")),
            Some(_) => Err(type_error(name, "an integer")),
        }
    }

    /// An integer within `min..=max`.
    pub(crate) fn int_range(
        &self,
        name: &str,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, ApiError> {
        let v = self.int_opt(name)?;
        if let Some(v) = v {
            if v < min {
                return Err(ApiError::validation(
                    &v.to_string(),
                    &member(name),
                    &format!("Member must have value greater than or equal to {min}"),
                ));
            }
            if v > max {
                return Err(ApiError::validation(
                    &v.to_string(),
                    &member(name),
                    &format!("Member must have value less than or equal to {max}"),
                ));
            }
        }
        Ok(v)
    }

    pub(crate) fn bool_opt(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(type_error(name, "a boolean")),
        }
    }

    /// A base64 blob with length limits on the decoded bytes. The value is never echoed: it may be
    /// plaintext.
    pub(crate) fn blob(
        &self,
        name: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ApiError> {
        let s = match self.get(name) {
            None => return Ok(None),
            Some(Value::String(s)) => s,
            Some(_) => return Err(type_error(name, "a base64 string")),
        };
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| {
                    ApiError::serialization(format!(
                        "Member '{}' is not valid base64.",
                        member(name)
                    ))
                })?,
        );
        let constraint = if bytes.len() < min {
            Some(format!(
                "Member must have length greater than or equal to {min}"
            ))
        } else if bytes.len() > max {
            Some(format!(
                "Member must have length less than or equal to {max}"
            ))
        } else {
            None
        };
        if let Some(c) = constraint {
            return Err(ApiError::new(
                Code::ValidationException,
                format!(
                    "1 validation error detected: Value at '{}' failed to satisfy constraint: {c}",
                    member(name)
                ),
            ));
        }
        Ok(Some(bytes))
    }

    pub(crate) fn str_map(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    match v {
                        Value::String(s) => {
                            out.insert(k.clone(), s.clone());
                        }
                        _ => return Err(type_error(name, "a map of strings")),
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(type_error(name, "a map of strings")),
        }
    }

    /// An encryption context (absent = empty).
    pub(crate) fn context(&self, name: &str) -> Result<BTreeMap<String, String>, ApiError> {
        let ctx = self.str_map(name)?.unwrap_or_default();
        for (k, v) in &ctx {
            if k.is_empty() || k.len() > 8192 || v.len() > 8192 {
                return Err(ApiError::new(
                    Code::ValidationException,
                    format!("1 validation error detected: Value at '{}' failed to satisfy constraint: Map keys must have length between 1 and 8192", member(name)),
                ));
            }
        }
        Ok(ctx)
    }

    pub(crate) fn list(&self, name: &str) -> Result<Option<&Vec<Value>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(type_error(name, "a list")),
        }
    }

    pub(crate) fn str_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.list(name)? {
            None => Ok(None),
            Some(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(type_error(name, "a list of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        }
    }

    /// `GrantTokens`: at most 10 tokens of 1–8192 characters, each in the form we issue.
    pub(crate) fn grant_tokens(&self) -> Result<Vec<String>, ApiError> {
        let tokens = self.str_list("GrantTokens")?.unwrap_or_default();
        if tokens.len() > 10 {
            return Err(ApiError::validation(
                &format!("{tokens:?}"),
                "grantTokens",
                "Member must have length less than or equal to 10",
            ));
        }
        for t in &tokens {
            if t.is_empty() || t.len() > 8192 {
                return Err(ApiError::validation(
                    t,
                    "grantTokens",
                    "Member must have length between 1 and 8192",
                ));
            }
            if !crate::ops::grants::token_is_well_formed(t) {
                return Err(ApiError::new(
                    Code::InvalidGrantTokenException,
                    "The grant token is not valid.",
                ));
            }
        }
        Ok(tokens)
    }

    /// An enum member: the value must be one of `allowed`.
    pub(crate) fn enum_opt(&self, name: &str, allowed: &[&str]) -> Result<Option<&str>, ApiError> {
        let v = self.str_opt(name)?;
        if let Some(v) = v {
            if !allowed.contains(&v) {
                return Err(ApiError::validation(
                    v,
                    &member(name),
                    &format!(
                        "Member must satisfy enum value set: [{}]",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn types_and_constraints() {
        let r =
            Req::parse(br#"{"KeyId": 5, "Limit": "x", "NumberOfBytes": 2000, "Plaintext": "!!"}"#)
                .unwrap();
        assert_eq!(
            r.key_id("KeyId").err().unwrap().code,
            "SerializationException"
        );
        assert_eq!(
            r.int_opt("Limit").err().unwrap().code,
            "SerializationException"
        );
        let e = r.int_range("NumberOfBytes", 1, 1024).err().unwrap();
        assert_eq!(e.code, "ValidationException");
        assert!(
            e.message.contains("Value '2000' at 'numberOfBytes'"),
            "{}",
            e.message
        );
        assert_eq!(
            r.blob("Plaintext", 1, 4096).err().unwrap().code,
            "SerializationException"
        );
        let e = r.key_id("Missing").err().unwrap();
        assert!(e.message.contains("Value null at 'missing'"));
        assert_eq!(
            Req::parse(b"[1]").err().unwrap().code,
            "SerializationException"
        );
        assert_eq!(
            Req::parse(b"{").err().unwrap().code,
            "SerializationException"
        );
        let long = format!(r#"{{"KeyId": "{}"}}"#, "a".repeat(2049));
        let e = Req::parse(long.as_bytes())
            .unwrap()
            .key_id("KeyId")
            .err()
            .unwrap();
        assert!(e
            .message
            .ends_with("Member must have length less than or equal to 2048"));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(r) = Req::parse(&body) {
                let _ = r.key_id("KeyId");
                let _ = r.context("EncryptionContext");
                let _ = r.blob("CiphertextBlob", 1, 6144);
                let _ = r.grant_tokens();
            }
        }

        #[test]
        fn json_shaped_bodies_never_panic(k in "[A-Za-z]{1,12}", v in any::<i64>(), s in ".{0,40}") {
            let body = serde_json::json!({ k.clone(): v, "KeyId": s.clone(), "EncryptionContext": {s.clone(): v} });
            let r = Req::parse(body.to_string().as_bytes()).unwrap();
            let _ = r.context("EncryptionContext");
            let _ = r.int_range(&k, 1, 1024);
            let _ = r.key_id("KeyId");
        }
    }
}
