//! Questions for `portico init` when stdin is a terminal and a required fact is missing.

use super::InitError;
use std::io::{BufRead, Write};

/// Asks on `out`, reads answers from `input`, one line each; an empty answer takes the default.
pub struct Prompter<R, W> {
    input: R,
    out: W,
}

impl<R: BufRead, W: Write> Prompter<R, W> {
    pub(crate) fn new(input: R, out: W) -> Self {
        Prompter { input, out }
    }

    /// One answer; `default` is shown in brackets and taken on an empty line (or at end of input).
    pub fn ask(&mut self, question: &str, default: &str) -> Result<String, InitError> {
        if default.is_empty() {
            write!(self.out, "{question}: ")
        } else {
            write!(self.out, "{question} [{default}]: ")
        }
        .and_then(|_| self.out.flush())
        .map_err(InitError::Prompt)?;
        let mut line = String::new();
        let n = self.input.read_line(&mut line).map_err(InitError::Prompt)?;
        let answer = line.trim();
        if n == 0 {
            // End of input: keep the default so a piped script cannot loop forever.
            let _ = writeln!(self.out);
        }
        Ok(if answer.is_empty() {
            default.to_string()
        } else {
            answer.to_string()
        })
    }

    /// A comma-separated answer.
    pub fn ask_list(
        &mut self,
        question: &str,
        default: &[String],
    ) -> Result<Vec<String>, InitError> {
        let answer = self.ask(question, &default.join(","))?;
        Ok(answer
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect())
    }

    /// Asks until `check` accepts the answer; the error is shown and the question asked again
    /// (at most five times, then the last error is returned).
    pub fn ask_valid<T>(
        &mut self,
        question: &str,
        default: &str,
        check: impl Fn(&str) -> Result<T, InitError>,
    ) -> Result<T, InitError> {
        let mut last = None;
        for _ in 0..5 {
            let a = self.ask(question, default)?;
            match check(&a) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let _ = writeln!(self.out, "  {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("five tries"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_answer_takes_the_default_and_lists_split_on_commas() {
        let input = b"\nmeet.contoso.com, meet.fabrikam.com\n" as &[u8];
        let mut out = Vec::new();
        let mut p = Prompter::new(input, &mut out);
        assert_eq!(p.ask("SIP domain", "contoso.com").unwrap(), "contoso.com");
        assert_eq!(
            p.ask_list("Meet", &[]).unwrap(),
            vec!["meet.contoso.com", "meet.fabrikam.com"]
        );
        // End of input keeps the default.
        assert_eq!(
            p.ask("Dial-in", "dialin.contoso.com").unwrap(),
            "dialin.contoso.com"
        );
        let shown = String::from_utf8(out).unwrap();
        assert!(shown.contains("SIP domain [contoso.com]: "), "{shown}");
    }
}
