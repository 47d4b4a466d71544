//! Bounds on what decoding a `MessagingService` request may allocate, checked on the protobuf
//! wire bytes before prost decodes them (issue 14, a fuzzing finding): prost allocates one
//! element per entry of a repeated field, and an entry can be two bytes on the wire while its
//! decoded form is hundreds (a `pb::Message` is ~550 bytes), so 2 MiB of empty messages
//! decoded to ~580 MB.
//!
//! Owns: the schema of the requests' repeated fields (only the fields on a path to a repeated
//! or map field; everything else is skipped like unknown fields), [`DecodeLimits`] and
//! [`check`]. The tower wrapper that runs the check on every request frame of the service is
//! `guard.rs` ([`Guarded`]). Must not decode a request or touch the service: it only reads
//! bytes, allocates nothing per entry, and answers a `tonic::Status`.
//!
//! Rules (all per request message, checked while walking, so the walk stops at the first
//! excess):
//! - counts: `SendMessageRequest.messages` and `AckMessageRequest.entries` at most the core's
//!   `limits.max_batch`; a message's `user_properties` at most twice `limits.max_properties`
//!   and its `keys` at most twice `limits.max_keys` (the core answers its own body code for
//!   counts in between); a Telemetry `Settings`' `publishing.topics` and
//!   `subscription.subscriptions` at most [`MAX_SETTINGS_TOPICS`] (a producer or consumer of
//!   more topics is not a client the SDKs make; a million of them took 26 s and 450 MB to
//!   answer) — else `INVALID_ARGUMENT` naming the limit;
//! - size: the decoded size of all repeated entries (the in-memory size of each element) at
//!   most [`RATIO`] times the message's length (or [`FLOOR`] for small messages) and never
//!   above [`CAP`] — else `RESOURCE_EXHAUSTED`. Strings and bytes take about their wire size
//!   and are not counted; with `Vec`'s doubling, decoding then allocates at most about
//!   `2 × RATIO` = 64 times the request's size plus its payload.
//! - bytes the walk cannot read (a truncated length, a bad wire type) are `INVALID_ARGUMENT`:
//!   prost would refuse them too.

use std::mem::size_of;

use rocketgate_core::LimitsConfig;
use rocketgate_proto::apache::rocketmq::v2 as pb;
use tonic::Status;

mod guard;

pub use guard::Guarded;

/// Decoded bytes allowed per wire byte of a request.
pub const RATIO: usize = 32;
/// Decoded bytes always allowed, whatever the request's size (1 MiB).
pub const FLOOR: usize = 1 << 20;
/// Decoded bytes never allowed, whatever the request's size (64 MiB).
pub const CAP: usize = 64 << 20;

/// Topics a Telemetry `Settings` may name (publishing topics, subscription entries).
pub const MAX_SETTINGS_TOPICS: usize = 1024;

/// Deepest nesting of groups the walk skips (prost's recursion limit).
const MAX_DEPTH: u32 = 100;

/// The count limits, from the core's `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Messages per SendMessage, entries per AckMessage (`limits.max_batch`).
    pub max_batch: usize,
    /// User properties per message (twice `limits.max_properties`).
    pub max_properties: usize,
    /// Keys per message (twice `limits.max_keys`).
    pub max_keys: usize,
}

impl DecodeLimits {
    /// The limits derived from the core's `limits`.
    pub fn new(limits: &LimitsConfig) -> Self {
        Self {
            max_batch: limits.max_batch.max(1),
            max_properties: limits.max_properties.saturating_mul(2),
            max_keys: limits.max_keys.saturating_mul(2),
        }
    }

    fn of(&self, count: Count) -> Option<(usize, &'static str)> {
        match count {
            Count::Batch => Some((self.max_batch, "limits.max_batch")),
            Count::Properties => Some((self.max_properties, "2 × limits.max_properties")),
            Count::Keys => Some((self.max_keys, "2 × limits.max_keys")),
            Count::Topics => Some((MAX_SETTINGS_TOPICS, "MAX_SETTINGS_TOPICS")),
            Count::Size => None,
        }
    }
}

