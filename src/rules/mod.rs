//! URL Rewrite rules (IIS URL Rewrite 2.x semantics, adapted): ordered rules, each a pattern on
//! the URL path plus conditions on server variables, leading to route, rewrite, redirect, custom
//! response or abort.
//!
//! The config module fills the plain `*Spec` structs; [`RuleSet::compile`] checks and compiles
//! them once (regexes, templates, which captures each rule needs), and [`RuleSet::evaluate`]
//! runs per request without allocating in the common cases.

mod action;
mod index;
mod literal;
mod pattern;
mod template;
mod vars;

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use std::sync::Arc;

use crate::perimeter::cidr::CidrSource;
use crate::perimeter::ratelimit::RateLimiter;

use action::{expand_url, origin_form, redirect_location, Action};
use bytes::Bytes;
use literal::CondTest;
use pattern::{Group, Matcher, Need, RegexCache};
use template::{Ctx, Template};
use vars::{Rendered, Var};

/// How a rule's `match` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PatternSyntax {
    /// The pattern is a regular expression (the IIS default).
    #[default]
    Regex,
    /// `*` = any text (captured), `?` = any one character, whole input.
    Wildcard,
    /// Whole-input equality.
    Exact,
}

/// Whether all conditions must hold, or any one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogicalGrouping {
    /// Every condition must match (IIS `MatchAll`).
    #[default]
    MatchAll,
    /// One matching condition is enough (IIS `MatchAny`).
    MatchAny,
}

/// How a route reaches the farm member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP to the member.
    Http,
    /// TLS to the member.
    Https,
}

/// One condition of a rule, as the config wrote it: a template tested against a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionSpec {
    /// A template, usually one server variable such as `{HTTP_HOST}`.
    pub input: String,
    /// Always a regular expression, as in IIS.
    pub pattern: String,
    /// The condition holds when the pattern does *not* match.
    pub negate: bool,
    /// Match `pattern` case-insensitively (IIS `ignoreCase`).
    pub ignore_case: bool,
    /// Address ranges to test the input against instead of `pattern`; the input must then be
    /// `{REMOTE_ADDR}`.
    pub cidr: Option<CidrSource>,
}

/// What a rule does when its pattern and conditions match, as the config wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionSpec {
    /// Forward the request to a farm (ARR's route to a server farm); terminal.
    Route {
        /// Name of the farm, resolved when the rules are compiled.
        farm: String,
        /// Scheme towards the member; `None` uses the farm's own.
        scheme: Option<Scheme>,
        /// Template for the path sent to the member; `None` keeps the current URL.
        path: Option<String>,
        /// Keep the client's query string after a rewritten `path`.
        append_query: bool,
        /// Largest request body this route accepts, in bytes (None: no limit).
        max_body: Option<u64>,
    },
    /// Replace the URL that later rules and the route see (IIS `Rewrite` to a local URL).
    Rewrite {
        /// Template for the new path and query.
        url: String,
        /// Keep the client's query string after the rewritten URL.
        append_query: bool,
    },
    /// Answer with a redirect to another URL; terminal.
    Redirect {
        /// Template for the `Location` header.
        url: String,
        /// One of 301 302 303 307 308.
        status: u16,
        /// Keep the client's query string after the redirect URL.
        append_query: bool,
    },
    /// Answer from the proxy itself with a fixed response (IIS `CustomResponse`); terminal.
    Respond {
        /// HTTP status code of the answer.
        status: u16,
        /// Reason phrase for HTTP/1; `None` uses the standard one.
        reason: Option<String>,
        /// Response body, sent as is.
        body: String,
        /// `Content-Type` of the body.
        content_type: String,
    },
    /// Close the connection without answering (IIS `AbortRequest`); terminal.
    Abort,
    /// Do nothing; only `stop` has an effect (IIS `None`).
    None,
}

