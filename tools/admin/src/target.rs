//! Which brokers a command talks to, and how: resolving `--broker` / `--cluster`, connecting
//! under the `--timeout-ms` deadline, fanning a call out to every target, and merging the
//! answers.
//!
//! Invariants:
//! - one deadline of `--timeout-ms` covers the connection *and* the call(s) to one broker; a
//!   broker that misses it is [`AdminError::Unreachable`];
//! - `--cluster NAME` means every master (broker id 0) of that cluster that advertises a `grpc`
//!   endpoint, as the NameServers' cluster info lists them, in (broker name) order; otherwise the
//!   `--broker` addresses in the order given, duplicates removed, else those of
//!   `$ROCKETGATE_ADMIN_BROKER`, else [`DEFAULT_BROKER`];
//! - answers come back in target order, whatever order the brokers answered in.
//!
//! Concurrency: [`Targets::each`] runs one task per broker on the command's (current-thread)
//! runtime, in a `JoinSet`; nothing is shared between them but the cloned request. Connections
//! live as long as one command.
//!
//! The only module that opens connections; it must not render or print anything.

use std::future::Future;
use std::time::Duration;

use std::sync::{Arc, OnceLock};

use rocketgate_nameserver::{ClientConfig, ClientError, NameServerClient};
use rocketgate_proto::cluster::v1::access_admin_client::AccessAdminClient;
use rocketgate_proto::cluster::v1::broker_admin_client::BrokerAdminClient;
use tokio::task::JoinSet;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::error::{AdminError, Op};

/// A connected `BrokerAdmin` client whose requests carry the credentials of the command.
pub type Client = BrokerAdminClient<InterceptedService<Channel, Signer>>;

/// The access key and secret key of this command (`--ak` / `--sk`), set once by the CLI.
static CREDENTIALS: OnceLock<Option<Arc<(String, String)>>> = OnceLock::new();

/// Sets the credentials every broker call of this process signs with (the first call wins).
pub fn set_credentials(credentials: Option<(String, String)>) {
    let _ = CREDENTIALS.set(credentials.map(Arc::new));
}

/// Signs each request as the RocketMQ 5 SDKs do (`authorization: MQv2-HMAC-SHA1 …` over
/// `x-mq-date-time`), when credentials are set; never logs them.
#[derive(Clone, Default)]
pub struct Signer {
    credentials: Option<Arc<(String, String)>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("signs", &self.credentials.is_some())
            .finish()
    }
}

impl tonic::service::Interceptor for Signer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(c) = &self.credentials {
            let (ak, sk) = (&c.0, &c.1);
            let date = rocketgate_core::auth::sign::compact_time(rocketgate_core::now_ms());
            let header = format!(
                "MQv2-HMAC-SHA1 Credential={ak}, SignedHeaders=x-mq-date-time, Signature={}",
                rocketgate_core::auth::sign::sign(sk.as_bytes(), &date)
            );
            let bad =
                |_| tonic::Status::invalid_argument("the access key is not a valid header value");
            req.metadata_mut()
                .insert("authorization", header.parse().map_err(bad)?);
            req.metadata_mut()
                .insert("x-mq-date-time", date.parse().map_err(bad)?);
        }
        Ok(req)
    }
}

/// Largest reply accepted from a broker (queries return up to 1,024 messages with bodies).
const MAX_REPLY_BYTES: usize = 256 << 20;

/// The broker used when neither `--broker`, `--cluster` nor [`BROKER_ENV`] is given.
pub const DEFAULT_BROKER: &str = "127.0.0.1:8081";

/// The environment variable with the default `--broker` addresses (comma-separated). Read here
/// rather than by clap, so that a value in the environment does not conflict with `--cluster`.
pub const BROKER_ENV: &str = "ROCKETGATE_ADMIN_BROKER";

/// `list` without repeats, first occurrence kept.
fn dedup(list: &[String]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for b in list {
        if !seen.contains(b) {
            seen.push(b.clone());
        }
    }
    seen
}

/// Checks a `host:port` (or `http://host:port`) address; the value clap keeps.
pub fn parse_address(s: &str) -> Result<String, String> {
    let s = s.trim();
    let uri = uri(s);
    let endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| format!("`{s}` is not a host:port address: {e}"))?;
    if endpoint.uri().port_u16().is_none() || endpoint.uri().host().is_none() {
        return Err(format!(
            "`{s}` is not a host:port address: a port is needed"
        ));
    }
    Ok(s.to_owned())
}

