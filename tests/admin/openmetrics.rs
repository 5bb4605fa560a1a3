//! A strict reader of the OpenMetrics text format (what Prometheus scrapes): every sample
//! belongs to a family declared by `# TYPE` before it, names and labels follow the grammar,
//! counters are not negative, no series appears twice, and the text ends with `# EOF`.

use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → type (`counter`, `gauge`, ...).
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

const TYPES: [&str; 8] = [
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "stateset",
    "info",
    "summary",
    "unknown",
];

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn number(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("{s:?} is not a number")),
    }
}

/// `{a="1",b="x\"y"}` (after the metric name) → labels and the rest of the line.
fn labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut out = BTreeMap::new();
    let Some(mut rest) = s.strip_prefix('{') else {
        return Ok((out, s));
    };
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    'n' => value.push('\n'),
                    '"' => value.push('"'),
                    '\\' => value.push('\\'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (i, '"') => break i,
                (_, '\n') => return Err("newline in label value".into()),
                (_, c) => value.push(c),
            }
        };
        if out.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected , or } after a label".into());
        }
    }
}

/// The family a sample name belongs to, given the declared types.
fn family<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_total", "_created", "_count", "_sum", "_bucket", "_info"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.contains_key(base) {
                return Some(base);
            }
        }
    }
    None
}

pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    let mut seen = HashSet::new();
    let mut eof = false;
    if !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if eof {
            return Err(at("text after # EOF".into()));
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let kind = parts.next().unwrap_or("");
            let name = parts.next().unwrap_or("");
            let rest = parts.next().unwrap_or("");
            if !is_name(name, true) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            match kind {
                "TYPE" => {
                    if !TYPES.contains(&rest) {
                        return Err(at(format!("unknown type {rest:?}")));
                    }
                    if e.types.insert(name.into(), rest.into()).is_some() {
                        return Err(at("family declared twice".into()));
                    }
                }
                "HELP" | "UNIT" => {}
                _ => return Err(at(format!("unknown descriptor {kind:?}"))),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(at(format!("bad metric name {name:?}")));
        }
        let fam =
            family(name, &e.types).ok_or_else(|| at("sample of an undeclared family".into()))?;
        let (labels, rest) = labels(&line[name_end..]).map_err(at)?;
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = number(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(ts) = fields.next() {
            number(ts).map_err(at)?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        if e.types[fam] == "counter" {
            if !name.ends_with("_total") && !name.ends_with("_created") {
                return Err(at("counter sample without _total".into()));
            }
            if value < 0.0 || value.is_nan() {
                return Err(at("negative counter".into()));
            }
        }
        if !seen.insert(format!("{name}{labels:?}")) {
            return Err(at("series appears twice".into()));
        }
        e.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    if !eof {
        return Err("no # EOF at the end".into());
    }
    Ok(e)
}

#[test]
fn the_reader_refuses_what_prometheus_would() {
    assert!(parse("# TYPE a counter\na_total 1\n# EOF\n").is_ok());
    assert!(parse("a 1\n# EOF\n").is_err(), "undeclared");
    assert!(parse("# TYPE a counter\na_total 1\n").is_err(), "no EOF");
    assert!(parse("# TYPE a gauge\na{x=\"1\" 1\n# EOF\n").is_err());
    assert!(parse("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n# EOF\n").is_err());
    let e = parse("# TYPE a gauge\na{x=\"q\\\"\"} -1.5\n# EOF\n").unwrap();
    assert_eq!(e.samples[0].labels["x"], "q\"");
}
