//! Templates such as `/{ToLower:{R:1}}?host={HTTP_HOST}`, parsed once into parts.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::pattern::Group;
use super::vars::{self, Rendered, Var};
use super::RequestView;

/// Everything except RFC 3986 unreserved characters is encoded, so a value is safe anywhere in
/// a path or query.
const URL_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Nesting deeper than this is surely a mistake, and bounds recursion.
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    ToLower,
    UrlEncode,
    UrlDecode,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Lit(String),
    R(usize),
    C(usize),
    Var(Var),
    Func(Func, Template),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

/// What a template reads while it expands; built per rule, borrowed, never allocated.
pub(crate) struct Ctx<'x> {
    pub req: &'x RequestView<'x>,
    /// Current URL path (with its leading `/`), after any rewrite.
    pub url: &'x str,
    pub query: Option<&'x str>,
    pub rendered: &'x Rendered,
    pub r: &'x Group<'x>,
    /// Condition captures: the last matched condition, or all of them with track_all_captures.
    pub c: &'x [Group<'x>],
}

/// `{C:n}`: numbering runs on across the groups (IIS trackAllCaptures).
fn cap<'x>(groups: &'x [Group<'x>], mut n: usize) -> &'x str {
    for g in groups {
        if n < g.slots {
            return g.get(n);
        }
        n -= g.slots;
    }
    ""
}

impl Template {
    pub(crate) fn parse(src: &str) -> Result<Template, String> {
        let mut p = Parser { src, pos: 0 };
        let parts = p.seq(0)?;
        Ok(Template { parts })
    }

    /// `/{R:0}`: the shape whose result can often be proven equal to the request path.
    pub(crate) fn is_slash_r0(&self) -> bool {
        matches!(self.parts.as_slice(), [Part::Lit(l), Part::R(0)] if l == "/")
    }

    /// The template is exactly `{HTTP_HOST}` (what the host index can key on).
    pub(crate) fn is_http_host(&self) -> bool {
        matches!(self.parts.as_slice(), [Part::Var(Var::HttpHost)])
    }

    /// Exactly `{REMOTE_ADDR}`: the input an address condition (`cidr`) reads.
    pub(crate) fn is_remote_addr(&self) -> bool {
        matches!(self.parts.as_slice(), [Part::Var(Var::RemoteAddr)])
    }

    /// The literal text the template starts with, if any.
    pub(crate) fn literal_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Lit(l)) => l,
            _ => "",
        }
    }

    /// Largest `{R:n}` used (also inside functions).
    pub(crate) fn max_r(&self) -> Option<usize> {
        self.fold(&|p| match p {
            Part::R(n) => Some(*n),
            _ => None,
        })
    }

    /// Largest `{C:n}` used.
    pub(crate) fn max_c(&self) -> Option<usize> {
        self.fold(&|p| match p {
            Part::C(n) => Some(*n),
            _ => None,
        })
    }

    /// Whether a variable is used, for rendering it once per request only when needed.
    pub(crate) fn uses(&self, var: &Var) -> bool {
        self.fold(&|p| matches!(p, Part::Var(v) if v == var).then_some(0))
            .is_some()
    }

    fn fold(&self, f: &dyn Fn(&Part) -> Option<usize>) -> Option<usize> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Func(_, inner) => inner.fold(f),
                _ => f(p),
            })
            .max()
    }

    /// Value of the template; borrowed (no allocation) when it is a single literal, variable or
    /// back-reference.
    pub(crate) fn eval<'x>(&'x self, ctx: &Ctx<'x>) -> Cow<'x, str> {
        match self.parts.as_slice() {
            [] => Cow::Borrowed(""),
            [Part::Lit(l)] => Cow::Borrowed(l),
            [Part::R(n)] => Cow::Borrowed(ctx.r.get(*n)),
            [Part::C(n)] => Cow::Borrowed(cap(ctx.c, *n)),
            [Part::Var(v)] => vars::value(v, ctx.req, ctx.url, ctx.query, ctx.rendered),
            _ => {
                let mut out = String::new();
                self.expand_into(ctx, &mut out);
                Cow::Owned(out)
            }
        }
    }

    pub(crate) fn expand_into(&self, ctx: &Ctx<'_>, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Lit(l) => out.push_str(l),
                Part::R(n) => out.push_str(ctx.r.get(*n)),
                Part::C(n) => out.push_str(cap(ctx.c, *n)),
                Part::Var(v) => vars::push(out, v, ctx.req, ctx.url, ctx.query, ctx.rendered),
                Part::Func(f, inner) => apply(*f, inner, ctx, out),
            }
        }
    }
}