/// Which limit bounds the entries of a repeated field (besides the size rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    Batch,
    Properties,
    Keys,
    Topics,
    Size,
}

/// A message type: the fields that lead to repeated fields.
#[derive(Debug)]
pub struct Schema {
    name: &'static str,
    fields: &'static [Field],
}

#[derive(Debug)]
struct Field {
    number: u64,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A singular message field: occurrences merge into one value.
    Nested(&'static Schema),
    /// A repeated field (or map) of elements `bytes` large in memory, each a message of
    /// `schema` when it has repeated fields of its own.
    Repeated {
        name: &'static str,
        bytes: usize,
        count: Count,
        schema: Option<&'static Schema>,
    },
}

const fn nested(number: u64, schema: &'static Schema) -> Field {
    Field {
        number,
        kind: Kind::Nested(schema),
    }
}

const fn repeated(
    number: u64,
    name: &'static str,
    bytes: usize,
    count: Count,
    schema: Option<&'static Schema>,
) -> Field {
    Field {
        number,
        kind: Kind::Repeated {
            name,
            bytes,
            count,
            schema,
        },
    }
}

/// A map entry: the pair plus the hash table's control byte, rounded up.
const MAP_ENTRY: usize = size_of::<(String, String)>() + 16;

static ENDPOINTS: Schema = Schema {
    name: "Endpoints",
    fields: &[repeated(
        2,
        "Endpoints.addresses",
        size_of::<pb::Address>(),
        Count::Size,
        None,
    )],
};
static BROKER: Schema = Schema {
    name: "Broker",
    fields: &[nested(3, &ENDPOINTS)],
};
static MESSAGE_QUEUE: Schema = Schema {
    name: "MessageQueue",
    fields: &[
        nested(4, &BROKER),
        // Packed enums take 4 bytes per wire byte at most; unpacked ones are counted here.
        repeated(5, "MessageQueue.accept_message_types", 4, Count::Size, None),
    ],
};
static SYSTEM_PROPERTIES: Schema = Schema {
    name: "SystemProperties",
    fields: &[repeated(
        2,
        "SystemProperties.keys",
        size_of::<String>(),
        Count::Keys,
        None,
    )],
};
static MESSAGE: Schema = Schema {
    name: "Message",
    fields: &[
        repeated(
            2,
            "Message.user_properties",
            MAP_ENTRY,
            Count::Properties,
            None,
        ),
        nested(3, &SYSTEM_PROPERTIES),
    ],
};
static SEND: Schema = Schema {
    name: "SendMessageRequest",
    fields: &[repeated(
        1,
        "SendMessageRequest.messages",
        size_of::<pb::Message>(),
        Count::Batch,
        Some(&MESSAGE),
    )],
};
static ACK: Schema = Schema {
    name: "AckMessageRequest",
    fields: &[repeated(
        3,
        "AckMessageRequest.entries",
        size_of::<pb::AckMessageEntry>(),
        Count::Batch,
        None,
    )],
};
static QUERY_ROUTE: Schema = Schema {
    name: "QueryRouteRequest",
    fields: &[nested(2, &ENDPOINTS)],
};
static QUERY_ASSIGNMENT: Schema = Schema {
    name: "QueryAssignmentRequest",
    fields: &[nested(3, &ENDPOINTS)],
};
/// ReceiveMessage, PullMessage, UpdateOffset and GetOffset: the queue is field 2.
static QUEUE_AT_2: Schema = Schema {
    name: "request",
    fields: &[nested(2, &MESSAGE_QUEUE)],
};
static QUERY_OFFSET: Schema = Schema {
    name: "QueryOffsetRequest",
    fields: &[nested(1, &MESSAGE_QUEUE)],
};
static CUSTOMIZED_BACKOFF: Schema = Schema {
    name: "CustomizedBackoff",
    fields: &[repeated(
        1,
        "CustomizedBackoff.next",
        size_of::<prost_types::Duration>(),
        Count::Size,
        None,
    )],
};
static RETRY_POLICY: Schema = Schema {
    name: "RetryPolicy",
    fields: &[nested(3, &CUSTOMIZED_BACKOFF)],
};
static PUBLISHING: Schema = Schema {
    name: "Publishing",
    fields: &[repeated(
        1,
        "Publishing.topics",
        size_of::<pb::Resource>(),
        Count::Topics,
        None,
    )],
};
static SUBSCRIPTION: Schema = Schema {
    name: "Subscription",
    fields: &[repeated(
        2,
        "Subscription.subscriptions",
        size_of::<pb::SubscriptionEntry>(),
        Count::Topics,
        None,
    )],
};
static METRIC: Schema = Schema {
    name: "Metric",
    fields: &[nested(2, &ENDPOINTS)],
};
static SETTINGS: Schema = Schema {
    name: "Settings",
    fields: &[
        nested(2, &ENDPOINTS),
        nested(3, &RETRY_POLICY),
        nested(5, &PUBLISHING),
        nested(6, &SUBSCRIPTION),
        nested(8, &METRIC),
    ],
};
/// RecoverOrphanedTransactionCommand (field 1) and VerifyMessageCommand (field 2).
static WITH_MESSAGE_AT_1: Schema = Schema {
    name: "command",
    fields: &[nested(1, &MESSAGE)],
};
static WITH_MESSAGE_AT_2: Schema = Schema {
    name: "command",
    fields: &[nested(2, &MESSAGE)],
};
static TELEMETRY: Schema = Schema {
    name: "TelemetryCommand",
    fields: &[
        nested(2, &SETTINGS),
        nested(5, &WITH_MESSAGE_AT_1),
        nested(7, &WITH_MESSAGE_AT_2),
    ],
};

/// The schema of the request of the `MessagingService` method `method` (as in the gRPC path,
/// `SendMessage`), or `None` when its request has no repeated field at any depth.
pub fn schema(method: &str) -> Option<&'static Schema> {
    Some(match method {
        "SendMessage" => &SEND,
        "AckMessage" => &ACK,
        "QueryRoute" => &QUERY_ROUTE,
        "QueryAssignment" => &QUERY_ASSIGNMENT,
        "ReceiveMessage" | "PullMessage" | "UpdateOffset" | "GetOffset" => &QUEUE_AT_2,
        "QueryOffset" => &QUERY_OFFSET,
        "Telemetry" => &TELEMETRY,
        _ => return None,
    })
}