fn uri(address: &str) -> String {
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// Where the command's servers are.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `--broker`, as given (empty: none given).
    pub brokers: Vec<String>,
    /// `--namesrv`.
    pub nameservers: Vec<String>,
    /// `--cluster`.
    pub cluster: Option<String>,
    /// `--timeout-ms`.
    pub timeout: Duration,
}

impl Ctx {
    /// A client of the NameServers, each call bounded by the timeout.
    pub fn nameserver_client(&self) -> Result<NameServerClient, AdminError> {
        let config = ClientConfig {
            addresses: self.nameservers.clone(),
            rpc_timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            ..ClientConfig::default()
        };
        NameServerClient::new(&config).map_err(|e| self.nameserver_error(e))
    }

    /// A NameServer client error as an [`AdminError`].
    pub fn nameserver_error(&self, e: ClientError) -> AdminError {
        let who = format!("the NameServers ({})", self.nameservers.join(","));
        match e {
            ClientError::Unavailable { last, .. } => AdminError::Unreachable {
                message: format!("cannot reach {who}: {}", nameserver_detail(&last)),
            },
            ClientError::TopicNotFound(topic) => AdminError::Failed {
                message: format!("topic `{topic}` has no route on {who}: no live broker serves it"),
                server: Some(who),
                not_found: true,
            },
            ClientError::Rpc {
                code: tonic::Code::Unavailable | tonic::Code::DeadlineExceeded,
                ..
            } => AdminError::Unreachable {
                message: format!("cannot reach {who}: {}", nameserver_detail(&e)),
            },
            other => AdminError::Failed {
                message: format!("{who}: {other}"),
                server: Some(who),
                not_found: false,
            },
        }
    }

