//! The cases of `bench mqtt` against one broker: publish throughput at QoS 0 and QoS 1 with
//! `--clients` connections, QoS 1 on one connection with `--single-inflight` in flight, and
//! publish → subscriber latency at `--rate`.
//!
//! Owns the publisher and subscriber tasks and what each case counts (see the invariants of
//! [`super`]): a broker with a [`Counter`] (rocketgate) has every QoS 0 publish and every QoS 1
//! acknowledgement checked against its store; a broker without one (Mosquitto) is counted by
//! what the clients saw.
//!
//! Called by [`super::one_run`] on the client runtime. Must not print results (progress only).

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::count::Counter;
use super::wire::{connect, frame, publish, put_len, put_str};
use super::{CaseResult, MqttArgs};
use crate::cpu::ServerCpu;
use crate::error::{ensure, BenchError, Context, Result};
use crate::report::{histogram, Latency};
use crate::units::per_sec;

/// The broker a case runs against.
pub(super) struct Peer<'a> {
    /// `rocketgate` or `mosquitto`.
    pub(super) name: &'static str,
    /// Its MQTT address.
    pub(super) addr: &'a str,
    /// Its store count, if it stores.
    pub(super) counter: Option<&'a Counter>,
    /// Whose CPU time is its.
    pub(super) cpu: ServerCpu,
}

/// Every case against `peer`.
///
/// # Errors
/// A broker that does not accept MQTT connections, a failed store count, a latency case that
/// cannot subscribe.
pub(super) async fn measure(args: &MqttArgs, peer: &Peer<'_>) -> Result<Vec<CaseResult>> {
    drop(
        connect(peer.addr, "rg-bench-probe")
            .await
            .with_context(|| format!("no MQTT broker at {}", peer.addr))?,
    );
    let name = peer.name;
    let n = args.clients;
    eprintln!("{name}: QoS 0 throughput, {n} connections ...");
    let q0 = throughput(args, peer, (0, n, args.inflight)).await?;
    eprintln!("{name}: QoS 1 throughput, {n} connections ...");
    let q1 = throughput(args, peer, (1, n, args.inflight)).await?;
    eprintln!("{name}: QoS 1 throughput, 1 connection ...");
    let single = throughput(args, peer, (1, 1, args.single_inflight)).await?;
    eprintln!("{name}: latency at {} msgs/s ...", args.rate);
    let lat = latency(args, peer).await?;
    Ok(vec![q0, q1, single, lat])
}

/// Publishers for `--duration`; `(qos, clients, inflight)`.
async fn throughput(
    args: &MqttArgs,
    peer: &Peer<'_>,
    (qos, clients, inflight): (u8, usize, usize),
) -> Result<CaseResult> {
    let before = match peer.counter {
        Some(c) => c.count().await?,
        None => 0,
    };
    let cpu = peer.cpu.start();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = peer.addr.to_owned();
        let size = args.size as usize;
        let duration = args.duration;
        let id = format!("rg-bench-pub-{c}-of-{clients}-qos{qos}");
        tasks.push(tokio::spawn(async move {
            publisher(&addr, &id, (c, qos), size, duration, inflight.max(1)).await
        }));
    }
    let (mut written, mut failed) = (0, 0);
    let mut notes = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(k)) => written += k,
            Ok(Err(e)) => {
                failed += 1;
                notes.push(format!("publisher: {e}"));
            }
            Err(e) => {
                failed += 1;
                notes.push(format!("publisher task: {e}"));
            }
        }
    }
    let mut end = Instant::now();
    let stored = match peer.counter {
        Some(c) => {
            let (after, grew) = c.settle(before, written).await?;
            end = grew.map_or(end, |g| g.max(end));
            Some(after.saturating_sub(before))
        }
        None => None,
    };
    let mut errors = failed;
    let (messages, counted) = match (qos, stored) {
        (0, Some(s)) => {
            if s != written {
                errors += s.abs_diff(written);
                notes.push(format!("{written} QoS 0 publishes written, {s} stored"));
            }
            (s, "stored")
        }
        (0, None) => (written, "read by the broker"),
        (_, Some(s)) => {
            if s < written {
                errors += written - s;
                notes.push(format!(
                    "{written} QoS 1 publishes acknowledged, {s} stored"
                ));
            }
            (written, "PUBACKs (each one stored)")
        }
        (_, None) => (written, "PUBACKs"),
    };
    let secs = end.duration_since(start).as_secs_f64();
    let conns = if clients == 1 { "conn" } else { "conns" };
    Ok(CaseResult {
        broker: peer.name,
        case: format!("QoS {qos}, {clients} {conns}"),
        qos,
        clients,
        inflight: (qos > 0).then_some(inflight),
        written,
        stored,
        counted,
        messages,
        secs,
        msgs_per_sec: per_sec(messages, secs),
        latency: None,
        server_cpu_us_per_msg: cpu.per_message_us(messages),
        errors,
        error_notes: notes,
    })
}