/// Checks the protobuf `message` (one request, without its gRPC frame header) of type
/// `schema` against `limits` and the size rule (module doc).
///
/// # Errors
/// `INVALID_ARGUMENT` for a count over its limit or bytes that are not protobuf,
/// `RESOURCE_EXHAUSTED` when the decoded entries would exceed the size rule; each names the
/// limit.
pub fn check(schema: &'static Schema, message: &[u8], limits: &DecodeLimits) -> Result<(), Status> {
    let budget = message.len().saturating_mul(RATIO).clamp(FLOOR, CAP);
    let mut walk = Walk {
        limits,
        budget,
        spent: 0,
        wire: message.len(),
    };
    let mut scope = Vec::new();
    walk.message(schema, message, &mut scope)
}

/// The state of one check: the decoded bytes counted so far against the budget.
struct Walk<'a> {
    limits: &'a DecodeLimits,
    budget: usize,
    spent: usize,
    wire: usize,
}

/// Entries counted per repeated field in one message value (its singular nested fields
/// merge into it, so they share the scope).
type Scope = Vec<(&'static str, usize)>;

impl Walk<'_> {
    fn message(
        &mut self,
        schema: &'static Schema,
        mut bytes: &[u8],
        scope: &mut Scope,
    ) -> Result<(), Status> {
        while !bytes.is_empty() {
            let key = varint(&mut bytes, schema)?;
            let (number, wire) = (key >> 3, key & 7);
            let field = schema.fields.iter().find(|f| f.number == number);
            match (field, wire) {
                (Some(field), 2) => {
                    let value = delimited(&mut bytes, schema)?;
                    self.field(field, value, scope)?;
                }
                (
                    Some(
                        field @ Field {
                            kind: Kind::Repeated { .. },
                            ..
                        },
                    ),
                    0,
                ) => {
                    // An unpacked scalar entry (only enums are declared so).
                    varint(&mut bytes, schema)?;
                    self.field(field, &[], scope)?;
                }
                _ => skip(&mut bytes, number, wire, schema, 0)?,
            }
        }
        Ok(())
    }

    fn field(&mut self, field: &Field, value: &[u8], scope: &mut Scope) -> Result<(), Status> {
        match &field.kind {
            Kind::Nested(schema) => self.message(schema, value, scope),
            Kind::Repeated {
                name,
                bytes,
                count,
                schema,
            } => {
                let n = match scope.iter_mut().find(|(f, _)| f == name) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        scope.push((name, 1));
                        1
                    }
                };
                if let Some((max, setting)) = self.limits.of(*count) {
                    if n > max {
                        return Err(Status::invalid_argument(format!(
                            "{name}: more than {max} entries ({setting}), refused before decoding"
                        )));
                    }
                }
                self.spent = self.spent.saturating_add(*bytes);
                if self.spent > self.budget {
                    return Err(Status::resource_exhausted(format!(
                        "request of {} bytes would decode to more than {} bytes of entries \
                         ({RATIO} times its size, at least {FLOOR}, at most {CAP}); refused \
                         before decoding",
                        self.wire, self.budget
                    )));
                }
                match schema {
                    Some(schema) => self.message(schema, value, &mut Scope::new()),
                    None => Ok(()),
                }
            }
        }
    }
}

