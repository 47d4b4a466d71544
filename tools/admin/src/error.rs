//! Why an admin command failed, sorted into the two classes the exit code tells apart: the
//! request failed (exit 1) or a server could not be reached in time (exit 3).
//!
//! Invariants: every [`AdminError`] renders as one line that names the server and what was
//! asked; gRPC statuses are classified here and nowhere else ([`AdminError::from_status`]):
//! `UNAVAILABLE` and `DEADLINE_EXCEEDED` mean unreachable, every other code means failed.
//!
//! Pure data and formatting, no I/O; used by every command module.
//!
//! Must not print anything (`cli.rs` prints the one summary line) or know about commands.

use std::fmt;
use std::time::Duration;

use tonic::Code;

/// What a broker call was for, to name it in errors.
#[derive(Debug, Clone)]
pub struct Op {
    /// What was asked, e.g. ``topic create `orders` ``.
    pub action: String,
    /// The one thing a `NOT_FOUND` can be about, e.g. ``topic `orders` ``; `None` when the
    /// status could be about several (the server's message is shown then).
    pub subject: Option<String>,
}

impl Op {
    /// An operation whose `NOT_FOUND` is about `subject`.
    pub fn about(action: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            subject: Some(subject.into()),
        }
    }

    /// An operation whose `NOT_FOUND` the server's message explains.
    pub fn new(action: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            subject: None,
        }
    }
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// The request failed: not found, invalid argument, refused (exit 1).
    Failed {
        /// The server involved, if any (`broker 127.0.0.1:8081`, `the NameServers`).
        server: Option<String>,
        /// One line.
        message: String,
        /// Whether it was a `NOT_FOUND` (merged queries tolerate those on some brokers).
        not_found: bool,
    },
    /// A server could not be reached or did not answer in time (exit 3).
    Unreachable {
        /// One line, naming the server.
        message: String,
    },
    /// The command line cannot work (exit 2), found after parsing (e.g. several targets for a
    /// one-broker command).
    Usage(String),
}

