//! [`BenchError`]: why a benchmark stopped, and the few helpers the benchmarks use to build one
//! ([`Context`], `bail!`, `ensure!`, `failed!`).
//!
//! Invariants: the message and the source chain are exactly what the benchmark reports on the
//! one `rocketgate: error: …` line (the binary prints the chain, `{:#}`): a foreign error is kept
//! whole (its variant is transparent), and [`BenchError::Context`] puts what was being done in
//! front of it (`cannot connect to 127.0.0.1:8081: …`). Flags that cannot work are
//! [`BenchError::Usage`], found before anything is measured; a run that went wrong (lost or
//! duplicated messages, failed calls, a peer breaking the protocol) is
//! [`BenchError::Failed`].
//!
//! Pure data; used by every module of the crate, and must not depend on any of them.

/// Why a benchmark stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The flags cannot work together (`--clients 0`); nothing was measured.
    #[error("{0}")]
    Usage(String),
    /// The run went wrong: lost or duplicated messages, failed calls, a server that refused or
    /// broke the protocol, a directory that is in the way.
    #[error("{0}")]
    Failed(String),
    /// What was being done when `source` failed.
    #[error("{context}")]
    Context {
        /// E.g. `cannot connect to 127.0.0.1:8081`.
        context: String,
        /// The failure.
        #[source]
        source: Box<BenchError>,
    },
    /// A file, socket or process.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The broker under test.
    #[error(transparent)]
    Core(#[from] rocketgate_core::Error),
    /// A gRPC call.
    #[error(transparent)]
    Status(#[from] tonic::Status),
    /// A gRPC connection.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    /// A gateway serving the in-process broker.
    #[error(transparent)]
    Server(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A task of the benchmark panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// Writing the `--json` document.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A latency histogram could not be created.
    #[error(transparent)]
    HistogramCreate(#[from] hdrhistogram::CreationError),
    /// Latency histograms could not be merged.
    #[error(transparent)]
    HistogramAdd(#[from] hdrhistogram::AdditionError),
    /// A latency could not be recorded.
    #[error(transparent)]
    HistogramRecord(#[from] hdrhistogram::RecordError),
    /// A size or count does not fit.
    #[error(transparent)]
    Number(#[from] std::num::TryFromIntError),
    /// A number a peer sent is malformed.
    #[error(transparent)]
    Parse(#[from] std::num::ParseIntError),
    /// Text a peer sent is not UTF-8.
    #[error(transparent)]
    Utf8(#[from] std::string::FromUtf8Error),
    /// A peer did not answer in time.
    #[error(transparent)]
    Timeout(#[from] tokio::time::error::Elapsed),
}

impl BenchError {
    /// A gateway's own error, kept whole.
    pub(crate) fn server(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Server(Box::new(error))
    }
}

/// The crate's result type.
pub(crate) type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Puts what was being done in front of an error (as `anyhow::Context` did).
pub(crate) trait Context<T> {
    /// `context: error`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// `context(): error`, the context built only on failure.
    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<BenchError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| BenchError::Context {
            context: context.into(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| BenchError::Context {
            context: context().into(),
            source: Box::new(e.into()),
        })
    }
}

/// A missing value is a failure named by the context alone.
impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| BenchError::Failed(context.into()))
    }

    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| BenchError::Failed(context().into()))
    }
}

/// `BenchError::Failed(format!(…))`.
macro_rules! failed {
    ($($arg:tt)+) => {
        $crate::error::BenchError::Failed(format!($($arg)+))
    };
}

/// Returns `Err(BenchError::Failed(format!(…)))`, or `Usage` after `usage:`.
macro_rules! bail {
    (usage: $($arg:tt)+) => {
        return Err($crate::error::BenchError::Usage(format!($($arg)+)))
    };
    ($($arg:tt)+) => {
        return Err($crate::error::BenchError::Failed(format!($($arg)+)))
    };
}

/// `bail!` unless the condition holds.
macro_rules! ensure {
    (usage: $cond:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::error::bail!(usage: $($arg)+)
        }
    };
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::error::bail!($($arg)+)
        }
    };
}

pub(crate) use {bail, ensure, failed};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The line the binary prints: the error and its sources, joined as `anyhow` does.
    fn line(e: &BenchError) -> String {
        let mut out = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            out.push_str(&format!(": {s}"));
            source = s.source();
        }
        out
    }

    #[test]
    fn context_and_transparent_errors_print_like_anyhow_did() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Err::<(), _>(io)
            .context("cannot connect to 127.0.0.1:1")
            .context("case x1")
            .unwrap_err();
        assert_eq!(line(&e), "case x1: cannot connect to 127.0.0.1:1: refused");
        let e = None::<u8>.context("no HTTP status line").unwrap_err();
        assert_eq!(line(&e), "no HTTP status line");
        let e = failed!("{} calls failed", 3);
        assert_eq!(line(&e), "3 calls failed");
    }

    #[test]
    fn bail_and_ensure_pick_the_class() {
        fn check(clients: usize, lost: usize) -> Result<()> {
            ensure!(usage: clients > 0, "--clients must be at least 1");
            ensure!(lost == 0, "{lost} messages lost");
            Ok(())
        }
        assert!(
            matches!(check(0, 0), Err(BenchError::Usage(m)) if m == "--clients must be at least 1")
        );
        assert!(matches!(check(1, 2), Err(BenchError::Failed(m)) if m == "2 messages lost"));
        assert!(check(1, 0).is_ok());
    }
}
