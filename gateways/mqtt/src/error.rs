//! Errors of the MQTT gateway: what `serve` reports, and how a core error becomes an MQTT
//! reason code.

use rocketgate_core::{ErrorKind, Reason};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

/// Errors of [`crate::serve`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither a TCP nor a WebSocket listener was given.
    #[error("the MQTT gateway needs at least one listener")]
    NoListener,
    /// Invalid configuration.
    #[error("invalid MQTT configuration: {0}")]
    Config(String),
    /// Loading the retained messages or sessions from the core failed.
    #[error("could not load MQTT state from the core: {0}")]
    Core(#[from] rocketgate_core::Error),
    /// Listener I/O.
    #[error("MQTT listener: {0}")]
    Io(#[from] std::io::Error),
}

/// The PUBACK/PUBREC reason for a core error (logged once by the caller when internal).
pub fn publish_reason(e: &rocketgate_core::Error) -> PubAckReason {
    match e.reason() {
        Reason::QuotaExceeded => return PubAckReason::QuotaExceeded,
        // A topic whose type takes no plain messages (FIFO, DELAY, TRANSACTION): the name is
        // well formed but "not accepted by the Server", MQTT 5's 0x90.
        Reason::MessageTypeConflict => return PubAckReason::TopicNameInvalid,
        _ => {}
    }
    match e.kind() {
        ErrorKind::InvalidArgument => PubAckReason::PayloadFormatInvalid,
        ErrorKind::PermissionDenied => PubAckReason::NotAuthorized,
        ErrorKind::NotFound => PubAckReason::TopicNameInvalid,
        ErrorKind::Throttled => PubAckReason::QuotaExceeded,
        _ => PubAckReason::ImplementationSpecificError,
    }
}
