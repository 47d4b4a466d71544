//! SQL92 filter expressions of subscriptions (RocketMQ `SQL92` type): `a > 5 AND b = 'x'`.
//!
//! Owns: lexing and parsing an expression into a [`SqlFilter`] and evaluating it against a
//! message's user properties plus its tag. Pure: no I/O, no locks, no allocation while matching.
//!
//! # Grammar
//!
//! Keywords are case-insensitive; property names are case-sensitive and may not be keywords.
//!
//! ```text
//! expr      := and ( OR and )*
//! and       := not ( AND not )*
//! not       := NOT not | predicate
//! predicate := '(' expr ')' | TRUE | FALSE
//!            | operand ( cmp operand
//!                      | IS [NOT] NULL
//!                      | [NOT] BETWEEN operand AND operand
//!                      | [NOT] IN '(' literal ( ',' literal )* ')'
//!                      | [NOT] LIKE string [ ESCAPE string ]
//!                      | [NOT] ( CONTAINS | STARTSWITH | ENDSWITH ) string )
//! cmp       := '=' | '<>' | '!=' | '>' | '>=' | '<' | '<='
//! operand   := property | literal
//! literal   := [ '+' | '-' ] integer | [ '+' | '-' ] decimal | string | TRUE | FALSE | NULL
//! property  := [A-Za-z_$] [A-Za-z0-9_.$]*
//! ```
//!
//! Integers are `i64`; decimals (`1.5`, `2e3`) are finite `f64`; strings are single-quoted with
//! `''` for a quote. Precedence: NOT > AND > OR; comparisons bind tighter than NOT. Whitespace
//! is space, tab, CR, LF. An empty expression is an error (callers decide what "no filter" means).
//!
//! # Semantics
//!
//! - Property values are text. The name `TAGS` (exactly) is the message tag, shadowing any user
//!   property of that name; no tag is NULL. Either side of a comparison may be a property.
//! - Three-valued logic: a predicate is TRUE, FALSE or UNKNOWN; AND/OR/NOT follow SQL (Kleene),
//!   so `NOT UNKNOWN` is UNKNOWN. [`SqlFilter::matches`] is true only for TRUE.
//! - A missing property or a `NULL` operand makes every comparison UNKNOWN (also `= NULL`); only
//!   `IS [NOT] NULL` tests for absence. So `x IN ('a', NULL)` is TRUE or UNKNOWN, never FALSE.
//! - Against a number, text is parsed as `i64`, else as finite `f64` (no trimming); text that
//!   does not parse makes the comparison UNKNOWN. Two integers compare exactly, otherwise as
//!   `f64`.
//! - Text against text compares exactly (case-sensitive) with `=`, `<>`/`!=`; ordering operators
//!   on text (`'b' > 'a'`) and on booleans are UNKNOWN, never lexicographic.
//! - Against `TRUE`/`FALSE`, text `true`/`false` (any case) is a boolean; other text is UNKNOWN.
//! - `BETWEEN lo AND hi` is `>= lo AND <= hi`; `IN (..)` is an OR of `=`; the `NOT` forms are the
//!   three-valued negations.
//! - `LIKE`: `%` is any sequence, `_` one character, optional one-character `ESCAPE`; matched
//!   case-sensitively in O(text × pattern) without backtracking blow-up. `CONTAINS`,
//!   `STARTSWITH`, `ENDSWITH` are case-sensitive substring tests. Non-text operands: UNKNOWN.
//!
//! # Limits
//!
//! At most [`MAX_SQL_LEN`] bytes, nesting of parentheses and `NOT` at most [`MAX_SQL_DEPTH`],
//! at most [`MAX_IN_ITEMS`] items per `IN`. Errors carry a 0-based byte position. No input
//! panics: lookups are checked and recursion is bounded by the nesting limit.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Longest accepted expression, in bytes.
pub const MAX_SQL_LEN: usize = 4096;
/// Deepest nesting of parentheses and `NOT`.
pub const MAX_SQL_DEPTH: usize = 64;
/// Most items in one `IN` list.
pub const MAX_IN_ITEMS: usize = 256;

