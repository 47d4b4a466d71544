//! Rendering, written once for every command: the table style, times, message bodies, the
//! shared message view, and printing a command's [`Doc`] as a table or as one JSON document.
//!
//! Invariants:
//! - stdout carries the answer only (a table, or exactly one JSON document with `--json`);
//!   errors go to stderr (see `cli.rs`), so `--json` output can be piped as is;
//! - JSON fields are snake_case; a time is given as `*_ms` (ms since the epoch) next to an
//!   RFC 3339 UTC string (`null` when the server sent 0, "no time"); a body is `body` (the
//!   text, `null` when it is not valid UTF-8) plus `body_base64` (always) and `body_size`;
//! - a table cell is one line: control characters in bodies and names are escaped, and long
//!   bodies are cut to [`BODY_WIDTH`] characters.
//!
//! Pure apart from [`emit`], which writes to stdout (a closed pipe is not an error).
//!
//! Owns how answers look; must not call a server or decide an exit code.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use comfy_table::{CellAlignment, Table};
use rocketgate_proto::cluster::v1 as pb;
use serde::Serialize;

use super::when::format_ms;

/// Widest body shown in a table cell, in characters.
pub const BODY_WIDTH: usize = 48;

/// Table style: no borders and no column lines, a dashed line under the header. Reads well in a
/// terminal, in logs, and through `grep` / `awk`.
const STYLE: &str = "     --            ";

/// A command's answer in both forms.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The JSON document (`--json`).
    pub json: serde_json::Value,
    /// The tables and lines for people.
    pub human: String,
}

impl Doc {
    /// The answer `value` (serialized for `--json`) and its human form.
    pub fn new<T: Serialize>(value: &T, human: String) -> Self {
        let json = serde_json::to_value(value)
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
        Self { json, human }
    }
}

/// Prints `doc` on stdout, as JSON or for people.
pub fn emit(doc: &Doc, json: bool) {
    let text = if json {
        serde_json::to_string_pretty(&doc.json)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    } else {
        doc.human.trim_end().to_owned()
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) is not worth an error.
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// A table with the admin style and these headers. Columns whose header is in `numeric` are
/// right-aligned.
pub fn table(headers: &[&str], numeric: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(STYLE).set_header(headers.to_vec());
    for (i, h) in headers.iter().enumerate() {
        if let Some(c) = t.column_mut(i) {
            if numeric.contains(h) {
                c.set_cell_alignment(CellAlignment::Right);
            }
            // Lines start at the first column, not one space in.
            if i == 0 {
                c.set_padding((0, 1));
            }
        }
    }
    t
}

/// A table as text, without trailing spaces; `empty` when it has no rows.
pub fn render(table: &Table, empty: &str) -> String {
    if table.row_count() == 0 {
        return format!("{empty}\n");
    }
    let mut text = String::new();
    for line in table.lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// A time cell: RFC 3339 UTC, or `-` for none.
pub fn time_cell(ms: i64) -> String {
    format_ms(ms).unwrap_or_else(|| "-".into())
}

/// A cell for text from the wire: control characters escaped, so a row stays one line.
pub fn text_cell(text: &str) -> String {
    text.chars().flat_map(char::escape_debug).collect()
}

/// A body cell: its text when valid UTF-8 (escaped, cut to [`BODY_WIDTH`] characters), else
/// `<N bytes>`.
pub fn body_cell(body: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(body) else {
        return format!("<{} bytes>", body.len());
    };
    let escaped = text_cell(text);
    if escaped.chars().count() <= BODY_WIDTH {
        return escaped;
    }
    let mut cut: String = escaped.chars().take(BODY_WIDTH - 1).collect();
    cut.push('…');
    cut
}

/// `protocol → address`, sorted by protocol.
pub fn endpoints(list: &[pb::Endpoint]) -> BTreeMap<String, String> {
    list.iter()
        .map(|e| (e.protocol.clone(), e.address.clone()))
        .collect()
}

/// `grpc=…, http=…` for a cell.
pub fn endpoints_cell(map: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = map.iter().map(|(p, a)| format!("{p}={a}")).collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// A stored message as every message command shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// The broker that answered.
    pub broker: String,
    pub message_id: String,
    pub topic: String,
    pub queue_id: u32,
    pub queue_offset: u64,
    pub physical_offset: u64,
    pub store_timestamp_ms: i64,
    pub store_time: Option<String>,
    pub born_timestamp_ms: i64,
    pub born_time: Option<String>,
    pub born_host: String,
    pub tag: String,
    pub keys: Vec<String>,
    pub message_group: String,
    pub properties: BTreeMap<String, String>,
    pub reconsume_times: u32,
    pub body_size: usize,
    /// The body as text when it is valid UTF-8.
    pub body: Option<String>,
    pub body_base64: String,
}

impl MessageView {
    /// The view of `m` as `broker` returned it.
    pub fn new(broker: &str, m: pb::StoredMessage) -> Self {
        let body_base64 = base64::engine::general_purpose::STANDARD.encode(&m.body);
        Self {
            broker: broker.to_owned(),
            store_time: format_ms(m.store_timestamp_ms),
            born_time: format_ms(m.born_timestamp_ms),
            body_size: m.body.len(),
            body: String::from_utf8(m.body).ok(),
            body_base64,
            message_id: m.message_id,
            topic: m.topic,
            queue_id: m.queue_id,
            queue_offset: m.queue_offset,
            physical_offset: m.physical_offset,
            store_timestamp_ms: m.store_timestamp_ms,
            born_timestamp_ms: m.born_timestamp_ms,
            born_host: m.born_host,
            tag: m.tag,
            keys: m.keys,
            message_group: m.message_group,
            properties: m.properties.into_iter().collect(),
            reconsume_times: m.reconsume_times,
        }
    }

    fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            Some(text) => text.as_bytes().to_vec(),
            None => base64::engine::general_purpose::STANDARD
                .decode(&self.body_base64)
                .unwrap_or_default(),
        }
    }
}

