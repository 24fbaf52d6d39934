//! Master-file parsing with per-record error reporting.
//!
//! hickory-proto's zone parser stops at the first error and does not say
//! where it was. We split the file into logical records ourselves (tracking
//! parentheses, quotes, comments and line numbers), resolve `$ORIGIN`, `$TTL`
//! and blank owner names, and hand each record to hickory's parser alone.

use std::path::Path;

use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::txt::Parser;

use super::Zone;
use crate::config::{ConfigError, ConfigErrors};

/// One logical record: its text with comments stripped and the line it starts on.
struct Entry {
    line: usize,
    text: String,
    /// The entry began with white space: owner is the previous owner.
    blank_owner: bool,
}

/// Reads `file` as the master file of zone `origin` and validates it.
pub fn load(file: &Path, origin: &Name) -> Result<Zone, ConfigErrors> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        ConfigErrors::single(ConfigError::file(
            file,
            None,
            format!("cannot read zone file: {e}"),
        ))
    })?;
    parse_str(&text, file, origin)
}

/// Parses master-file text; `file` names it in errors.
pub fn parse_str(text: &str, file: &Path, origin: &Name) -> Result<Zone, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let entries = match split(text) {
        Ok(e) => e,
        Err((line, msg)) => {
            return Err(ConfigErrors::single(ConfigError::file(
                file,
                Some(line),
                msg,
            )));
        }
    };
    let mut cur_origin = origin.clone();
    let mut default_ttl: Option<u32> = None;
    let mut last_owner: Option<String> = None;
    let mut records: Vec<(usize, Record)> = Vec::new();
    for entry in entries {
        let err = |m: String| ConfigError::file(file, Some(entry.line), m);
        let mut words = entry.text.split_whitespace();
        let first = words.next().unwrap_or_default();
        match first.to_ascii_uppercase().as_str() {
            "$ORIGIN" if !entry.blank_owner => {
                match words.next().map(|n| Name::parse(n, Some(&cur_origin))) {
                    Some(Ok(n)) => cur_origin = n,
                    _ => errors
                        .0
                        .push(err("$ORIGIN needs a valid domain name".into())),
                }
                continue;
            }
            "$TTL" if !entry.blank_owner => {
                match words.next().and_then(parse_ttl) {
                    Some(t) => default_ttl = Some(t),
                    None => errors
                        .0
                        .push(err("$TTL needs a TTL such as 3600 or 1h".into())),
                }
                continue;
            }
            "$INCLUDE" if !entry.blank_owner => {
                errors.0.push(err(
                    "$INCLUDE is not supported; list each zone file in the config".into(),
                ));
                continue;
            }
            _ => {}
        }
        let owner_and_rest = if entry.blank_owner {
            match &last_owner {
                Some(o) => format!("{o} {}", entry.text.trim_start()),
                None => {
                    errors
                        .0
                        .push(err("record has no owner name and none precedes it".into()));
                    continue;
                }
            }
        } else {
            entry.text.clone()
        };
        // Resolve the owner now so blank-owner lines after a `$ORIGIN` change keep it.
        let owner_text = owner_and_rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let owner = if owner_text == "@" {
            cur_origin.clone()
        } else {
            match Name::parse(&owner_text, Some(&cur_origin)) {
                Ok(n) => n,
                Err(e) => {
                    errors
                        .0
                        .push(err(format!("bad owner name {owner_text:?}: {e}")));
                    continue;
                }
            }
        };
        last_owner = Some(owner.to_string());
        let mut doc = format!("$ORIGIN {cur_origin}\n");
        if let Some(t) = default_ttl {
            doc.push_str(&format!("$TTL {t}\n"));
        }
        doc.push_str(&owner.to_string());
        doc.push(' ');
        let rest = owner_and_rest.trim_start()[owner_text.len()..].trim_start();
        doc.push_str(&expand_at(rest, &cur_origin.to_string()));
        doc.push('\n');
        match Parser::new(doc, None, Some(cur_origin.clone())).parse() {
            Ok((_, sets)) => {
                for (_, set) in sets {
                    for r in set.records_without_rrsigs() {
                        records.push((entry.line, r.clone()));
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                errors.0.push(err(
                    match msg.split_once(" should be dynamically generated") {
                        Some((t, _)) => format!(
                            "{t} records belong to a DNSSEC-signed zone, and geosteer does not \
                         sign zones: remove them (see docs/operations.md)"
                        ),
                        None => msg,
                    },
                ))
            }
        }
    }
    if !errors.0.is_empty() {
        return Err(errors);
    }
    Zone::build(origin.clone(), records, file)
}

/// Replaces stand-alone `@` tokens (outside quotes) with the origin, which
/// hickory's parser accepts only as an owner name.
fn expand_at(rest: &str, origin: &str) -> String {
    let mut out = String::with_capacity(rest.len());
    let mut in_quote = false;
    let mut prev = ' ';
    let chars: Vec<char> = rest.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '"' && prev != '\\' {
            in_quote = !in_quote;
        }
        let next = chars.get(i + 1).copied().unwrap_or(' ');
        if c == '@' && !in_quote && prev.is_whitespace() && next.is_whitespace() {
            out.push_str(origin);
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// Parses a TTL: seconds, or BIND units (`1h30m`, `2d`).
fn parse_ttl(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    let mut total: u64 = 0;
    let mut num: u64 = 0;
    let mut any = false;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            num = num.checked_mul(10)?.checked_add(d as u64)?;
            any = true;
            continue;
        }
        let mul = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        if !any {
            return None;
        }
        total = total.checked_add(num.checked_mul(mul)?)?;
        num = 0;
        any = false;
    }
    if any {
        return None;
    }
    u32::try_from(total).ok()
}

/// Splits master-file text into logical records (RFC 1035 §5.1): comments
/// removed, parenthesised continuations joined, quotes respected.
fn split(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start_line = 1;
    let mut line = 1;
    let mut depth = 0usize;
    let mut paren_line = 0;
    let mut in_quote = false;
    let mut in_comment = false;
    let mut escaped = false;
    let mut at_line_start = true;
    let mut blank_owner = false;
    let flush = |cur: &mut String, out: &mut Vec<Entry>, start: usize, blank: bool| {
        if !cur.trim().is_empty() {
            out.push(Entry {
                line: start,
                text: std::mem::take(cur),
                blank_owner: blank,
            });
        }
        cur.clear();
    };
    for c in text.chars() {
        if at_line_start && depth == 0 {
            start_line = line;
            blank_owner = c == ' ' || c == '\t';
            at_line_start = false;
        }
        if c == '\n' {
            in_comment = false;
            if in_quote {
                return Err((line, "unterminated quoted string".into()));
            }
            line += 1;
            if depth == 0 {
                flush(&mut cur, &mut out, start_line, blank_owner);
                at_line_start = true;
            } else {
                cur.push(' ');
            }
            continue;
        }
        if in_comment {
            continue;
        }
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                cur.push(c);
            }
            '"' => {
                in_quote = !in_quote;
                cur.push(c);
            }
            ';' if !in_quote => in_comment = true,
            '(' if !in_quote => {
                if depth == 0 {
                    paren_line = line;
                }
                depth += 1;
                cur.push(' ');
            }
            ')' if !in_quote => {
                if depth == 0 {
                    return Err((line, "')' without matching '('".into()));
                }
                depth -= 1;
                cur.push(' ');
            }
            '\r' => {}
            _ => cur.push(c),
        }
    }
    if in_quote {
        return Err((line, "unterminated quoted string".into()));
    }
    if depth > 0 {
        return Err((paren_line, "'(' is never closed".into()));
    }
    flush(&mut cur, &mut out, start_line, blank_owner);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{LowerName, RecordType};

    fn origin() -> Name {
        Name::from_ascii("example.com.").unwrap()
    }

    const GOOD: &str = "$TTL 300
