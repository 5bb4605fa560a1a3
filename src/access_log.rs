//! The access log: one line per request, W3C extended (what IIS administrators read) or JSON
//! lines. Lines are formatted on the worker and written by a dedicated thread, so a slow disk
//! never stalls a request; if the writer falls far behind, lines are dropped and counted.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Access log line format (`[log] access_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// W3C extended log format, the fields IIS writes, so existing log tooling keeps working.
    W3c,
    /// One JSON object per line.
    Json,
}

/// Where access log lines go (`[log] access_log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output (for journald or a container runtime).
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

enum Msg {
    Line(String),
    Reopen,
}

/// The sink requests write to.
pub struct AccessLog {
    pub(crate) format: Format,
    pub(crate) target: Target,
    tx: SyncSender<Msg>,
    pub(crate) dropped: AtomicU64,
}

const QUEUE: usize = 64 * 1024;
const W3C_FIELDS: &str = "#Fields: date time c-ip cs-host cs-method cs-uri-stem cs-uri-query sc-status cs-bytes sc-bytes time-taken x-farm x-member x-rule x-tls x-portico";

impl AccessLog {
    /// Opens the target (a file is created or appended to) and starts the writer thread.
    pub fn open(target: Target, format: Format) -> io::Result<Arc<AccessLog>> {
        let out = open_target(&target)?;
        let (tx, rx) = sync_channel(QUEUE);
        let t = target.clone();
        std::thread::Builder::new()
            .name("portico-access-log".into())
            .spawn(move || writer(rx, out, t, format))?;
        Ok(Arc::new(AccessLog {
            format,
            target,
            tx,
            dropped: AtomicU64::new(0),
        }))
    }

    /// Asks the writer to reopen its file (logrotate moved it; SIGUSR1).
    pub fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }

    fn write(&self, line: String) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn open_target(target: &Target) -> io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        Target::Stdout => Box::new(io::stdout()),
        Target::File(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
    })
}