/// The messages table: one row per message.
pub fn messages_table(messages: &[MessageView]) -> String {
    let mut t = table(
        &[
            "broker",
            "message_id",
            "topic",
            "queue",
            "offset",
            "store_time",
            "tag",
            "keys",
            "retries",
            "body",
        ],
        &["queue", "offset", "retries"],
    );
    for m in messages {
        t.add_row(vec![
            m.broker.clone(),
            text_cell(&m.message_id),
            text_cell(&m.topic),
            m.queue_id.to_string(),
            m.queue_offset.to_string(),
            time_cell(m.store_timestamp_ms),
            or_dash(&text_cell(&m.tag)),
            or_dash(&text_cell(&m.keys.join(" "))),
            m.reconsume_times.to_string(),
            body_cell(&m.body_bytes()),
        ]);
    }
    render(&t, "no messages")
}

/// `-` for an empty cell.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn message(body: &[u8]) -> pb::StoredMessage {
        pb::StoredMessage {
            message_id: "01ABC".into(),
            topic: "orders".into(),
            queue_id: 3,
            queue_offset: 7,
            store_timestamp_ms: 1_796_292_000_000,
            tag: "TagA".into(),
            keys: vec!["k1".into(), "k2".into()],
            body: body.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn bodies_are_text_when_valid_utf8_else_a_size() {
        assert_eq!(body_cell(b"hello"), "hello");
        assert_eq!(body_cell(b"a\nb"), "a\\nb");
        assert_eq!(body_cell(&[0xff, 0xfe, 0]), "<3 bytes>");
        let long = "é".repeat(100);
        let cut = body_cell(long.as_bytes());
        assert_eq!(cut.chars().count(), BODY_WIDTH);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn message_json_has_text_and_base64() {
        let v = serde_json::to_value(MessageView::new("b:1", message(b"hi"))).unwrap();
        assert_eq!(v["body"], "hi");
        assert_eq!(v["body_base64"], "aGk=");
        assert_eq!(v["body_size"], 2);
        assert_eq!(v["store_time"], "2026-12-03T10:00:00.000Z");
        assert_eq!(v["born_time"], serde_json::Value::Null);
        assert_eq!(v["broker"], "b:1");
        assert_eq!(v["keys"][1], "k2");
        let v = serde_json::to_value(MessageView::new("b:1", message(&[0xff]))).unwrap();
        assert_eq!(v["body"], serde_json::Value::Null);
        assert_eq!(v["body_base64"], "/w==");
    }

    #[test]
    fn tables_have_headers_one_line_per_row_and_no_trailing_spaces() {
        let views = vec![
            MessageView::new("b:1", message(b"line1\nline2")),
            MessageView::new("b:2", message(&[0, 159, 146, 150])),
        ];
        let text = messages_table(&views);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for h in ["broker", "message_id", "store_time", "body"] {
            assert!(lines[0].contains(h), "{text}");
        }
        assert!(lines[1].chars().all(|c| c == '-' || c == ' '), "{text}");
        assert!(lines[2].contains("line1\\nline2"), "{text}");
        assert!(lines[2].contains("2026-12-03T10:00:00.000Z"), "{text}");
        assert!(lines[2].contains("k1 k2"), "{text}");
        assert!(lines[3].contains("<4 bytes>"), "{text}");
        assert!(text.lines().all(|l| !l.ends_with(' ')), "{text}");
        assert_eq!(messages_table(&[]), "no messages\n");
    }

    #[test]
    fn endpoints_render_sorted() {
        let list = vec![
            pb::Endpoint {
                protocol: "http".into(),
                address: "h:2".into(),
            },
            pb::Endpoint {
                protocol: "grpc".into(),
                address: "g:1".into(),
            },
        ];
        let map = endpoints(&list);
        assert_eq!(endpoints_cell(&map), "grpc=g:1 http=h:2");
        assert_eq!(endpoints_cell(&BTreeMap::new()), "-");
    }

    #[test]
    fn doc_serializes() {
        let doc = Doc::new(&serde_json::json!({"a": 1}), "x".into());
        assert_eq!(doc.json["a"], 1);
        assert_eq!(time_cell(0), "-");
    }
}
