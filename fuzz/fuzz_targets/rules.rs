//! The rule engine: fuzzed patterns, conditions and templates are compiled; whatever compiles
//! is evaluated against fuzzed requests. Never a panic, however odd the back-references.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portico::rules::{
    ActionSpec, ConditionSpec, LogicalGrouping, PatternSyntax, RequestView, RuleSet, RuleSpec,
    Scheme,
};

#[derive(Arbitrary, Debug)]
struct Input {
    rules: Vec<FRule>,
    requests: Vec<FRequest>,
}

#[derive(Arbitrary, Debug)]
struct FRule {
    syntax: u8,
    pattern: String,
    ignore_case: bool,
    negate: bool,
    conditions: Vec<(String, String, bool, bool)>,
    any: bool,
    track_all: bool,
    action: FAction,
    stop: bool,
}

#[derive(Arbitrary, Debug)]
enum FAction {
    Route(u8, Option<bool>, Option<String>, bool),
    Rewrite(String, bool),
    Redirect(String, u16, bool),
    Respond(u16, Option<String>, String, String),
    Abort,
    None,
}

#[derive(Arbitrary, Debug)]
struct FRequest {
    method: String,
    host: String,
    https: bool,
    port: u16,
    path: String,
    query: Option<String>,
    addr: [u8; 4],
    headers: Vec<(String, String)>,
}

const FARMS: &[&str] = &["lyncweb", "owas", "exchange"];

fn spec(i: usize, r: FRule) -> RuleSpec {
    let action = match r.action {
        FAction::Route(f, scheme, path, append_query) => ActionSpec::Route {
            farm: FARMS[usize::from(f) % FARMS.len()].to_string(),
            scheme: scheme.map(|s| if s { Scheme::Https } else { Scheme::Http }),
            path,
            append_query,
            max_body: None,
        },
        FAction::Rewrite(url, append_query) => ActionSpec::Rewrite { url, append_query },
        FAction::Redirect(url, status, append_query) => ActionSpec::Redirect {
            url,
            status,
            append_query,
        },
        FAction::Respond(status, reason, body, content_type) => ActionSpec::Respond {
            status,
            reason,
            body,
            content_type,
        },
        FAction::Abort => ActionSpec::Abort,
        FAction::None => ActionSpec::None,
    };
    RuleSpec {
        name: format!("rule{i}"),
        syntax: match r.syntax % 3 {
            0 => PatternSyntax::Regex,
            1 => PatternSyntax::Wildcard,
            _ => PatternSyntax::Exact,
        },
        pattern: r.pattern,
        ignore_case: r.ignore_case,
        negate: r.negate,
        conditions: r
            .conditions
            .into_iter()
            .take(8)
            .map(|(input, pattern, negate, ignore_case)| ConditionSpec {
                input,
                pattern,
                negate,
                ignore_case,
                cidr: None,
            })
            .collect(),
        logical_grouping: if r.any {
            LogicalGrouping::MatchAny
        } else {
            LogicalGrouping::MatchAll
        },
        track_all_captures: r.track_all,
        action,
        stop: r.stop,
    }
}

fuzz_target!(|input: Input| {
    let specs: Vec<RuleSpec> = input
        .rules
        .into_iter()
        .take(8)
        .enumerate()
        .map(|(i, r)| spec(i, r))
        .collect();
    let Ok(set) = RuleSet::compile(specs, FARMS) else {
        return;
    };
    for r in input.requests.into_iter().take(4) {
        let mut headers = http::HeaderMap::new();
        for (k, v) in r.headers.iter().take(8) {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                headers.append(k, v);
            }
        }
        let view = RequestView {
            method: &r.method,
            host: &r.host,
            https: r.https,
            server_port: r.port,
            path: &r.path,
            query: r.query.as_deref(),
            remote_addr: std::net::IpAddr::from(r.addr),
            headers: &headers,
        };
        let _ = set.evaluate(&view);
    }
});
