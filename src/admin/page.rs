//! The status page: server-rendered HTML (readable without JavaScript) and a small inline
//! script that refreshes it from `/api/status` every 2 s, works out requests per second from
//! the difference between two refreshes, and sends the member actions with the token the
//! admin typed (kept in `sessionStorage`, so it dies with the tab). No external resources.

use super::api::{FarmStatus, MemberStatus, Status};
use std::fmt::Write;

/// Inline script and style only; the page fetches nothing but its own API.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for HTML content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The column headings of a farm's member table; `SCRIPT` fills the same cells in order.
const COLUMNS: [&str; 14] = [
    "Member",
    "State",
    "Health",
    "Last check",
    "Req/s",
    "Current",
    "Total",
    "Failed",
    "Avg ms",
    "Bytes in",
    "Bytes out",
    "Pinned",
    "Pool idle",
    "Actions",
];

pub fn render(st: &Status) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str("<title>Portico status</title>\n<style>");
    h.push_str(STYLE);
    h.push_str("</style></head><body>\n");
    let _ = writeln!(
        h,
        "<header><h1>Portico</h1><span class=\"muted\">version {} · pid {}</span>\
         <span id=\"conn\" class=\"muted\"></span></header>",
        esc(st.version),
        st.pid
    );
    h.push_str(
        "<section class=\"bar\"><label>Admin token <input id=\"token\" type=\"password\" \
         autocomplete=\"off\" placeholder=\"needed for actions\"></label>\
         <button type=\"button\" data-act=\"reset\">Reset counters</button>\
         <button type=\"button\" data-act=\"reload\">Reload config</button>\
         <span id=\"msg\" role=\"status\"></span></section>\n",
    );
    h.push_str("<section id=\"config\">");
    render_config(&mut h, st);
    let columns = serde_json::to_string(&COLUMNS).unwrap_or_default();
    let _ = write!(
        h,
        "</section>\n<div id=\"farms\" data-columns=\"{}\">",
        esc(&columns)
    );
    for f in &st.farms {
        render_farm(&mut h, f);
    }
    h.push_str("</div>\n<section class=\"certs\"><h2>Certificates</h2><table id=\"certs\"><thead><tr>\
                <th>Listener</th><th>Names</th><th>File</th><th>Days to expiry</th><th>Renewal</th></tr></thead><tbody>");
    for c in &st.certificates {
        let class = if c.days_to_expiry < 14 {
            " class=\"bad\""
        } else if c.days_to_expiry < 30 {
            " class=\"warn\""
        } else {
            ""
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td{class}>{}</td><td>{}</td></tr>",
            esc(&c.listener),
            esc(&c.names.join(", ")),
            esc(&c.file),
            c.days_to_expiry,
            esc(&renewal_text(c))
        );
    }
    if st.certificates.is_empty() {
        h.push_str("<tr><td colspan=\"5\" class=\"muted\">no TLS listener</td></tr>");
    }
    h.push_str("</tbody></table></section>\n");
    render_perimeter(&mut h, st);
    h.push_str("<script>");
    h.push_str(SCRIPT);
    h.push_str("</script>\n</body></html>\n");
    h
}

/// Failed-sign-in protection: who is held back now, with a release button each.
fn render_perimeter(h: &mut String, st: &Status) {
    let p = &st.perimeter;
    h.push_str(
        "<section class=\"certs\" id=\"perimeter\"><h2>Sign-in protection and rate limits</h2>",
    );
    let _ = write!(
        h,
        "<p class=\"muted\">rate-limited requests {} · connections {}",
        p.rate_limited_requests, p.rate_limited_connections
    );
    if let Some(l) = &p.lockout {
        let _ = write!(
            h,
            " · lockout: {} failures per account (address: {}) in {} s; failures {}, held back {}, released {}",
            l.threshold, l.address_threshold, l.window_secs, l.failures, l.blocked, l.releases
        );
    }
    h.push_str("</p><table id=\"held\"><thead><tr><th>Held back</th><th>Name</th><th>Failures in window</th>\
                <th>Attempts held</th><th>Lifts in (s)</th><th>Actions</th></tr></thead><tbody>");
    let held = p.lockout.as_ref().map_or(&[][..], |l| &l.held[..]);
    for e in held {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><button type=\"button\" data-act=\"release\" data-name=\"{}\">Release</button></td></tr>",
            e.kind,
            esc(&e.name),
            e.failures,
            e.held_attempts,
            e.retry_after_secs,
            esc(&e.name)
        );
    }
    if held.is_empty() {
        h.push_str("<tr><td colspan=\"6\" class=\"muted\">nothing held back</td></tr>");
    }
    h.push_str("</tbody></table></section>\n");
}