@   IN SOA ns1 hostmaster ( 1 7200 900 1209600 60 ) ; comment
    IN NS ns1
ns1 IN A 192.0.2.53
www 60 IN CNAME @
txt IN TXT \"a ; not a comment\" \"b\"
";

    #[test]
    fn parses_records_with_blank_owner_and_parentheses() {
        let z = parse_str(GOOD, Path::new("t.zone"), &origin()).unwrap();
        let apex = z.node(&origin().into()).unwrap();
        assert!(apex.rrset(RecordType::NS).is_some());
        let txt = Name::from_ascii("txt.example.com.").unwrap();
        let rs = z.node(&txt.into()).unwrap().rrset(RecordType::TXT).unwrap();
        assert_eq!(rs[0].ttl, 300);
        assert!(rs[0].data.to_string().contains("a ; not a comment"));
    }

    #[test]
    fn reports_every_bad_line() {
        let text = format!("{GOOD}bad IN A 999.1.1.1\nok IN A 192.0.2.1\nworse IN MX x\n");
        let errs = parse_str(&text, Path::new("t.zone"), &origin()).unwrap_err();
        let locs: Vec<_> = errs.0.iter().map(|e| e.location.as_str()).collect();
        assert_eq!(locs, ["t.zone:7", "t.zone:9"], "{errs}");
    }

    #[test]
    fn unclosed_parenthesis_names_its_line() {
        let errs = parse_str("@ IN SOA a b ( 1 2\n", Path::new("z"), &origin()).unwrap_err();
        assert_eq!(errs.0[0].location, "z:1");
    }

    #[test]
    fn wildcards_are_data_but_not_delegations_and_dnssec_records_are_refused() {
        let text = format!("{GOOD}*.w IN A 192.0.2.9\n*.w IN MX 10 ns1\n");
        let z = parse_str(&text, Path::new("t.zone"), &origin()).unwrap();
        let w = LowerName::from(Name::from_ascii("w.example.com.").unwrap());
        assert!(
            z.exists(&w),
            "the wildcard's parent is an empty non-terminal"
        );
        let x = LowerName::from(Name::from_ascii("x.w.example.com.").unwrap());
        assert!(z.wildcard(&x, |_| false).is_some());
        assert!(
            z.wildcard(&x, |n| *n == w).is_some(),
            "w is the closest encloser"
        );
        let below = LowerName::from(Name::from_ascii("a.ns1.example.com.").unwrap());
        assert!(
            z.wildcard(&below, |_| false).is_none(),
            "ns1 exists, no *.ns1"
        );
        let text = format!("{GOOD}*.d IN NS ns1\nsub IN DS 1 13 2 AABB\n");
        let errs = parse_str(&text, Path::new("t.zone"), &origin()).unwrap_err();
        let msgs: Vec<String> = errs
            .0
            .iter()
            .map(|e| format!("{}: {}", e.location, e.message))
            .collect();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("t.zone:8:") && m.contains("does not sign zones")),
            "{msgs:?}"
        );
        let text = format!("{GOOD}*.d IN NS ns1\n");
        let errs = parse_str(&text, Path::new("t.zone"), &origin()).unwrap_err();
        assert!(
            errs.0[0].message.contains("NS records at a wildcard"),
            "{:?}",
            errs.0
        );
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("1h30m"), Some(5400));
        assert_eq!(parse_ttl("2d"), Some(172_800));
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl("5x"), None);
    }
}