/// One publisher connection: publishes to `bench/tp/<c>` for `duration`; answers the publishes
/// completed (QoS 0: written before the answer to a closing PINGREQ; QoS 1: acknowledged).
async fn publisher(
    addr: &str,
    id: &str,
    (c, qos): (usize, u8),
    size: usize,
    duration: Duration,
    inflight: usize,
) -> Result<u64> {
    let mut s = connect(addr, id).await?;
    let topic = format!("bench/tp/{c}");
    let payload = vec![b'x'; size];
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut inb = BytesMut::with_capacity(64 * 1024);
    let end = Instant::now() + duration;
    let (mut sent, mut acked, mut pkid) = (0u64, 0u64, 0u16);
    while Instant::now() < end {
        if qos == 0 {
            for _ in 0..64 {
                publish(&mut out, &topic, 0, 0, &payload);
            }
            sent += 64;
            s.write_all(&out).await?;
            out.clear();
        } else {
            while sent - acked < inflight as u64 {
                pkid = pkid.checked_add(1).unwrap_or(1);
                publish(&mut out, &topic, 1, pkid, &payload);
                sent += 1;
            }
            s.write_all(&out).await?;
            out.clear();
            let (t, _) = frame(&mut s, &mut inb).await?;
            if t >> 4 == 4 {
                acked += 1;
            }
            while let Some(t) = inb.first().copied() {
                if inb.len() >= 4 && t >> 4 == 4 {
                    inb.advance(4);
                    acked += 1;
                } else {
                    break;
                }
            }
        }
    }
    // Drain: QoS 1 waits for every PUBACK; QoS 0 for the answer to a PINGREQ.
    if qos == 0 {
        s.write_all(&[0xc0, 0]).await?;
        loop {
            let (t, _) = frame(&mut s, &mut inb).await?;
            if t >> 4 == 13 {
                break;
            }
        }
        Ok(sent)
    } else {
        while acked < sent {
            let (t, _) = frame(&mut s, &mut inb).await?;
            if t >> 4 == 4 {
                acked += 1;
            }
        }
        Ok(acked)
    }
}

/// The publish → subscriber delay of a PUBLISH frame's payload (a 16-byte send time in ns from
/// `base`), and its packet id if it needs a PUBACK; `None` for a frame too short to be one.
fn delivered(t: u8, mut body: BytesMut, now_ns: u128) -> Option<(Option<u128>, Option<u16>)> {
    if body.len() < 2 {
        return None;
    }
    let topic = usize::from(u16::from_be_bytes([body[0], body[1]]));
    if body.len() < 2 + topic {
        return None;
    }
    body.advance(2 + topic);
    let pkid = if (t >> 1) & 3 > 0 {
        if body.len() < 2 {
            return None;
        }
        Some(body.get_u16())
    } else {
        None
    };
    let delay = (body.len() >= 16).then(|| {
        let mut ts = [0u8; 16];
        ts.copy_from_slice(&body[..16]);
        now_ns.saturating_sub(u128::from_be_bytes(ts))
    });
    Some((delay, pkid))
}