impl AdminError {
    /// A failed request with no particular server.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed {
            server: None,
            message: message.into(),
            not_found: false,
        }
    }

    /// Classifies a status returned by `broker` for `op`.
    pub fn from_status(broker: &str, op: &Op, status: &tonic::Status) -> Self {
        let code = status.code();
        let detail = status.message().trim();
        let server = format!("broker {broker}");
        match code {
            // tonic reports its own client-side timeout as CANCELLED "Timeout expired".
            Code::Cancelled if detail.starts_with("Timeout expired") => Self::Unreachable {
                message: format!("{} failed: {server} did not answer in time", op.action),
            },
            Code::Unavailable | Code::DeadlineExceeded => Self::Unreachable {
                message: format!(
                    "{} failed: {server} is unavailable: {}",
                    op.action,
                    or_code(detail, code)
                ),
            },
            Code::NotFound => Self::Failed {
                message: match &op.subject {
                    Some(subject) => format!("{subject} does not exist on {server}"),
                    None => format!(
                        "{} failed on {server}: {}",
                        op.action,
                        or_code(detail, code)
                    ),
                },
                server: Some(server),
                not_found: true,
            },
            Code::Unimplemented => Self::Failed {
                message: format!(
                    "{server} does not serve rocketgate.cluster.v1.BrokerAdmin (is it a \
                     rocketgate broker's gRPC address?)"
                ),
                server: Some(server),
                not_found: false,
            },
            _ => Self::Failed {
                message: format!(
                    "{} failed on {server}: {} ({})",
                    op.action,
                    or_code(detail, code),
                    code_name(code)
                ),
                server: Some(server),
                not_found: false,
            },
        }
    }

    /// A connection to `server` that could not be made.
    pub fn cannot_reach(server: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        Self::Unreachable {
            message: format!("cannot reach {server}: {}", root_cause(error)),
        }
    }

    /// `server` did not answer within `timeout`.
    pub fn timed_out(server: &str, timeout: Duration) -> Self {
        Self::Unreachable {
            message: format!("{server} did not answer within {} ms", timeout.as_millis()),
        }
    }

    /// Whether this is a `NOT_FOUND` from a server.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Failed {
                not_found: true,
                ..
            }
        )
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Failed { .. } => super::EXIT_FAILED,
            Self::Usage(_) => super::EXIT_USAGE,
            Self::Unreachable { .. } => super::EXIT_UNREACHABLE,
        }
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed { message, .. } | Self::Unreachable { message } | Self::Usage(message) => {
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for AdminError {}

/// The exit code for a set of errors: a failed request (1) wins over an unreachable server (3),
/// since retrying cannot fix it; usage (2) wins over both; none is success (0).
pub fn exit_code(errors: &[AdminError]) -> u8 {
    let codes = errors.iter().map(AdminError::exit_code);
    [
        super::EXIT_USAGE,
        super::EXIT_FAILED,
        super::EXIT_UNREACHABLE,
    ]
    .into_iter()
    .find(|c| codes.clone().any(|x| x == *c))
    .unwrap_or(super::EXIT_OK)
}

/// One line for several errors.
pub fn summary(errors: &[AdminError], targets: usize) -> Option<String> {
    match errors {
        [] => None,
        [one] => Some(one.to_string()),
        many => {
            let all: Vec<String> = many.iter().map(ToString::to_string).collect();
            Some(format!(
                "{} of {targets} brokers failed: {}",
                many.len(),
                all.join("; ")
            ))
        }
    }
}

fn or_code(detail: &str, code: Code) -> String {
    if detail.is_empty() {
        code_name(code).to_owned()
    } else {
        one_line(detail)
    }
}

/// Keeps a server's message on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The innermost cause of a transport error, in plain words (`connection refused`).
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    let mut io = None;
    while let Some(next) = current.source() {
        if let Some(e) = next.downcast_ref::<std::io::Error>() {
            io = Some(e);
        }
        current = next;
    }
    if let Some(e) = io {
        return match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
            std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
            _ => one_line(&e.to_string()),
        };
    }
    one_line(&current.to_string())
}

/// The gRPC name of a code (`NOT_FOUND`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let op = Op::about("topic status `foo`", "topic `foo`");
        let e = AdminError::from_status("127.0.0.1:8081", &op, &tonic::Status::not_found("x"));
        assert_eq!(
            e.to_string(),
            "topic `foo` does not exist on broker 127.0.0.1:8081"
        );
        assert!(e.is_not_found());
        assert_eq!(e.exit_code(), 1);
        let e = AdminError::from_status(
            "b:1",
            &op,
            &tonic::Status::invalid_argument("name:\n empty"),
        );
        assert_eq!(
            e.to_string(),
            "topic status `foo` failed on broker b:1: name: empty (INVALID_ARGUMENT)"
        );
        assert_eq!(e.exit_code(), 1);
        let e = AdminError::from_status("b:1", &op, &tonic::Status::unavailable("bye"));
        assert_eq!(e.exit_code(), 3);
        let e = AdminError::from_status("b:1", &op, &tonic::Status::unimplemented(""));
        assert!(e.to_string().contains("BrokerAdmin"), "{e}");
    }

    #[test]
    fn exit_code_prefers_failures_over_unreachable() {
        let failed = AdminError::failed("no");
        let gone = AdminError::Unreachable {
            message: "gone".into(),
        };
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(exit_code(std::slice::from_ref(&gone)), 3);
        assert_eq!(exit_code(&[gone.clone(), failed.clone()]), 1);
        assert_eq!(
            summary(&[gone, failed], 3).unwrap(),
            "2 of 3 brokers failed: gone; no"
        );
    }

    #[test]
    fn root_cause_finds_the_io_error() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("transport error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(root_cause(&e), "connection refused");
    }
}
