//! `portico demo` works as the README promises: every curl line it prints answers as its
//! comment says.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn demo_prints_curl_lines_that_answer_as_announced() {
    let dir = tempfile::tempdir().unwrap();
    let https = 18443 + (std::process::id() % 500) as u16;
    let http = https + 1000;
    let mut child = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args([
            "demo",
            "--https-port",
            &https.to_string(),
            "--http-port",
            &http.to_string(),
            "--dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Kill the demo even when an assertion fails.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    let mut lines = Vec::new();
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.contains("Stop with Ctrl-C") {
            break;
        }
        lines.push(line);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "demo did not start"
        );
    }
    let curls: Vec<&String> = lines
        .iter()
        .filter(|l| l.trim_start().starts_with("curl "))
        .collect();
    assert!(curls.len() >= 6, "{lines:#?}");
    for line in curls {
        let (cmd, comment) = line.split_once('#').unwrap();
        let expected: u16 = comment.trim()[..3].parse().unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} -o /dev/null -w '%{{http_code}}'",
                cmd.trim().replace("curl -si", "curl -s")
            ))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout);
        assert_eq!(code.trim(), expected.to_string(), "{line}");
    }
}
