use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};

use super::*;

mod errors;
mod index;

const FARMS: &[&str] = &["lyncweb", "meet", "dialin", "oos"];

/// Owns what a `RequestView` borrows.
struct Req {
    method: &'static str,
    host: &'static str,
    https: bool,
    path: &'static str,
    query: Option<&'static str>,
    addr: IpAddr,
    headers: HeaderMap,
}

impl Req {
    fn new(host: &'static str, path: &'static str, query: Option<&'static str>) -> Req {
        Req {
            method: "GET",
            host,
            https: true,
            path,
            query,
            addr: "203.0.113.7".parse().unwrap(),
            headers: HeaderMap::new(),
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Req {
        self.headers.append(name, HeaderValue::from_static(value));
        self
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: self.method,
            host: self.host,
            https: self.https,
            server_port: 443,
            path: self.path,
            query: self.query,
            remote_addr: self.addr,
            headers: &self.headers,
        }
    }
}

pub(super) fn rule(name: &str, pattern: &str, action: ActionSpec) -> RuleSpec {
    RuleSpec {
        name: name.to_owned(),
        syntax: PatternSyntax::Regex,
        pattern: pattern.to_owned(),
        ignore_case: true,
        negate: false,
        conditions: Vec::new(),
        logical_grouping: LogicalGrouping::MatchAll,
        track_all_captures: false,
        action,
        stop: true,
    }
}

pub(super) fn cond(input: &str, pattern: &str) -> ConditionSpec {
    ConditionSpec {
        input: input.to_owned(),
        pattern: pattern.to_owned(),
        negate: false,
        ignore_case: true,
        cidr: None,
    }
}

pub(super) fn route(farm: &str, path: Option<&str>) -> ActionSpec {
    ActionSpec::Route {
        farm: farm.to_owned(),
        scheme: Some(Scheme::Https),
        path: path.map(str::to_owned),
        append_query: true,
        max_body: None,
    }
}

pub(super) fn rewrite(url: &str) -> ActionSpec {
    ActionSpec::Rewrite {
        url: url.to_owned(),
        append_query: true,
    }
}

pub(super) fn redirect(url: &str, append_query: bool) -> ActionSpec {
    ActionSpec::Redirect {
        url: url.to_owned(),
        status: 302,
        append_query,
    }
}

pub(super) fn compile(specs: Vec<RuleSpec>) -> RuleSet {
    match RuleSet::compile(specs, FARMS) {
        Ok(set) => set,
        Err((i, e)) => panic!("rule {i}: {e}"),
    }
}

pub(super) fn compile_err(specs: Vec<RuleSpec>) -> (usize, RuleError) {
    match RuleSet::compile(specs, FARMS) {
        Ok(_) => panic!("expected a compile error"),
        Err(e) => e,
    }
}

/// Farm index and path_and_query of a Route outcome.
fn routed(set: &RuleSet, req: &Req) -> (usize, Option<String>) {
    match set.evaluate(&req.view()) {
        Outcome::Route {
            farm,
            path_and_query,
            ..
        } => (farm.index(), path_and_query),
        other => panic!("expected a route, got {other:?}"),
    }
}

/// The path_and_query a single route rule with this template produces.
fn expand(pattern: &str, path_tpl: &str, req: &Req) -> String {
    let set = compile(vec![rule("r", pattern, route("oos", Some(path_tpl)))]);
    routed(&set, req).1.unwrap_or_else(|| {
        format!(
            "{}{}",
            req.path,
            req.query.map_or(String::new(), |q| format!("?{q}"))
        )
    })
}

fn host_rule(name: &str, host: &str, farm: &str) -> RuleSpec {
    RuleSpec {
        conditions: vec![cond("{HTTP_HOST}", host)],
        ..rule(name, ".*", route(farm, Some("/{R:0}")))
    }
}

fn sfb() -> RuleSet {
    compile(vec![
        host_rule("lyncweb", r"^lyncweb\.", "lyncweb"),
        host_rule("meet", r"^meet\.", "meet"),
        host_rule("dialin", r"^dialin\.", "dialin"),
    ])
}

#[test]
fn host_condition_picks_the_farm_and_forwards_unchanged() {
    let set = sfb();
    let r = Req::new("meet.contoso.com", "/contoso/user/ABC123", Some("sl=1"));
    assert_eq!(routed(&set, &r), (1, None));
    let r = Req::new("dialin.contoso.com:443", "/", None);
    assert_eq!(routed(&set, &r), (2, None));
    let r = Req::new("LYNCWEB.contoso.com", "/ucwa/oauth", None);
    assert_eq!(routed(&set, &r), (0, None));
    let r = Req::new("owa.contoso.com", "/", None);
    assert_eq!(set.evaluate(&r.view()), Outcome::NoMatch);
}

#[test]
fn route_outcome_carries_scheme_and_rule_name() {
    let set = sfb();
    let r = Req::new("meet.contoso.com", "/x", None);
    assert_eq!(
        set.evaluate(&r.view()),
        Outcome::Route {
            farm: FarmId::from_index(1),
            scheme: Some(Scheme::Https),
            path_and_query: None,
            rule: "meet",
            max_body: None,
            rate_limit: None,
        }
    );
}

#[test]
fn negated_pattern_matches_when_the_pattern_does_not_and_has_no_captures() {
    let spec = RuleSpec {
        negate: true,
        ..rule("not-api", "^(api)/", route("oos", Some("/x{R:0}{R:1}")))
    };
    let set = compile(vec![spec]);
    let r = Req::new("h", "/web/page", None);
    assert_eq!(routed(&set, &r), (3, Some("/x".into())));
    let r = Req::new("h", "/api/v1", None);
    assert_eq!(set.evaluate(&r.view()), Outcome::NoMatch);
}

#[test]
fn negated_condition_holds_when_its_pattern_does_not_match() {
    let mut c = cond("{HTTPS}", "^on$");
    c.negate = true;
    let spec = RuleSpec {
        conditions: vec![c],
        ..rule(
            "to-https",
            "(.*)",
            redirect("https://{HTTP_HOST}/{R:1}", true),
        )
    };
    let set = compile(vec![spec]);
    let mut r = Req::new("meet.contoso.com", "/a", Some("b=1"));
    r.https = false;
    assert_eq!(
        set.evaluate(&r.view()),
        Outcome::Redirect {
            status: 302,
            location: "https://meet.contoso.com/a?b=1".into(),
            rule: "to-https"
        }
    );
    r.https = true;
    assert_eq!(set.evaluate(&r.view()), Outcome::NoMatch);
}

#[test]
fn match_any_needs_one_condition_match_all_needs_every_one() {
    let conds = vec![
        cond("{HTTP_HOST}", "^a$"),
        cond("{REQUEST_METHOD}", "^POST$"),
    ];
    let any = compile(vec![RuleSpec {
        conditions: conds.clone(),
        logical_grouping: LogicalGrouping::MatchAny,
        ..rule("any", ".*", ActionSpec::Abort)
    }]);
    let all = compile(vec![RuleSpec {
        conditions: conds,
        ..rule("all", ".*", ActionSpec::Abort)
    }]);
    let only_host = Req::new("a", "/", None);
    let mut both = Req::new("a", "/", None);
    both.method = "POST";
    let neither = Req::new("b", "/", None);
    assert_eq!(
        any.evaluate(&only_host.view()),
        Outcome::Abort { rule: "any" }
    );
    assert_eq!(any.evaluate(&neither.view()), Outcome::NoMatch);
    assert_eq!(all.evaluate(&only_host.view()), Outcome::NoMatch);
    assert_eq!(all.evaluate(&both.view()), Outcome::Abort { rule: "all" });
}

#[test]
fn ignore_case_applies_to_match_and_conditions_only_when_set() {
    let sensitive = compile(vec![RuleSpec {
        ignore_case: false,
        ..rule("r", "^Meet/", ActionSpec::Abort)
    }]);
    let insensitive = compile(vec![rule("r", "^Meet/", ActionSpec::Abort)]);
    let r = Req::new("h", "/meet/x", None);
    assert_eq!(sensitive.evaluate(&r.view()), Outcome::NoMatch);
    assert_eq!(
        insensitive.evaluate(&r.view()),
        Outcome::Abort { rule: "r" }
    );

    let mut c = cond("{HTTP_HOST}", "^MEET$");
    c.ignore_case = false;
    let set = compile(vec![RuleSpec {
        conditions: vec![c],
        ..rule("c", ".*", ActionSpec::Abort)
    }]);
    assert_eq!(
        set.evaluate(&Req::new("meet", "/", None).view()),
        Outcome::NoMatch
    );
    assert_eq!(
        set.evaluate(&Req::new("MEET", "/", None).view()),
        Outcome::Abort { rule: "c" }
    );
}

#[test]
fn wildcard_star_captures_and_question_mark_is_one_char() {
    let spec = |p: &str| RuleSpec {
        syntax: PatternSyntax::Wildcard,
        ..rule("w", p, route("oos", Some("/{R:1}|{R:2}")))
    };
    let set = compile(vec![spec("files/*/doc?.*")]);
    let r = Req::new("h", "/files/a/b/doc1.docx", None);
    assert_eq!(routed(&set, &r).1.as_deref(), Some("/a/b|docx"));
    // Anchored: extra text does not match; `.` and `(` are literal.
    let r = Req::new("h", "/x/files/a/doc1.docx", None);
    assert_eq!(set.evaluate(&r.view()), Outcome::NoMatch);
    let set = compile(vec![spec("a.(b)*")]);
    assert_eq!(
        set.evaluate(&Req::new("h", "/aX(b)c", None).view()),
        Outcome::NoMatch
    );
    assert_eq!(
        routed(&set, &Req::new("h", "/a.(b)c", None)).1.as_deref(),
        Some("/c|")
    );
}

#[test]
fn exact_syntax_is_whole_string_equality_and_r0_is_the_input() {
    let spec = |ic| RuleSpec {
        syntax: PatternSyntax::Exact,
        ignore_case: ic,
        ..rule("e", "Meet/Join.aspx", route("meet", Some("/x/{R:0}")))
    };
    let set = compile(vec![spec(true)]);
    let r = Req::new("h", "/meet/join.aspx", None);
    assert_eq!(routed(&set, &r), (1, Some("/x/meet/join.aspx".into())));
    let r = Req::new("h", "/meet/join.aspx2", None);
    assert_eq!(set.evaluate(&r.view()), Outcome::NoMatch);
    // Regex metacharacters are not special.
    let set = compile(vec![RuleSpec {
        syntax: PatternSyntax::Exact,
        ..rule("e", "a.c", ActionSpec::Abort)
    }]);
    assert_eq!(
        set.evaluate(&Req::new("h", "/abc", None).view()),
        Outcome::NoMatch
    );
    let set = compile(vec![spec(false)]);
    assert_eq!(
        set.evaluate(&Req::new("h", "/meet/join.aspx", None).view()),
        Outcome::NoMatch
    );
}

#[test]
fn back_references_to_match_and_last_matched_condition() {
    let spec = RuleSpec {
        conditions: vec![
            cond("{HTTP_HOST}", r"^(\w+)\.contoso\.com$"),
            cond("{HTTP_X_TENANT}", r"^t-(\d+)$"),
        ],
        ..rule(
            "r",
            r"^(\w+)/(\w+)",
            route("oos", Some("/{C:1}/{R:2}/{R:1}/{C:0}")),
        )
    };
    let set = compile(vec![spec]);
    let r = Req::new("meet.contoso.com", "/a/b/c", None).header("x-tenant", "t-42");
    assert_eq!(routed(&set, &r).1.as_deref(), Some("/42/b/a/t-42"));
}

#[test]
fn negated_condition_does_not_replace_captures_of_the_last_match() {
    let mut neg = cond("{HTTPS}", "^off$");
    neg.negate = true;
    let set = compile(vec![RuleSpec {
        conditions: vec![cond("{HTTP_HOST}", r"^(\w+)\."), neg],
        ..rule("r", ".*", route("oos", Some("/{C:1}")))
    }]);
    let r = Req::new("meet.contoso.com", "/", None);
    assert_eq!(routed(&set, &r).1.as_deref(), Some("/meet"));
}

#[test]
fn track_all_captures_numbers_groups_across_conditions() {
    let spec = |track| RuleSpec {
        conditions: vec![
            cond("{HTTP_HOST}", r"^(\w+)\.(\w+)$"),
            cond("{REQUEST_METHOD}", r"^(G)ET$"),
        ],
        track_all_captures: track,
        ..rule(
            "r",
            ".*",
            route("oos", Some("/{C:0}|{C:1}|{C:2}|{C:3}|{C:4}|{C:5}")),
        )
    };
    let r = Req::new("meet.contoso", "/", None);
    // cond 1 has 3 slots (C:0..C:2), cond 2 continues at C:3.
    let set = compile(vec![spec(true)]);
    assert_eq!(
        routed(&set, &r).1.as_deref(),
        Some("/meet.contoso|meet|contoso|GET|G|")
    );
    let set = compile(vec![spec(false)]);
    assert_eq!(routed(&set, &r).1.as_deref(), Some("/GET|G||||"));
}

#[test]
fn out_of_range_back_references_expand_to_nothing() {
    let r = Req::new("h", "/abc", None);
    assert_eq!(expand("(a)bc", "/{R:1}{R:7}{C:3}-", &r), "/a-");
}

#[test]
fn condition_input_can_use_earlier_captures() {
    let set = compile(vec![RuleSpec {
        conditions: vec![
            cond("{HTTP_HOST}", r"^(\w+)\."),
            cond("{C:1}-{R:1}", r"^meet-(\w+)$"),
        ],
        ..rule("r", "(.*)", route("oos", Some("/c/{C:1}")))
    }]);
    let r = Req::new("meet.contoso.com", "/join", None);
    assert_eq!(routed(&set, &r).1.as_deref(), Some("/c/join"));
    let r = Req::new("dialin.contoso.com", "/join", None);
    assert_eq!(set.evaluate(&r.view()), Outcome::NoMatch);
}

#[test]
fn nested_functions_apply_inside_out() {
    let r = Req::new("h", "/Docs/My%20File%2FA.TXT", None);
    assert_eq!(
        expand("^docs/(.*)$", "/{ToLower:{UrlDecode:{R:1}}}", &r),
        "/my file/a.txt"
    );
    assert_eq!(
        expand("^docs/(.*)$", "/{UrlEncode:{ToLower:{R:1}}}", &r),
        "/my%2520file%252fa.txt"
    );
}

#[test]
fn url_encode_escapes_reserved_characters() {
    let r = Req::new("h", "/", None).header("x-v", "a b/c?d&e=f#g%h+i~j_k-l.m");
    assert_eq!(
        expand(".*", "/{UrlEncode:{HTTP_X_V}}", &r),
        "/a%20b%2Fc%3Fd%26e%3Df%23g%25h%2Bi~j_k-l.m"
    );
}

#[test]
fn rewrite_then_route_sees_the_rewritten_url() {
    let set = compile(vec![
        RuleSpec {
            stop: false,
            ..rule("old", "^old/(.*)", rewrite("/new/{R:1}"))
        },
        rule("new", "^new/(.*)", route("oos", Some("/{R:0}"))),
    ]);
    let r = Req::new("h", "/old/a%2Fb", Some("x=1"));
    assert_eq!(routed(&set, &r), (3, Some("/new/a%2Fb?x=1".into())));
    // Not rewritten: the /{R:0} route forwards unchanged.
    let r = Req::new("h", "/new/a", Some("x=1"));
    assert_eq!(routed(&set, &r), (3, None));
}

#[test]
fn rewrite_with_query_replaces_it_and_variables_follow_the_current_url() {
    let set = compile(vec![
        RuleSpec {
            stop: false,
            ..rule("rw", "^a$", rewrite("b?y=2"))
        },
        rule(
            "out",
            ".*",
            route(
                "oos",
                Some("/{URL}/{QUERY_STRING}/{UrlEncode:{REQUEST_URI}}"),
            ),
        ),
    ]);
    let r = Req::new("h", "/a", Some("x=1"));
    assert_eq!(
        routed(&set, &r).1.as_deref(),
        Some("//b/y=2/%2Fa%3Fx%3D1?y=2")
    );
}

#[test]
fn rewrite_without_append_query_drops_it() {
    let set = compile(vec![
        RuleSpec {
            stop: false,
            ..rule(
                "rw",
                ".*",
                ActionSpec::Rewrite {
                    url: "/z".into(),
                    append_query: false,
                },
            )
        },
        rule("out", ".*", route("oos", None)),
    ]);
    let r = Req::new("h", "/a", Some("x=1"));
    assert_eq!(routed(&set, &r).1.as_deref(), Some("/z"));
}

#[test]
fn stop_after_rewrite_without_route_is_no_match() {
    let set = compile(vec![
        rule("rw", "^a$", rewrite("/b")),
        rule("out", ".*", route("oos", None)),
    ]);
    assert_eq!(
        set.evaluate(&Req::new("h", "/a", None).view()),
        Outcome::NoMatch
    );
    // A rule that does not match does not stop the walk.
    assert_eq!(routed(&set, &Req::new("h", "/c", None)), (3, None));
}

#[test]
fn none_action_continues_unless_stop() {
    let go_on = compile(vec![
        RuleSpec {
            stop: false,
            ..rule("noop", ".*", ActionSpec::None)
        },
        rule("out", ".*", route("oos", None)),
    ]);
    assert_eq!(routed(&go_on, &Req::new("h", "/a", None)), (3, None));
    let stop = compile(vec![
        rule("noop", ".*", ActionSpec::None),
        rule("out", ".*", route("oos", None)),
    ]);
    assert_eq!(
        stop.evaluate(&Req::new("h", "/a", None).view()),
        Outcome::NoMatch
    );
}

#[test]
fn terminal_action_ends_the_walk_even_without_stop() {
    let set = compile(vec![
        RuleSpec {
            stop: false,
            ..rule("first", ".*", route("meet", None))
        },
        rule("second", ".*", route("oos", None)),
    ]);
    assert_eq!(routed(&set, &Req::new("h", "/a", None)).0, 1);
}

#[test]
fn redirect_appends_query_only_when_asked() {
    let r = Req::new("h", "/old/x", Some("a=1&b=2"));
    let loc = |url: &str, append| match compile(vec![rule("r", "^old/(.*)", redirect(url, append))])
        .evaluate(&r.view())
    {
        Outcome::Redirect {
            location, status, ..
        } => {
            assert_eq!(status, 302);
            location
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(loc("https://new/{R:1}", true), "https://new/x?a=1&b=2");
    assert_eq!(loc("https://new/{R:1}", false), "https://new/x");
    assert_eq!(loc("/n?k=v", true), "/n?k=v&a=1&b=2");
    let r = Req::new("h", "/old/x", None);
    let set = compile(vec![rule("r", "^old/(.*)", redirect("/n/{R:1}", true))]);
    assert!(
        matches!(set.evaluate(&r.view()), Outcome::Redirect { location, .. } if location == "/n/x")
    );
}

#[test]
fn custom_response_returns_its_fields() {
    let set = compile(vec![rule(
        "blocked",
        "^admin",
        ActionSpec::Respond {
            status: 403,
            reason: Some("Forbidden here".into()),
            body: "no".into(),
            content_type: "text/plain".into(),
        },
    )]);
    assert_eq!(
        set.evaluate(&Req::new("h", "/admin/x", None).view()),
        Outcome::Respond {
            status: 403,
            reason: Some("Forbidden here"),
            body: bytes::Bytes::from_static(b"no"),
            content_type: "text/plain",
            rule: "blocked"
        }
    );
}

#[test]
fn abort_is_terminal() {
    let set = compile(vec![
        RuleSpec {
            stop: false,
            ..rule("kill", r"\.php$", ActionSpec::Abort)
        },
        rule("out", ".*", route("oos", None)),
    ]);
    assert_eq!(
        set.evaluate(&Req::new("h", "/x.php", None).view()),
        Outcome::Abort { rule: "kill" }
    );
    assert_eq!(routed(&set, &Req::new("h", "/x.asp", None)), (3, None));
}

#[test]
fn double_encoded_wopi_query_passes_through_byte_for_byte() {
    let set = compile(vec![host_rule("oos", r"^oos\.", "oos")]);
    let r = Req::new(
        "oos.contoso.com",
        "/wv/wordviewerframe.aspx",
        Some("WopiSrc=http%253A%252F%252Fsp%252F_vti_bin%252Fwopi.ashx%252Ffiles%252Fab&access_token=x%2B%2F"),
    );
    assert_eq!(routed(&set, &r), (3, None));
    // Rewriting the path keeps the query bytes exactly.
    let set = compile(vec![rule(
        "oos",
        "^wv/(.*)",
        route("oos", Some("/x/{R:1}")),
    )]);
    assert_eq!(
        routed(&set, &r).1.as_deref(),
        Some("/x/wordviewerframe.aspx?WopiSrc=http%253A%252F%252Fsp%252F_vti_bin%252Fwopi.ashx%252Ffiles%252Fab&access_token=x%2B%2F")
    );
}

#[test]
fn encoded_slash_and_dot_segments_are_not_normalised() {
    let r = Req::new("h", "/a/%2F../b/./%2e%2e/c", Some("q"));
    let set = compile(vec![rule("r", ".*", route("oos", Some("/{R:0}")))]);
    assert_eq!(routed(&set, &r), (3, None));
    assert_eq!(expand("^a/(.*)", "/p/{R:1}", &r), "/p/%2F../b/./%2e%2e/c?q");
}

#[test]
fn a_template_that_rebuilds_the_request_forwards_unchanged() {
    let r = Req::new("h", "/a/b", Some("x=1"));
    let set = compile(vec![rule(
        "r",
        "^(a)/(b)$",
        route("oos", Some("/{R:1}/{R:2}")),
    )]);
    assert_eq!(routed(&set, &r), (3, None));
    // Partial match: `/{R:0}` is not the whole path any more.
    let set = compile(vec![rule("r", "^a", route("oos", Some("/{R:0}")))]);
    assert_eq!(routed(&set, &r).1.as_deref(), Some("/a?x=1"));
}

#[test]
fn route_without_append_query_drops_the_query() {
    let set = compile(vec![rule(
        "r",
        ".*",
        ActionSpec::Route {
            farm: "oos".into(),
            scheme: None,
            path: Some("/{R:0}".into()),
            append_query: false,
            max_body: None,
        },
    )]);
    assert_eq!(
        routed(&set, &Req::new("h", "/a", Some("x"))).1.as_deref(),
        Some("/a")
    );
    assert_eq!(routed(&set, &Req::new("h", "/a", None)).1, None);
}

#[test]
fn server_variables_read_the_request() {
    let mut r = Req::new("Meet.Contoso.com:4443", "/p", Some("q=1"))
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-forwarded-for", "10.0.0.2")
        .header("cookie", "a=1")
        .header("cookie", "b=2");
    r.addr = "2001:db8::1".parse().unwrap();
    r.method = "PUT";
    r.https = false;
    let tpl = "/{HTTPS}|{SERVER_PORT}|{REMOTE_ADDR}|{SERVER_NAME}|{REQUEST_METHOD}|{request_uri}|\
               {HTTP_X_FORWARDED_FOR}|{HTTP_COOKIE}|{HTTP_MISSING}|{ToLower:{HTTP_HOST}}";
    assert_eq!(
        expand(".*", tpl, &r),
        "/off|443|2001:db8::1|Meet.Contoso.com|PUT|/p?q=1|10.0.0.1, 10.0.0.2|a=1; b=2||meet.contoso.com:4443"
    );
    let r = Req::new("[::1]:8443", "/", None);
    assert_eq!(expand(".*", "/{SERVER_NAME}", &r), "/[::1]");
}

#[test]
fn remote_addr_condition_matches_without_a_template() {
    let set = compile(vec![RuleSpec {
        conditions: vec![cond("{REMOTE_ADDR}", r"^10\.")],
        ..rule("internal", ".*", ActionSpec::Abort)
    }]);
    let mut r = Req::new("h", "/", None);
    assert_eq!(set.evaluate(&r.view()), Outcome::NoMatch);
    r.addr = "10.1.2.3".parse().unwrap();
    assert_eq!(set.evaluate(&r.view()), Outcome::Abort { rule: "internal" });
}

#[test]
fn relative_rewrite_target_gets_a_leading_slash() {
    let set = compile(vec![
        RuleSpec {
            stop: false,
            ..rule("rw", "^(.*)$", rewrite("app/{R:1}"))
        },
        rule("out", ".*", route("oos", None)),
    ]);
    assert_eq!(
        routed(&set, &Req::new("h", "/x", None)).1.as_deref(),
        Some("/app/x")
    );
}

#[test]
fn len_and_names_reflect_the_rules() {
    let set = sfb();
    assert_eq!(set.len(), 3);
    assert!(!set.is_empty());
    assert_eq!(
        set.names().collect::<Vec<_>>(),
        ["lyncweb", "meet", "dialin"]
    );
    assert!(compile(Vec::new()).is_empty());
}

#[test]
fn match_everything_patterns_capture_the_whole_input() {
    let r = Req::new("h", "/a/b", Some("q"));
    assert_eq!(
        expand("^(.*)$", "/x/{R:1}|{R:0}|{R:2}", &r),
        "/x/a/b|a/b|?q"
    );
    assert_eq!(expand(".*", "/x/{R:0}{R:1}", &r), "/x/a/b?q");
    // `.` stops at a newline, exactly as the regex would.
    let r = Req::new("h", "/a\nb", None);
    assert_eq!(expand("(.*)", "/x/{R:1}", &r), "/x/a");
}

#[test]
fn address_conditions_hold_by_range_and_negate() {
    use crate::perimeter::cidr::{CidrSet, CidrSource};
    let ranges = CidrSource::Inline(std::sync::Arc::new(
        CidrSet::parse_list(&["10.0.0.0/8", "fd00::/8"]).unwrap(),
    ));
    let mut inside = cond("{REMOTE_ADDR}", "");
    inside.cidr = Some(ranges.clone());
    let mut outside = inside.clone();
    outside.negate = true;
    let set = compile(vec![
        RuleSpec {
            conditions: vec![outside],
            ..rule("ecp-internal-only", "^ecp", ActionSpec::Abort)
        },
        RuleSpec {
            conditions: vec![inside],
            ..rule("inside", ".*", route("meet", None))
        },
    ]);
    let mut req = Req::new("mail.contoso.com", "/ecp/", None);
    assert!(matches!(set.evaluate(&req.view()), Outcome::Abort { .. }));
    for ok in ["10.9.8.7", "fd00::5", "::ffff:10.0.0.1"] {
        req.addr = ok.parse().unwrap();
        assert!(
            matches!(set.evaluate(&req.view()), Outcome::Route { .. }),
            "{ok}"
        );
    }
    // A cidr condition needs an address input.
    let mut bad = cond("{HTTP_HOST}", "");
    bad.cidr = Some(ranges);
    let err = RuleSet::compile(
        vec![RuleSpec {
            conditions: vec![bad],
            ..rule("x", ".*", ActionSpec::Abort)
        }],
        FARMS,
    )
    .unwrap_err();
    assert!(err.1.message.contains("REMOTE_ADDR"), "{}", err.1.message);
}
