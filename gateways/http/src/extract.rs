//! Request extractors that fail with problem+json: JSON bodies (media type, size limit, syntax,
//! an object at every level where the API takes one), query strings and path parameters.
//!
//! Invariants: a body is read at most `http.max_body_bytes` bytes (a larger `Content-Length` is
//! refused before reading); nothing is handed to a handler before it parsed completely, so a
//! rejected request never reaches the broker. No state beyond [`AppState`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body (`Content-Type: application/json`).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// The media type of a request, lower-cased without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

/// Whether a media type is JSON (`application/json` or `application/*+json`).
pub fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Reads a whole body within the limit.
///
/// # Errors
/// `413 payload_too_large`.
pub async fn read_body(req: Request, limit: usize) -> Result<(Parts, Bytes), ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    Ok((parts, bytes))
}

/// Parses a JSON object body, answering `400 invalid_json` with serde's message.
///
/// Every request body of the API is an object: any other JSON value is refused here, before
/// serde sees it (serde would read a struct from an array, field by field: `[null, null]`
/// would pass for `{}`). Nested objects are held to the same rule by [`object`].
///
/// # Errors
/// `400 invalid_json`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let invalid = |e: &dyn std::fmt::Display| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("invalid JSON body: {e}"),
        )
    };
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| invalid(&e))?;
    integral(&mut value);
    if !value.is_object() {
        return Err(invalid(&format_args!(
            "expected a JSON object, got {}",
            json_type(&value)
        )));
    }
    T::deserialize(value).map_err(|e| invalid(&e))
}

/// Writes numbers with a zero fraction (`272.0`) as integers: JSON Schema counts them as
/// integers, and so does the document; serde would refuse them for an integer field. (No
/// request field is a float.)
fn integral(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            let Some(f) = n.as_f64() else { return };
            if f.fract() != 0.0 {
                return;
            }
            // In range of u64 / i64: exactly representable as f64 when integral.
            // Strictly inside: a literal just past either end rounds to the end itself.
            if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                *v = Value::from(f as u64);
            } else if f > -9_223_372_036_854_775_808.0 && f < 0.0 {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral),
        Value::Object(o) => o.values_mut().for_each(integral),
        _ => {}
    }
}

/// The JSON type of a value, as a problem detail names it.
fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `deserialize_with` helpers that hold nested request objects to the rule of [`parse_json`]:
/// an object, never an array read field by field.
pub mod object {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    fn one<T: DeserializeOwned, E: serde::de::Error>(v: Value) -> Result<T, E> {
        if !v.is_object() {
            return Err(E::custom(format_args!(
                "expected an object, got {}",
                super::json_type(&v)
            )));
        }
        T::deserialize(v).map_err(E::custom)
    }

    /// One nested object.
    pub fn required<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<T, D::Error> {
        one(Value::deserialize(d)?)
    }

    /// An optional nested object (`null` or absent is `None`).
    pub fn optional<'de, D: Deserializer<'de>, T: DeserializeOwned>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            v => one(v).map(Some),
        }
    }

    /// An array of objects.
    pub fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
        Vec::<Value>::deserialize(d)?.into_iter().map(one).collect()
    }

    /// A map of string keys to objects.
    pub fn map<'de, D: Deserializer<'de>, T: DeserializeOwned>(
        d: D,
    ) -> Result<std::collections::BTreeMap<String, T>, D::Error> {
        std::collections::BTreeMap::<String, Value>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| one(v).map(|t| (k, t)))
            .collect()
    }
}

/// `415 unsupported_media_type`.
pub fn unsupported(expected: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("expected Content-Type {expected}"),
    )
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !media_type(req.headers()).is_some_and(|m| is_json(&m)) {
            return Err(unsupported("application/json"));
        }
        let (_, bytes) = read_body(req, state.config.max_body_bytes).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A query string, answering `400 invalid_query` when it does not parse.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
    }
}

/// Path parameters, answering `400 invalid_path` when they do not parse.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", e.body_text()))
    }
}
