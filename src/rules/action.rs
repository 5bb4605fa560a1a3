//! Compiled actions and how they turn a matched rule into an outcome.

use bytes::Bytes;
use http::HeaderValue;

use super::template::{Ctx, Template};
use super::{ActionSpec, RequestView, RuleError, RuleField, Scheme};

#[derive(Debug)]
pub(crate) enum Action {
    Route {
        farm: super::FarmId,
        scheme: Option<Scheme>,
        path: Option<Template>,
        append_query: bool,
        max_body: Option<u64>,
    },
    Rewrite {
        url: Template,
        append_query: bool,
    },
    Redirect {
        url: Template,
        status: u16,
        append_query: bool,
    },
    Respond {
        status: u16,
        reason: Option<String>,
        body: Bytes,
        content_type: String,
    },
    Abort,
    None,
}

fn action_err(message: String) -> RuleError {
    RuleError {
        field: RuleField::Action,
        message,
    }
}

fn template(src: &str) -> Result<Template, RuleError> {
    Template::parse(src).map_err(action_err)
}

impl Action {
    pub(crate) fn compile(spec: ActionSpec, farm_names: &[&str]) -> Result<Action, RuleError> {
        Ok(match spec {
            ActionSpec::Route {
                farm,
                scheme,
                path,
                append_query,
                max_body,
            } => {
                let Some(index) = farm_names.iter().position(|f| *f == farm) else {
                    let known = if farm_names.is_empty() {
                        "no farms are defined".to_owned()
                    } else {
                        format!("farms are: {}", farm_names.join(", "))
                    };
                    return Err(action_err(format!("no farm named `{farm}`; {known}")));
                };
                Action::Route {
                    farm: super::FarmId::from_index(index),
                    scheme,
                    path: path.as_deref().map(template).transpose()?,
                    append_query,
                    max_body,
                }
            }
            ActionSpec::Rewrite { url, append_query } => {
                let url = template(&url)?;
                let prefix = url.literal_prefix().to_ascii_lowercase();
                if prefix.starts_with("http://") || prefix.starts_with("https://") {
                    return Err(action_err(format!(
                        "rewrite to an absolute URL (`{}`) is what a route does in Portico; \
                         accepted: a path such as `/new/{{R:1}}`, or use a route action to a \
                         farm",
                        url.literal_prefix()
                    )));
                }
                Action::Rewrite { url, append_query }
            }
            ActionSpec::Redirect {
                url,
                status,
                append_query,
            } => {
                if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                    return Err(action_err(format!(
                        "redirect status {status} is not a redirect; accepted: 301, 302, 303, \
                         307, 308"
                    )));
                }
                Action::Redirect {
                    url: template(&url)?,
                    status,
                    append_query,
                }
            }
            ActionSpec::Respond {
                status,
                reason,
                body,
                content_type,
            } => {
                if !(200..=599).contains(&status) {
                    return Err(action_err(format!(
                        "custom response status {status} is not allowed; accepted: 200 to 599"
                    )));
                }
                if let Some(r) = &reason {
                    if r.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                        return Err(action_err(format!(
                            "reason {r:?} contains control characters; accepted: printable text \
                             on one line"
                        )));
                    }
                }
                if HeaderValue::from_str(&content_type).is_err() {
                    return Err(action_err(format!(
                        "content type {content_type:?} is not a valid header value; accepted: \
                         e.g. `text/plain; charset=utf-8`"
                    )));
                }
                Action::Respond {
                    status,
                    reason,
                    body: Bytes::from(body),
                    content_type,
                }
            }
            ActionSpec::Abort => Action::Abort,
            ActionSpec::None => Action::None,
        })
    }

    /// Templates the action expands, for working out which captures and variables it reads.
    pub(crate) fn templates(&self) -> Option<&Template> {
        match self {
            Action::Route { path, .. } => path.as_ref(),
            Action::Rewrite { url, .. } | Action::Redirect { url, .. } => Some(url),
            _ => None,
        }
    }
}

/// Expands a path template and splits off its query: a `?` in the result wins, else the
/// current query is kept when `append_query`.
pub(crate) fn expand_url(
    tpl: &Template,
    ctx: &Ctx<'_>,
    append_query: bool,
) -> (String, Option<String>) {
    let mut out = String::with_capacity(ctx.url.len() + 16);
    tpl.expand_into(ctx, &mut out);
    // IIS treats `page.aspx` as `/page.aspx`; origin form needs the slash.
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    match out.find('?') {
        Some(i) => {
            let query = out[i + 1..].to_owned();
            out.truncate(i);
            (out, Some(query))
        }
        None => {
            let query = if append_query {
                ctx.query.map(str::to_owned)
            } else {
                None
            };
            (out, query)
        }
    }
}

/// Joins path and query into origin form, or `None` when that is exactly what the client sent.
pub(crate) fn origin_form(
    req: &RequestView<'_>,
    mut path: String,
    query: Option<&str>,
) -> Option<String> {
    if path == req.path && query == req.query {
        return None;
    }
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    Some(path)
}

/// A redirect's Location: the expanded URL plus the current query when asked for.
pub(crate) fn redirect_location(tpl: &Template, ctx: &Ctx<'_>, append_query: bool) -> String {
    let mut out = String::new();
    tpl.expand_into(ctx, &mut out);
    if let Some(q) = ctx.query.filter(|q| append_query && !q.is_empty()) {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(q);
    }
    out
}
