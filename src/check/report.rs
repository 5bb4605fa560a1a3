//! The report: text for a person (failures first, each with its likely fix), JSON for scripts.

use std::fmt::Write;

use super::{Report, Status};

/// The readable report.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    if !r.derived.is_empty() {
        out.push_str("Names derived from the config:\n");
        for d in &r.derived {
            match (&d.farm, d.listener) {
                (Some(farm), Some(l)) => {
                    let _ = writeln!(
                        out,
                        "  {:<32} {:<13} via {} on {l} (from {})",
                        d.name,
                        d.service.label(),
                        farm,
                        d.source
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "  {:<32} not checked: no rule routes it to a farm (from {})",
                        d.name, d.source
                    );
                }
            }
        }
        out.push('\n');
    }
    let mut names: Vec<&str> = Vec::new();
    for f in &r.findings {
        if !names.contains(&f.name.as_str()) {
            names.push(&f.name);
        }
    }
    for name in names {
        let _ = writeln!(out, "{name}");
        for f in r.findings.iter().filter(|f| f.name == name) {
            let mark = match f.status {
                Status::Pass => "ok  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            let _ = writeln!(out, "  {mark} {:<24} {}", f.id, f.detail);
            if let (Some(fix), Status::Warn | Status::Fail) = (&f.fix, f.status) {
                let _ = writeln!(out, "       {:<24} fix: {fix}", "");
            }
        }
    }
    let count = |s: Status| r.findings.iter().filter(|f| f.status == s).count();
    let _ = writeln!(
        out,
        "\n{}: {} passed, {} warning(s), {} failed",
        if r.passed() { "PASS" } else { "FAIL" },
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail)
    );
    out
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The JSON report: `{"passed":bool,"derived":[...],"targets":[...],"checks":[...]}`, one
/// check object per line so that line tools can read it too.
pub fn render_json(r: &Report) -> String {
    let mut out = String::from("{\n\"passed\": ");
    out.push_str(if r.passed() { "true" } else { "false" });
    out.push_str(",\n\"derived\": [");
    for (i, d) in r.derived.iter().enumerate() {
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        out.push_str("{\"name\":");
        json_str(&mut out, &d.name);
        out.push_str(",\"service\":");
        json_str(&mut out, d.service.label());
        out.push_str(",\"source\":");
        json_str(&mut out, &d.source);
        out.push_str(",\"farm\":");
        match &d.farm {
            Some(f) => json_str(&mut out, f),
            None => out.push_str("null"),
        }
        out.push_str(",\"listener\":");
        match d.listener {
            Some(l) => json_str(&mut out, &l.to_string()),
            None => out.push_str("null"),
        }
        out.push('}');
    }
    out.push_str("\n],\n\"targets\": [");
    for (i, t) in r.targets.iter().enumerate() {
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        out.push_str("{\"name\":");
        json_str(&mut out, &t.host);
        out.push_str(",\"service\":");
        json_str(&mut out, t.service.label());
        out.push_str(",\"address\":");
        json_str(&mut out, &t.addr.to_string());
        let _ = write!(out, ",\"port\":{}}}", t.port);
    }
    out.push_str("\n],\n\"checks\": [");
    for (i, f) in r.findings.iter().enumerate() {
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        out.push_str("{\"id\":");
        json_str(&mut out, f.id);
        out.push_str(",\"name\":");
        json_str(&mut out, &f.name);
        out.push_str(",\"status\":");
        json_str(&mut out, f.status.label());
        out.push_str(",\"detail\":");
        json_str(&mut out, &f.detail);
        out.push_str(",\"fix\":");
        match &f.fix {
            Some(x) => json_str(&mut out, x),
            None => out.push_str("null"),
        }
        out.push('}');
    }
    out.push_str("\n]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Finding;

    #[test]
    fn json_escapes_and_fails_when_a_check_fails() {
        let r = Report {
            findings: vec![
                Finding::pass("abs", "lyncweb.contoso.com", "401 \"NTLM\""),
                Finding::fail("port-bridging", "lyncweb.contoso.com", "x\ny", "bridge"),
            ],
            ..Report::default()
        };
        let j = render_json(&r);
        assert!(j.contains("\"passed\": false"), "{j}");
        assert!(j.contains(r#"{"id":"abs","name":"lyncweb.contoso.com","status":"pass","detail":"401 \"NTLM\"","fix":null}"#), "{j}");
        assert!(j.contains(r#""id":"port-bridging","name":"lyncweb.contoso.com","status":"fail","detail":"x\ny""#), "{j}");
        let t = render_text(&r);
        assert!(
            t.contains("FAIL port-bridging") && t.contains("fix: bridge"),
            "{t}"
        );
    }
}