fn malformed(schema: &Schema, what: &str) -> Status {
    Status::invalid_argument(format!("malformed {}: {what}", schema.name))
}

/// Reads a varint (prost's rules: at most 10 bytes).
fn varint(bytes: &mut &[u8], schema: &Schema) -> Result<u64, Status> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = bytes.split_first() else {
            return Err(malformed(schema, "truncated varint"));
        };
        *bytes = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err(malformed(schema, "varint longer than 10 bytes"))
}

/// Reads a length-delimited value.
fn delimited<'b>(bytes: &mut &'b [u8], schema: &Schema) -> Result<&'b [u8], Status> {
    let len = varint(bytes, schema)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= bytes.len())
        .ok_or_else(|| malformed(schema, "length beyond the message"))?;
    let (value, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(value)
}

/// Skips the value of field `number` of wire type `wire` (groups included, as prost skips
/// unknown fields).
fn skip(
    bytes: &mut &[u8],
    number: u64,
    wire: u64,
    schema: &Schema,
    depth: u32,
) -> Result<(), Status> {
    let mut take = |n: usize| match bytes.get(n..) {
        Some(rest) => {
            *bytes = rest;
            Ok(())
        }
        None => Err(malformed(schema, "truncated field")),
    };
    match wire {
        0 => varint(bytes, schema).map(drop),
        1 => take(8),
        2 => delimited(bytes, schema).map(drop),
        5 => take(4),
        3 => {
            if depth >= MAX_DEPTH {
                return Err(malformed(schema, "groups nested too deep"));
            }
            loop {
                let key = varint(bytes, schema)?;
                let (inner, inner_wire) = (key >> 3, key & 7);
                if inner_wire == 4 {
                    return if inner == number {
                        Ok(())
                    } else {
                        Err(malformed(schema, "unmatched end of group"))
                    };
                }
                skip(bytes, inner, inner_wire, schema, depth + 1)?;
            }
        }
        _ => Err(malformed(schema, "invalid wire type")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