/// One rule as the config wrote it, before [`RuleSet::compile`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// Shown in logs, the access log and the status page as the rule that decided.
    pub name: String,
    /// How `pattern` is read.
    pub syntax: PatternSyntax,
    /// Matched against the URL path (IIS `match url`).
    pub pattern: String,
    /// Match `pattern` case-insensitively.
    pub ignore_case: bool,
    /// The rule applies when `pattern` does *not* match (no captures are then available).
    pub negate: bool,
    /// Extra tests on server variables, combined by `logical_grouping`.
    pub conditions: Vec<ConditionSpec>,
    /// Whether all conditions must hold or any one.
    pub logical_grouping: LogicalGrouping,
    /// Captures of all matched conditions stay readable as `{C:n}`, not only the last one's (IIS `trackAllCaptures`).
    pub track_all_captures: bool,
    /// What the rule does when it applies.
    pub action: ActionSpec,
    /// Stop evaluating further rules after this one applies (IIS `stopProcessing`).
    pub stop: bool,
}

/// Which part of a condition an error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionPart {
    /// The condition's input template.
    Input,
    /// The condition's pattern (or address ranges).
    Pattern,
}

/// Where in a RuleSpec a compile error is, so the config module can point at the right TOML key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleField {
    /// The rule's `match` pattern.
    Match,
    /// One of the rule's conditions.
    Condition {
        /// Position of the condition in the rule, from 0.
        index: usize,
        /// Which part of that condition.
        part: ConditionPart,
    },
    /// The action's template, farm, status, reason or content type.
    Action,
}

/// A rule that cannot be compiled; `message` says what is wrong and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    pub(crate) field: RuleField,
    pub(crate) message: String,
}

/// Everything server variables are read from. Borrowed: no allocation to build one.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Request method (`REQUEST_METHOD`).
    pub method: &'a str,
    /// Host header / h2 :authority, as sent (may include :port).
    pub host: &'a str,
    /// The client connected over TLS (`HTTPS` is `on`).
    pub https: bool,
    /// Local port of the listener.
    pub server_port: u16,
    /// Raw path as the client sent it, with leading '/', NOT decoded.
    pub path: &'a str,
    /// Raw query without '?'.
    pub query: Option<&'a str>,
    /// Client address after PROXY protocol / trusted forwarders (`REMOTE_ADDR`).
    pub remote_addr: std::net::IpAddr,
    /// Request headers, read as `HTTP_*` variables.
    pub headers: &'a http::HeaderMap,
}

/// A farm as rules name it: its declaration number in the config that compiled the rules.
/// Only rule compilation makes one, from the farm's name, and the run-time farms are built
/// from the same list, so an id never points at another farm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FarmId(u32);

impl FarmId {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }

    pub(crate) fn from_index(i: usize) -> FarmId {
        FarmId(i as u32)
    }
}

/// What the rules decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Forward the request to a member of `farm`.
    Route {
        /// The farm to send the request to.
        farm: FarmId,
        /// Scheme towards the member; `None` uses the farm's own.
        scheme: Option<Scheme>,
        /// `None` = forward the client's path and query byte for byte; `Some` = the new
        /// origin-form path and query.
        path_and_query: Option<String>,
        /// Name of the rule that routed, for the access log.
        rule: &'a str,
        /// Largest request body the route accepts, in bytes (None: no limit).
        max_body: Option<u64>,
        /// The rule's per-client-address rate limit, if it has one.
        rate_limit: Option<&'a Arc<RateLimiter>>,
    },
    /// Answer with a redirect.
    Redirect {
        /// One of 301 302 303 307 308.
        status: u16,
        /// Value of the `Location` header, already expanded.
        location: String,
        /// Name of the rule that redirected, for the access log.
        rule: &'a str,
    },
    /// Answer with the rule's fixed response.
    Respond {
        /// HTTP status code of the answer.
        status: u16,
        /// Reason phrase for HTTP/1; `None` uses the standard one.
        reason: Option<&'a str>,
        /// Response body.
        body: Bytes,
        /// `Content-Type` of the body.
        content_type: &'a str,
        /// Name of the rule that answered, for the access log.
        rule: &'a str,
    },
    /// Close the connection without answering.
    Abort {
        /// Name of the rule that aborted, for the access log.
        rule: &'a str,
    },
    /// No rule produced a terminal action (the proxy answers 404).
    NoMatch,
}

