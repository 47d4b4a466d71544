//! How many messages rocketgate stored for `bench mqtt`: the sum of the max offsets of the
//! RocketMQ topic the MQTT topics `bench/...` map to (`bench`, their first level), read from the
//! core (in process, `Topics::describe`, which includes every send that returned before it) or
//! from a `--target` server's admin gRPC API (`GetTopicStatus`).
//!
//! Owns the count and the wait for it to settle after a case: the gateway stores the publishes
//! it read in the background, so the count is polled every [`POLL`] until it reaches what the
//! clients wrote, or stops moving for [`STILL`].
//!
//! Reads only; must not publish or change a topic.

use std::time::{Duration, Instant};

use rocketgate_proto::cluster::v1 as admin;

use crate::error::{failed, Context, Result};

/// The RocketMQ topic of the MQTT topics the bench publishes to.
const TOPIC: &str = "bench";
/// How often the count is read while it settles.
const POLL: Duration = Duration::from_millis(10);
/// A count that has not moved for this long is final.
const STILL: Duration = Duration::from_secs(1);

/// Where the count comes from.
pub(super) enum Counter {
    /// The in-process broker.
    Broker(rocketgate_core::Broker),
    /// A running server's admin gRPC address.
    Admin(String),
}

impl Counter {
    /// Messages stored in the topic so far (0 before it exists).
    pub(super) async fn count(&self) -> Result<u64> {
        match self {
            Self::Broker(b) => match b.topics().describe(TOPIC).await {
                Ok(info) => Ok(info.queues.iter().map(|q| q.max).sum()),
                Err(rocketgate_core::Error::TopicNotFound(_)) => Ok(0),
                Err(e) => Err(e.into()),
            },
            Self::Admin(addr) => {
                let mut c = admin::broker_admin_client::BrokerAdminClient::connect(format!(
                    "http://{addr}"
                ))
                .await
                .with_context(|| format!("cannot connect to the admin API at {addr}"))?;
                let status = c
                    .get_topic_status(admin::GetTopicStatusRequest { name: TOPIC.into() })
                    .await;
                match status {
                    Ok(s) => Ok(s.into_inner().queues.iter().map(|q| q.max_offset).sum()),
                    Err(s) if s.code() == tonic::Code::NotFound => Ok(0),
                    Err(s) => Err(failed!("GetTopicStatus {TOPIC} at {addr}: {}", s.message())),
                }
            }
        }
    }

    /// Waits until the count reaches `before + expected` or stops moving; answers the count
    /// and when it last grew while waiting (`None`: it was complete at the first read).
    pub(super) async fn settle(
        &self,
        before: u64,
        expected: u64,
    ) -> Result<(u64, Option<Instant>)> {
        let mut last = self.count().await?;
        let mut grew = None;
        let mut since = Instant::now();
        while last < before + expected && since.elapsed() < STILL {
            tokio::time::sleep(POLL).await;
            let now = self.count().await?;
            if now != last {
                last = now;
                since = Instant::now();
                grew = Some(since);
            }
        }
        Ok((last, grew))
    }
}