fn render_config(h: &mut String, st: &Status) {
    let _ = write!(
        h,
        "<h2>Configuration</h2><dl><dt>File</dt><dd id=\"cfg-file\">{}</dd>\
         <dt>Loaded</dt><dd id=\"cfg-loaded\" data-t=\"{}\"></dd>\
         <dt>Digest (SHA-256)</dt><dd id=\"cfg-digest\"><code>{}</code></dd>\
         <dt>Running since</dt><dd id=\"cfg-started\" data-t=\"{}\"></dd>\
         <dt>Last reload</dt><dd id=\"cfg-reload\">",
        esc(st.config.file.as_deref().unwrap_or("(built in memory)")),
        st.config.loaded_at,
        esc(&st.config.digest),
        st.started_at
    );
    match &st.last_reload {
        None => h.push_str("none since start"),
        Some(r) if r.ok => h.push_str("<span class=\"good\">accepted</span>"),
        Some(r) => {
            let _ = write!(
                h,
                "<span class=\"bad\">rejected — the previous config keeps serving</span><pre class=\"err\">{}</pre>",
                esc(&r.message)
            );
        }
    }
    h.push_str("</dd></dl>");
}

fn render_farm(h: &mut String, f: &FarmStatus) {
    let _ = write!(
        h,
        "<section class=\"farm\" data-farm=\"{}\"><h2>Farm {}</h2><p class=\"muted\">{}{}{}</p>\
         <table><thead><tr>",
        esc(&f.name),
        esc(&f.name),
        esc(f.load_balancing),
        f.health_check
            .as_ref()
            .map(|u| format!(" · health check {}", esc(u)))
            .unwrap_or_default(),
        f.affinity_cookie
            .as_ref()
            .map(|c| format!(" · affinity cookie {}", esc(c)))
            .unwrap_or_default(),
    );
    for c in COLUMNS {
        let _ = write!(h, "<th>{c}</th>");
    }
    h.push_str("</tr></thead><tbody>");
    for m in &f.members {
        render_member(h, &f.name, m);
    }
    h.push_str("</tbody></table></section>");
}

fn render_member(h: &mut String, farm: &str, m: &MemberStatus) {
    let health = if m.health.up { "up" } else { "down" };
    let check = if m.health.checks.len() > 1 {
        // Per-protocol checks: each one's verdict, so "EWS down, OWA up" reads at a glance.
        m.health
            .checks
            .iter()
            .map(|c| {
                let detail = c.last.as_ref().map_or("", |l| l.detail.as_str());
                format!("{} {} {detail}", c.name, if c.up { "up" } else { "down" })
            })
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        m.health
            .last_check
            .as_ref()
            .map(|c| format!("{} {}", if c.ok { "ok" } else { "failed" }, c.detail))
            .unwrap_or_else(|| "–".into())
    };
    let _ = write!(
        h,
        "<tr data-member=\"{id}\"><td>{id}</td><td class=\"st-{state}\">{state}</td>\
         <td class=\"{health}\">{health}</td><td class=\"check\">{}</td><td>–</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
        esc(&check),
        m.in_flight,
        m.requests,
        m.failures,
        m.response_time_ms,
        m.bytes_in,
        m.bytes_out,
        m.pinned,
        m.pool_idle,
        id = esc(&m.id),
        state = m.state,
    );
    for (act, label) in [
        ("draining", "Drain"),
        ("available", "Make available"),
        ("unavailable", "Make unavailable"),
    ] {
        let _ = write!(
            h,
            "<button type=\"button\" data-act=\"{act}\" data-farm=\"{}\" data-member=\"{}\">{label}</button>",
            esc(farm),
            esc(&m.id)
        );
    }
    h.push_str("</td></tr>");
}