#[derive(Debug)]
struct Condition {
    input: Template,
    /// The input reads `{C:n}` of earlier conditions, so it is expanded to an owned string.
    input_uses_c: bool,
    /// An address condition: the client address is looked up in these ranges (`test` is
    /// then unused and empty).
    cidr: Option<CidrSource>,
    test: CondTest,
    /// `test.slots()`, cached: asking a regex costs a dynamic call per request.
    slots: usize,
    negate: bool,
}

#[derive(Debug)]
struct Rule {
    name: String,
    matcher: Matcher,
    /// `matcher.slots()`, cached.
    r_slots: usize,
    negate: bool,
    /// What the match must capture for `{R:n}`.
    r_need: Need,
    conditions: Vec<Condition>,
    any: bool,
    track_all: bool,
    /// What each condition must capture for `{C:n}`.
    c_need: Need,
    action: Action,
    stop: bool,
    rate_limit: Option<Arc<RateLimiter>>,
}

/// A compiled, immutable, ordered list of rules.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Runs of host rules, found by lookup instead of a walk (`index`).
    blocks: Vec<index::Block>,
    /// Some template reads `{SERVER_PORT}` / `{REMOTE_ADDR}`: render it once per request.
    uses_port: bool,
    uses_addr: bool,
}

/// The URL as the walk has rewritten it so far.
struct Walk<'r> {
    path: Cow<'r, str>,
    query: Option<Cow<'r, str>>,
    rewritten: bool,
}

impl Walk<'_> {
    /// Runs one rule; Some when the walk ends here.
    fn step<'a>(
        &mut self,
        rule: &'a Rule,
        req: &RequestView<'_>,
        rendered: &Rendered,
    ) -> Option<Outcome<'a>> {
        match rule.run(
            req,
            &self.path,
            self.query.as_deref(),
            self.rewritten,
            rendered,
        ) {
            Step::Skip => return None,
            Step::Done(outcome) => return Some(outcome),
            Step::Rewrite(p, q) => {
                self.path = Cow::Owned(p);
                self.query = q.map(Cow::Owned);
                self.rewritten = true;
            }
            Step::Continue => {}
        }
        // No default farm: a walk stopped without a route is a 404.
        rule.stop.then_some(Outcome::NoMatch)
    }
}

/// What one rule did.
enum Step<'a> {
    Skip,
    Done(Outcome<'a>),
    Rewrite(String, Option<String>),
    Continue,
}

impl RuleSet {
    /// Compiles rules in order; an error carries the index of the offending rule.
    /// `farm_names[i]` is the farm that a route's `farm: i` refers to.
    pub fn compile(
        specs: Vec<RuleSpec>,
        farm_names: &[&str],
    ) -> Result<RuleSet, (usize, RuleError)> {
        let mut set = RuleSet::default();
        let mut cache = RegexCache::default();
        for (i, spec) in specs.into_iter().enumerate() {
            let rule = Rule::compile(spec, farm_names, &mut cache).map_err(|e| (i, e))?;
            let templates = rule
                .conditions
                .iter()
                .map(|c| &c.input)
                .chain(rule.action.templates());
            for t in templates {
                set.uses_port |= t.uses(&Var::ServerPort);
                set.uses_addr |= t.uses(&Var::RemoteAddr);
            }
            set.rules.push(rule);
        }
        set.blocks = index::build(&set.rules);
        Ok(set)
    }

    /// Runs the rules for one request; the first terminal action wins.
    pub fn evaluate<'a>(&'a self, req: &RequestView<'_>) -> Outcome<'a> {
        let rendered = Rendered::new(req, self.uses_port, self.uses_addr);
        let mut walk = Walk {
            path: Cow::Borrowed(req.path),
            query: req.query.map(Cow::Borrowed),
            rewritten: false,
        };
        let mut i = 0;
        let mut blocks = self.blocks.iter().peekable();
        while i < self.rules.len() {
            if let Some(block) = blocks.next_if(|b| b.start == i) {
                i = block.end;
                if let Some(found) = block.candidates(req.host) {
                    for k in found {
                        if let Some(outcome) = walk.step(&self.rules[k], req, &rendered) {
                            return outcome;
                        }
                    }
                    continue;
                }
                for rule in &self.rules[block.start..block.end] {
                    if let Some(outcome) = walk.step(rule, req, &rendered) {
                        return outcome;
                    }
                }
                continue;
            }
            if let Some(outcome) = walk.step(&self.rules[i], req, &rendered) {
                return outcome;
            }
            i += 1;
        }
        Outcome::NoMatch
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// No rules at all: every request gets [`Outcome::NoMatch`].
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rule names in order (for status pages and logs).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }

    /// Every farm some rule routes to, each once, in
    /// order: `portico health` asks whether any of them can take a request.
    pub fn routed_farms(&self) -> Vec<FarmId> {
        let mut out = Vec::new();
        for r in &self.rules {
            if let Action::Route { farm, .. } = &r.action {
                if !out.contains(farm) {
                    out.push(*farm);
                }
            }
        }
        out
    }

    /// Gives rule `index` a per-client-address rate limit (applied by the proxy when the
    /// rule routes a request).
    pub fn set_rate_limit(&mut self, index: usize, limiter: Arc<RateLimiter>) {
        if let Some(r) = self.rules.get_mut(index) {
            r.rate_limit = Some(limiter);
        }
    }

    /// Rules with a rate limit, by name (for `/metrics`).
    pub fn rate_limits(&self) -> impl Iterator<Item = (&str, &Arc<RateLimiter>)> {
        self.rules
            .iter()
            .filter_map(|r| r.rate_limit.as_ref().map(|l| (r.name.as_str(), l)))
    }
}

impl Rule {
    fn compile(
        spec: RuleSpec,
        farm_names: &[&str],
        cache: &mut RegexCache,
    ) -> Result<Rule, RuleError> {
        let matcher = Matcher::compile(spec.syntax, &spec.pattern, spec.ignore_case, cache)
            .map_err(|message| RuleError {
                field: RuleField::Match,
                message,
            })?;
        let mut conditions = Vec::with_capacity(spec.conditions.len());
        for (index, c) in spec.conditions.into_iter().enumerate() {
            let err = |part| {
                move |message| RuleError {
                    field: RuleField::Condition { index, part },
                    message,
                }
            };
            let input = Template::parse(&c.input).map_err(err(ConditionPart::Input))?;
            if c.cidr.is_some() && !input.is_remote_addr() {
                return Err(err(ConditionPart::Input)(format!(
                    "`cidr` / `cidr_file` test an address: the input must be \"{{REMOTE_ADDR}}\", not {:?}",
                    c.input
                )));
            }
            let pattern = if c.cidr.is_some() { "" } else { &c.pattern };
            let test = CondTest::compile(pattern, c.ignore_case, cache)
                .map_err(err(ConditionPart::Pattern))?;
            conditions.push(Condition {
                input_uses_c: input.max_c().is_some(),
                cidr: c.cidr,
                input,
                slots: test.slots(),
                test,
                negate: c.negate,
            });
        }
        let action = Action::compile(spec.action, farm_names)?;
        let templates = || {
            conditions
                .iter()
                .map(|c| &c.input)
                .chain(action.templates())
        };
        let max_r = templates().filter_map(Template::max_r).max();
        let max_c = templates().filter_map(Template::max_c).max();
        Ok(Rule {
            name: spec.name,
            r_slots: matcher.slots(),
            matcher,
            negate: spec.negate,
            r_need: if spec.negate {
                Need::Nothing
            } else {
                Need::for_index(max_r)
            },
            conditions,
            any: spec.logical_grouping == LogicalGrouping::MatchAny,
            track_all: spec.track_all_captures,
            c_need: Need::for_index(max_c),
            action,
            stop: spec.stop,
            rate_limit: None,
        })
    }