/// A malformed expression: what is wrong and where (0-based byte offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct SqlError {
    /// What is wrong.
    pub message: String,
    /// Byte offset into the expression.
    pub position: usize,
}

fn err<T>(message: impl Into<String>, position: usize) -> Result<T, SqlError> {
    Err(SqlError {
        message: message.into(),
        position,
    })
}

/// A parsed SQL92 filter.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFilter {
    expr: Expr,
}

impl SqlFilter {
    /// Parses an expression.
    ///
    /// # Errors
    /// [`SqlError`] for malformed, empty or over-limit input, with the offending byte position.
    pub fn parse(expr: &str) -> Result<Self, SqlError> {
        if expr.len() > MAX_SQL_LEN {
            return err(
                format!("expression longer than {MAX_SQL_LEN} bytes"),
                MAX_SQL_LEN,
            );
        }
        let mut p = Parser {
            src: expr,
            tokens: lex(expr)?,
            at: 0,
            depth: 0,
        };
        if *p.peek() == Tok::Eof {
            return err("empty expression", 0);
        }
        let expr = p.or()?;
        if *p.peek() != Tok::Eof {
            return err(
                format!("unexpected {} after the expression", p.found()),
                p.pos(),
            );
        }
        Ok(Self { expr })
    }

    /// Whether a message with these properties and this tag matches (the expression is TRUE).
    pub fn matches(&self, props: &BTreeMap<String, String>, tag: Option<&str>) -> bool {
        self.expr.eval(&Ctx { props, tag }) == Some(true)
    }
}

// ---------------------------------------------------------------- lexer

/// Keywords, canonical (upper) case, space-separated; `Tok::Kw` holds one of these.
const KEYWORDS: &str =
    "AND OR NOT BETWEEN IN IS NULL TRUE FALSE LIKE ESCAPE CONTAINS STARTSWITH ENDSWITH";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Kw(&'static str),
    Str(String),
    Num(String),
    Cmp(CmpOp),
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Eof,
}

/// A token and its byte span in the source (for error messages).
struct Token {
    tok: Tok,
    pos: usize,
    end: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'$'
}

fn is_ident_char(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'.'
}

fn lex(src: &str) -> Result<Vec<Token>, SqlError> {
    let b = src.as_bytes();
    let digits = |mut j: usize| {
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        j
    };
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let start = i;
        let (tok, len) = match (c, b.get(i + 1).copied()) {
            (b' ' | b'\t' | b'\r' | b'\n', _) => {
                i += 1;
                continue;
            }
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b',', _) => (Tok::Comma, 1),
            (b'+', _) => (Tok::Plus, 1),
            (b'-', _) => (Tok::Minus, 1),
            (b'=', _) => (Tok::Cmp(CmpOp::Eq), 1),
            (b'<', Some(b'>')) | (b'!', Some(b'=')) => (Tok::Cmp(CmpOp::Ne), 2),
            (b'<', Some(b'=')) => (Tok::Cmp(CmpOp::Le), 2),
            (b'<', _) => (Tok::Cmp(CmpOp::Lt), 1),
            (b'>', Some(b'=')) => (Tok::Cmp(CmpOp::Ge), 2),
            (b'>', _) => (Tok::Cmp(CmpOp::Gt), 1),
            (b'\'', _) => {
                let (s, end) = lex_string(src, i)?;
                (Tok::Str(s), end - i)
            }
            (b'0'..=b'9', _) => {
                let mut j = digits(i);
                if b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
                    j = digits(j + 1);
                }
                if matches!(b.get(j), Some(b'e' | b'E')) {
                    let k = j + 1 + usize::from(matches!(b.get(j + 1), Some(b'+' | b'-')));
                    if b.get(k).is_some_and(u8::is_ascii_digit) {
                        j = digits(k);
                    }
                }
                if b.get(j).is_some_and(|&c| is_ident_char(c)) {
                    return err("malformed number", start);
                }
                (
                    Tok::Num(src.get(i..j).unwrap_or_default().to_owned()),
                    j - i,
                )
            }
            (c, _) if is_ident_start(c) => {
                let mut j = i;
                while b.get(j).is_some_and(|&c| is_ident_char(c)) {
                    j += 1;
                }
                let word = src.get(i..j).unwrap_or_default();
                let tok = match KEYWORDS.split(' ').find(|k| k.eq_ignore_ascii_case(word)) {
                    Some(k) => Tok::Kw(k),
                    None => Tok::Ident(word.to_owned()),
                };
                (tok, j - i)
            }
            _ => {
                let ch = src.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                return err(format!("unexpected character {ch:?}"), i);
            }
        };
        i += len;
        out.push(Token {
            tok,
            pos: start,
            end: i,
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: b.len(),
        end: b.len(),
    });
    Ok(out)
}