fn apply(f: Func, inner: &Template, ctx: &Ctx<'_>, out: &mut String) {
    match f {
        Func::ToLower => {
            let start = out.len();
            inner.expand_into(ctx, out);
            if out[start..].is_ascii() {
                out[start..].make_ascii_lowercase();
            } else {
                let lower = out[start..].to_lowercase();
                out.truncate(start);
                out.push_str(&lower);
            }
        }
        Func::UrlEncode => {
            let arg = inner.eval(ctx);
            out.extend(utf8_percent_encode(&arg, URL_ENCODE_SET));
        }
        Func::UrlDecode => {
            let arg = inner.eval(ctx);
            out.push_str(&percent_decode_str(&arg).decode_utf8_lossy());
        }
    }
}

const ACCEPTED: &str = "write `{NAME}` for a server variable, `{R:n}` / `{C:n}` for a \
     back-reference, or `{ToLower:...}`, `{UrlEncode:...}`, `{UrlDecode:...}`";

struct Parser<'s> {
    src: &'s str,
    pos: usize,
}

impl Parser<'_> {
    /// Parts up to the end (depth 0) or up to the `}` closing a function (depth > 0).
    fn seq(&mut self, depth: usize) -> Result<Vec<Part>, String> {
        let mut parts = Vec::new();
        loop {
            let rest = &self.src[self.pos..];
            let Some(i) = rest.find(['{', '}']) else {
                if depth > 0 {
                    return Err(format!(
                        "unbalanced braces in `{}`: a `{{` is never closed; {ACCEPTED}",
                        self.src
                    ));
                }
                if !rest.is_empty() {
                    parts.push(Part::Lit(rest.to_owned()));
                }
                self.pos = self.src.len();
                return Ok(parts);
            };
            if i > 0 {
                parts.push(Part::Lit(rest[..i].to_owned()));
            }
            let brace = rest.as_bytes()[i];
            self.pos += i + 1;
            if brace == b'}' {
                if depth > 0 {
                    return Ok(parts);
                }
                return Err(format!(
                    "unbalanced braces in `{}`: `}}` at byte {} has no matching `{{`; {ACCEPTED}",
                    self.src,
                    self.pos - 1
                ));
            }
            parts.push(self.expr(depth)?);
        }
    }

    /// After a `{`: a variable, a back-reference or a function call.
    fn expr(&mut self, depth: usize) -> Result<Part, String> {
        let rest = &self.src[self.pos..];
        let Some(i) = rest.find([':', '}', '{']) else {
            return Err(format!(
                "unbalanced braces in `{}`: a `{{` is never closed; {ACCEPTED}",
                self.src
            ));
        };
        let name = &rest[..i];
        match rest.as_bytes()[i] {
            b'{' => Err(format!(
                "unexpected `{{` after `{{{name}` in `{}`; {ACCEPTED}",
                self.src
            )),
            b'}' => {
                self.pos += i + 1;
                if name.is_empty() {
                    return Err(format!("empty `{{}}` in `{}`; {ACCEPTED}", self.src));
                }
                Var::parse(name).map(Part::Var)
            }
            _ => {
                self.pos += i + 1;
                if name.eq_ignore_ascii_case("R") || name.eq_ignore_ascii_case("C") {
                    return self.backref(name);
                }
                let func = match name.to_ascii_lowercase().as_str() {
                    "tolower" => Func::ToLower,
                    "urlencode" => Func::UrlEncode,
                    "urldecode" => Func::UrlDecode,
                    _ => {
                        return Err(format!(
                            "unknown function `{name}:` in `{}`; accepted: ToLower, UrlEncode, \
                             UrlDecode (and back-references R:n, C:n)",
                            self.src
                        ))
                    }
                };
                if depth + 1 > MAX_DEPTH {
                    return Err(format!(
                        "functions nested more than {MAX_DEPTH} deep in `{}`",
                        self.src
                    ));
                }
                let inner = self.seq(depth + 1)?;
                Ok(Part::Func(func, Template { parts: inner }))
            }
        }
    }

    fn backref(&mut self, kind: &str) -> Result<Part, String> {
        let rest = &self.src[self.pos..];
        let end = rest.find('}').ok_or_else(|| {
            format!(
                "unbalanced braces in `{}`: `{{{kind}:` is never closed; {ACCEPTED}",
                self.src
            )
        })?;
        let digits = &rest[..end];
        let n: usize = digits
            .parse()
            .ok()
            .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                format!(
                    "`{{{kind}:{digits}}}` in `{}` is not a back-reference; accepted: `{{R:n}}` \
                     or `{{C:n}}` with n a capture group number (0 = whole match)",
                    self.src
                )
            })?;
        self.pos += end + 1;
        Ok(if kind.eq_ignore_ascii_case("R") {
            Part::R(n)
        } else {
            Part::C(n)
        })
    }
}
