//! RC (the official Rust SDK 5.0.0) transactions against the gateway: a committed half
//! message is delivered once, a rolled-back one never; a half left unresolved is checked
//! back over the producer's Telemetry stream (RecoverOrphanedTransactionCommand), RC runs
//! its checker and answers with EndTransaction (SOURCE_SERVER_CHECK): UNKNOWN keeps it
//! pending for a later check, COMMIT delivers it, ROLLBACK discards it.
//!
//! The check-back timing is the core's (`transaction.check_first_ms` /
//! `check_interval_ms`), set to 1 s in the check-back test. See `grpc_sdk` for the harness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq::model::message::{Message, MessageBuilder, MessageView};
use rocketmq::model::transaction::{Transaction, TransactionResolution};
use rocketmq::Producer;

use crate::grpc_sdk::{
    self as h, ack, call, receive, receive_n, shutdown_consumer, shutdown_producer, tag,
    GrpcServer, TRANSACTION_TOPIC,
};

/// Invisible duration of the receives here.
const INVISIBLE: Duration = Duration::from_secs(15);

/// What the checker does for one message id, and the check-backs it saw.
#[derive(Default)]
struct CheckLog {
    /// Message id → resolutions to answer, in order; the last one repeats.
    plans: HashMap<String, Vec<i32>>,
    /// Every call: (transaction id, message id, topic).
    calls: Vec<(String, String, String)>,
}

type SharedLog = Arc<Mutex<CheckLog>>;

fn resolution(code: i32) -> TransactionResolution {
    match code {
        1 => TransactionResolution::COMMIT,
        2 => TransactionResolution::ROLLBACK,
        _ => TransactionResolution::UNKNOWN,
    }
}

/// A transaction producer whose checker follows the plans in `log` (ROLLBACK for a message
/// without a plan) and records every call.
async fn producer(server: &GrpcServer, log: &SharedLog) -> Producer {
    let log = Arc::clone(log);
    server
        .transaction_producer(Box::new(move |transaction_id, m: MessageView| {
            let mut l = log.lock().unwrap();
            let id = m.message_id().to_owned();
            let n = l.calls.iter().filter(|(_, i, _)| *i == id).count();
            l.calls
                .push((transaction_id, id.clone(), m.topic().to_owned()));
            let code = l
                .plans
                .get(&id)
                .and_then(|p| p.get(n).or(p.last()).copied())
                .unwrap_or(2);
            resolution(code)
        }))
        .await
}

fn half(body: &str) -> (String, impl Message) {
    let mut m =
        MessageBuilder::transaction_message_builder(TRANSACTION_TOPIC, body.as_bytes().to_vec())
            .set_tag("tx")
            .build()
            .unwrap();
    (m.take_message_id(), m)
}

async fn send_half(p: &Producer, id: &str, m: impl Message) -> impl Transaction {
    let tx = call("send_transaction_message", p.send_transaction_message(m))
        .await
        .unwrap_or_else(|e| panic!("send_transaction_message {id}: {e}"));
    assert_eq!(tx.message_id(), id, "transaction's message id");
    assert!(
        !tx.transaction_id().is_empty(),
        "{id}: empty transaction id"
    );
    tx
}

/// Brief §5 #12, #13: a committed transaction message is not delivered before the commit,
/// then once with its original id; a rolled-back one is never delivered. Neither is checked
/// back (both were resolved by the client well before the first check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_transaction_commit_and_rollback() {
    let server = GrpcServer::start().await;
    let log = SharedLog::default();
    let p = producer(&server, &log).await;
    let c = server.consumer("TxGroup", &[TRANSACTION_TOPIC]).await;

    let (commit_id, m) = half("to commit");
    let commit_tx = send_half(&p, &commit_id, m).await;
    let (rollback_id, m) = half("to roll back");
    let rollback_tx = send_half(&p, &rollback_id, m).await;
    call("rollback", rollback_tx.rollback())
        .await
        .unwrap_or_else(|e| panic!("rollback: {e}"));

    // A receive waits while the commit comes 1 s later.
    let all = tag("*");
    let (got, committed_at) = tokio::join!(
        receive_n(
            &c,
            TRANSACTION_TOPIC,
            &all,
            1,
            INVISIBLE,
            Duration::from_secs(20)
        ),
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let at = Instant::now();
            call("commit", commit_tx.commit())
                .await
                .unwrap_or_else(|e| panic!("commit: {e}"));
            at
        }
    );
    let (at, m) = &got[0];
    assert_eq!(
        m.message_id(),
        commit_id,
        "delivered: not the committed message"
    );
    assert!(
        *at >= committed_at,
        "committed message delivered before the commit was sent"
    );
    assert_eq!(m.body(), b"to commit");
    assert_eq!(m.topic(), TRANSACTION_TOPIC);
    assert_eq!(m.delivery_attempt(), 1);
    ack(&c, m).await;

    let again = receive(&c, TRANSACTION_TOPIC, &tag("*"), 32, INVISIBLE).await;
    assert!(
        again.is_empty(),
        "delivered after commit + ack or rollback: {:?} (rolled back: {rollback_id})",
        h::ids(&again)
    );
    let calls = log.lock().unwrap().calls.clone();
    assert!(
        calls.is_empty(),
        "resolved transactions checked back: {calls:?}"
    );
    shutdown_consumer(c).await;
    shutdown_producer(p).await;
    server.stop().await;
}

