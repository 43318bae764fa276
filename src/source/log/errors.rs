//! Error messages as data: a message is reduced to a fingerprint pattern (numbers, ids and
//! quoted values masked), so "timeout after 3012 ms" and "timeout after 98 ms" are one error
//! type, counted with its first and last sighting.

use sha2::{Digest, Sha256};

/// Messages are cut to this many bytes before they are kept or normalised.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// The most distinct error types one flush of one source carries; occurrences of more are
/// counted in `sloguard_log_field_errors_total{reason="error_types_dropped"}` (a flood of
/// unique messages must not grow memory).
pub const MAX_PER_FLUSH: usize = 1000;
pub use crate::store::logs::ErrorSeen;

/// A first sighting of the error type `pattern` (a [`normalise`]d `message`) at `ts`.
pub fn first_seen(source: &str, pattern: &str, message: &str, ts: i64) -> ErrorSeen {
    let mut e = ErrorSeen {
        source: source.to_string(),
        id: fingerprint_id(source, pattern),
        pattern: pattern.to_string(),
        last_message: message.to_string(),
        first_ms: ts,
        last_ms: ts,
        count: 0,
        windows: Vec::new(),
    };
    e.add(message, ts);
    e
}

/// The id of a fingerprint: stable across versions and machines.
pub fn fingerprint_id(source: &str, pattern: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0]);
    h.update(pattern.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Masks what varies between occurrences of one error: quoted values become `"*"`, and
/// every word with a digit in it (numbers, ids, addresses, UUIDs, hex hashes) becomes `#`.
/// Runs of white space become one space.
pub fn normalise(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(256));
    let mut chars = message.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                // A quote closed later on the line masks what it holds; a lone one stays.
                match message[i + 1..].find(c) {
                    Some(len) => {
                        out.push(c);
                        out.push('*');
                        out.push(c);
                        let end = i + 1 + len;
                        while chars.next_if(|(j, _)| *j <= end).is_some() {}
                    }
                    None => out.push(c),
                }
            }
            c if is_word(c) => {
                let mut end = i + c.len_utf8();
                while let Some((j, d)) = chars.next_if(|(_, d)| is_word(*d)) {
                    end = j + d.len_utf8();
                }
                let word = &message[i..end];
                if word.bytes().any(|b| b.is_ascii_digit()) {
                    out.push('#');
                } else {
                    out.push_str(word);
                }
            }
            c if c.is_whitespace() => {
                while chars.next_if(|(_, d)| d.is_whitespace()).is_some() {}
                out.push(' ');
            }
            c => out.push(c),
        }
    }
    out.trim().to_string()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_parts_are_masked() {
        let cases = [
            (
                "Cannot connect to database at 10.0.0.7:5432",
                "Cannot connect to database at #.#.#.#:#",
            ),
            (
                "timeout after 3012 ms for user 'alice'",
                "timeout after # ms for user '*'",
            ),
            (
                r#"relation "orders_2026" does not exist"#,
                r#"relation "*" does not exist"#,
            ),
            (
                "job 550e8400-e29b-41d4-a716-446655440000 failed  twice",
                "job # failed twice",
            ),
            ("hash deadbeef01 mismatch", "hash # mismatch"),
            ("it's broken", "it's broken"),
            ("Ünïcode 42 fehler", "Ünïcode # fehler"),
        ];
        for (message, want) in cases {
            assert_eq!(normalise(message), want, "{message}");
        }
        assert_eq!(
            fingerprint_id("app", "a #"),
            fingerprint_id("app", &normalise("a 1"))
        );
        assert_ne!(fingerprint_id("app", "a #"), fingerprint_id("web", "a #"));
    }

    #[test]
    fn counts_and_windows() {
        let mut e = first_seen("app", "x #", "x 1", 3_600_000 * 5 + 10);
        e.add("x 2", 3_600_000 * 5 + 20);
        e.add("x 0", 3_600_000 * 4);
        assert_eq!(e.count, 3);
        assert_eq!(e.windows, vec![(3_600_000 * 5, 2), (3_600_000 * 4, 1)]);
        assert_eq!(e.last_message, "x 2");
        assert_eq!((e.first_ms, e.last_ms), (3_600_000 * 4, 3_600_000 * 5 + 20));
    }
}