/// Lexes the string literal opening at `open`; returns its value and the offset after it.
fn lex_string(src: &str, open: usize) -> Result<(String, usize), SqlError> {
    let b = src.as_bytes();
    let mut value = String::new();
    let (mut seg, mut j) = (open + 1, open + 1);
    loop {
        match b.get(j) {
            None => return err("unclosed string literal", open),
            Some(b'\'') => {
                value.push_str(src.get(seg..j).unwrap_or_default());
                if b.get(j + 1) == Some(&b'\'') {
                    value.push('\'');
                    j += 2;
                    seg = j;
                } else {
                    return Ok((value, j + 1));
                }
            }
            Some(_) => j += 1,
        }
    }
}

// ---------------------------------------------------------------- AST

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Prop(String),
    Lit(Lit),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pat {
    /// `%`
    Any,
    /// `_`
    One,
    Char(char),
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Const(bool),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cmp(Operand, CmpOp, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Lit>),
    IsNull(Operand, bool),
    Like(Operand, Vec<Pat>),
    Text(Operand, TextOp, String),
}

// ---------------------------------------------------------------- parser

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.at).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.tokens.get(self.at).map_or(self.src.len(), |t| t.pos)
    }

    /// The current token as quoted source text, for error messages.
    fn found(&self) -> String {
        match self.tokens.get(self.at) {
            Some(t) if t.tok != Tok::Eof => {
                format!("`{}`", self.src.get(t.pos..t.end).unwrap_or_default())
            }
            _ => "end of input".to_owned(),
        }
    }

    /// An "expected `what`, found `token`" error at the current token.
    fn fail<T>(&self, what: &str) -> Result<T, SqlError> {
        err(
            format!("expected {what}, found {}", self.found()),
            self.pos(),
        )
    }

    /// Takes the current token; stays on the final `Eof`.
    fn bump(&mut self) -> Tok {
        let tok = self.peek().clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        tok
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        let hit = self.peek() == tok;
        if hit {
            self.bump();
        }
        hit
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), SqlError> {
        if self.eat(tok) {
            return Ok(());
        }
        self.fail(what)
    }

    fn enter(&mut self, pos: usize) -> Result<(), SqlError> {
        self.depth += 1;
        if self.depth > MAX_SQL_DEPTH {
            return err(format!("nesting deeper than {MAX_SQL_DEPTH}"), pos);
        }
        Ok(())
    }

    /// `next (KW next)*`, flattened so long chains do not deepen the tree.
    fn chain(
        &mut self,
        kw: &'static str,
        next: fn(&mut Self) -> Result<Expr, SqlError>,
        node: fn(Vec<Expr>) -> Expr,
    ) -> Result<Expr, SqlError> {
        let first = next(self)?;
        if *self.peek() != Tok::Kw(kw) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat(&Tok::Kw(kw)) {
            items.push(next(self)?);
        }
        Ok(node(items))
    }

    fn or(&mut self) -> Result<Expr, SqlError> {
        self.chain("OR", |p| p.chain("AND", Self::not, Expr::And), Expr::Or)
    }

    fn not(&mut self) -> Result<Expr, SqlError> {
        let pos = self.pos();
        if !self.eat(&Tok::Kw("NOT")) {
            return self.predicate();
        }
        self.enter(pos)?;
        let inner = self.not()?;
        self.depth -= 1;
        Ok(Expr::Not(Box::new(inner)))
    }

    fn predicate(&mut self) -> Result<Expr, SqlError> {
        let pos = self.pos();
        if self.eat(&Tok::LParen) {
            self.enter(pos)?;
            let inner = self.or()?;
            self.depth -= 1;
            self.expect(&Tok::RParen, "`)`")?;
            return Ok(inner);
        }
        let lhs = self.operand()?;
        let negated = self.eat(&Tok::Kw("NOT"));
        let wrap = |e: Expr| if negated { Expr::Not(Box::new(e)) } else { e };
        match self.peek().clone() {
            Tok::Cmp(op) if !negated => {
                self.bump();
                Ok(Expr::Cmp(lhs, op, self.operand()?))
            }
            Tok::Kw("IS") if !negated => {
                self.bump();
                let not_null = self.eat(&Tok::Kw("NOT"));
                self.expect(&Tok::Kw("NULL"), "NULL")?;
                Ok(Expr::IsNull(lhs, not_null))
            }
            Tok::Kw("BETWEEN") => {
                self.bump();
                let lo = self.operand()?;
                self.expect(&Tok::Kw("AND"), "AND")?;
                Ok(wrap(Expr::Between(lhs, lo, self.operand()?)))
            }
            Tok::Kw("IN") => {
                self.bump();
                Ok(wrap(Expr::In(lhs, self.in_list()?)))
            }
            Tok::Kw("LIKE") => {
                self.bump();
                let (pattern, pat_pos) = self.string()?;
                let mut escape = None;
                if self.eat(&Tok::Kw("ESCAPE")) {
                    let (e, e_pos) = self.string()?;
                    let mut chars = e.chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) => escape = Some(c),
                        _ => return err("ESCAPE takes exactly one character", e_pos),
                    }
                }
                Ok(wrap(Expr::Like(
                    lhs,
                    compile_like(&pattern, escape, pat_pos)?,
                )))
            }
            Tok::Kw(k @ ("CONTAINS" | "STARTSWITH" | "ENDSWITH")) => {
                self.bump();
                let op = match k {
                    "CONTAINS" => TextOp::Contains,
                    "STARTSWITH" => TextOp::StartsWith,
                    _ => TextOp::EndsWith,
                };
                Ok(wrap(Expr::Text(lhs, op, self.string()?.0)))
            }
            _ if negated => {
                self.fail("BETWEEN, IN, LIKE, CONTAINS, STARTSWITH or ENDSWITH after NOT")
            }
            // A bare TRUE/FALSE is a predicate of its own.
            _ => match lhs {
                Operand::Lit(Lit::Bool(b)) => Ok(Expr::Const(b)),
                _ => self.fail("an operator"),
            },
        }
    }

    fn string(&mut self) -> Result<(String, usize), SqlError> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok((s, pos))
            }
            _ => self.fail("a string"),
        }
    }

    fn in_list(&mut self) -> Result<Vec<Lit>, SqlError> {
        self.expect(&Tok::LParen, "`(`")?;
        let mut items = Vec::new();
        loop {
            let pos = self.pos();
            match self.operand()? {
                Operand::Lit(_) if items.len() >= MAX_IN_ITEMS => {
                    return err(format!("IN list longer than {MAX_IN_ITEMS} items"), pos);
                }
                Operand::Lit(lit) => items.push(lit),
                Operand::Prop(_) => return err("IN list takes only literals", pos),
            }
            if !self.eat(&Tok::Comma) {
                self.expect(&Tok::RParen, "`,` or `)`")?;
                return Ok(items);
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, SqlError> {
        let (at, pos) = (self.at, self.pos());
        let lit = match self.bump() {
            Tok::Ident(name) => return Ok(Operand::Prop(name)),
            Tok::Str(s) => Lit::Str(s),
            Tok::Num(n) => number(&n, pos)?,
            sign @ (Tok::Plus | Tok::Minus) => match self.bump() {
                Tok::Num(n) if sign == Tok::Minus => number(&format!("-{n}"), pos)?,
                Tok::Num(n) => number(&n, pos)?,
                _ => {
                    self.at = at + 1;
                    return self.fail("a number after the sign");
                }
            },
            Tok::Kw("TRUE") => Lit::Bool(true),
            Tok::Kw("FALSE") => Lit::Bool(false),
            Tok::Kw("NULL") => Lit::Null,
            _ => {
                self.at = at;
                return self.fail("an operand");
            }
        };
        Ok(Operand::Lit(lit))
    }
}

fn number(text: &str, pos: usize) -> Result<Lit, SqlError> {
    if text.contains(['.', 'e', 'E']) {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Lit::Float(f)),
            _ => err("number out of range", pos),
        }
    } else {
        text.parse()
            .map(Lit::Int)
            .or_else(|_| err("integer out of range", pos))
    }
}

