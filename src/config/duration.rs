//! Durations as written in the config file: a number and a unit (`"200s"`, `"16m"`).

use std::time::Duration;

/// Parses `"500ms"`, `"30s"`, `"16m"`, `"1h"`, `"1d"`; combined forms such as `"1h30m"` too.
/// A bare number is refused: a timeout in the wrong unit is a classic outage.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err(bad(text));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad(text));
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad(text))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            "d" => Duration::from_secs(value.saturating_mul(86400)),
            _ => return Err(bad(text)),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

fn bad(text: &str) -> String {
    format!(
        "invalid duration {text:?}: expected a number with a unit, one of ms, s, m, h, d (e.g. \"200s\", \"16m\", \"1h30m\")"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_combinations_parse() {
        assert_eq!(parse_duration("200s").unwrap(), Duration::from_secs(200));
        assert_eq!(parse_duration("16m").unwrap(), Duration::from_secs(960));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
    }

    #[test]
    fn bare_numbers_and_unknown_units_are_refused() {
        for bad in ["200", "", "s", "10x", "1.5s", "-3s", "10 s"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.contains("expected a number with a unit"),
                "{bad}: {err}"
            );
        }
    }
}
