//! Committed offsets stay inside their queue (issue 14).

use super::*;
use crate::broker::topic::TopicConfig;
use crate::config::Config;
use crate::error::{ErrorKind, Reason};
use crate::message::Message;

#[tokio::test]
async fn an_offset_past_the_end_of_its_queue_is_refused() {
    // The probe: committing offset 1,000,000 on an empty queue was accepted, so the group
    // would skip the first million messages ever sent there.
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.store.data_dir = dir.path().to_path_buf();
    c.store.segment_size = 1 << 20;
    c.store.disk_max_used_ratio = 1.0; // the machine's disk use is not the subject
    let b = Broker::open(c).unwrap();
    b.topics().create(TopicConfig::new("t", 2)).unwrap();
    let e = b
        .consumer()
        .commit_offset("g", "t", 0, 1_000_000)
        .unwrap_err();
    assert!(matches!(e, Error::OffsetOutOfRange { end: 0, .. }), "{e:?}");
    assert_eq!(e.reason(), Reason::OffsetOutOfRange);
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        b.groups().list().is_empty(),
        "a refused commit creates no group"
    );
    for i in 0..3 {
        b.producer()
            .send(crate::api::SendRequest::new(
                Message::new("t", format!("m{i}")),
                crate::api::QueueSelector::Queue(0),
            ))
            .await
            .unwrap();
    }
    // Up to one past the last message: the end itself means "consumed everything".
    for ok in [0, 2, 3] {
        b.consumer().commit_offset("g", "t", 0, ok).unwrap();
        assert_eq!(
            b.consumer().committed_offset("g", "t", 0).unwrap(),
            Some(ok)
        );
    }
    let e = b.consumer().commit_offset("g", "t", 0, 4).unwrap_err();
    assert!(matches!(e, Error::OffsetOutOfRange { end: 3, .. }), "{e:?}");
    assert_eq!(b.consumer().committed_offset("g", "t", 0).unwrap(), Some(3));
    // Queue 1 is still empty.
    assert!(b.consumer().commit_offset("g", "t", 1, 1).is_err());
}