fn compile_like(pattern: &str, escape: Option<char>, pos: usize) -> Result<Vec<Pat>, SqlError> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let pat = match c {
            c if Some(c) == escape => match chars.next() {
                Some(n) => Pat::Char(n),
                None => return err("LIKE pattern ends with its escape character", pos),
            },
            '%' if out.last() == Some(&Pat::Any) => continue,
            '%' => Pat::Any,
            '_' => Pat::One,
            c => Pat::Char(c),
        };
        out.push(pat);
    }
    Ok(out)
}

// ---------------------------------------------------------------- evaluation

/// A three-valued truth value: `None` is UNKNOWN.
type Tri = Option<bool>;

fn and3(a: Tri, b: Tri) -> Tri {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn or3(a: Tri, b: Tri) -> Tri {
    and3(a.map(|x| !x), b.map(|x| !x)).map(|x| !x)
}

#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Text(&'a str),
    Num(Num),
    Bool(bool),
}

/// How two values relate: fully ordered, equality only, or not comparable (UNKNOWN).
enum Rel {
    Ord(Ordering),
    Eq(bool),
    None,
}

struct Ctx<'a> {
    props: &'a BTreeMap<String, String>,
    tag: Option<&'a str>,
}

impl<'a> Ctx<'a> {
    fn value(&self, operand: &'a Operand) -> Option<Val<'a>> {
        match operand {
            Operand::Prop(name) if name == "TAGS" => self.tag.map(Val::Text),
            Operand::Prop(name) => self.props.get(name).map(|v| Val::Text(v)),
            Operand::Lit(lit) => lit_value(lit),
        }
    }
}

fn lit_value(lit: &Lit) -> Option<Val<'_>> {
    match lit {
        Lit::Null => None,
        Lit::Bool(b) => Some(Val::Bool(*b)),
        Lit::Int(i) => Some(Val::Num(Num::Int(*i))),
        Lit::Float(f) => Some(Val::Num(Num::Float(*f))),
        Lit::Str(s) => Some(Val::Text(s)),
    }
}

