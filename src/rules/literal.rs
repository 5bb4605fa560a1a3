//! Condition patterns that are plain text anchored at the start (`^meet\.contoso\.com$`,
//! `^lyncweb\.`): the commonest shape by far, tested by comparison instead of a regex, and
//! the shape the host index keys on. A provider with one rule per tenant host has thousands;
//! compiling a regex for each took seconds and hundreds of megabytes.

use std::sync::OnceLock;

use regex::Regex;
use regex_syntax::hir::{HirKind, Look};

use super::pattern::{compile_regex, Need, RegexCache, Spans};

/// A condition's test: a compiled regex, or an anchored literal.
#[derive(Debug)]
pub(crate) enum CondTest {
    Regex(Regex),
    Literal(Literal),
}

#[derive(Debug)]
pub(crate) struct Literal {
    /// ASCII; lower-cased when `ignore_case`.
    text: Box<str>,
    /// `$` too: the whole input, not a prefix.
    exact: bool,
    ignore_case: bool,
    /// Unicode case folding makes ASCII `k` and `s` match non-ASCII letters (KELVIN SIGN,
    /// LONG S); an input that is not ASCII goes to the regex, built on first need, so the
    /// answer is always the regex's.
    pattern: Box<str>,
    regex: OnceLock<Option<Regex>>,
}

impl CondTest {
    pub(crate) fn compile(
        pattern: &str,
        ignore_case: bool,
        cache: &mut RegexCache,
    ) -> Result<CondTest, String> {
        if let Some((text, exact)) = anchored_literal(pattern) {
            let text = if ignore_case {
                text.to_ascii_lowercase()
            } else {
                text
            };
            return Ok(CondTest::Literal(Literal {
                text: text.into(),
                exact,
                ignore_case,
                pattern: pattern.into(),
                regex: OnceLock::new(),
            }));
        }
        cache.get(pattern, ignore_case).map(CondTest::Regex)
    }

    /// Capture slots including group 0.
    pub(crate) fn slots(&self) -> usize {
        match self {
            CondTest::Regex(re) => re.captures_len(),
            CondTest::Literal(_) => 1,
        }
    }

    pub(crate) fn find(&self, hay: &str, need: Need) -> Option<Spans> {
        match self {
            CondTest::Regex(re) => super::pattern::Matcher::find_regex(re, hay, need),
            CondTest::Literal(l) => l.find(hay, need),
        }
    }

    /// The literal for the host index: `(text, exact)`, when matching is ASCII-case-blind.
    pub(crate) fn host_literal(&self) -> Option<(&str, bool)> {
        match self {
            CondTest::Literal(l) if l.ignore_case => Some((&l.text, l.exact)),
            _ => None,
        }
    }
}

impl Literal {
    fn find(&self, hay: &str, need: Need) -> Option<Spans> {
        if !hay.is_ascii() && self.ignore_case {
            let re = self
                .regex
                .get_or_init(|| compile_regex(&self.pattern, true).ok())
                .as_ref()?;
            return super::pattern::Matcher::find_regex(re, hay, need);
        }
        let n = self.text.len();
        let head = hay.get(..n)?;
        let same = if self.ignore_case {
            head.eq_ignore_ascii_case(&self.text)
        } else {
            head == &*self.text
        };
        if !same || (self.exact && hay.len() != n) {
            return None;
        }
        Some(match need {
            Need::Nothing => Spans::None,
            _ => Spans::Whole(0, n),
        })
    }
}

/// `^text` or `^text$` where text is ASCII without any regex meaning left: the text, and
/// whether `$` ends it.
fn anchored_literal(pattern: &str) -> Option<(String, bool)> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let (text, exact) = match parts.as_slice() {
        [a, l] => (
            matches!(a.kind(), HirKind::Look(Look::Start)).then_some(l)?,
            false,
        ),
        [a, l, z] => {
            let ok = matches!(a.kind(), HirKind::Look(Look::Start))
                && matches!(z.kind(), HirKind::Look(Look::End));
            (ok.then_some(l)?, true)
        }
        _ => return None,
    };
    let HirKind::Literal(lit) = text.kind() else {
        return None;
    };
    let text = std::str::from_utf8(&lit.0).ok()?;
    text.is_ascii().then(|| (text.to_owned(), exact))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, ic: bool, hay: &str) -> bool {
        CondTest::compile(pattern, ic, &mut RegexCache::default())
            .unwrap()
            .find(hay, Need::Nothing)
            .is_some()
    }

    #[test]
    fn anchored_text_patterns_are_literals_and_others_are_not() {
        assert_eq!(
            anchored_literal(r"^meet\.contoso\.com$"),
            Some(("meet.contoso.com".into(), true))
        );
        assert_eq!(
            anchored_literal(r"^lyncweb\."),
            Some(("lyncweb.".into(), false))
        );
        for not in [
            r"lyncweb\.",
            r"^lync.web",
            r"^(meet)\.x$",
            r"^a|^b",
            r"^a+",
            r"^x$y",
            "^é$",
        ] {
            assert_eq!(anchored_literal(not), None, "{not}");
        }
    }

    /// The literal test answers exactly as the regex would, on a grid of patterns and inputs.
    #[test]
    fn literal_tests_agree_with_the_regex_on_every_input() {
        let patterns = [
            r"^meet\.contoso\.com$",
            r"^lyncweb\.",
            r"^Dialin\.",
            r"^k$",
            r"^s\.x",
        ];
        let inputs = [
            "meet.contoso.com",
            "MEET.Contoso.COM",
            "meet.contoso.com:443",
            "meet.contoso.co",
            "lyncweb.contoso.com",
            "LyncWeb.",
            "lyncweb",
            "dialin.x",
            "k",
            "\u{212A}",
            "\u{17F}.x",
            "s.x",
            "",
        ];
        for p in patterns {
            for ic in [true, false] {
                let re = compile_regex(p, ic).unwrap();
                for h in inputs {
                    assert_eq!(matches(p, ic, h), re.is_match(h), "{p} ic={ic} on {h:?}");
                }
            }
        }
    }
}
