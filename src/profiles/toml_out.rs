//! A small writer for commented TOML, shared by the profiles and the IIS importer.
//!
//! serde would lose the comments that make a generated config reviewable, so the generators
//! write text through these helpers; tests parse the result back with `config::from_str`.

use std::fmt::Write;

/// A TOML string value: a literal string (`'...'`) when that reads better (regular expressions),
/// else a basic string with escapes.
pub fn q(s: &str) -> String {
    let plain = !s.chars().any(|c| c.is_control() || c == '\'');
    if plain && s.contains('\\') {
        return format!("'{s}'");
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key as TOML wants it: bare when it can be, quoted otherwise (`"pool01.contoso.local"`).
pub fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_string()
    } else {
        q(k)
    }
}

/// An inline table from already-rendered values: `{ a = 1, b = "x" }`.
pub fn inline(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return "{}".to_string();
    }
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", body.join(", "))
}

/// An array from already-rendered values on one line.
pub fn array(items: &[String]) -> String {
    if items.is_empty() {
        return "[]".to_string();
    }
    format!("[ {} ]", items.join(", "))
}

/// An array of strings.
pub fn str_array<S: AsRef<str>>(items: &[S]) -> String {
    array(&items.iter().map(|s| q(s.as_ref())).collect::<Vec<_>>())
}

/// Text for a comment: TOML forbids control characters there (other than tab), and imported
/// names can hold any (an IIS farm named with a DEL made `import-iis` write TOML that does
/// not parse). They are written as `\u{7F}`.
fn comment_safe(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            let _ = write!(out, "\\u{{{:X}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Accumulates a document line by line.
#[derive(Debug, Default)]
pub struct Doc {
    text: String,
}

impl Doc {
    pub(crate) fn new() -> Doc {
        Doc::default()
    }

    /// `# text` lines (each line of `text` gets its own `#`).
    pub fn comment(&mut self, text: &str) {
        for line in text.lines() {
            if line.is_empty() {
                self.text.push_str("#\n");
            } else {
                let _ = writeln!(self.text, "# {}", comment_safe(line));
            }
        }
    }

    pub(crate) fn blank(&mut self) {
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    /// A table header such as `[[farm]]` or `[resolve]`, after a blank line.
    pub fn table(&mut self, header: &str, comment: Option<&str>) {
        self.blank();
        self.line(header, comment);
    }

    /// `key = value`, with an optional trailing comment.
    pub fn kv(&mut self, k: &str, value: &str, comment: Option<&str>) {
        self.line(&format!("{} = {value}", key(k)), comment);
    }

    /// A raw line with an optional trailing comment.
    pub fn line(&mut self, text: &str, comment: Option<&str>) {
        match comment {
            Some(c) if !c.is_empty() => {
                let width = 43usize.max(text.len() + 1);
                let _ = writeln!(self.text, "{text:<width$}# {}", comment_safe(c));
            }
            _ => {
                self.text.push_str(text);
                self.text.push('\n');
            }
        }
    }

    /// Appends another document's text commented out (for what validation would reject).
    pub fn commented_out(&mut self, other: &Doc) {
        for line in other.text.lines() {
            if line.is_empty() {
                self.text.push('\n');
            } else {
                let _ = writeln!(self.text, "# {line}");
            }
        }
    }

    pub(crate) fn finish(self) -> String {
        self.text
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_in_comments_are_escaped_so_the_document_parses() {
        // Found by fuzz/import_iis: an IIS farm named "dialin.c\x7fntoso.com".
        let mut doc = super::Doc::new();
        doc.comment("IIS name: dialin.c\u{7f}ntoso.com\r\nnext\u{0}line\twith tab");
        doc.kv(
            "name",
            &super::q("a\u{7f}b"),
            Some("was \"a\u{1b}b\"\nsecond line"),
        );
        let text = doc.finish();
        assert!(
            text.contains("# IIS name: dialin.c\\u{7F}ntoso.com"),
            "{text}"
        );
        assert!(text.contains("\twith tab"), "{text}");
        let parsed: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed["name"].as_str(), Some("a\u{7f}b"));
    }

    use super::*;

    #[test]
    fn strings_round_trip_through_toml() {
        for s in [
            "plain",
            r"^meet\.contoso\.com(:\d+)?$",
            "it's \"quoted\" \\ x",
            "tab\there",
        ] {
            let doc = format!("v = {}\n", q(s));
            let parsed: toml::Table = toml::from_str(&doc).unwrap();
            assert_eq!(parsed["v"].as_str(), Some(s), "{doc}");
        }
    }

    #[test]
    fn keys_with_dots_are_quoted() {
        assert_eq!(key("pool01.contoso.local"), "\"pool01.contoso.local\"");
        assert_eq!(key("https_port"), "https_port");
    }
}
