//! `portico validate` on bad configs: exit 1, and a message naming file, line, key and what
//! would be accepted. `run` refuses the same files without binding anything.

mod common;

use std::process::Command;

fn validate(dir: &std::path::Path, toml: &str) -> (i32, String) {
    let path = dir.join("portico.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

const GOOD: &str = r#"
[[listener]]
bind = "127.0.0.1:18443"

[[farm]]
name = "meet"
members = [ { address = "fe01.contoso.local" } ]
https_port = 4443
timeout = "960s"

[[rule]]
name = "meet"
conditions = [ { input = "{HTTP_HOST}", pattern = "^meet\\." } ]
action = { route = "meet" }
"#;

fn lab() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn one_health_table_and_a_list_of_checks_both_validate() {
    let d = lab();
    let one = GOOD.replace(
        "timeout = \"960s\"",
        "timeout = \"960s\"\nhealth = { url = \"/meet/\", interval = \"10s\" }",
    );
    let (code, out) = validate(d.path(), &one);
    assert_eq!(code, 0, "{out}");
    let many = GOOD.replace("timeout = \"960s\"", "timeout = \"960s\"\nhealth = [ { url = \"/ews/healthcheck.htm\", path = \"/ews\", interval = \"10s\" }, { url = \"/owa/healthcheck.htm\", path = \"/owa\" }, { tcp = true, port = 5061 } ]");
    let (code, out) = validate(d.path(), &many);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_good_config_validates() {
    let d = lab();
    let (code, out) = validate(d.path(), GOOD);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid"), "{out}");
}

/// Each case: a change to GOOD, and what the message must say.
#[test]
fn each_bad_config_is_refused_with_file_line_key_and_accepted_values() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("unknown key", &GOOD.replace("timeout = \"960s\"", "timeout = \"960s\"\ntimeuot = \"1s\""), &["portico.toml:10", "unknown field `timeuot`", "expected one of"]),
        ("bad duration", &GOOD.replace("\"960s\"", "\"960\""), &["portico.toml:9", "farm \"meet\".timeout", "ms, s, m, h"]),
        ("missing farm", &GOOD.replace("route = \"meet\"", "route = \"meat\""), &["portico.toml:14", "rule \"meet\".action", "meat", "meet"]),
        ("duplicate farm", &format!("{GOOD}\n[[farm]]\nname = \"meet\"\nmembers = [ {{ address = \"fe02\" }} ]\n"), &["duplicate farm name \"meet\""]),
        ("duplicate rule", &format!("{GOOD}\n[[rule]]\nname = \"meet\"\naction = {{ abort = true }}\n"), &["duplicate rule name \"meet\""]),
        ("missing certificate file", &GOOD.replace("bind = \"127.0.0.1:18443\"", "bind = \"127.0.0.1:18443\"\ntls = { certificates = [ { cert = \"nope.pem\", key = \"nope.key\" } ] }"), &["portico.toml:4", "nope.pem"]),
        ("look-around", &GOOD.replace("^meet\\\\.", "^(?!meet)"), &["portico.toml:13", "conditions[0].pattern", "look"]),
        ("bad bind", &GOOD.replace("127.0.0.1:18443", "127.0.0.1"), &["portico.toml:3", "listener[0].bind", "address:port"]),
        ("bad load balancing", &GOOD.replace("timeout = \"960s\"", "timeout = \"960s\"\nload_balancing = \"fastest\""), &["portico.toml:10", "load_balancing", "least-requests"]),
        ("bad scheme", &GOOD.replace("route = \"meet\"", "route = \"meet\", scheme = \"ftp\""), &["scheme", "\"https\""]),
        ("two actions", &GOOD.replace("route = \"meet\"", "route = \"meet\", abort = true"), &["more than one action"]),
        ("no listener", &GOOD.replace("[[listener]]\nbind = \"127.0.0.1:18443\"", ""), &["no [[listener]]"]),
        ("toml syntax", &GOOD.replace("name = \"meet\"\nmembers", "name = \"meet\nmembers"), &["portico.toml:6", "invalid basic string"]),
        ("missing CA file", &format!("[upstream]\nca = \"no-ca.pem\"\n{GOOD}"), &["portico.toml:2", "upstream.ca", "no-ca.pem"]),
        ("health check without url", &GOOD.replace("timeout = \"960s\"", "timeout = \"960s\"\nhealth = [ { url = \"/ews/healthcheck.htm\", path = \"/ews\" }, { path = \"/owa\" } ]"), &["portico.toml:10", "farm \"meet\".health[1].url", "tcp = true"]),
        ("health path not a path", &GOOD.replace("timeout = \"960s\"", "timeout = \"960s\"\nhealth = [ { url = \"/ews/healthcheck.htm\", path = \"ews\" } ]"), &["portico.toml:10", "health[0].path", "starting with '/'"]),
        ("two checks one name", &GOOD.replace("timeout = \"960s\"", "timeout = \"960s\"\nhealth = [ { url = \"/a\", path = \"/ews\" }, { url = \"/b\", path = \"/ews\" } ]"), &["health[1]", "second check named \"/ews\""]),
        ("resolve not an IP", &format!("{GOOD}\n[resolve]\n\"fe01.contoso.local\" = [\"fe01\"]\n"), &["resolve.\"fe01.contoso.local\"", "not an IP address"]),
    ];
    for (what, toml, needles) in cases {
        let d = lab();
        let (code, out) = validate(d.path(), toml);
        assert_eq!(code, 1, "{what}: expected failure, got: {out}");
        for n in *needles {
            assert!(out.contains(n), "{what}: message lacks {n:?}:\n{out}");
        }
    }
}

#[test]
fn bad_certificate_and_key_are_refused() {
    let d = lab();
    let ca = portico::demo::pki::TestCa::new("t").unwrap();
    ca.issue(&["a.contoso.com"])
        .unwrap()
        .write(d.path(), "a")
        .unwrap();
    ca.issue(&["b.contoso.com"])
        .unwrap()
        .write(d.path(), "b")
        .unwrap();
    std::fs::write(d.path().join("garbage.pem"), "not a certificate").unwrap();
    let with_tls = |cert: &str, key: &str| {
        GOOD.replace(
            "bind = \"127.0.0.1:18443\"",
            &format!("bind = \"127.0.0.1:18443\"\ntls = {{ certificates = [ {{ cert = \"{cert}\", key = \"{key}\" }} ] }}"),
        )
    };
    let (code, out) = validate(d.path(), &with_tls("a.pem", "a.key"));
    assert_eq!(code, 0, "{out}");
    let (code, out) = validate(d.path(), &with_tls("a.pem", "b.key"));
    assert_eq!(code, 1);
    assert!(
        out.contains("does not match") && out.contains("portico.toml:4"),
        "{out}"
    );
    let (code, out) = validate(d.path(), &with_tls("garbage.pem", "a.key"));
    assert_eq!(code, 1);
    assert!(
        out.contains("garbage.pem") && out.contains("no certificate"),
        "{out}"
    );
}

#[test]
fn run_refuses_a_bad_config_and_binds_nothing() {
    let d = lab();
    let path = d.path().join("portico.toml");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let toml = GOOD
        .replace("18443", &port.to_string())
        .replace("route = \"meet\"", "route = \"nope\"");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// Perimeter keys (issue 12): each mistake names the line and the key.
#[test]
fn bad_perimeter_settings_name_line_and_key() {
    let d = lab();
    std::fs::create_dir_all(d.path().join("ranges")).unwrap();
    std::fs::write(
        d.path().join("ranges/m365.txt"),
        "# M365\n40.96.0.0/13\nnot-a-range\n",
    )
    .unwrap();
    let cond = |c: &str| GOOD.replace("{ input = \"{HTTP_HOST}\", pattern = \"^meet\\\\.\" }", c);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("cidr on a host input", cond("{ input = \"{HTTP_HOST}\", cidr = [\"10.0.0.0/8\"] }"), vec!["portico.toml:13", "conditions[0].input", "{REMOTE_ADDR}"]),
        ("pattern and cidr", cond("{ input = \"{REMOTE_ADDR}\", pattern = \"x\", cidr = [\"10.0.0.0/8\"] }"), vec!["portico.toml:13", "conditions[0]", "exactly one"]),
        ("no test", cond("{ input = \"{REMOTE_ADDR}\" }"), vec!["conditions[0]", "tests nothing"]),
        ("bad range", cond("{ input = \"{REMOTE_ADDR}\", cidr = [\"10.0.0.0/33\"] }"), vec!["portico.toml:13", "conditions[0].cidr", "10.0.0.0/33"]),
        ("bad range file line", cond("{ input = \"{REMOTE_ADDR}\", cidr_file = \"ranges/m365.txt\" }"), vec!["conditions[0].cidr_file", "m365.txt:3", "not-a-range"]),
        ("missing range file", cond("{ input = \"{REMOTE_ADDR}\", cidr_file = \"ranges/none.txt\" }"), vec!["conditions[0].cidr_file", "none.txt"]),
        ("rate limit per", GOOD.replace("action = { route = \"meet\" }", "action = { route = \"meet\" }\nrate_limit = { requests = 5, per = \"5\" }"), vec!["portico.toml:15", "rate_limit.per"]),
        ("rate limit on respond", GOOD.replace("action = { route = \"meet\" }", "action = { respond = 403 }\nrate_limit = { requests = 5, per = \"1s\" }"), vec!["rate_limit", "route"]),
        ("lockout over AD", format!("{GOOD}\n[lockout]\nthreshold = 5\nad_threshold = 10\ninstances = 2\n"), vec!["lockout.threshold", "at most 4"]),
        ("lockout answer", format!("{GOOD}\n[lockout]\nanswer = 403\n"), vec!["lockout.answer", "429", "401"]),
        ("connection rate", GOOD.replace("bind = \"127.0.0.1:18443\"", "bind = \"127.0.0.1:18443\"\nmax_connection_rate = { connections = 0, per = \"1s\" }"), vec!["portico.toml:4", "max_connection_rate.connections"]),
    ];
    for (what, toml, wants) in cases {
        let (code, out) = validate(d.path(), &toml);
        assert_eq!(code, 1, "{what}: {out}");
        for w in wants {
            assert!(out.contains(w), "{what}: {w:?} missing from {out}");
        }
    }
    // And the contract spellings validate.
    std::fs::write(d.path().join("ranges/m365.txt"), "40.96.0.0/13\n").unwrap();
    let good = format!(
        "{}\n[lockout]\nthreshold = 5\nwindow = \"15m\"\ntrusted = [\"10.0.0.0/8\"]\n",
        GOOD.replace("timeout = \"960s\"", "timeout = \"960s\"\nlockout = true").replace(
            "action = { route = \"meet\" }",
            "action = { route = \"meet\" }\nrate_limit = { requests = 50, per = \"1s\", burst = 100 }\n[[rule]]\nname = \"ecp\"\nmatch = \"^ecp(/.*)?$\"\nconditions = [ { input = \"{REMOTE_ADDR}\", cidr = [\"10.0.0.0/8\", \"fd00::/8\"], negate = true }, { input = \"{REMOTE_ADDR}\", cidr_file = \"ranges/m365.txt\" } ]\naction = { respond = 403 }\nstop = true"
        )
    );
    let (code, out) = validate(d.path(), &good);
    assert_eq!(code, 0, "{out}\n{good}");
}

/// An address that is not on the machine (192.0.2.1, TEST-NET-1): `run` exits 1 naming the
/// listener, the address, the OS error once, and the keepalived hint.
#[test]
fn run_on_an_address_not_on_this_machine_names_it_and_the_os_error_once() {
    let dir = lab();
    let path = dir.path().join("portico.toml");
    std::fs::write(&path, GOOD.replace("127.0.0.1:18443", "192.0.2.1:18443")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on 192.0.2.1:18443"), "{err}");
    assert_eq!(err.matches("(os error 99)").count(), 1, "{err}");
    assert!(err.contains("ip_nonlocal_bind"), "{err}");
}
