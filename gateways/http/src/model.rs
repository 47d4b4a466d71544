//! The JSON shapes of the REST API and WebSocket frames, and their conversions to and from the
//! core types.
//!
//! Invariants: bodies travel as UTF-8 text or base64 (`body_encoding`); answers pick text when
//! the body is valid UTF-8, unless the client asks for base64. Every schema here is listed in the
//! OpenAPI document (utoipa `ToSchema`), so the document and the answers cannot drift apart.
//! No I/O, no locks.
//!
//! Enum values are read in any case (`transaction`, `Transaction`, `TRANSACTION`; `-` for `_`)
//! and written in one spelling, the one the schema lists ([`any_case`]).
//!
//! One file per area: [`publish`], [`consume`], [`admin`], [`query`], [`users`]; every shape is re-exported
//! here, so callers name `crate::model::X`.

/// `Deserialize` for a unit enum that accepts its names in any ASCII case (and `-` for `_`);
/// `Serialize` and the schema keep the canonical spelling given here.
macro_rules! any_case {
    ($t:ident { $($name:literal => $v:ident),+ $(,)? }) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let given = <String as serde::Deserialize>::deserialize(d)?;
                let norm = given.trim().replace('-', "_");
                $(
                    if norm.eq_ignore_ascii_case($name) {
                        return Ok(Self::$v);
                    }
                )+
                Err(serde::de::Error::custom(format!(
                    "unknown value `{}`, expected one of {} (any case)",
                    given.chars().take(64).collect::<String>(),
                    [$($name),+].join(", ")
                )))
            }
        }
    };
}
pub(crate) use any_case;

mod admin;
mod consume;
mod publish;
mod query;
mod users;

pub use self::admin::*;
pub use self::consume::*;
pub use self::publish::*;
pub use self::query::*;
pub use self::users::*;
