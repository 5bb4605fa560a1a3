//! Sizes as written in the config file: `"2GB"`, `"500MB"`, `"64KB"`, or bytes.

/// Parses a size; units are binary (KB = 1024 bytes), as administrators read them in IIS.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad(text))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(bad(text)),
    };
    n.checked_mul(mult).ok_or_else(|| bad(text))
}

fn bad(text: &str) -> String {
    format!("invalid size {text:?}: expected a number with an optional unit B, KB, MB or GB (e.g. \"2GB\", \"500MB\")")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("2GB").unwrap(), 2 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500 << 20);
        assert_eq!(parse_size("64kb").unwrap(), 64 << 10);
        assert_eq!(parse_size("1234").unwrap(), 1234);
        assert!(parse_size("2TB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("").is_err());
    }
}
