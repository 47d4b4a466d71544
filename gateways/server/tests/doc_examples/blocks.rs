//! The fenced code blocks of a Markdown file and their `doc-test` markers: what the doc test
//! runs (`sh`/`bash` blocks), starts in the background (`server`), writes to a file (`file NAME`)
//! or skips (`skip (reason)`). Pure parsing: it starts nothing and touches no file.

/// What the doc test does with a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An `sh` block: run to completion, must exit 0.
    Run,
    /// `<!-- doc-test: server -->` before an `sh` block: it starts long-running servers; run in
    /// the background until every `rocketgate standalone|nameserver|broker` it starts is ready.
    Server,
    /// `<!-- doc-test: file NAME -->`: the block's text is written to `NAME` (ports rewritten).
    File(String),
    /// `<!-- doc-test: skip (reason) -->` before an `sh` block: not run, listed with its reason.
    Skip(String),
    /// Any other language (`text`, `console`, `toml`, `json`, none...): documentation only.
    Inert,
}

/// One fenced block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The Markdown file, relative to the repository root.
    pub file: String,
    /// 1-based line of the block's first line of content.
    pub line: usize,
    /// The content, its fence's indentation removed.
    pub text: String,
    pub kind: Kind,
}

impl Block {
    /// `file:line` of the block's first line of content.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

const MARKER: &str = "<!-- doc-test:";

/// Languages whose blocks are run.
fn runnable(lang: &str) -> bool {
    matches!(lang, "sh" | "bash" | "shell")
}

/// The first lines of an untagged block that look like commands someone would paste: such a
/// block must say what it is (`sh`, or `text`/`console` when it is not to be run).
fn looks_like_command(line: &str) -> bool {
    let l = line.trim_start().trim_start_matches("$ ");
    [
        "rocketgate ",
        "cargo ",
        "curl ",
        "mosquitto_",
        "scripts/",
        "python3 ",
    ]
    .iter()
    .any(|p| l.starts_with(p))
}

/// The blocks of `text` (the content of `file`), or every problem found (an unknown or
/// misplaced marker, a skip without a reason, an unclosed fence, an untagged command block).
pub fn parse(file: &str, text: &str) -> Result<Vec<Block>, Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut problems = Vec::new();
    let mut marker: Option<(usize, String)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(MARKER) {
            if let Some((at, _)) = &marker {
                problems.push(format!(
                    "{file}:{at}: a doc-test marker not followed by a block"
                ));
            }
            match rest.trim().strip_suffix("-->") {
                Some(m) => marker = Some((i + 1, m.trim().to_owned())),
                None => problems.push(format!("{file}:{}: unclosed doc-test marker", i + 1)),
            }
            i += 1;
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            let indent = line.len() - trimmed.len();
            let lang = info.split_whitespace().next().unwrap_or("").to_owned();
            let start = i + 1;
            let mut body = Vec::new();
            i += 1;
            while i < lines.len() && lines[i].trim() != "```" {
                let l = lines[i];
                body.push(if l.len() >= indent && l[..indent].trim().is_empty() {
                    &l[indent..]
                } else {
                    l.trim_start()
                });
                i += 1;
            }
            if i == lines.len() {
                problems.push(format!("{file}:{start}: unclosed code block"));
            }
            let text = body.join("\n") + "\n";
            let kind = match marker.take() {
                None if runnable(&lang) => Kind::Run,
                None => {
                    if lang.is_empty() && body.first().is_some_and(|l| looks_like_command(l)) {
                        problems.push(format!(
                            "{file}:{start}: an untagged block of commands: tag it ```sh (run \
                             by the doc test) or ```text / ```console (not run)"
                        ));
                    }
                    Kind::Inert
                }
                Some((at, m)) => match marker_kind(&m, &lang) {
                    Ok(k) => k,
                    Err(e) => {
                        problems.push(format!("{file}:{at}: {e}"));
                        Kind::Inert
                    }
                },
            };
            blocks.push(Block {
                file: file.to_owned(),
                line: start + 1,
                text,
                kind,
            });
            i += 1;
            continue;
        }
        if marker.is_some() && !trimmed.is_empty() {
            let (at, _) = marker.take().unwrap_or_default();
            problems.push(format!(
                "{file}:{at}: a doc-test marker must come right before a block"
            ));
        }
        i += 1;
    }
    if let Some((at, _)) = marker {
        problems.push(format!(
            "{file}:{at}: a doc-test marker not followed by a block"
        ));
    }
    if problems.is_empty() {
        Ok(blocks)
    } else {
        Err(problems)
    }
}

fn marker_kind(marker: &str, lang: &str) -> Result<Kind, String> {
    if let Some(name) = marker.strip_prefix("file ") {
        let name = name.trim();
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(format!("`file {name}`: a plain file name is needed"));
        }
        return Ok(Kind::File(name.to_owned()));
    }
    if !runnable(lang) {
        return Err(format!(
            "`{marker}` is for ```sh blocks (this one is `{lang}`)"
        ));
    }
    if marker == "server" {
        return Ok(Kind::Server);
    }
    if let Some(rest) = marker.strip_prefix("skip") {
        let reason = rest.trim();
        if let Some(r) = reason.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
            if !r.trim().is_empty() {
                return Ok(Kind::Skip(r.trim().to_owned()));
            }
        }
        return Err("`skip` needs a reason: <!-- doc-test: skip (why) -->".into());
    }
    Err(format!(
        "unknown doc-test marker `{marker}` (known: server, file NAME, skip (reason))"
    ))
}

#[test]
fn markers_and_blocks_parse() {
    let md = "x\n<!-- doc-test: skip (long) -->\n```sh\nsleep 1d\n```\n\n```sh\necho hi\n```\n\
              <!-- doc-test: file a.toml -->\n```toml\n[x]\n```\n  ```text\n  out\n  ```\n";
    let b = parse("t.md", md).unwrap();
    assert_eq!(b.len(), 4);
    assert_eq!(b[0].kind, Kind::Skip("long".into()));
    assert_eq!(b[0].line, 4);
    assert_eq!(b[1].kind, Kind::Run);
    assert_eq!(b[1].text, "echo hi\n");
    assert_eq!(b[2].kind, Kind::File("a.toml".into()));
    assert_eq!(b[3].kind, Kind::Inert);
    assert_eq!(b[3].text, "out\n");
    for bad in [
        "<!-- doc-test: skip -->\n```sh\nx\n```\n",
        "<!-- doc-test: bogus -->\n```sh\nx\n```\n",
        "<!-- doc-test: server -->\ntext\n```sh\nx\n```\n",
        "```\nrocketgate standalone\n```\n",
        "```sh\nunclosed\n",
    ] {
        assert!(parse("t.md", bad).is_err(), "{bad}");
    }
}
