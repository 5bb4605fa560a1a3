//! Compiled match patterns (regex, wildcard, exact) and what a match captured.
//!
//! Everything is compiled once; per request we pick the cheapest `regex` call that yields what
//! the rule's templates actually reference (`is_match`, `find`, or capture locations).

use std::borrow::Cow;

use regex::{CaptureLocations, Regex, RegexBuilder};
use regex_syntax::ast::{parse::Parser as AstParser, ErrorKind as AstErrorKind};

use super::PatternSyntax;

/// Upper bound for one compiled pattern, so a huge pattern is a config error, not a memory blow-up.
pub(crate) const REGEX_SIZE_LIMIT: usize = 2 * 1024 * 1024;

/// How much of a match the rule needs to remember, decided at compile time from its templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Need {
    /// No back-reference is used: a yes/no answer is enough.
    Nothing,
    /// Only `{X:0}` is used: the span of the whole match.
    Whole,
    /// Some `{X:n}` with n >= 1 is used.
    Groups,
}

impl Need {
    pub(crate) fn for_index(max: Option<usize>) -> Need {
        match max {
            None => Need::Nothing,
            Some(0) => Need::Whole,
            Some(_) => Need::Groups,
        }
    }
}

/// What a successful match captured, as byte spans into `hay`.
#[derive(Debug)]
pub(crate) enum Spans {
    None,
    Whole(usize, usize),
    /// Every group (up to `Group::slots`) spans the whole input: `(.*)` on a one-line input.
    Every(usize, usize),
    Locs(CaptureLocations),
}

/// A matched input together with its captures; `{R:n}` / `{C:n}` read from here.
#[derive(Debug)]
pub(crate) struct Group<'x> {
    pub hay: Cow<'x, str>,
    pub spans: Spans,
    /// Number of capture slots (including group 0) this group contributes to `{C:n}` numbering.
    pub slots: usize,
}

impl<'x> Group<'x> {
    pub(crate) fn empty() -> Group<'x> {
        Group {
            hay: Cow::Borrowed(""),
            spans: Spans::None,
            slots: 0,
        }
    }

    /// Capture `n`, or "" when out of range or not captured.
    pub(crate) fn get(&self, n: usize) -> &str {
        let span = match &self.spans {
            Spans::None => None,
            Spans::Whole(s, e) => (n == 0).then_some((*s, *e)),
            Spans::Every(s, e) => (n < self.slots).then_some((*s, *e)),
            Spans::Locs(locs) => locs.get(n),
        };
        span.and_then(|(s, e)| self.hay.get(s..e)).unwrap_or("")
    }
}

/// A compiled pattern.
#[derive(Debug)]
pub(crate) enum Matcher {
    Regex(Regex),
    /// `.*`, `^(.*)$` and friends: they match any input without a newline whole, so the
    /// commonest rule shape costs nothing per request. `regex` handles inputs with newlines.
    Everything {
        regex: Regex,
        group: bool,
    },
    Exact {
        text: String,
        ignore_case: bool,
    },
}

impl Matcher {
    pub(crate) fn compile(
        syntax: PatternSyntax,
        pattern: &str,
        ignore_case: bool,
        cache: &mut RegexCache,
    ) -> Result<Matcher, String> {
        match syntax {
            PatternSyntax::Regex => {
                let regex = cache.get(pattern, ignore_case)?;
                let body = pattern.strip_prefix('^').unwrap_or(pattern);
                let body = body.strip_suffix('$').unwrap_or(body);
                Ok(match body {
                    ".*" => Matcher::Everything {
                        regex,
                        group: false,
                    },
                    "(.*)" => Matcher::Everything { regex, group: true },
                    _ => Matcher::Regex(regex),
                })
            }
            PatternSyntax::Wildcard => cache
                .get(&wildcard_to_regex(pattern), ignore_case)
                .map(Matcher::Regex),
            PatternSyntax::Exact => Ok(Matcher::Exact {
                text: pattern.to_owned(),
                ignore_case,
            }),
        }
    }

    /// Capture slots including group 0.
    pub(crate) fn slots(&self) -> usize {
        match self {
            Matcher::Regex(re) | Matcher::Everything { regex: re, .. } => re.captures_len(),
            Matcher::Exact { .. } => 1,
        }
    }

