//! Compile errors: each names the field and says what is accepted.

use super::*;

#[test]
fn unknown_farm_is_an_action_error_listing_the_farms() {
    let (i, e) = compile_err(vec![
        rule("ok", ".*", route("meet", None)),
        rule("bad", ".*", route("nope", None)),
    ]);
    assert_eq!(i, 1);
    assert_eq!(e.field, RuleField::Action);
    assert_eq!(
        e.message,
        "no farm named `nope`; farms are: lyncweb, meet, dialin, oos"
    );
}

#[test]
fn look_around_and_back_references_are_explained() {
    let (i, e) = compile_err(vec![rule("r", "^(?=meet)", ActionSpec::Abort)]);
    assert_eq!((i, e.field), (0, RuleField::Match));
    assert!(
        e.message
            .starts_with("look-ahead `(?=` is not supported: Portico uses linear-time"),
        "{}",
        e.message
    );
    assert!(e.message.contains("negate = true"), "{}", e.message);

    let spec = RuleSpec {
        conditions: vec![cond("{HTTP_HOST}", "x"), cond("{URL}", "(?<!a)b")],
        ..rule("r", ".*", ActionSpec::Abort)
    };
    let (_, e) = compile_err(vec![spec]);
    assert_eq!(
        e.field,
        RuleField::Condition {
            index: 1,
            part: ConditionPart::Pattern
        }
    );
    assert!(
        e.message
            .starts_with("negative look-behind `(?<!` is not supported"),
        "{}",
        e.message
    );

    let (_, e) = compile_err(vec![rule("r", r"(a)\1", ActionSpec::Abort)]);
    assert!(
        e.message
            .starts_with(r"back-reference `\1` is not supported"),
        "{}",
        e.message
    );
    let (_, e) = compile_err(vec![rule("r", r"(?<x>a)\k<x>", ActionSpec::Abort)]);
    assert!(
        e.message
            .starts_with(r"named back-reference `\k<x>` is not supported"),
        "{}",
        e.message
    );
    // Inside a class these are plain characters and compile fine.
    compile(vec![rule("r", r"[(?=]", ActionSpec::Abort)]);
}

#[test]
fn other_regex_errors_carry_the_crate_message_and_size_is_limited() {
    let (_, e) = compile_err(vec![rule("r", "a(b", ActionSpec::Abort)]);
    assert_eq!(e.field, RuleField::Match);
    assert!(e.message.contains("unclosed group"), "{}", e.message);
    let (_, e) = compile_err(vec![rule("r", r"\w{1000}{1000}", ActionSpec::Abort)]);
    assert!(e.message.contains("too big"), "{}", e.message);
}

#[test]
fn template_errors_name_the_field_and_what_is_accepted() {
    let (_, e) = compile_err(vec![rule("r", ".*", route("oos", Some("/{HTTP_HOST")))]);
    assert_eq!(e.field, RuleField::Action);
    assert!(e.message.contains("never closed"), "{}", e.message);
    let (_, e) = compile_err(vec![rule("r", ".*", redirect("/a}b", true))]);
    assert!(e.message.contains("has no matching"), "{}", e.message);
    let (_, e) = compile_err(vec![rule("r", ".*", rewrite("/{ToUpper:{R:0}}"))]);
    assert!(
        e.message.contains("unknown function `ToUpper:`"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("ToLower, UrlEncode, UrlDecode"),
        "{}",
        e.message
    );
    let (_, e) = compile_err(vec![rule("r", ".*", rewrite("/{R:x}"))]);
    assert!(e.message.contains("not a back-reference"), "{}", e.message);
    let spec = RuleSpec {
        conditions: vec![cond("{SERVER_NAM}", "x")],
        ..rule("r", ".*", ActionSpec::Abort)
    };
    let (_, e) = compile_err(vec![spec]);
    assert_eq!(
        e.field,
        RuleField::Condition {
            index: 0,
            part: ConditionPart::Input
        }
    );
    assert!(
        e.message.contains("unknown server variable `{SERVER_NAM}`"),
        "{}",
        e.message
    );
    assert!(e.message.contains("SERVER_NAME"), "{}", e.message);
}

#[test]
fn invalid_action_settings_are_rejected() {
    let bad_redirect = ActionSpec::Redirect {
        url: "/".into(),
        status: 200,
        append_query: true,
    };
    let (_, e) = compile_err(vec![rule("r", ".*", bad_redirect)]);
    assert!(
        e.message.contains("accepted: 301, 302, 303, 307, 308"),
        "{}",
        e.message
    );
    let bad_respond = ActionSpec::Respond {
        status: 42,
        reason: None,
        body: String::new(),
        content_type: "text/plain".into(),
    };
    assert_eq!(
        compile_err(vec![rule("r", ".*", bad_respond)]).1.field,
        RuleField::Action
    );
    let (_, e) = compile_err(vec![rule("r", ".*", rewrite("https://other/{R:0}"))]);
    assert!(e.message.contains("route"), "{}", e.message);
}