fn parse_num(text: &str) -> Option<Num> {
    if let Ok(i) = text.parse() {
        return Some(Num::Int(i));
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Num::Float)
}

fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn num_rel(a: Num, b: Num) -> Rel {
    let f = |n| match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    };
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Rel::Ord(x.cmp(&y)),
        _ => f(a).partial_cmp(&f(b)).map_or(Rel::None, Rel::Ord),
    }
}

fn relate(l: Val<'_>, r: Val<'_>) -> Rel {
    match (l, r) {
        (Val::Text(a), Val::Text(b)) => Rel::Eq(a == b),
        (Val::Bool(a), Val::Bool(b)) => Rel::Eq(a == b),
        (Val::Text(t), Val::Bool(b)) | (Val::Bool(b), Val::Text(t)) => {
            parse_bool(t).map_or(Rel::None, |v| Rel::Eq(v == b))
        }
        (Val::Num(a), Val::Num(b)) => num_rel(a, b),
        (Val::Text(t), Val::Num(n)) => parse_num(t).map_or(Rel::None, |v| num_rel(v, n)),
        (Val::Num(n), Val::Text(t)) => parse_num(t).map_or(Rel::None, |v| num_rel(n, v)),
        (Val::Num(_), Val::Bool(_)) | (Val::Bool(_), Val::Num(_)) => Rel::None,
    }
}

