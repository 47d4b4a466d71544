use super::*;

fn props(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn m(expr: &str, kv: &[(&str, &str)]) -> bool {
    SqlFilter::parse(expr).unwrap().matches(&props(kv), None)
}

fn e(expr: &str) -> SqlError {
    SqlFilter::parse(expr).unwrap_err()
}

#[test]
fn example() {
    let f = "a > 5 AND b = 'x'";
    assert!(m(f, &[("a", "6"), ("b", "x")]));
    assert!(!m(f, &[("a", "5"), ("b", "x")]));
    assert!(!m(f, &[("a", "6"), ("b", "y")]));
    assert!(!m(f, &[("b", "x")]));
}

#[test]
fn numeric_comparisons() {
    let a = [("a", "10")];
    for (expr, want) in [
        ("a = 10", true),
        ("a <> 10", false),
        ("a != 9", true),
        ("a > 9", true),
        ("a > 10", false),
        ("a >= 10", true),
        ("a < 10.5", true),
        ("a <= 9.99", false),
        ("a = 1e1", true),
        ("a > -5", true),
        ("a < +11", true),
        ("11 > a", true),
        ("a=10.0", true),
    ] {
        assert_eq!(m(expr, &a), want, "{expr}");
    }
    assert!(m("a = 1.5", &[("a", "1.5")]));
    assert!(m("a < 0", &[("a", "-3")]));
    assert!(m(
        "a = -9223372036854775808",
        &[("a", "-9223372036854775808")]
    ));
    assert!(m(
        "a > 9223372036854775806",
        &[("a", "9223372036854775807")]
    ));
}

#[test]
fn strings_numbers_and_booleans() {
    assert!(m("b = 'x'", &[("b", "x")]));
    assert!(m("b <> 'x'", &[("b", "X")]));
    assert!(m("b = 'it''s'", &[("b", "it's")]));
    assert!(m("b = ''", &[("b", "")]));
    // Ordering on text is UNKNOWN, so neither it nor its negation matches.
    assert!(!m("b > 'a'", &[("b", "b")]));
    assert!(!m("NOT (b > 'a')", &[("b", "b")]));
    // Text against a number parses the text; unparsable text is UNKNOWN.
    assert!(!m("a > 5", &[("a", "abc")]));
    assert!(!m("NOT (a > 5)", &[("a", "abc")]));
    assert!(!m("a <> 5", &[("a", "abc")]));
    assert!(!m("a = 5", &[("a", " 5")]));
    assert!(m("a = 10", &[("a", "10.0")]));
    assert!(!m("a = '10'", &[("a", "10.0")]));
    assert!(m("a = b", &[("a", "x"), ("b", "x")]));
    // Booleans.
    assert!(m("f = TRUE", &[("f", "true")]));
    assert!(m("f = true", &[("f", "TRUE")]));
    assert!(m("f <> TRUE", &[("f", "false")]));
    assert!(!m("f = FALSE", &[("f", "yes")]));
    assert!(!m("NOT (f = FALSE)", &[("f", "yes")]));
    assert!(!m("f > TRUE", &[("f", "true")]));
    assert!(m("TRUE", &[]) && !m("FALSE", &[]) && m("NOT FALSE", &[]));
}

#[test]
fn between_in_is_null() {
    let a = [("a", "5"), ("s", "b")];
    for (expr, want) in [
        ("a BETWEEN 1 AND 5", true),
        ("a BETWEEN 5 AND 9", true),
        ("a BETWEEN 6 AND 9", false),
        ("a NOT BETWEEN 6 AND 9", true),
        ("a NOT BETWEEN 1 AND 9", false),
        ("a BETWEEN 1 AND 9 AND s = 'b'", true),
        ("z BETWEEN 1 AND 9", false),
        ("z NOT BETWEEN 1 AND 9", false),
        ("s IN ('a', 'b')", true),
        ("s IN ('a')", false),
        ("s NOT IN ('a', 'c')", true),
        ("s NOT IN ('b')", false),
        ("a IN (4, 5)", true),
        ("z IN ('a')", false),
        ("z NOT IN ('a')", false),
        ("s NOT IN ('a', NULL)", false),
        ("s IN ('b', NULL)", true),
        ("z IS NULL", true),
        ("a IS NULL", false),
        ("a IS NOT NULL", true),
        ("z IS NOT NULL", false),
        ("NULL IS NULL", true),
    ] {
        assert_eq!(m(expr, &a), want, "{expr}");
    }
}

#[test]
fn like_and_text_operators() {
    let cases = [
        ("abc", "a%", true),
        ("abc", "%c", true),
        ("abc", "%b%", true),
        ("abc", "a_c", true),
        ("abc", "a_", false),
        ("abc", "___", true),
        ("abc", "%", true),
        ("", "%", true),
        ("", "_", false),
        ("abc", "abc", true),
        ("abc", "ABC", false),
        ("aXbXc", "a%b%c", true),
        ("mississippi", "%iss%ppi", true),
        ("mississippi", "m%iss%x", false),
        ("héllo", "h_llo", true),
        ("100%", "100!%", true),
        ("1000", "100!%", false),
    ];
    for (text, pat, want) in cases {
        let expr = format!("s LIKE '{pat}' ESCAPE '!'");
        assert_eq!(m(&expr, &[("s", text)]), want, "{text} LIKE {pat}");
        let expr = format!("s NOT LIKE '{pat}' ESCAPE '!'");
        assert_eq!(m(&expr, &[("s", text)]), !want, "{text} NOT LIKE {pat}");
    }
    assert!(!m("s LIKE '%'", &[]) && !m("s NOT LIKE '%'", &[]));
    assert!(!m("n LIKE '1%'", &[]) && !m("5 LIKE '5'", &[]));
    // Pathological pattern stays fast (would be exponential with naive backtracking).
    let text = "a".repeat(2000);
    let expr = format!("s LIKE '{}b'", "%a".repeat(40));
    assert!(!m(&expr, &[("s", &text)]));
    let s = [("s", "hello world")];
    assert!(m("s CONTAINS 'lo w'", &s) && !m("s CONTAINS 'W'", &s));
    assert!(m("s NOT CONTAINS 'x'", &s) && !m("s NOT CONTAINS 'o'", &s));
    assert!(m("s STARTSWITH 'hell'", &s) && !m("s STARTSWITH 'world'", &s));
    assert!(m("s ENDSWITH 'world'", &s) && m("s NOT ENDSWITH 'hello'", &s));
    assert!(!m("z CONTAINS 'x'", &s) && !m("z NOT CONTAINS 'x'", &s));
}

#[test]
fn tags_pseudo_property() {
    let f = SqlFilter::parse("TAGS IN ('TagA', 'TagB') AND TAGS <> 'TagB'").unwrap();
    let p = props(&[("TAGS", "TagB")]);
    assert!(f.matches(&p, Some("TagA")));
    assert!(!f.matches(&p, Some("TagB")));
    assert!(!f.matches(&BTreeMap::new(), None));
    let f = SqlFilter::parse("TAGS IS NULL").unwrap();
    assert!(f.matches(&BTreeMap::new(), None) && !f.matches(&BTreeMap::new(), Some("t")));
}

#[test]
fn precedence_and_keywords() {
    let p = [("a", "1"), ("b", "0"), ("c", "0")];
    // AND binds tighter than OR.
    assert!(m("a = 1 OR b = 1 AND c = 1", &p));
    assert!(!m("(a = 1 OR b = 1) AND c = 1", &p));
    // NOT binds tighter than AND, looser than comparisons.
    assert!(!m("NOT a = 1 AND b = 0", &p));
    assert!(m("NOT b = 1 AND a = 1", &p));
    assert!(m("NOT (a = 1 AND b = 1)", &p));
    assert!(m("NOT NOT a = 1", &p));
    assert!(m("a = 1 or b = 1 and c = 1", &p));
    assert!(m("a between 0 And 2 aNd b In ('0') AND c is not null", &p));
    assert!(m("x.y$_1 = 1 AND _a = 2", &[("x.y$_1", "1"), ("_a", "2")]));
}

#[test]
fn three_valued_logic_with_missing_properties() {
    let p = [("b", "2")];
    assert!(m("a = 1 OR b = 2", &p));
    assert!(!m("a = 1 AND b = 2", &p));
    assert!(!m("a = 1", &p) && !m("NOT (a = 1)", &p) && !m("a <> 1", &p));
    assert!(m("NOT (a = 1 AND b = 3)", &p)); // NOT (UNKNOWN AND FALSE) = TRUE
    assert!(!m("NOT (a = 1 OR b = 3)", &p)); // NOT (UNKNOWN OR FALSE) = UNKNOWN
    assert!(!m("b = NULL", &p) && !m("NOT (b = NULL)", &p) && !m("b <> NULL", &p));
    assert!(m("a IS NULL OR a > 3", &p));
}

#[test]
fn errors_with_positions() {
    let cases: [(&str, usize, &str); 18] = [
        ("a = 'abc", 4, "unclosed string"),
        ("a >", 3, "expected an operand"),
        ("a > AND b = 1", 4, "expected an operand"),
        ("a ~ 5", 2, "unexpected character"),
        ("a == 5", 3, "expected an operand"),
        ("a LIKES 'x'", 2, "expected an operator"),
        ("a", 1, "expected an operator"),
        ("a = 1 b", 6, "unexpected `b`"),
        ("a = 1)", 5, "unexpected `)`"),
        ("(a = 1", 6, "expected `)`"),
        ("", 0, "empty expression"),
        ("a = 99999999999999999999", 4, "integer out of range"),
        ("a = 5x", 4, "malformed number"),
        ("a NOT = 1", 6, "after NOT"),
        ("a IN (b)", 6, "only literals"),
        ("a LIKE 'x!' ESCAPE '!'", 7, "escape"),
        ("a = -x", 5, "a number after the sign"),
        ("a = 1 AND", 9, "expected an operand, found end of input"),
    ];
    for (expr, pos, msg) in cases {
        let err = e(expr);
        assert_eq!(err.position, pos, "{expr}: {err}");
        assert!(err.message.contains(msg), "{expr}: {err}");
    }
    assert_eq!(
        e("a >").to_string(),
        "expected an operand, found end of input at position 3"
    );
    assert!(e("a LIKE 'x' ESCAPE 'ab'")
        .message
        .contains("one character"));
    assert!(e("a LIKE b").message.contains("expected a string"));
}

#[test]
fn limits() {
    let nest = |n: usize| format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
    assert!(m(&nest(MAX_SQL_DEPTH), &[("a", "1")]));
    let err = e(&nest(MAX_SQL_DEPTH + 1));
    assert_eq!(
        (err.position, err.message.contains("nesting")),
        (MAX_SQL_DEPTH, true)
    );
    let err = e(&format!("{}a = 1", "NOT ".repeat(1000)));
    assert!(err.message.contains("nesting"), "{err}");
    let long = format!("a = '{}'", "x".repeat(MAX_SQL_LEN));
    assert_eq!(e(&long).position, MAX_SQL_LEN);
    let list = |n: usize| format!("a IN ({})", vec!["1"; n].join(","));
    assert!(m(&list(MAX_IN_ITEMS), &[("a", "1")]));
    assert!(e(&list(MAX_IN_ITEMS + 1))
        .message
        .contains("IN list longer"));
    // Long flat chains stay flat (no deep recursion when evaluating or dropping).
    let chain = vec!["a = 1"; 400].join(" AND ");
    assert!(m(&chain, &[("a", "1")]));
}

#[test]
fn fuzz_never_panics() {
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let atoms: Vec<&str> = "a b TAGS ( ) ' 'x' '' , = <> != > >= < <= - + 1 2.5 1e3 AND OR NOT \
        BETWEEN IN IS NULL TRUE FALSE LIKE '%a_' ESCAPE CONTAINS STARTSWITH ENDSWITH é \0 \
        99999999999999999999"
        .split_whitespace()
        .collect();
    let p = props(&[("a", "1"), ("b", "x%")]);
    let mut parsed = 0;
    for round in 0..20_000 {
        let len = (next() % 24) as usize;
        let input = if round % 2 == 0 {
            let bytes: Vec<u8> = (0..len * 2).map(|_| (next() % 256) as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            let mut s = String::new();
            for _ in 0..len {
                s.push_str(atoms[(next() % atoms.len() as u64) as usize]);
                s.push(' ');
            }
            s
        };
        if let Ok(f) = SqlFilter::parse(&input) {
            parsed += 1;
            let _ = f.matches(&p, Some("t"));
            let _ = f.matches(&BTreeMap::new(), None);
        }
    }
    assert!(parsed > 0);
}
