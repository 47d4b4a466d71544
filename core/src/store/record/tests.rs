use super::*;
use proptest::prelude::*;

#[derive(Debug)]
struct Owned {
    topic: String,
    id: String,
    tag: String,
    group: String,
    host: String,
    keys: Vec<String>,
    props: BTreeMap<String, String>,
    body: Vec<u8>,
    born: i64,
    reconsume: u32,
    flags: u32,
    fields: StoreFields,
}

impl Owned {
    fn draft(&self) -> RecordDraft<'_> {
        RecordDraft {
            topic: &self.topic,
            message_id: &self.id,
            tag: &self.tag,
            message_group: &self.group,
            born_host: &self.host,
            keys: &self.keys,
            properties: &self.props,
            body: &self.body,
            born_timestamp: self.born,
            reconsume_times: self.reconsume,
            flags: self.flags,
            prepared_offset: 7,
        }
    }
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.draft().encode(&self.fields, &mut out).unwrap();
        out
    }
}

fn owned() -> impl Strategy<Value = Owned> {
    (
        "[a-zA-Z0-9_%|-]{1,20}",
        "[0-9A-F]{0,34}",
        ".{0,10}",
        ".{0,10}",
        (
            ".{0,8}",
            proptest::collection::vec(".{0,12}", 0..4),
            proptest::collection::btree_map(".{1,8}", ".{0,20}", 0..5),
            proptest::collection::vec(any::<u8>(), 0..600),
        ),
        (any::<i64>(), any::<u32>(), any::<u32>()),
        (any::<u32>(), any::<u64>(), any::<u64>(), any::<i64>()),
    )
        .prop_map(
            |(topic, id, tag, group, (host, keys, props, body), (born, reconsume, flags), f)| {
                Owned {
                    topic,
                    id,
                    tag,
                    group,
                    host,
                    keys,
                    props,
                    body,
                    born,
                    reconsume,
                    flags,
                    fields: StoreFields {
                        queue_id: f.0,
                        queue_offset: f.1,
                        physical_offset: f.2,
                        store_timestamp: f.3,
                        raft_term: 3,
                        raft_index: 9,
                    },
                }
            },
        )
}

const MAX: usize = 1 << 20;

proptest! {
    #[test]
    fn roundtrip(m in owned()) {
        let buf = m.encode();
        prop_assert_eq!(buf.len(), m.draft().encoded_len().unwrap());
        let v = RecordView::parse(&buf, MAX, Some(m.fields.physical_offset)).unwrap();
        prop_assert_eq!(v.total_len, buf.len());
        prop_assert_eq!(v.fields, m.fields);
        prop_assert_eq!(v.topic, m.topic.as_str());
        prop_assert_eq!(v.message_id, m.id.as_str());
        prop_assert_eq!(v.tag, m.tag.as_str());
        prop_assert_eq!(v.message_group, m.group.as_str());
        prop_assert_eq!(v.born_host, m.host.as_str());
        prop_assert_eq!(v.keys().collect::<Vec<_>>(), m.keys.iter().map(String::as_str).collect::<Vec<_>>());
        let props: BTreeMap<String, String> =
            v.properties().map(|(k, x)| (k.to_owned(), x.to_owned())).collect();
        prop_assert_eq!(props, m.props.clone());
        prop_assert_eq!(v.body, &m.body[..]);
        prop_assert_eq!(v.born_timestamp, m.born);
        prop_assert_eq!(v.reconsume_times, m.reconsume);
        prop_assert_eq!(v.flags, m.flags);
        prop_assert_eq!(v.prepared_offset, 7);
        // Trailing bytes after the record are ignored (the next record starts there).
        let mut longer = buf.clone();
        longer.extend_from_slice(&[0xAB; 16]);
        prop_assert!(RecordView::parse(&longer, MAX, None).is_ok());
    }

    #[test]
    fn any_byte_corruption_is_detected(m in owned(), pos in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let mut buf = m.encode();
        let i = pos.index(buf.len());
        buf[i] ^= xor;
        prop_assert!(RecordView::parse(&buf, MAX, Some(m.fields.physical_offset)).is_err());
    }

    #[test]
    fn truncation_is_detected(m in owned(), cut in any::<prop::sample::Index>()) {
        let buf = m.encode();
        let n = cut.index(buf.len());
        prop_assert!(RecordView::parse(&buf[..n], MAX, None).is_err());
    }

    #[test]
    fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = RecordView::parse(&buf, MAX, None);
        let _ = peek(&buf);
    }
}

#[test]
fn length_past_the_segment_is_rejected_before_reading() {
    // A header claiming 1 GiB, in a 200-byte buffer: rejected as out of bounds or truncated,
    // without looking at (or allocating for) the claimed bytes.
    let mut buf = vec![0u8; 200];
    buf[..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
    buf[4..8].copy_from_slice(&RECORD_MAGIC_V1.to_le_bytes());
    assert_eq!(
        RecordView::parse(&buf, MAX, None),
        Err(DecodeError::BadLength)
    );
    assert_eq!(
        RecordView::parse(&buf, 1 << 31, None),
        Err(DecodeError::Truncated)
    );
    buf[..4].copy_from_slice(&10u32.to_le_bytes());
    assert_eq!(
        RecordView::parse(&buf, MAX, None),
        Err(DecodeError::BadLength)
    );
}

#[test]
fn wrong_offset_and_peek() {
    let m = Owned {
        topic: "t".into(),
        id: "id".into(),
        tag: String::new(),
        group: String::new(),
        host: String::new(),
        keys: vec![],
        props: BTreeMap::new(),
        body: b"x".to_vec(),
        born: 1,
        reconsume: 0,
        flags: 0,
        fields: StoreFields {
            physical_offset: 100,
            ..StoreFields::default()
        },
    };
    let buf = m.encode();
    assert_eq!(
        RecordView::parse(&buf, MAX, Some(5)),
        Err(DecodeError::WrongOffset)
    );
    assert_eq!(peek(&buf), Peek::Record { len: buf.len() });
    assert_eq!(peek(&[0u8; 8]), Peek::Empty);
    assert_eq!(peek(&[0u8; 3]), Peek::Empty);
    assert_eq!(peek(&blank(64)), Peek::Blank { len: 64 });
    assert_eq!(peek(&[1, 2, 3, 4, 5, 6, 7, 8]), Peek::Garbage);
}