fn compare(op: CmpOp, l: Option<Val<'_>>, r: Option<Val<'_>>) -> Tri {
    let ord = match (op, relate(l?, r?)) {
        (CmpOp::Eq, Rel::Eq(e)) => return Some(e),
        (CmpOp::Ne, Rel::Eq(e)) => return Some(!e),
        (_, Rel::Eq(_) | Rel::None) => return None,
        (_, Rel::Ord(o)) => o,
    };
    Some(match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
    })
}

/// LIKE matching: greedy with one backtrack point (the last `%`), O(text × pattern).
fn like(pat: &[Pat], text: &str) -> bool {
    let next_char = |at: usize| text.get(at..).and_then(|s| s.chars().next());
    let (mut p, mut t) = (0, 0);
    // (pattern index after the last `%`, text offset that `%` currently extends to)
    let mut star: Option<(usize, usize)> = None;
    while let Some(c) = next_char(t) {
        match pat.get(p) {
            Some(Pat::Any) => {
                p += 1;
                star = Some((p, t));
                continue;
            }
            Some(Pat::One) => {
                (p, t) = (p + 1, t + c.len_utf8());
                continue;
            }
            Some(Pat::Char(x)) if *x == c => {
                (p, t) = (p + 1, t + c.len_utf8());
                continue;
            }
            _ => {}
        }
        let Some((sp, st)) = star else {
            return false;
        };
        let st = st + next_char(st).map_or(1, char::len_utf8);
        star = Some((sp, st));
        (p, t) = (sp, st);
    }
    pat.get(p..)
        .is_some_and(|rest| rest.iter().all(|x| *x == Pat::Any))
}

/// Combines lazily computed values with `op`, stopping early at its absorbing value `stop`.
fn fold3(values: impl Iterator<Item = Tri>, stop: Tri, op: fn(Tri, Tri) -> Tri) -> Tri {
    let mut acc = stop.map(|b| !b);
    for value in values {
        acc = op(acc, value);
        if acc == stop {
            break;
        }
    }
    acc
}

impl Expr {
    fn eval<'a>(&'a self, cx: &Ctx<'a>) -> Tri {
        match self {
            Expr::Const(b) => Some(*b),
            Expr::Not(e) => e.eval(cx).map(|b| !b),
            Expr::And(items) => fold3(items.iter().map(|e| e.eval(cx)), Some(false), and3),
            Expr::Or(items) => fold3(items.iter().map(|e| e.eval(cx)), Some(true), or3),
            Expr::Cmp(l, op, r) => compare(*op, cx.value(l), cx.value(r)),
            Expr::Between(v, lo, hi) => {
                let v = cx.value(v);
                and3(
                    compare(CmpOp::Ge, v, cx.value(lo)),
                    compare(CmpOp::Le, v, cx.value(hi)),
                )
            }
            Expr::In(v, items) => {
                let v = cx.value(v);
                let hits = items.iter().map(|it| compare(CmpOp::Eq, v, lit_value(it)));
                fold3(hits, Some(true), or3)
            }
            Expr::IsNull(v, negated) => Some(cx.value(v).is_none() != *negated),
            Expr::Like(v, pat) => match cx.value(v)? {
                Val::Text(t) => Some(like(pat, t)),
                _ => None,
            },
            Expr::Text(v, op, s) => match (cx.value(v)?, op) {
                (Val::Text(t), TextOp::Contains) => Some(t.contains(s.as_str())),
                (Val::Text(t), TextOp::StartsWith) => Some(t.starts_with(s.as_str())),
                (Val::Text(t), TextOp::EndsWith) => Some(t.ends_with(s.as_str())),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