/// Brief §5 #14 and task item 6: two transactions are left unresolved (their `Transaction`s
/// dropped). The server checks them back over the producer's Telemetry with the right
/// transaction and message ids; the checker answers UNKNOWN then COMMIT for the first (so it
/// is checked at least twice, then delivered once) and ROLLBACK for the second (never
/// delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_transaction_check_back() {
    let server = GrpcServer::start_with(|c| {
        c.transaction.check_first_ms = 1000;
        c.transaction.check_interval_ms = 1000;
    })
    .await;
    let log = SharedLog::default();
    let p = producer(&server, &log).await;
    let c = server.consumer("TxCheckGroup", &[TRANSACTION_TOPIC]).await;

    let (commit_id, commit_m) = half("commit after unknown");
    let (rollback_id, rollback_m) = half("checked rollback");
    {
        let mut l = log.lock().unwrap();
        l.plans.insert(commit_id.clone(), vec![0, 1]);
        l.plans.insert(rollback_id.clone(), vec![2]);
    }
    let commit_tx = send_half(&p, &commit_id, commit_m).await;
    let commit_tx_id = commit_tx.transaction_id().to_owned();
    drop(commit_tx);
    let rollback_tx = send_half(&p, &rollback_id, rollback_m).await;
    let rollback_tx_id = rollback_tx.transaction_id().to_owned();
    drop(rollback_tx);
    let sent_at = Instant::now();

    let got = receive_n(
        &c,
        TRANSACTION_TOPIC,
        &tag("*"),
        1,
        INVISIBLE,
        Duration::from_secs(20),
    )
    .await;
    let (at, m) = &got[0];
    println!(
        "checked-back commit delivered {:?} after the send",
        at.duration_since(sent_at)
    );
    assert_eq!(
        m.message_id(),
        commit_id,
        "delivered: not the committed one"
    );
    assert_eq!(m.body(), b"commit after unknown");
    assert_eq!(m.delivery_attempt(), 1);
    ack(&c, m).await;

    let calls = log.lock().unwrap().calls.clone();
    println!("check-backs: {calls:?}");
    let of = |id: &str| -> Vec<(String, String, String)> {
        calls.iter().filter(|(_, i, _)| i == id).cloned().collect()
    };
    let commit_calls = of(&commit_id);
    assert!(
        commit_calls.len() >= 2,
        "{commit_id}: checked {} times, UNKNOWN should bring a second check",
        commit_calls.len()
    );
    for (tx, _, topic) in &commit_calls {
        assert_eq!(tx, &commit_tx_id, "check-back with another transaction id");
        assert_eq!(topic, TRANSACTION_TOPIC);
    }
    let rollback_calls = of(&rollback_id);
    assert!(
        !rollback_calls.is_empty(),
        "{rollback_id}: never checked back"
    );
    for (tx, _, _) in &rollback_calls {
        assert_eq!(
            tx, &rollback_tx_id,
            "check-back with another transaction id"
        );
    }
    assert!(
        calls
            .iter()
            .all(|(_, i, _)| *i == commit_id || *i == rollback_id),
        "check-back of an unknown message: {calls:?}"
    );

    let again = receive(&c, TRANSACTION_TOPIC, &tag("*"), 32, INVISIBLE).await;
    assert!(
        again.is_empty(),
        "delivered again or after a checked rollback: {:?} (rolled back: {rollback_id})",
        h::ids(&again)
    );
    // Resolved: no more check-backs of either (one may have been in flight).
    let n = log.lock().unwrap().calls.len();
    // A window in which nothing more may happen: the sleep is the check's subject, not a
    // synchronization.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = log.lock().unwrap().calls.len();
    assert!(
        later <= n + 1,
        "checked back {} more times after both were resolved",
        later - n
    );
    shutdown_consumer(c).await;
    shutdown_producer(p).await;
    server.stop().await;
}
