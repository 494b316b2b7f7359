//! Finding the line of a key in the config source, for errors found after deserialisation.
//!
//! serde reports positions for values it rejects itself; checks that span several keys (an ACL
//! name used by a rule must be defined) run later, on plain structs. This re-reads the source
//! with toml's span-keeping document parser and walks a key path to its position.

use toml::de::{DeTable, DeValue};

/// One step of a key path.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Renders a path as `a.b[2].c`.
pub fn render(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The 1-based line where `path` is found in `src`, or of its deepest existing prefix.
pub fn line_of(src: &str, path: &[Seg<'_>]) -> Option<usize> {
    let root = DeTable::parse(src).ok()?;
    let mut best = None;
    let mut table = Some(root.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    for seg in path {
        let next = match (seg, table, value) {
            (Seg::Key(k), Some(t), _) => {
                t.iter()
                    .find(|(key, _)| key.get_ref() == k)
                    .map(|(key, v)| {
                        best = Some(key.span().start);
                        v
                    })
            }
            (Seg::Index(i), _, Some(DeValue::Array(items))) => items.get(*i).inspect(|v| {
                best = Some(v.span().start);
            }),
            _ => None,
        };
        let Some(next) = next else { break };
        value = Some(next.get_ref());
        table = match next.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    best.map(|offset| line_at(src, offset))
}

/// The 1-based line containing byte `offset`.
pub fn line_at(src: &str, offset: usize) -> usize {
    src.get(..offset)
        .map_or(0, |before| before.bytes().filter(|&b| b == b'\n').count())
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_array_items() {
        let src =
            "a = 1\n\n[[rule]]\nallow = [\"x\"]\n\n[[rule]]\ndeny = [\n  \"y\",\n  \"z\",\n]\n";
        assert_eq!(line_of(src, &[Seg::Key("a")]), Some(1));
        assert_eq!(
            line_of(src, &[Seg::Key("rule"), Seg::Index(1), Seg::Key("deny")]),
            Some(7)
        );
        assert_eq!(
            line_of(
                src,
                &[
                    Seg::Key("rule"),
                    Seg::Index(1),
                    Seg::Key("deny"),
                    Seg::Index(1)
                ]
            ),
            Some(9)
        );
        assert_eq!(
            render(&[Seg::Key("rule"), Seg::Index(1), Seg::Key("deny")]),
            "rule[1].deny"
        );
    }
}
