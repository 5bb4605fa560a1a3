//! IIS ARR `applicationHost.config` (and a site `web.config`) → Portico config
//! (`portico import-iis`).
//!
//! The XML is read with `roxmltree`, which keeps text positions, so every warning names the
//! element and its line. Farms (`farms`), the server-level `<proxy>`, sites and rewrite rules
//! (`rules`) become an intermediate model, `emit` writes it as commented TOML. Whatever has no
//! Portico equivalent is reported, never dropped silently; a rule Portico would reject is
//! written commented out, with the reason.

mod emit;
mod farms;
mod rules;
mod walk;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

pub use walk::import;

/// Flags of `portico import-iis`.
#[derive(clap::Args, Debug, Clone)]
pub struct ImportArgs {
    /// The IIS applicationHost.config (usually C:\Windows\System32\inetsrv\config\applicationHost.config).
    pub file: PathBuf,
    /// A site's web.config whose `<rewrite><rules>` run after the global rules.
    #[arg(long, value_name = "FILE")]
    pub web_config: Option<PathBuf>,
    /// Write the config here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Something not carried over (or carried over differently), with where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub(crate) file: String,
    pub(crate) line: u32,
    /// The element, e.g. `serverVariables` or `webFarm name="meet.contoso.com"`.
    pub element: String,
    pub(crate) message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warning: {}:{}: <{}>: {}",
            self.file, self.line, self.element, self.message
        )
    }
}

/// The translated config and everything the admin must look at.
#[derive(Debug)]
pub struct Imported {
    /// The Portico config, TOML, ready to write out.
    pub toml: String,
    pub(crate) warnings: Vec<Warning>,
}

/// Why nothing could be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// An input file cannot be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file as given on the command line.
        file: String,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// An input file is not well-formed XML.
    #[error("{file}:{line}:{column}: malformed XML: {message}")]
    Xml {
        /// The file as given on the command line.
        file: String,
        /// Line of the error, from 1.
        line: u32,
        /// Column of the error, from 1.
        column: u32,
        /// The XML parser's complaint.
        message: String,
    },
    /// The XML is not an IIS configuration file.
    #[error("{file}:{line}: the root element is <{found}>, expected <configuration> (an IIS applicationHost.config or web.config)")]
    NotConfiguration {
        /// The file as given on the command line.
        file: String,
        /// Line of the root element, from 1.
        line: u32,
        /// The root element's name.
        found: String,
    },
}

/// One input file: its name (for messages) and text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// File name, used in warnings and errors.
    pub name: &'a str,
    /// The file's XML text.
    pub text: &'a str,
}

/// `00:03:20` → 200 s; `1.02:00:00` (days) and fractions (`00:00:00.1`) too.
pub fn parse_timespan(text: &str) -> Option<std::time::Duration> {
    let t = text.trim();
    let (days, rest) = match t.split_once('.') {
        Some((d, r)) if !d.contains(':') && r.contains(':') => (d.parse::<u64>().ok()?, r),
        _ => (0, t),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() != 3 {
        return None;
    }
    let h: u64 = parts[0].parse().ok()?;
    let m: u64 = parts[1].parse().ok()?;
    let (s, frac) = match parts[2].split_once('.') {
        Some((s, f)) => (s, f),
        None => (parts[2], ""),
    };
    let s: u64 = s.parse().ok()?;
    if m > 59 || s > 59 {
        return None;
    }
    let mut ms = 0u64;
    if !frac.is_empty() {
        if !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        ms = digits.parse().ok()?;
    }
    let secs = days * 86400 + h * 3600 + m * 60 + s;
    Some(std::time::Duration::from_millis(secs * 1000 + ms))
}

/// A duration as Portico writes it: `"200s"`, or `"100ms"` below a second.
pub fn duration_text(d: std::time::Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// Runs the command: TOML on stdout (or `--output`), warnings on stderr; 0 unless unreadable.
pub fn run(args: &ImportArgs) -> ExitCode {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|source| ImportError::Read {
            file: p.display().to_string(),
            source,
        })
    };
    let result = (|| {
        let main_text = read(&args.file)?;
        let web_text = args.web_config.as_ref().map(read).transpose()?;
        let main_name = args.file.display().to_string();
        let web_name = args.web_config.as_ref().map(|p| p.display().to_string());
        let web = match (&web_name, &web_text) {
            (Some(n), Some(t)) => Some(Source { name: n, text: t }),
            _ => None,
        };
        import(
            Source {
                name: &main_name,
                text: &main_text,
            },
            web,
        )
    })();
    match result {
        Ok(imported) => {
            for w in &imported.warnings {
                eprintln!("{w}");
            }
            if let Some(out) = &args.output {
                if let Err(e) = std::fs::write(out, &imported.toml) {
                    eprintln!("error: cannot write {}: {e}", out.display());
                    return ExitCode::FAILURE;
                }
            } else {
                print!("{}", imported.toml);
            }
            eprintln!(
                "imported with {} warning(s); review them, then: portico validate --config FILE",
                imported.warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;
