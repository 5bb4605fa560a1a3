//! Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
//! the browser reads commands from fd 3 and writes answers to fd 4, each message ending in
//! a NUL byte). No node, no WebDriver: a socket pair stands in for both pipes.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

extern "C" {
    fn dup2(old: i32, new: i32) -> i32;
}

/// Debian's `chromium`, or `$CHROMIUM`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

pub struct Browser {
    child: Child,
    to: UnixStream,
    from: BufReader<UnixStream>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium and opens `url` in a new tab.
    pub fn launch(chromium: &Path, url: &str) -> Result<Browser, String> {
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
        let fd = theirs.as_raw_fd();
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--window-size=1600,1000",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: dup2 is async-signal-safe; it only makes fds 3 and 4 the socket.
        unsafe {
            cmd.pre_exec(move || {
                if dup2(fd, 3) < 0 || dup2(fd, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start chromium: {e}"))?;
        drop(theirs);
        ours.set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let from = BufReader::new(ours.try_clone().map_err(|e| e.to_string())?);
        let mut b = Browser {
            child,
            to: ours,
            from,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({ "url": url }), false)?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or("no targetId")?
            .to_string();
        let attached = b.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
            false,
        )?;
        b.session = attached["sessionId"]
            .as_str()
            .ok_or("no sessionId")?
            .to_string();
        Ok(b)
    }

    fn call(&mut self, method: &str, params: Value, in_page: bool) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if in_page {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).map_err(|e| e.to_string())?;
        bytes.push(0);
        self.to.write_all(&bytes).map_err(|e| e.to_string())?;
        loop {
            let mut buf = Vec::new();
            self.from
                .read_until(0, &mut buf)
                .map_err(|e| format!("{method}: no answer from chromium: {e}"))?;
            if buf.last() != Some(&0) {
                return Err(format!("{method}: chromium closed the pipe"));
            }
            buf.pop();
            let v: Value = serde_json::from_slice(&buf).map_err(|e| e.to_string())?;
            if v["id"] == json!(id) {
                if let Some(err) = v.get("error") {
                    return Err(format!("{method}: {err}"));
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            true,
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(format!("{expression}: {e}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Waits (up to 10 s) until `condition` is true in the page.
    pub fn wait_until(&mut self, condition: &str) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if self
                .eval(&format!("!!({condition})"))
                .unwrap_or(Value::Bool(false))
                == json!(true)
            {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(10) {
                let body = self.eval("document.body.innerText").unwrap_or_default();
                return Err(format!("timed out waiting for {condition}; page:\n{body}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A real mouse click (press and release) in the middle of the element.
    pub fn click(&mut self, selector: &str) -> Result<(), String> {
        let sel = serde_json::to_string(selector).map_err(|e| e.to_string())?;
        let at = self.eval(&format!(
            "(function () {{ var e = document.querySelector({sel}); if (!e) return null; \
               e.scrollIntoView({{block: 'center', inline: 'center'}}); \
               var r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ))?;
        let (x, y) = match (at[0].as_f64(), at[1].as_f64()) {
            (Some(x), Some(y)) => (x, y),
            _ => return Err(format!("no element {selector} on the page")),
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
                true,
            )?;
        }
        Ok(())
    }

    /// Focuses the element and types `text` as keyboard input would.
    pub fn type_into(&mut self, selector: &str, text: &str) -> Result<(), String> {
        let sel = serde_json::to_string(selector).map_err(|e| e.to_string())?;
        self.eval(&format!("document.querySelector({sel}).focus()"))?;
        self.call("Input.insertText", json!({ "text": text }), true)?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call("Browser.close", json!({}), false);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
