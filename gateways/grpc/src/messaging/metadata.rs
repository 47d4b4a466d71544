//! Request metadata of the RocketMQ v2 protocol: the `x-mq-client-id` header (the key of all
//! per-client state) and the `grpc-timeout` deadline (how long a long poll may last).
//!
//! Other `x-mq-*` headers (language, versions, date-time, request id, namespace) are free text
//! and never checked. Pure functions; no state.

use std::time::Duration;

use rocketgate_proto::apache::rocketmq::v2::{Code, Status};
use tonic::metadata::MetadataMap;

use super::code::status;

/// The header naming the client.
pub(super) const CLIENT_ID: &str = "x-mq-client-id";

/// The client id of a request.
///
/// # Errors
/// `CLIENT_ID_REQUIRED` when the header is missing, empty or not printable ASCII.
pub(super) fn client_id(metadata: &MetadataMap) -> Result<String, Status> {
    metadata
        .get(CLIENT_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .map(str::to_owned)
        .ok_or_else(|| status(Code::ClientIdRequired, "missing header `x-mq-client-id`"))
}

/// The time left before the caller's deadline, from `grpc-timeout` (`<digits><unit>`, units
/// `H M S m u n`); `None` when absent or unparsable.
pub(super) fn remaining(metadata: &MetadataMap) -> Option<Duration> {
    let v = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_id_is_required() {
        let mut m = MetadataMap::new();
        assert_eq!(
            client_id(&m).unwrap_err().code,
            Code::ClientIdRequired as i32
        );
        m.insert(CLIENT_ID, "host@1#0".parse().unwrap());
        assert_eq!(client_id(&m).unwrap(), "host@1#0");
    }

    #[test]
    fn grpc_timeout_units() {
        let mut m = MetadataMap::new();
        assert_eq!(remaining(&m), None);
        for (v, want) in [
            ("40S", Duration::from_secs(40)),
            ("3000m", Duration::from_secs(3)),
            ("2M", Duration::from_secs(120)),
            ("5u", Duration::from_micros(5)),
        ] {
            m.insert("grpc-timeout", v.parse().unwrap());
            assert_eq!(remaining(&m), Some(want), "{v}");
        }
        m.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(remaining(&m), None);
    }
}
