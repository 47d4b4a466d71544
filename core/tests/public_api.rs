//! Core's public API surface, as a snapshot that changes only on purpose (STYLE.md II.1: a
//! façade is closed or it isn't one).
//!
//! The surface is read from the sources, without nightly rustdoc: the `pub mod` / `pub use`
//! declarations of `lib.rs`; every `pub` item (and public field) of the public modules; every
//! `pub` method of every type `lib.rs` re-exports (the `Broker`, its services, the API types),
//! wherever its `impl` blocks are; and every `pub` item of a private module that `lib.rs`
//! re-exports from. A new `pub` door in any of those places changes the
//! text, and this test fails until `core/tests/public-api.txt` is regenerated deliberately:
//!
//! ```sh
//! RG_UPDATE_API=1 cargo test -p rocketgate-core --test public_api
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A file's text up to its unit tests (`#[cfg(test)]` followed by `mod tests`).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod tests"))
        .unwrap_or(lines.len());
    lines[..end].join("\n")
}

/// Statements starting at lines that satisfy `start`, joined up to the first `{` or `;`,
/// whitespace collapsed.
fn statements(code: &str, start: impl Fn(&str) -> bool) -> Vec<String> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim();
        if start(l) {
            let mut s = String::new();
            let mut j = i;
            loop {
                let part = lines[j].trim();
                let cut = part
                    .find(['{', ';'])
                    .filter(|_| !part.starts_with("pub use"));
                let cut = match part.starts_with("pub use") || s.starts_with("pub use") {
                    true => part.find(';'),
                    false => cut,
                };
                match cut {
                    Some(c) => {
                        s.push_str(&part[..c]);
                        break;
                    }
                    None => {
                        s.push_str(part);
                        s.push(' ');
                    }
                }
                j += 1;
                if j >= lines.len() {
                    break;
                }
            }
            out.push(s.split_whitespace().collect::<Vec<_>>().join(" "));
            i = j;
        }
        i += 1;
    }
    out
}

fn is_pub(l: &str) -> bool {
    l.starts_with("pub ") && !l.starts_with("pub(")
}

fn module_file(name: &str) -> PathBuf {
    let flat = src().join(format!("{name}.rs"));
    match flat.exists() {
        true => flat,
        false => src().join(name).join("mod.rs"),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn rel(p: &Path) -> String {
    p.strip_prefix(src())
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

fn surface() -> String {
    let mut out = Vec::new();
    let lib = code_of(&src().join("lib.rs"));
    let decls = statements(&lib, |l| {
        l.starts_with("pub mod ") || l.starts_with("pub use ")
    });
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    for d in &decls {
        out.push(format!("lib.rs: {d}"));
        if let Some(m) = d.strip_prefix("pub mod ") {
            files.insert(module_file(m.trim()));
        }
        // `pub use a::b::{X, Y}` from a private module: that module's file is surface too.
        if let Some(path) = d.strip_prefix("pub use ") {
            let path = path.split("::{").next().unwrap_or(path);
            let mut parts: Vec<&str> = path.split("::").collect();
            if !d.contains("::{") {
                parts.pop();
            }
            if parts.len() > 1 {
                let mut f = src();
                for p in &parts[..parts.len() - 1] {
                    f = f.join(p);
                }
                let last = parts[parts.len() - 1];
                let flat = f.join(format!("{last}.rs"));
                files.insert(match flat.exists() {
                    true => flat,
                    false => f.join(last).join("mod.rs"),
                });
            }
        }
    }
    for f in &files {
        for s in statements(&code_of(f), is_pub) {
            out.push(format!("{}: {s}", rel(f)));
        }
    }
    // Methods of every type `lib.rs` re-exports (the `Broker`, its services, the API types),
    // wherever their `impl` blocks are.
    let exported: BTreeSet<String> = decls
        .iter()
        .filter_map(|d| d.strip_prefix("pub use "))
        .flat_map(|path| {
            let names = match path.split_once("::{") {
                Some((_, list)) => list.trim_end_matches('}').to_owned(),
                None => path.rsplit("::").next().unwrap_or("").to_owned(),
            };
            names
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut all = Vec::new();
    rust_files(&src(), &mut all);
    all.sort();
    for f in &all {
        let code = code_of(f);
        let mut current: Option<String> = None;
        let mut block = String::new();
        for line in code.lines() {
            if current.is_none() {
                if let Some(rest) = line.strip_prefix("impl ") {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if exported.contains(&name) && line.ends_with('{') && !rest.contains(" for ") {
                        current = Some(name);
                        block.clear();
                    }
                }
                continue;
            }
            if line == "}" {
                let name = current.take().unwrap_or_default();
                for s in statements(&block, is_pub) {
                    out.push(format!("{name}: {s}"));
                }
                continue;
            }
            block.push_str(line);
            block.push('\n');
        }
    }
    out.sort();
    out.dedup();
    out.join("\n") + "\n"
}

#[test]
fn the_public_api_changes_only_on_purpose() {
    let now = surface();
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/public-api.txt");
    if std::env::var_os("RG_UPDATE_API").is_some() {
        std::fs::write(&snapshot, &now).unwrap();
        return;
    }
    let before = std::fs::read_to_string(&snapshot).unwrap_or_default();
    if before != now {
        let old: BTreeSet<&str> = before.lines().collect();
        let new: BTreeSet<&str> = now.lines().collect();
        let added: Vec<&&str> = new.difference(&old).collect();
        let removed: Vec<&&str> = old.difference(&new).collect();
        panic!(
            "core's public API changed.\nadded:\n{added:#?}\nremoved:\n{removed:#?}\n\
             If that is on purpose, regenerate the snapshot:\n\
             RG_UPDATE_API=1 cargo test -p rocketgate-core --test public_api"
        );
    }
}

#[test]
fn the_surface_reader_sees_the_facade() {
    let s = surface();
    assert!(s.contains("Broker: pub fn producer(&self) -> Producer<'_>"));
    assert!(
        s.contains("Producer: pub async fn send(self, req: SendRequest) -> Result<SendReceipt>")
    );
    assert!(s.contains("lib.rs: pub use broker::{ Auth, Broker, Consumer,"));
    assert!(!s.contains("pub mod store"), "the store must stay private");
}