fn writer(rx: Receiver<Msg>, out: Box<dyn Write + Send>, target: Target, format: Format) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    let header = |out: &mut BufWriter<Box<dyn Write + Send>>| {
        if format == Format::W3c {
            let _ = writeln!(
                out,
                "#Software: Portico {}\n#Version: 1.0\n#Date: {}\n{W3C_FIELDS}",
                env!("CARGO_PKG_VERSION"),
                {
                    let (d, t) = date_time(SystemTime::now());
                    format!("{d} {t}")
                }
            );
        }
    };
    header(&mut out);
    let _ = out.flush();
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Msg::Line(l)) => {
                let _ = out.write_all(l.as_bytes());
                // Drain what is queued before flushing once.
                while let Ok(Msg::Line(l)) = rx.try_recv() {
                    let _ = out.write_all(l.as_bytes());
                }
                let _ = out.flush();
            }
            Ok(Msg::Reopen) => {
                let _ = out.flush();
                match open_target(&target) {
                    Ok(f) => {
                        out = BufWriter::with_capacity(64 * 1024, f);
                        header(&mut out);
                        let _ = out.flush();
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot reopen the access log; keeping the old file")
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
    }
}

/// What one request's line says; filled in along the request's path, written on drop of the
/// response body (so bytes out and time taken are final).
pub struct AccessRecord {
    log: Arc<AccessLog>,
    started: Instant,
    at: SystemTime,
    client: SocketAddr,
    host: String,
    method: String,
    path_and_query: String,
    tls: Option<&'static str>,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    status: AtomicU64,
    rule: OnceLock<String>,
    farm: OnceLock<String>,
    member: OnceLock<String>,
    /// Why Portico answered the request itself instead of the member (perimeter: `lockout`,
    /// `rate-limit`); unset when the member answered or no farm was involved.
    answered_by_portico: OnceLock<&'static str>,
    written: Mutex<bool>,
}

impl AccessRecord {
    pub(crate) fn new(
        log: Arc<AccessLog>,
        client: SocketAddr,
        host: &str,
        method: &str,
        path_and_query: &str,
        tls: Option<&'static str>,
    ) -> AccessRecord {
        AccessRecord {
            log,
            started: Instant::now(),
            at: SystemTime::now(),
            client,
            host: host.to_string(),
            method: method.to_string(),
            path_and_query: path_and_query.to_string(),
            tls,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            status: AtomicU64::new(0),
            rule: OnceLock::new(),
            farm: OnceLock::new(),
            member: OnceLock::new(),
            answered_by_portico: OnceLock::new(),
            written: Mutex::new(false),
        }
    }

    pub(crate) fn set_rule(&self, rule: &str) {
        let _ = self.rule.set(rule.to_string());
    }
    pub(crate) fn set_farm(&self, farm: &str) {
        let _ = self.farm.set(farm.to_string());
    }
    pub(crate) fn set_member(&self, member: String) {
        let _ = self.member.set(member);
    }
    /// Portico answered for the member (`x-portico` / `answered_by_portico`).
    pub fn set_answered_by_portico(&self, why: &'static str) {
        let _ = self.answered_by_portico.set(why);
    }
    pub(crate) fn set_status(&self, status: u16) {
        self.status.store(u64::from(status), Ordering::Relaxed);
    }

    /// Writes the line once (later calls do nothing).
    pub fn finish(&self) {
        {
            let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
            if *w {
                return;
            }
            *w = true;
        }
        let line = match self.log.format {
            Format::W3c => self.w3c(),
            Format::Json => self.json(),
        };
        self.log.write(line);
    }

    fn parts(&self) -> (&str, &str) {
        match self.path_and_query.split_once('?') {
            Some((p, q)) => (p, q),
            None => (&self.path_and_query, ""),
        }
    }

    fn w3c(&self) -> String {
        let (date, time) = date_time(self.at);
        let (stem, query) = self.parts();
        let f = |s: &str| -> String {
            if s.is_empty() {
                "-".into()
            } else {
                s.chars()
                    .map(|c| {
                        if c.is_whitespace() || c.is_control() {
                            '+'
                        } else {
                            c
                        }
                    })
                    .collect()
            }
        };
        format!(
            "{date} {time} {} {} {} {} {} {} {} {} {} {} {} {} {} {}\n",
            self.client.ip(),
            f(&self.host),
            f(&self.method),
            f(stem),
            f(query),
            self.status.load(Ordering::Relaxed),
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
            self.started.elapsed().as_millis(),
            f(self.farm.get().map_or("", |s| s)),
            f(self.member.get().map_or("", |s| s)),
            f(self.rule.get().map_or("", |s| s)),
            f(self.tls.unwrap_or("")),
            f(self.answered_by_portico.get().copied().unwrap_or("")),
        )
    }

    fn json(&self) -> String {
        let (date, time) = date_time(self.at);
        let (stem, query) = self.parts();
        let mut s = String::with_capacity(256);
        s.push_str(&format!(
            "{{\"time\":\"{date}T{time}Z\",\"client\":\"{}\",\"host\":",
            self.client.ip()
        ));
        json_str(&mut s, &self.host);
        s.push_str(",\"method\":");
        json_str(&mut s, &self.method);
        s.push_str(",\"path\":");
        json_str(&mut s, stem);
        s.push_str(",\"query\":");
        json_str(&mut s, query);
        s.push_str(&format!(
            ",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"time_taken_ms\":{},\"farm\":",
            self.status.load(Ordering::Relaxed),
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
            self.started.elapsed().as_millis()
        ));
        json_str(&mut s, self.farm.get().map_or("", |s| s));
        s.push_str(",\"member\":");
        json_str(&mut s, self.member.get().map_or("", |s| s));
        s.push_str(",\"rule\":");
        json_str(&mut s, self.rule.get().map_or("", |s| s));
        s.push_str(",\"tls\":");
        json_str(&mut s, self.tls.unwrap_or(""));
        if let Some(why) = self.answered_by_portico.get() {
            s.push_str(",\"answered_by_portico\":");
            json_str(&mut s, why);
        }
        s.push_str("}\n");
        s
    }
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        self.finish();
    }
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
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// UTC `YYYY-MM-DD` and `HH:MM:SS.mmm` without a date crate (Howard Hinnant's civil_from_days).
pub fn date_time(t: SystemTime) -> (String, String) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60,
            d.subsec_millis()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil_dates() {
        let t =
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_311_000) + Duration::from_millis(7);
        let (d, tm) = date_time(t);
        assert_eq!(d, "2026-11-22");
        assert_eq!(tm, "01:30:00.007");
        let (d, _) = date_time(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
        assert_eq!(d, "2000-02-29");
    }
}
