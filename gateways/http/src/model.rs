//! The JSON shapes of the REST API and WebSocket frames, and their conversions to and from the
//! core types.
//!
//! Invariants: bodies travel as UTF-8 text or base64 (`body_encoding`); answers pick text when
//! the body is valid UTF-8, unless the client asks for base64. Every schema here is listed in the
//! OpenAPI document (utoipa `ToSchema`), so the document and the answers cannot drift apart.
//! No I/O, no locks.
//!
//! One file per area: [`publish`], [`consume`], [`admin`], [`query`], [`users`]; every shape is re-exported
//! here, so callers name `crate::model::X`.

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
