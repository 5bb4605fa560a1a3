//! The host index answers exactly as the ordered walk does.

use super::*;

/// A rule set of tenant host rules with rewrites, non-stopping rules, label (prefix) rules,
/// a case-sensitive one and a catch-all between them, so blocks start and end mid-list.
fn tenant_rules() -> Vec<RuleSpec> {
    let mut specs = Vec::new();
    specs.push(rule(
        "first",
        "^health$",
        ActionSpec::Respond {
            status: 200,
            reason: None,
            body: "ok".into(),
            content_type: "text/plain".into(),
        },
    ));
    for t in 0..40 {
        let farm = FARMS[t % FARMS.len()];
        let mut r = host_rule(&format!("t{t}"), &format!(r"^t{t}\.example\.com$"), farm);
        if t % 7 == 3 {
            // Rewrites and walks on: a later rule sees the new path.
            r.action = rewrite("/rewritten/{R:0}");
            r.stop = false;
        }
        if t % 11 == 5 {
            r.pattern = "^api/(.*)".into();
        }
        specs.push(r);
        if t % 9 == 8 {
            specs.push(host_rule(
                &format!("label{t}"),
                &format!(r"^lbl{t}\."),
                "oos",
            ));
        }
    }
    // Case-sensitive host tests and substring tests are not indexed: they end a block.
    let mut cs = host_rule("cs", r"^CS\.example\.com$", "meet");
    cs.conditions[0].ignore_case = false;
    specs.push(cs);
    specs.push(host_rule("sub", r"example\.org", "dialin"));
    for t in 40..60 {
        specs.push(host_rule(
            &format!("t{t}"),
            &format!(r"^t{t}\.example\.com$"),
            "lyncweb",
        ));
        // A tenant that appears twice: the second only sees what the first let through.
        if t == 45 {
            specs.push(host_rule("t45-again", r"^t45\.example\.com$", "oos"));
        }
    }
    specs.push(rule(
        "rewritten",
        "^rewritten/(.*)",
        route("dialin", Some("/{R:1}")),
    ));
    specs
}

#[test]
fn indexed_and_walked_rule_sets_give_the_same_outcome_for_every_host() {
    let indexed = compile(tenant_rules());
    assert!(indexed.blocks.len() >= 2, "the test must exercise blocks");
    let mut walked = compile(tenant_rules());
    walked.blocks.clear();
    let mut hosts: Vec<String> = Vec::new();
    for t in 0..62 {
        hosts.push(format!("t{t}.example.com"));
        hosts.push(format!("T{t}.Example.COM"));
        hosts.push(format!("t{t}.example.com:443"));
        hosts.push(format!("lbl{t}.contoso.com"));
        hosts.push(format!("LBL{t}"));
    }
    hosts.extend(["CS.example.com", "cs.example.com", "www.example.org", ""].map(String::from));
    hosts.push(format!("t1.example.com{}", "x".repeat(300)));
    for host in &hosts {
        let host: &'static str = Box::leak(host.clone().into_boxed_str());
        for path in ["/", "/api/v1", "/health", "/rewritten/x"] {
            let r = Req::new(host, path, Some("q=1"));
            assert_eq!(
                indexed.evaluate(&r.view()),
                walked.evaluate(&r.view()),
                "host {host:?} path {path}"
            );
        }
    }
}

#[test]
fn a_thousand_host_rules_are_found_by_lookup() {
    let specs: Vec<RuleSpec> = (0..1000)
        .map(|t| host_rule(&format!("t{t}"), &format!(r"^t{t}\.example\.com$"), "meet"))
        .collect();
    let set = compile(specs);
    assert_eq!(set.blocks.len(), 1);
    assert_eq!(set.blocks[0].end - set.blocks[0].start, 1000);
    let r = Req::new("t999.example.com", "/x", None);
    match set.evaluate(&r.view()) {
        Outcome::Route { rule, .. } => assert_eq!(rule, "t999"),
        other => panic!("{other:?}"),
    }
}
