//! Reading JSON request bodies the way Kaizala did: keys case-insensitively (its own
//! samples write `Answers`, `Title`, `Message` and `actiontype`), with every problem
//! reported as a 400 that names the field.

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

/// Parses a request body as a JSON object.
pub fn object(bytes: &[u8]) -> ApiResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// A JSON object read with case-insensitive keys; `path` prefixes field names in errors.
#[derive(Clone, Copy)]
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
}

impl<'a> Fields<'a> {
    /// Wraps `map`, whose fields are reported as `path.field`.
    pub fn new(map: &'a Map<String, Value>, path: &'a str) -> Self {
        Self { map, path }
    }

    /// The full name of `key` for messages.
    pub fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of `key`, whatever its case; JSON `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    /// A required, non-empty string.
    pub fn string(&self, key: &str) -> ApiResult<&'a str> {
        match self.get(key) {
            None => Err(ApiError::bad_request(format!(
                "{}: missing",
                self.name(key)
            ))),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
            Some(Value::String(_)) => {
                Err(ApiError::bad_request(format!("{}: empty", self.name(key))))
            }
            Some(_) => Err(ApiError::bad_request(format!(
                "{}: must be a string",
                self.name(key)
            ))),
        }
    }

    /// An optional string.
    pub fn opt_string(&self, key: &str) -> ApiResult<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::bad_request(format!(
                "{}: must be a string",
                self.name(key)
            ))),
        }
    }

    /// An optional boolean; `"true"`/`"false"` strings are accepted, as Kaizala's
    /// own samples send them.
    pub fn opt_bool(&self, key: &str) -> ApiResult<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::bad_request(format!(
                "{}: must be a boolean",
                self.name(key)
            ))),
        }
    }

    /// An optional number.
    pub fn opt_number(&self, key: &str) -> ApiResult<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(ApiError::bad_request(format!(
                "{}: must be a number",
                self.name(key)
            ))),
        }
    }

    /// An optional array of strings.
    pub fn opt_strings(&self, key: &str) -> ApiResult<Option<Vec<String>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(ApiError::bad_request(format!(
                        "{}[{i}]: must be a string",
                        self.name(key)
                    ))),
                })
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            Some(_) => Err(ApiError::bad_request(format!(
                "{}: must be an array",
                self.name(key)
            ))),
        }
    }

    /// An optional array.
    pub fn opt_array(&self, key: &str) -> ApiResult<Option<&'a Vec<Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(ApiError::bad_request(format!(
                "{}: must be an array",
                self.name(key)
            ))),
        }
    }

    /// A required object.
    pub fn object(&self, key: &str) -> ApiResult<&'a Map<String, Value>> {
        match self.get(key) {
            None => Err(ApiError::bad_request(format!(
                "{}: missing",
                self.name(key)
            ))),
            Some(Value::Object(map)) => Ok(map),
            Some(_) => Err(ApiError::bad_request(format!(
                "{}: must be an object",
                self.name(key)
            ))),
        }
    }
}

/// True when `phone` looks like a phone number with country code.
pub fn is_phone(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or("");
    (6..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
}

/// Checks a list of phone numbers, naming the first bad one.
pub fn phones(field: &str, phones: &[String]) -> ApiResult<()> {
    match phones.iter().position(|p| !is_phone(p)) {
        Some(i) => Err(ApiError::bad_request(format!(
            "{field}[{i}]: {:?} is not a phone number with country code (+15550001)",
            phones[i]
        ))),
        None => Ok(()),
    }
}