const STYLE: &str = "
body{font:14px system-ui,sans-serif;margin:1em 2em;color:#222}
header{display:flex;gap:1em;align-items:baseline}h1{margin:0}
h2{font-size:1.1em;margin:1.2em 0 .3em}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
.muted{color:#777}.good,.up,.st-available{color:#176f2c}.bad,.down,.st-unavailable{color:#b00020;font-weight:bold}
.warn,.st-draining{color:#a05a00;font-weight:bold}
.bar{display:flex;gap:1em;align-items:center;padding:.5em;background:#f4f4f4}
pre.err{white-space:pre-wrap;background:#fff0f0;padding:.5em;margin:.3em 0}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em}dt{font-weight:bold}dd{margin:0}
button{margin-left:3px}
td.check{white-space:normal;text-align:left;max-width:26em;font-size:12px}.failed{color:#b00020}
.farm,.certs{overflow-x:auto}
";

/// Refreshes the tables in place (so a button under the pointer stays the same element)
/// and sends actions. Everything from the server goes in through `textContent`.
const SCRIPT: &str = r#"
(function () {
  'use strict';
  var tok = document.getElementById('token');
  var msgEl = document.getElementById('msg');
  var conn = document.getElementById('conn');
  var farmsEl = document.getElementById('farms');
  var shape = null, prev = {}, prevAt = 0;
  tok.value = sessionStorage.getItem('portico-token') || '';
  tok.addEventListener('input', function () { sessionStorage.setItem('portico-token', tok.value); });
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function when(t) { return t ? new Date(t * 1000).toLocaleString() : ''; }
  function ago(t) {
    var s = Math.max(0, Math.round(Date.now() / 1000 - t));
    return s < 120 ? s + ' s ago' : Math.round(s / 60) + ' min ago';
  }
  function bytes(n) {
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + ' ' + u[i];
  }
  function fillTimes() {
    ['cfg-loaded', 'cfg-started'].forEach(function (id) {
      var e = document.getElementById(id);
      e.textContent = when(Number(e.getAttribute('data-t')));
    });
  }
  function say(text, ok) { msgEl.textContent = text; msgEl.className = ok ? 'good' : 'bad'; }
  function cells(farm, m, rate) {
    var c = m.health.last_check;
    return [
      [m.id, ''],
      [m.state, 'st-' + m.state],
      [m.health.up ? 'up' : 'down', m.health.up ? 'up' : 'down'],
      m.health.checks.length > 1
        ? [m.health.checks.map(function (k) { return k.name + ' ' + (k.up ? 'up' : 'down') + (k.last ? ' ' + k.last.detail : ''); }).join('; '),
           m.health.checks.every(function (k) { return k.up; }) ? 'check' : 'check failed']
        : [c ? (c.ok ? 'ok ' : 'failed ') + c.detail + ' (' + ago(c.at) + ')' : '–', c && !c.ok ? 'check failed' : 'check'],
      [rate === null ? '–' : rate.toFixed(1), ''],
      [m.in_flight, ''], [m.requests, ''], [m.failures, m.failures ? 'warn' : ''],
      [m.response_time_ms.toFixed(1), ''], [bytes(m.bytes_in), ''], [bytes(m.bytes_out), ''],
      [m.pinned, ''], [m.pool_idle, '']
    ];
  }
  function button(act, label, farm, id) {
    var b = el('button', label);
    b.type = 'button';
    b.setAttribute('data-act', act);
    b.setAttribute('data-farm', farm);
    b.setAttribute('data-member', id);
    return b;
  }
  function build(st) {
    farmsEl.textContent = '';
    st.farms.forEach(function (f) {
      var sec = el('section', null, 'farm');
      sec.setAttribute('data-farm', f.name);
      sec.appendChild(el('h2', 'Farm ' + f.name));
      var info = f.load_balancing;
      if (f.health_check) info += ' · health check ' + f.health_check;
      if (f.affinity_cookie) info += ' · affinity cookie ' + f.affinity_cookie;
      sec.appendChild(el('p', info, 'muted'));
      var t = el('table'), hr = el('tr'), tb = el('tbody');
      COLUMNS.forEach(function (c) { hr.appendChild(el('th', c)); });
      t.appendChild(el('thead')).appendChild(hr);
      t.appendChild(tb);
      f.members.forEach(function (m) {
        var tr = el('tr');
        tr.setAttribute('data-member', m.id);
        for (var i = 0; i < COLUMNS.length - 1; i++) tr.appendChild(el('td'));
        var td = el('td');
        td.appendChild(button('draining', 'Drain', f.name, m.id));
        td.appendChild(button('available', 'Make available', f.name, m.id));
        td.appendChild(button('unavailable', 'Make unavailable', f.name, m.id));
        tr.appendChild(td);
        tb.appendChild(tr);
      });
      sec.appendChild(t);
      farmsEl.appendChild(sec);
    });
  }
  function render(st) {
    var now = Date.now() / 1000;
    var s = JSON.stringify(st.farms.map(function (f) { return [f.name, f.members.map(function (m) { return m.id; })]; }));
    if (s !== shape) { build(st); shape = s; }
    var secs = farmsEl.children, next = {};
    st.farms.forEach(function (f, fi) {
      var rows = secs[fi].querySelector('tbody').rows;
      f.members.forEach(function (m, mi) {
        var key = f.name + '\u0000' + m.id, rate = null;
        next[key] = m.requests;
        if (key in prev && prevAt && now > prevAt) rate = Math.max(0, m.requests - prev[key]) / (now - prevAt);
        cells(f.name, m, rate).forEach(function (c, ci) {
          var td = rows[mi].cells[ci];
          if (td.textContent !== String(c[0])) td.textContent = String(c[0]);
          td.className = c[1];
        });
      });
    });
    prev = next; prevAt = now;
    document.getElementById('cfg-file').textContent = st.config.file || '(built in memory)';
    document.getElementById('cfg-loaded').setAttribute('data-t', st.config.loaded_at);
    document.getElementById('cfg-digest').firstChild.textContent = st.config.digest;
    document.getElementById('cfg-started').setAttribute('data-t', st.started_at);
    fillTimes();
    var r = document.getElementById('cfg-reload');
    r.textContent = '';
    if (!st.last_reload) r.textContent = 'none since start';
    else if (st.last_reload.ok) r.appendChild(el('span', 'accepted ' + ago(st.last_reload.at), 'good'));
    else {
      r.appendChild(el('span', 'rejected ' + ago(st.last_reload.at) + ' — the previous config keeps serving', 'bad'));
      r.appendChild(el('pre', st.last_reload.message, 'err'));
    }
    var tb = document.querySelector('#certs tbody');
    tb.textContent = '';
    if (!st.certificates.length) {
      var none = el('td', 'no TLS listener', 'muted');
      none.colSpan = 5;
      tb.appendChild(el('tr')).appendChild(none);
    }
    st.certificates.forEach(function (c) {
      var tr = el('tr');
      [c.listener, c.names.join(', '), c.file].forEach(function (v) { tr.appendChild(el('td', v)); });
      tr.appendChild(el('td', c.days_to_expiry, c.days_to_expiry < 14 ? 'bad' : c.days_to_expiry < 30 ? 'warn' : ''));
      var ren = c.renewal + (c.next_attempt ? ' · next attempt ' + new Date(c.next_attempt * 1000).toISOString() : '') +
        (c.ocsp ? ' · OCSP ' + c.ocsp : '') + (c.last_error ? ' · last error: ' + c.last_error : '');
      tr.appendChild(el('td', ren, c.last_error ? 'warn' : ''));
      tb.appendChild(tr);
    });
    var held = (st.perimeter && st.perimeter.lockout) ? st.perimeter.lockout.held : [];
    var hb = document.querySelector('#held tbody');
    hb.textContent = '';
    if (!held.length) {
      var nothing = el('td', 'nothing held back', 'muted');
      nothing.colSpan = 6;
      hb.appendChild(el('tr')).appendChild(nothing);
    }
    held.forEach(function (e) {
      var tr = el('tr');
      [e.kind, e.name, e.failures, e.held_attempts, e.retry_after_secs].forEach(function (v) { tr.appendChild(el('td', String(v))); });
      var b = el('button', 'Release');
      b.type = 'button';
      b.setAttribute('data-act', 'release');
      b.setAttribute('data-name', e.name);
      tr.appendChild(el('td')).appendChild(b);
      hb.appendChild(tr);
    });
    conn.textContent = (st.ready ? 'ready' : 'NOT READY') + ' · updated ' + new Date().toLocaleTimeString();
    conn.className = st.ready ? 'muted' : 'bad';
  }
  function refresh() {
    return fetch('/api/status', { cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(render)
      .catch(function (e) { conn.textContent = 'cannot reach Portico: ' + e; conn.className = 'bad'; });
  }
  function post(url, body) {
    var h = { 'Content-Type': 'text/plain' };
    var t = tok.value.trim();
    if (t) h['Authorization'] = 'Bearer ' + t;
    return fetch(url, { method: 'POST', headers: h, body: body })
      .then(function (r) { return r.json().then(function (j) { say(j.message, r.ok); }); })
      .catch(function (e) { say('request failed: ' + e, false); })
      .then(refresh);
  }
  document.addEventListener('click', function (ev) {
    var b = ev.target.closest('button[data-act]');
    if (!b) return;
    var act = b.getAttribute('data-act');
    if (act === 'reset') return post('/api/reset', '');
    if (act === 'reload') return post('/api/reload', '');
    if (act === 'release') return post('/api/lockout/release', b.getAttribute('data-name'));
    post('/api/farms/' + encodeURIComponent(b.getAttribute('data-farm')) + '/members/' +
      encodeURIComponent(b.getAttribute('data-member')) + '/state', act);
  });
  var COLUMNS = JSON.parse(farmsEl.getAttribute('data-columns'));
  fillTimes();
  refresh();
  setInterval(refresh, 2000);
})();
"#;

/// The renewal column: state, next attempt, OCSP, last error (the script renders the same).
fn renewal_text(c: &super::api::CertificateStatus) -> String {
    let mut t = c.renewal.clone();
    if let Some(next) = c.next_attempt {
        let _ = write!(t, " · next attempt at Unix time {next:.0}");
    }
    if let Some(o) = &c.ocsp {
        let _ = write!(t, " · OCSP {o}");
    }
    if let Some(e) = &c.last_error {
        let _ = write!(t, " · last error: {e}");
    }
    t
}