    fn run<'a>(
        &'a self,
        req: &RequestView<'_>,
        url: &str,
        query: Option<&str>,
        rewritten: bool,
        rendered: &Rendered,
    ) -> Step<'a> {
        let input = url.strip_prefix('/').unwrap_or(url);
        let r = match (self.matcher.find(input, self.r_need), self.negate) {
            (Some(spans), false) => Group {
                hay: Cow::Borrowed(input),
                spans,
                slots: self.r_slots,
            },
            (None, true) => Group::empty(),
            _ => return Step::Skip,
        };
        let mut last: Option<Group<'_>> = None;
        let mut all: Vec<Group<'_>> = Vec::new();
        let mut any_held = false;
        for cond in &self.conditions {
            if let Some(ranges) = &cond.cidr {
                // The input is `{REMOTE_ADDR}`: read the address itself, no text round trip.
                let holds = ranges.contains(req.remote_addr) != cond.negate;
                if holds && self.any {
                    any_held = true;
                    break;
                }
                if !holds && !self.any {
                    return Step::Skip;
                }
                continue;
            }
            let value: Cow<'_, str> = if cond.input_uses_c {
                let c = if self.track_all {
                    &all[..]
                } else {
                    last.as_slice()
                };
                let ctx = Ctx {
                    req,
                    url,
                    query,
                    rendered,
                    r: &r,
                    c,
                };
                Cow::Owned(cond.input.eval(&ctx).into_owned())
            } else {
                let ctx = Ctx {
                    req,
                    url,
                    query,
                    rendered,
                    r: &r,
                    c: &[],
                };
                cond.input.eval(&ctx)
            };
            let need = if cond.negate {
                Need::Nothing
            } else {
                self.c_need
            };
            let found = cond.test.find(&value, need);
            let holds = found.is_some() != cond.negate;
            if let (Some(spans), false, false) = (found, cond.negate, need == Need::Nothing) {
                let group = Group {
                    hay: value,
                    spans,
                    slots: cond.slots,
                };
                if self.track_all {
                    all.push(group);
                } else {
                    last = Some(group);
                }
            }
            if holds && self.any {
                any_held = true;
                break;
            }
            if !holds && !self.any {
                return Step::Skip;
            }
        }
        if self.any && !any_held && !self.conditions.is_empty() {
            return Step::Skip;
        }
        let c = if self.track_all {
            &all[..]
        } else {
            last.as_slice()
        };
        let ctx = Ctx {
            req,
            url,
            query,
            rendered,
            r: &r,
            c,
        };
        self.act(&ctx, input, rewritten)
    }

    fn act<'a>(&'a self, ctx: &Ctx<'_>, input: &str, rewritten: bool) -> Step<'a> {
        let rule = self.name.as_str();
        let req = ctx.req;
        match &self.action {
            Action::Route {
                farm,
                scheme,
                path,
                append_query,
                max_body,
            } => {
                let keeps_query = *append_query || req.query.is_none();
                let unchanged = !rewritten
                    && keeps_query
                    && match path {
                        None => true,
                        // `/{R:0}` over a match of the whole input rebuilds the request path.
                        Some(t) => {
                            t.is_slash_r0()
                                && !self.negate
                                && ctx.r.get(0).len() == input.len()
                                && req.path.starts_with('/')
                        }
                    };
                let path_and_query = if unchanged {
                    None
                } else {
                    let (p, q) = match path {
                        Some(t) => expand_url(t, ctx, *append_query),
                        None => (
                            ctx.url.to_owned(),
                            ctx.query.filter(|_| *append_query).map(str::to_owned),
                        ),
                    };
                    origin_form(req, p, q.as_deref())
                };
                Step::Done(Outcome::Route {
                    farm: *farm,
                    scheme: *scheme,
                    path_and_query,
                    rule,
                    max_body: *max_body,
                    rate_limit: self.rate_limit.as_ref(),
                })
            }
            Action::Rewrite { url, append_query } => {
                let (p, q) = expand_url(url, ctx, *append_query);
                Step::Rewrite(p, q)
            }
            Action::Redirect {
                url,
                status,
                append_query,
            } => Step::Done(Outcome::Redirect {
                status: *status,
                location: redirect_location(url, ctx, *append_query),
                rule,
            }),
            Action::Respond {
                status,
                reason,
                body,
                content_type,
            } => Step::Done(Outcome::Respond {
                status: *status,
                reason: reason.as_deref(),
                body: body.clone(),
                content_type,
                rule,
            }),
            Action::Abort => Step::Done(Outcome::Abort { rule }),
            Action::None => Step::Continue,
        }
    }
}