    /// The target brokers: the masters of `--cluster`, else `--broker` (default
    /// [`DEFAULT_BROKER`]).
    pub async fn targets(&self) -> Result<Targets, AdminError> {
        let brokers = match &self.cluster {
            Some(cluster) => self.cluster_masters(cluster).await?,
            None if self.brokers.is_empty() => match std::env::var(BROKER_ENV) {
                Ok(list) if !list.trim().is_empty() => {
                    let parsed = list
                        .split(',')
                        .map(|a| {
                            parse_address(a)
                                .map_err(|e| AdminError::Usage(format!("{BROKER_ENV}: {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    dedup(&parsed)
                }
                _ => vec![DEFAULT_BROKER.to_owned()],
            },
            None => dedup(&self.brokers),
        };
        Ok(Targets {
            brokers,
            timeout: self.timeout,
        })
    }

    async fn cluster_masters(&self, cluster: &str) -> Result<Vec<String>, AdminError> {
        let client = self.nameserver_client()?;
        let info = client
            .cluster_info()
            .await
            .map_err(|e| self.nameserver_error(e))?;
        let Some(entry) = info.clusters.iter().find(|c| c.name.as_str() == cluster) else {
            let known: Vec<&str> = info.clusters.iter().map(|c| c.name.as_str()).collect();
            return Err(AdminError::Failed {
                message: format!(
                    "cluster `{cluster}` is not known to the NameServers ({}); known clusters: {}",
                    self.nameservers.join(","),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
                server: None,
                not_found: true,
            });
        };
        let masters: Vec<String> = entry
            .brokers
            .iter()
            .filter(|b| b.broker_id.is_master())
            .filter_map(|b| {
                b.endpoints
                    .iter()
                    .find(|e| e.protocol().as_str() == "grpc")
                    .map(|e| e.address().to_owned())
            })
            .collect();
        if masters.is_empty() {
            return Err(AdminError::failed(format!(
                "cluster `{cluster}` has no live master with a grpc endpoint"
            )));
        }
        Ok(masters)
    }
}

fn nameserver_detail(e: &ClientError) -> String {
    match e {
        ClientError::Rpc {
            address, message, ..
        } if !address.is_empty() => format!("NameServer {address}: {message}"),
        other => other.to_string(),
    }
}

/// The brokers one command goes to.
#[derive(Debug, Clone)]
pub struct Targets {
    /// Their addresses, in order.
    pub brokers: Vec<String>,
    timeout: Duration,
}

impl Targets {
    /// The one broker of a command that talks to one broker only.
    ///
    /// # Errors
    /// [`AdminError::Usage`] with several targets.
    pub fn single(&self, command: &str) -> Result<&str, AdminError> {
        match self.brokers.as_slice() {
            [one] => Ok(one),
            many => Err(AdminError::Usage(format!(
                "{command} talks to one broker, but {} are targeted ({}): give one --broker",
                many.len(),
                many.join(", ")
            ))),
        }
    }

    /// Runs `f` against every target broker concurrently; answers in target order.
    pub async fn each<T, F, Fut>(&self, op: &Op, f: F) -> Vec<Answer<T>>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, tonic::Status>> + Send + 'static,
    {
        let mut tasks = JoinSet::new();
        for (i, broker) in self.brokers.iter().enumerate() {
            let (broker, op, f, timeout) = (broker.clone(), op.clone(), f.clone(), self.timeout);
            tasks.spawn(async move { (i, call(&broker, timeout, &op, f).await) });
        }
        let mut answers: Vec<Option<Result<T, AdminError>>> =
            (0..self.brokers.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, result)) = joined {
                if let Some(slot) = answers.get_mut(i) {
                    *slot = Some(result);
                }
            }
        }
        self.brokers
            .iter()
            .zip(answers)
            .map(|(broker, result)| Answer {
                broker: broker.clone(),
                result: result.unwrap_or_else(|| {
                    Err(AdminError::failed(format!(
                        "{} on broker {broker}: the task failed",
                        op.action
                    )))
                }),
            })
            .collect()
    }
}

/// One broker's answer.
#[derive(Debug)]
pub struct Answer<T> {
    /// Its address.
    pub broker: String,
    /// What it said.
    pub result: Result<T, AdminError>,
}

/// Connects to `broker` and runs `f` on its `BrokerAdmin` client, both within `timeout`.
pub async fn call<T, F, Fut>(
    broker: &str,
    timeout: Duration,
    op: &Op,
    f: F,
) -> Result<T, AdminError>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    call_client(broker, timeout, op, |channel| {
        f(BrokerAdminClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES))
    })
    .await
}

/// A connected `AccessAdmin` client (users, policies, tokens) whose requests carry the
/// credentials of the command.
pub type AccessClient = AccessAdminClient<InterceptedService<Channel, Signer>>;

/// Connects to `broker` and runs `f` on its `AccessAdmin` client, both within `timeout`.
pub async fn call_access<T, F, Fut>(
    broker: &str,
    timeout: Duration,
    op: &Op,
    f: F,
) -> Result<T, AdminError>
where
    F: FnOnce(AccessClient) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    call_client(broker, timeout, op, |channel| {
        f(AccessAdminClient::new(channel))
    })
    .await
}

/// Connects to `broker` (signing with the command's credentials) and runs `f` on the channel,
/// both within `timeout`.
async fn call_client<T, F, Fut>(
    broker: &str,
    timeout: Duration,
    op: &Op,
    f: F,
) -> Result<T, AdminError>
where
    F: FnOnce(InterceptedService<Channel, Signer>) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let server = format!("broker {broker}");
    let deadline = tokio::time::Instant::now() + timeout;
    let endpoint = Endpoint::from_shared(uri(broker))
        .map_err(|e| AdminError::failed(format!("`{broker}` is not a valid address: {e}")))?
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    let channel = match tokio::time::timeout_at(deadline, endpoint.connect()).await {
        Err(_) => return Err(AdminError::timed_out(&server, timeout)),
        Ok(Err(e)) => return Err(AdminError::cannot_reach(&server, &e)),
        Ok(Ok(channel)) => channel,
    };
    let signer = Signer {
        credentials: CREDENTIALS.get().cloned().flatten(),
    };
    let channel = InterceptedService::new(channel, signer);
    match tokio::time::timeout_at(deadline, f(channel)).await {
        Err(_) => Err(AdminError::timed_out(&server, timeout)),
        Ok(Err(status)) => Err(AdminError::from_status(broker, op, &status)),
        Ok(Ok(value)) => Ok(value),
    }
}

