//! A broker restarted after a crash, against a real NameServer on 127.0.0.1:0 (issue 14): the
//! same broker — signed with the cluster secret, the same identity and endpoints, from the same
//! IP address — replaces its own stale registration at once instead of waiting for it to expire
//! (120 s by default); a registration of that identity with another endpoint, from another
//! address, or unsigned (a NameServer without a secret) is still refused while the old one
//! lives. Brokers are the real client; the attacker speaks raw gRPC, from 127.0.0.2 where the
//! address is the subject. Every server is shut down by its test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use rocketgate_nameserver::{ClusterSecret, Config};
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::name_server_client::NameServerClient as RawClient;
use support::*;
use tonic::Code;

const SECRET: &str = "a-cluster-secret-of-32-characters";

fn secured(config: Config) -> Config {
    Config {
        cluster_secret: Some(ClusterSecret::new(SECRET).unwrap()),
        ..config
    }
}

/// A RegisterBroker of broker `a` at `127.0.0.1:port`, signed with the secret when `sign`.
fn raw_registration(port: u16, sign: bool) -> pb::RegisterBrokerRequest {
    let mut r = pb::RegisterBrokerRequest {
        broker: Some(pb::BrokerIdentity {
            cluster: "c1".into(),
            broker_name: "a".into(),
            broker_id: 0,
        }),
        endpoints: vec![pb::Endpoint {
            protocol: "grpc".into(),
            address: format!("127.0.0.1:{port}"),
        }],
        topics: vec![pb::TopicConfig {
            name: "orders".into(),
            read_queue_nums: 1,
            write_queue_nums: 1,
            permission: pb::Permission::ReadWrite.into(),
            message_type: pb::MessageType::Normal.into(),
        }],
        ..Default::default()
    };
    if sign {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        ClusterSecret::new(SECRET)
            .unwrap()
            .sign(&mut r, u64::try_from(now.as_millis()).unwrap());
    }
    r
}

/// A raw client of `ns` whose connections come from `source`.
async fn raw_from(
    ns: &RunningNameServer,
    source: &str,
) -> anyhow::Result<RawClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", ns.address()))?
        .local_address(Some(source.parse()?))
        .connect()
        .await?;
    Ok(RawClient::new(channel))
}

async fn read_queues(client: &rocketgate_nameserver::NameServerClient) -> Option<u32> {
    client
        .route("orders")
        .await
        .ok()
        .map(|r| r.queues[0].read_queues)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_after_a_crash_registers_at_once() -> anyhow::Result<()> {
    // The default expiry (120 s): waiting for it would outlast the test's every wait.
    let ns = RunningNameServer::start(secured(Config::default())).await?;
    let first = secured_client(&[&ns.address()], 50, SECRET);
    let a = broker(&first, registration("c1", "a", 0, 1001, &[("orders", 4)])).await?;
    // A crash: the registration id is lost with the process, nothing is unregistered.
    a.stop().await;

    // The restarted broker: the same identity and endpoint, from the same host, other topics.
    let second = secured_client(&[&ns.address()], 50, SECRET);
    let a = broker(&second, registration("c1", "a", 0, 1001, &[("orders", 2)])).await?;
    assert_eq!(a.registered_count(), 1, "registered by its first call");
    assert_eq!(read_queues(&second).await, Some(2));
    // And it keeps its new registration: its heartbeats are accepted.
    let info = second.cluster_info().await?;
    let before = info
        .brokers()
        .next()
        .map(|(_, b)| b.last_heartbeat_ms)
        .unwrap();
    eventually("a heartbeat of the restarted broker", || async {
        let info = second.cluster_info().await.ok()?;
        let seen = info.brokers().next().map(|(_, b)| b.last_heartbeat_ms)?;
        (seen > before).then_some(())
    })
    .await?;
    assert_eq!(a.registered_count(), 1);
    assert_eq!(a.unregister().await, 1);
    ns.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_from_another_endpoint_or_address_is_still_refused() -> anyhow::Result<()> {
    let ns = RunningNameServer::start(secured(Config::default())).await?;
    let real = secured_client(&[&ns.address()], 50, SECRET);
    let a = broker(&real, registration("c1", "a", 0, 1001, &[("orders", 4)])).await?;

    // Signed, from the broker's own address, but pointing the route elsewhere.
    let mut local = raw_from(&ns, "127.0.0.1").await?;
    let status = local
        .register_broker(raw_registration(2002, true))
        .await
        .expect_err("another endpoint");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    // Signed, the same endpoint, but from another address.
    let mut other = raw_from(&ns, "127.0.0.2").await?;
    let status = other
        .register_broker(raw_registration(1001, true))
        .await
        .expect_err("another source address");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // The route still points at the real broker, which still holds its registration.
    assert_eq!(read_queues(&real).await, Some(4));
    eventually("the real broker's heartbeats", || async {
        (a.registered_count() == 1).then_some(())
    })
    .await?;
    assert_eq!(a.unregister().await, 1);
    ns.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cluster_secret_a_restart_waits_for_the_expiry() -> anyhow::Result<()> {
    // No secret: nothing proves the new process is the broker, so the registration id rules.
    let ns = RunningNameServer::start(fast_config()).await?;
    let first = client(&[&ns.address()], 50);
    let a = broker(&first, registration("c1", "a", 0, 1001, &[("orders", 4)])).await?;
    a.stop().await;
    let mut raw = raw_from(&ns, "127.0.0.1").await?;
    let status = raw
        .register_broker(raw_registration(1001, false))
        .await
        .expect_err("an unsigned restart while the old registration lives");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    // Once the old registration expired (500 ms here), it registers.
    let second = client(&[&ns.address()], 50);
    let a = broker(&second, registration("c1", "a", 0, 1001, &[("orders", 2)])).await?;
    eventually("the restarted broker to register", || async {
        (a.registered_count() == 1).then_some(())
    })
    .await?;
    assert_eq!(read_queues(&second).await, Some(2));
    assert_eq!(a.unregister().await, 1);
    ns.shutdown().await
}
