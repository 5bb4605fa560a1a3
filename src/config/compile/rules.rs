//! Rules and their actions, compiled by the `rules` module.

use super::*;

impl Compiler<'_> {
    pub(super) fn rules(
        &mut self,
        rules: Vec<S<file::Rule>>,
        farm_names: &[&str],
    ) -> Option<RuleSet> {
        let mut specs = Vec::with_capacity(rules.len());
        let mut spans = Vec::with_capacity(rules.len());
        let mut seen = HashSet::new();
        let errors_before = self.d.errors.len();
        let mut limits = Vec::new();
        for (i, sr) in rules.into_iter().enumerate() {
            let rule_span = sr.span();
            let r = sr.into_inner();
            let name = r.name.get_ref().clone();
            if !seen.insert(name.clone()) {
                self.d.at(r.name.span(), format!("rule[{i}].name"), format!("duplicate rule name {name:?}: rule names appear in logs and must be unique"));
            }
            let key = format!("rule \"{name}\"");
            let syntax = match r.syntax.as_ref().map(|s| s.get_ref().to_ascii_lowercase()) {
                None => PatternSyntax::Regex,
                Some(s) if s == "regex" || s == "ecmascript" => PatternSyntax::Regex,
                Some(s) if s == "wildcard" => PatternSyntax::Wildcard,
                Some(s) if s == "exact" || s == "exactmatch" => PatternSyntax::Exact,
                Some(other) => {
                    let span = r
                        .syntax
                        .as_ref()
                        .map(|s| s.span())
                        .unwrap_or(rule_span.clone());
                    self.d.at(span, format!("{key}.syntax"), format!("unknown syntax {other:?}; accepted: \"regex\" (default), \"wildcard\", \"exact\""));
                    PatternSyntax::Regex
                }
            };
            let logical_grouping = match r
                .logical_grouping
                .as_ref()
                .map(|s| s.get_ref().to_ascii_lowercase())
            {
                None => LogicalGrouping::MatchAll,
                Some(s) if s == "matchall" => LogicalGrouping::MatchAll,
                Some(s) if s == "matchany" => LogicalGrouping::MatchAny,
                Some(other) => {
                    let span = r
                        .logical_grouping
                        .as_ref()
                        .map(|s| s.span())
                        .unwrap_or(rule_span.clone());
                    self.d.at(span, format!("{key}.logical_grouping"), format!("unknown grouping {other:?}; accepted: \"MatchAll\" (default), \"MatchAny\""));
                    LogicalGrouping::MatchAll
                }
            };
            let mut conditions = Vec::with_capacity(r.conditions.len());
            for (ci, c) in r.conditions.iter().enumerate() {
                let ckey = format!("{key}.conditions[{ci}]");
                let Ok(cidr) = self.condition_cidr(c, &ckey) else {
                    continue;
                };
                let cc = c.get_ref();
                conditions.push(ConditionSpec {
                    input: cc.input.get_ref().clone(),
                    pattern: cc
                        .pattern
                        .as_ref()
                        .map_or_else(String::new, |p| p.get_ref().clone()),
                    negate: cc.negate.unwrap_or(false),
                    ignore_case: cc.ignore_case.unwrap_or(true),
                    cidr,
                });
            }
            if let Some(l) = self.rule_rate_limit(&r, &key) {
                limits.push((i, l));
            }
            let action = self.action(&r.action, &key);
            let spec = RuleSpec {
                name,
                syntax,
                pattern: r
                    .pattern
                    .as_ref()
                    .map_or_else(|| ".*".to_string(), |p| p.get_ref().clone()),
                ignore_case: r.ignore_case.unwrap_or(true),
                negate: r.negate.unwrap_or(false),
                conditions,
                logical_grouping,
                track_all_captures: r.track_all_captures.unwrap_or(false),
                action: action.unwrap_or(ActionSpec::None),
                stop: r.stop.unwrap_or(false),
            };
            specs.push(spec);
            spans.push((rule_span, r));
        }
        if self.d.errors.len() > errors_before {
            return None;
        }
        match RuleSet::compile(specs, farm_names) {
            Ok(mut set) => {
                for (i, l) in limits {
                    set.set_rate_limit(i, l);
                }
                Some(set)
            }
            Err((i, err)) => {
                let (rule_span, r) = &spans[i];
                let key = format!("rule \"{}\"", r.name.get_ref());
                let (span, key) = match &err.field {
                    RuleField::Match => (
                        r.pattern
                            .as_ref()
                            .map(|p| p.span())
                            .unwrap_or(rule_span.clone()),
                        format!("{key}.match"),
                    ),
                    RuleField::Condition { index, part } => {
                        let c = r.conditions.get(*index);
                        let span = c.map(|c| match part {
                            ConditionPart::Input => c.get_ref().input.span(),
                            ConditionPart::Pattern => c
                                .get_ref()
                                .pattern
                                .as_ref()
                                .map_or_else(|| c.span(), |p| p.span()),
                        });
                        let part = match part {
                            ConditionPart::Input => "input",
                            ConditionPart::Pattern => "pattern",
                        };
                        (
                            span.unwrap_or(rule_span.clone()),
                            format!("{key}.conditions[{index}].{part}"),
                        )
                    }
                    RuleField::Action => (r.action.span(), format!("{key}.action")),
                };
                self.d.at(span, key, err.message.clone());
                None
            }
        }
    }

    pub(super) fn action(&mut self, a: &S<file::Action>, key: &str) -> Option<ActionSpec> {
        let span = a.span();
        let a = a.get_ref();
        let key = format!("{key}.action");
        let kinds = [
            a.route.is_some(),
            a.rewrite.is_some(),
            a.redirect.is_some(),
            a.respond.is_some(),
            a.abort == Some(true),
            a.none == Some(true),
        ];
        let count = kinds.iter().filter(|k| **k).count();
        if count != 1 {
            self.d.at(span, &key, if count == 0 {
                "names no action; use one of route = \"FARM\", rewrite = \"/path\", redirect = \"https://...\", respond = STATUS, abort = true, none = true"
            } else {
                "names more than one action; use exactly one of route, rewrite, redirect, respond, abort, none"
            });
            return None;
        }
        let append_query = a.append_query.unwrap_or(true);
        let allowed = |this: &mut Self, ok: &[&str]| {
            let present: [(&str, Option<std::ops::Range<usize>>); 7] = [
                ("scheme", a.scheme.as_ref().map(|s| s.span())),
                ("path", a.path.as_ref().map(|s| s.span())),
                ("status", a.status.as_ref().map(|s| s.span())),
                ("reason", a.reason.as_ref().map(|s| s.span())),
                ("body", a.body.as_ref().map(|s| s.span())),
                ("content_type", a.content_type.as_ref().map(|s| s.span())),
                ("max_body", a.max_body.as_ref().map(|s| s.span())),
            ];
            for (name, sp) in present {
                if let Some(sp) = sp {
                    if !ok.contains(&name) {
                        this.d.at(
                            sp,
                            format!("{key}.{name}"),
                            format!(
                                "`{name}` does not apply to this action (it takes: {})",
                                if ok.is_empty() {
                                    "nothing else".to_string()
                                } else {
                                    ok.join(", ")
                                }
                            ),
                        );
                    }
                }
            }
        };
        // Exchange RPC_IN_DATA declares up to 2 GB: the default lets it through.
        let max_body = match &a.max_body {
            None => Some(2u64 << 30),
            Some(v) if v.get_ref() == "unlimited" => None,
            Some(v) => match crate::config::size::parse_size(v.get_ref()) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.d.at(
                        v.span(),
                        format!("{key}.max_body"),
                        format!("{e}, or \"unlimited\""),
                    );
                    None
                }
            },
        };
        if let Some(farm) = &a.route {
            allowed(self, &["scheme", "path", "max_body"]);
            let scheme = match a.scheme.as_ref().map(|s| s.get_ref().to_ascii_lowercase()) {
                None => None,
                Some(s) if s == "https" => Some(Scheme::Https),
                Some(s) if s == "http" => Some(Scheme::Http),
                Some(other) => {
                    let sp = a.scheme.as_ref().map(|s| s.span()).unwrap_or(span.clone());
                    self.d.at(sp, format!("{key}.scheme"), format!("unknown scheme {other:?}; accepted: \"https\" (TLS to the member's https_port), \"http\" (clear text to its http_port)"));
                    None
                }
            };
            return Some(ActionSpec::Route {
                farm: farm.get_ref().clone(),
                scheme,
                path: a.path.as_ref().map(|p| p.get_ref().clone()),
                append_query,
                max_body,
            });
        }
        if let Some(url) = &a.rewrite {
            allowed(self, &[]);
            return Some(ActionSpec::Rewrite {
                url: url.get_ref().clone(),
                append_query,
            });
        }
        if let Some(url) = &a.redirect {
            allowed(self, &["status"]);
            let status = a.status.as_ref().map_or(301, |s| *s.get_ref());
            if ![301, 302, 303, 307, 308].contains(&status) {
                let sp = a.status.as_ref().map(|s| s.span()).unwrap_or(span);
                self.d.at(sp, format!("{key}.status"), format!("{status} is not a redirect status; accepted: 301 (default), 302, 303, 307, 308"));
            }
            return Some(ActionSpec::Redirect {
                url: url.get_ref().clone(),
                status,
                append_query,
            });
        }
        if let Some(status) = &a.respond {
            allowed(self, &["reason", "body", "content_type"]);
            let code = *status.get_ref();
            if !(200..=599).contains(&code) {
                self.d.at(
                    status.span(),
                    format!("{key}.respond"),
                    format!("{code} is not a response status; accepted: 200-599"),
                );
            }
            return Some(ActionSpec::Respond {
                status: code,
                reason: a.reason.as_ref().map(|r| r.get_ref().clone()),
                body: a
                    .body
                    .as_ref()
                    .map_or_else(String::new, |b| b.get_ref().clone()),
                content_type: a.content_type.as_ref().map_or_else(
                    || "text/plain; charset=utf-8".to_string(),
                    |c| c.get_ref().clone(),
                ),
            });
        }
        if a.abort == Some(true) {
            allowed(self, &[]);
            return Some(ActionSpec::Abort);
        }
        allowed(self, &[]);
        Some(ActionSpec::None)
    }
}