/// Answers where a `NOT_FOUND` on some brokers is fine as long as one has the thing.
#[derive(Debug)]
pub struct Merged<T> {
    /// The brokers that had it, in target order.
    pub found: Vec<(String, T)>,
    /// What went wrong; empty when all is well.
    pub errors: Vec<AdminError>,
}

/// Merges the answers of a query. `NOT_FOUND`s are dropped when some broker answered; when
/// every broker said `NOT_FOUND`, one error says so (naming `subject`).
pub fn merge<T>(answers: Vec<Answer<T>>, subject: Option<&str>) -> Merged<T> {
    let total = answers.len();
    let mut found = Vec::new();
    let mut not_found = Vec::new();
    let mut errors = Vec::new();
    for a in answers {
        match a.result {
            Ok(v) => found.push((a.broker, v)),
            Err(e) if e.is_not_found() => not_found.push((a.broker, e)),
            Err(e) => errors.push(e),
        }
    }
    if found.is_empty() && errors.is_empty() {
        errors = match (subject, not_found.len()) {
            (Some(subject), n) if n > 1 => {
                let brokers: Vec<String> = not_found.into_iter().map(|(b, _)| b).collect();
                vec![AdminError::Failed {
                    message: format!(
                        "{subject} does not exist on any of the {total} brokers ({})",
                        brokers.join(", ")
                    ),
                    server: None,
                    not_found: true,
                }]
            }
            _ => not_found.into_iter().map(|(_, e)| e).collect(),
        };
    }
    Merged { found, errors }
}

/// Splits the answers of a write: every broker must succeed.
pub fn all<T>(answers: Vec<Answer<T>>) -> (Vec<Answer<T>>, Vec<AdminError>) {
    let errors = answers
        .iter()
        .filter_map(|a| a.result.as_ref().err().cloned())
        .collect();
    (answers, errors)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nf(b: &str) -> Answer<u32> {
        Answer {
            broker: b.into(),
            result: Err(AdminError::from_status(
                b,
                &Op::about("x", "topic `t`"),
                &tonic::Status::not_found(""),
            )),
        }
    }

    #[test]
    fn addresses_need_a_port() {
        assert_eq!(parse_address("127.0.0.1:8081").unwrap(), "127.0.0.1:8081");
        assert_eq!(
            parse_address("http://localhost:1").unwrap(),
            "http://localhost:1"
        );
        assert!(parse_address("127.0.0.1").unwrap_err().contains("port"));
        assert!(parse_address("a b:1").is_err());
    }

    #[test]
    fn merge_tolerates_not_found_on_some_brokers() {
        let ok = Answer {
            broker: "a:1".into(),
            result: Ok(7),
        };
        let m = merge(vec![ok, nf("b:1")], Some("topic `t`"));
        assert_eq!(m.found, vec![("a:1".to_owned(), 7)]);
        assert!(m.errors.is_empty());

        let m = merge(vec![nf("a:1"), nf("b:1")], Some("topic `t`"));
        assert!(m.found.is_empty());
        assert_eq!(
            m.errors[0].to_string(),
            "topic `t` does not exist on any of the 2 brokers (a:1, b:1)"
        );
        assert!(m.errors[0].is_not_found());

        let m = merge(vec![nf("a:1")], Some("topic `t`"));
        assert_eq!(
            m.errors[0].to_string(),
            "topic `t` does not exist on broker a:1"
        );

        let gone = Answer {
            broker: "c:1".into(),
            result: Err(AdminError::Unreachable {
                message: "gone".into(),
            }),
        };
        let m = merge(vec![nf("a:1"), gone], Some("topic `t`"));
        assert_eq!(m.errors.len(), 1);
        assert_eq!(m.errors[0].exit_code(), 3);
    }

    #[test]
    fn a_single_target_is_required_where_asked() {
        let t = Targets {
            brokers: vec!["a:1".into(), "b:1".into()],
            timeout: Duration::from_secs(1),
        };
        let e = t.single("message send").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("a:1, b:1"), "{e}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let op = Op::new("topic list");
        let e = call(&addr, Duration::from_secs(5), &op, |mut c| async move {
            c.list_topics(rocketgate_proto::cluster::v1::ListTopicsRequest {})
                .await
        })
        .await
        .unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert_eq!(
            e.to_string(),
            format!("cannot reach broker {addr}: connection refused")
        );
    }
}