/// `--clients` publishers at `--rate` in total for `--duration` to `bench/lat/<c>`, one
/// subscriber to `bench/lat/#`.
async fn latency(args: &MqttArgs, peer: &Peer<'_>) -> Result<CaseResult> {
    let qos = args.latency_qos;
    let before = match peer.counter {
        Some(c) => c.count().await?,
        None => 0,
    };
    let mut sub = connect(peer.addr, &format!("rg-bench-sub-{qos}")).await?;
    let mut b = BytesMut::new();
    b.put_u8(0x82);
    put_len(&mut b, 2 + 2 + "bench/lat/#".len() + 1);
    b.put_u16(1);
    put_str(&mut b, "bench/lat/#");
    b.put_u8(qos);
    sub.write_all(&b).await?;
    let mut inb = BytesMut::new();
    let (t, _) = frame(&mut sub, &mut inb).await?;
    ensure!(t >> 4 == 9, "no SUBACK");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = Instant::now();
    let total = (args.rate * args.duration.as_secs_f64()).max(1.0) as u64;
    let clients = args.clients as u64;
    let interval = Duration::from_secs_f64(clients as f64 / args.rate);
    let size = args.size as usize;
    let mut pubs = Vec::new();
    for c in 0..clients {
        let addr = peer.addr.to_owned();
        let per = total / clients + u64::from(c < total % clients);
        pubs.push(tokio::spawn(async move {
            let s = connect(&addr, &format!("rg-bench-lpub-{c}")).await?;
            let (mut r, mut w) = s.into_split();
            // PUBACKs (and anything else) are read and dropped.
            let drain = tokio::spawn(async move {
                let mut b = [0u8; 8192];
                while matches!(r.read(&mut b).await, Ok(n) if n > 0) {}
            });
            let topic = format!("bench/lat/{c}");
            let mut payload = vec![b'x'; size];
            let mut out = BytesMut::new();
            let offset = interval.mul_f64(c as f64 / clients as f64);
            for i in 0..per {
                let at = offset + interval.mul_f64(i as f64);
                tokio::time::sleep_until((base + at).into()).await;
                payload[..16].copy_from_slice(&at.as_nanos().to_be_bytes());
                let pkid = (i % 65_535 + 1) as u16;
                publish(&mut out, &topic, qos, pkid, &payload);
                w.write_all(&out).await?;
                out.clear();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            drain.abort();
            Ok::<_, BenchError>(per)
        }));
    }
    let mut h = histogram()?;
    let mut got = 0u64;
    let deadline = Instant::now() + args.duration + Duration::from_secs(10);
    while got < total && Instant::now() < deadline {
        let r = tokio::time::timeout(Duration::from_secs(2), frame(&mut sub, &mut inb)).await;
        let Ok(Ok((t, body))) = r else { break };
        if t >> 4 != 3 {
            continue;
        }
        let now = base.elapsed().as_nanos();
        let Some((delay, pkid)) = delivered(t, body, now) else {
            continue;
        };
        if let Some(pkid) = pkid {
            sub.write_all(&[0x40, 2, (pkid >> 8) as u8, pkid as u8])
                .await?;
        }
        if let Some(d) = delay {
            h.record(u64::try_from(d).unwrap_or(u64::MAX).max(1))?;
        }
        got += 1;
    }
    let (mut errors, mut published) = (0, 0);
    let mut notes = Vec::new();
    for p in pubs {
        match p.await {
            Ok(Ok(n)) => published += n,
            Ok(Err(e)) => notes.push(format!("latency publisher: {e}")),
            Err(e) => notes.push(format!("latency publisher task: {e}")),
        }
    }
    errors += notes.len() as u64;
    if got < total {
        errors += total - got;
        notes.push(format!(
            "{} of {total} messages never reached the subscriber",
            total - got
        ));
    }
    let stored = match peer.counter {
        Some(c) => Some(c.settle(before, published).await?.0.saturating_sub(before)),
        None => None,
    };
    if let Some(s) = stored.filter(|s| *s < published) {
        errors += published - s;
        notes.push(format!("{published} latency publishes written, {s} stored"));
    }
    let secs = args.duration.as_secs_f64();
    Ok(CaseResult {
        broker: peer.name,
        case: format!("latency QoS {qos} @ {:.0}/s", args.rate),
        qos,
        clients: args.clients,
        inflight: None,
        written: published,
        stored,
        counted: "received",
        messages: got,
        secs,
        msgs_per_sec: per_sec(got, secs),
        latency: Some(Latency::from(&h)),
        server_cpu_us_per_msg: None,
        errors,
        error_notes: notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_delays_and_packet_ids_without_panicking() {
        let mut b = BytesMut::new();
        put_str(&mut b, "bench/lat/0");
        b.put_u16(7);
        b.put_slice(&100u128.to_be_bytes());
        assert_eq!(delivered(0x32, b.clone(), 150), Some((Some(50), Some(7))));
        let mut q0 = BytesMut::new();
        put_str(&mut q0, "t");
        q0.put_slice(&100u128.to_be_bytes());
        assert_eq!(delivered(0x30, q0, 90), Some((Some(0), None)));
        assert_eq!(delivered(0x32, BytesMut::from(&[0u8][..]), 0), None);
        assert_eq!(delivered(0x32, BytesMut::from(&[0u8, 9, 1][..]), 0), None);
    }
}