    /// Matches `hay`; on success returns the spans the caller said it needs.
    pub(crate) fn find(&self, hay: &str, need: Need) -> Option<Spans> {
        match self {
            Matcher::Exact { text, ignore_case } => {
                let eq = if *ignore_case {
                    text.eq_ignore_ascii_case(hay)
                        || (!text.is_ascii() && text.to_lowercase() == hay.to_lowercase())
                } else {
                    text == hay
                };
                eq.then_some(match need {
                    Need::Nothing => Spans::None,
                    _ => Spans::Whole(0, hay.len()),
                })
            }
            Matcher::Everything { regex, group } => {
                if hay.contains('\n') {
                    return Matcher::find_regex(regex, hay, need);
                }
                Some(match need {
                    Need::Nothing => Spans::None,
                    Need::Whole => Spans::Whole(0, hay.len()),
                    Need::Groups if *group => Spans::Every(0, hay.len()),
                    // `{R:2}` on `(.*)`: out of range, only group 0 exists.
                    Need::Groups => Spans::Whole(0, hay.len()),
                })
            }
            Matcher::Regex(re) => Matcher::find_regex(re, hay, need),
        }
    }

    /// The cheapest regex call that yields what `need` asks for.
    pub(crate) fn find_regex(re: &Regex, hay: &str, need: Need) -> Option<Spans> {
        match need {
            Need::Nothing => re.is_match(hay).then_some(Spans::None),
            Need::Whole => re.find(hay).map(|m| Spans::Whole(m.start(), m.end())),
            Need::Groups => {
                let mut locs = re.capture_locations();
                re.captures_read(&mut locs, hay)?;
                Some(Spans::Locs(locs))
            }
        }
    }
}

/// `*` becomes a capture group, `?` any one character, the rest is literal; anchored both ends.
fn wildcard_to_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    out.push_str("(?s)^");
    let mut lit = [0u8; 4];
    for c in pattern.chars() {
        match c {
            '*' => out.push_str("(.*)"),
            '?' => out.push('.'),
            _ => out.push_str(&regex::escape(c.encode_utf8(&mut lit))),
        }
    }
    out.push('$');
    out
}

const LINEAR_NOTE: &str = "Portico uses linear-time regular expressions (no look-around, no \
     back-references) so a request cannot make matching slow";

/// Regexes already compiled for this rule set: the same pattern in many rules (`.*` in
/// every host rule) is compiled once and shared (a `Regex` clone shares its program).
#[derive(Default)]
pub(crate) struct RegexCache(std::collections::HashMap<(Box<str>, bool), Regex>);

impl RegexCache {
    pub(crate) fn get(&mut self, pattern: &str, ignore_case: bool) -> Result<Regex, String> {
        if let Some(re) = self.0.get(&(Box::from(pattern), ignore_case)) {
            return Ok(re.clone());
        }
        let re = compile_regex(pattern, ignore_case)?;
        self.0.insert((pattern.into(), ignore_case), re.clone());
        Ok(re)
    }
}

/// Compiles with the size limit and turns the crate's errors into messages that say what to do.
pub(crate) fn compile_regex(pattern: &str, ignore_case: bool) -> Result<Regex, String> {
    let err = match RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
    {
        Ok(re) => return Ok(re),
        Err(err) => err,
    };
    if let Some(msg) = explain_unsupported(pattern) {
        return Err(msg);
    }
    Err(match err {
        regex::Error::CompiledTooBig(limit) => format!(
            "regular expression `{pattern}` is too big: it compiles to more than {limit} bytes; \
             use fewer or smaller repetitions (e.g. `{{1000}}`) or split it over several rules"
        ),
        regex::Error::Syntax(msg) => format!(
            "invalid regular expression `{pattern}`: {msg}\naccepted: the syntax of the Rust \
             `regex` crate (https://docs.rs/regex/#syntax)"
        ),
        other => format!("invalid regular expression `{pattern}`: {other}"),
    })
}

/// Names the look-around or back-reference construct the pattern uses, if any.
fn explain_unsupported(pattern: &str) -> Option<String> {
    let err = AstParser::new().parse(pattern).err()?;
    let at = pattern.get(err.span().start.offset..).unwrap_or("");
    let what = match err.kind() {
        AstErrorKind::UnsupportedLookAround => {
            let prefix = ["(?<=", "(?<!", "(?=", "(?!"]
                .into_iter()
                .find(|p| at.starts_with(p))
                .unwrap_or("(?=");
            let kind = match prefix {
                "(?=" => "look-ahead",
                "(?!" => "negative look-ahead",
                "(?<=" => "look-behind",
                _ => "negative look-behind",
            };
            format!("{kind} `{prefix}`")
        }
        AstErrorKind::UnsupportedBackreference => {
            let text: String = at.chars().take(2).collect();
            format!("back-reference `{text}`")
        }
        AstErrorKind::EscapeUnrecognized if at.starts_with("\\k") => {
            let end = at.find('>').map_or(2, |i| i + 1);
            format!("named back-reference `{}`", &at[..end])
        }
        _ => return None,
    };
    Some(format!(
        "{what} is not supported: {LINEAR_NOTE}; rewrite the pattern or add a condition with \
         negate = true"
    ))
}
