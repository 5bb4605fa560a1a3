//! Listeners (and their TLS), the admin listener and logging.

use super::*;

/// Default request-head limit: a Kerberos `Authorization: Negotiate` header reaches ~64 KiB
/// (48,000-byte tokens, base64) and Exchange heads 96 KiB with cookies; IIS is set for it.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 128 * 1024;

impl Compiler<'_> {
    pub(super) fn listeners(&mut self, listeners: &[S<file::Listener>]) -> Vec<ListenerConfig> {
        let mut out = Vec::new();
        let mut binds = HashSet::new();
        for (i, sl) in listeners.iter().enumerate() {
            let l = sl.get_ref();
            let key = format!("listener[{i}]");
            let bind = match l.bind.get_ref().parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.d.at(l.bind.span(), format!("{key}.bind"), format!("{:?} is not an address:port (expected e.g. \"203.0.113.10:443\", \"0.0.0.0:80\" or \"[::]:443\")", l.bind.get_ref()));
                    continue;
                }
            };
            if !binds.insert(bind) {
                self.d.at(
                    l.bind.span(),
                    format!("{key}.bind"),
                    format!("{bind} is bound by an earlier listener too"),
                );
            }
            let name = l
                .name
                .as_ref()
                .map_or_else(|| bind.to_string(), |n| n.get_ref().clone());
            let mut proxy_protocol_from = Vec::new();
            if let Some(pp) = &l.proxy_protocol {
                for r in &pp.get_ref().from {
                    match Cidr::parse(r.get_ref()) {
                        Ok(c) => proxy_protocol_from.push(c),
                        Err(e) => self.d.at(r.span(), format!("{key}.proxy_protocol.from"), e),
                    }
                }
                if pp.get_ref().from.is_empty() {
                    self.d.at(pp.span(), format!("{key}.proxy_protocol.from"), "lists no source range; name the L4 balancers allowed to send PROXY headers, e.g. [\"10.0.0.0/24\"]");
                }
            }
            let tls = l.tls.as_ref().and_then(|t| self.listener_tls(t, &key));
            let max_connection_rate = self.connection_rate(l, &key);
            out.push(ListenerConfig {
                name,
                bind,
                tls,
                proxy_protocol_from,
                header_read_timeout: self.duration(
                    &l.header_read_timeout,
                    &format!("{key}.header_read_timeout"),
                    Duration::from_secs(30),
                ),
                max_connections: l
                    .max_connections
                    .as_ref()
                    .map_or(20_000, |v| (*v.get_ref()).max(1)),
                max_connections_per_client: l
                    .max_connections_per_client
                    .as_ref()
                    .map_or(usize::MAX, |v| (*v.get_ref()).max(1)),
                reuse_port: l.reuse_port.unwrap_or(false),
                trusted_proxies: l
                    .trusted_proxies
                    .iter()
                    .filter_map(|r| match Cidr::parse(r.get_ref()) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            self.d.at(r.span(), format!("{key}.trusted_proxies"), e);
                            None
                        }
                    })
                    .collect(),
                max_header_bytes: l
                    .max_header_bytes
                    .as_ref()
                    .map_or(DEFAULT_MAX_HEADER_BYTES, |v| *v.get_ref()),
                h2_max_concurrent_streams: l
                    .h2_max_concurrent_streams
                    .as_ref()
                    .map_or(128, |v| *v.get_ref()),
                max_connection_rate,
            });
        }
        out
    }

    pub(super) fn listener_tls(
        &mut self,
        t: &S<file::ListenerTls>,
        key: &str,
    ) -> Option<Arc<tls::ListenerTls>> {
        let t = t.get_ref();
        let key = format!("{key}.tls");
        let certs = t.certificates.get_ref();
        if certs.is_empty() {
            self.d.at(t.certificates.span(), format!("{key}.certificates"), "lists no certificate; give at least one { cert = \"file.pem\", key = \"file.key\" }");
            return None;
        }
        let mut loaded = Vec::new();
        let mut default_index = None;
        let mut failed = false;
        for (j, c) in certs.iter().enumerate() {
            let cc = c.get_ref();
            if cc.default {
                if default_index.is_some() {
                    self.d.at(
                        c.span(),
                        format!("{key}.certificates[{j}].default"),
                        "only one certificate per listener can be the default",
                    );
                }
                default_index = Some(j);
            }
            let ckey = format!("{key}.certificates[{j}]");
            let (cert, keyf) = match (&cc.acme, &cc.cert, &cc.key) {
                (Some(name), None, None) => {
                    match self.acme_certificate(name, &ckey) {
                        Some(slot) => loaded.push(slot),
                        None => failed = true,
                    }
                    continue;
                }
                (None, Some(cert), Some(keyf)) => (cert, keyf),
                _ => {
                    failed = true;
                    self.d.at(c.span(), ckey, "give either cert and key files, { cert = \"file.pem\", key = \"file.key\" }, or an ACME entry, { acme = \"NAME\" }");
                    continue;
                }
            };
            let spec = tls::CertificateSpec {
                cert: self.path(cert.get_ref()),
                key: self.path(keyf.get_ref()),
                allow_expired: cc.allow_expired,
            };
            match tls::load_certificate(&spec) {
                Ok(l) => loaded.push(tls::CertSlot::shared(tls::CertSource::File(spec), l)),
                Err(e) => {
                    failed = true;
                    self.d.at(c.span(), ckey, e.to_string());
                }
            }
        }
        let min_version = match t
            .min_version
            .as_ref()
            .map(|v| v.get_ref().to_ascii_lowercase())
        {
            None => tls::TlsVersion::Tls12,
            Some(v) if v == "1.2" || v == "tls1.2" || v == "tlsv1.2" => tls::TlsVersion::Tls12,
            Some(v) if v == "1.3" || v == "tls1.3" || v == "tlsv1.3" => tls::TlsVersion::Tls13,
            Some(other) => {
                let sp = t.min_version.as_ref().map(|v| v.span()).unwrap_or_default();
                self.d.at(sp, format!("{key}.min_version"), format!("unsupported TLS version {other:?}; accepted: \"1.2\" (default), \"1.3\" — older versions are not offered"));
                tls::TlsVersion::Tls12
            }
        };
        let handshake_timeout = self.duration(
            &t.handshake_timeout,
            &format!("{key}.handshake_timeout"),
            Duration::from_secs(10),
        );
        if failed {
            return None;
        }
        let opts = tls::ListenerTlsOptions {
            http1_only_hosts: t
                .http1_only
                .iter()
                .map(|h| h.get_ref().to_ascii_lowercase())
                .collect(),
            min_version,
            handshake_timeout,
        };
        match tls::ListenerTls::with_slots(loaded, default_index.unwrap_or(0), opts) {
            Ok(l) => Some(Arc::new(l)),
            Err(e) => {
                self.d.nowhere(&key, e.to_string());
                None
            }
        }
    }

    pub(super) fn admin(&mut self, a: &S<file::Admin>) -> Option<AdminConfig> {
        let a = a.get_ref();
        let bind = match &a.bind {
            None => "127.0.0.1:9901".parse().ok()?,
            Some(b) => match b.get_ref().parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => {
                    self.d.at(
                        b.span(),
                        "admin.bind",
                        format!(
                            "{:?} is not an address:port (expected e.g. \"127.0.0.1:9901\")",
                            b.get_ref()
                        ),
                    );
                    return None;
                }
            },
        };
        let token_file = a.token_file.as_ref().map(|t| {
            let p = self.path(t.get_ref());
            if !p.is_file() {
                self.d.at(t.span(), "admin.token_file", format!("{} does not exist or is not a file (expected a file holding the admin token)", p.display()));
            }
            p
        });
        Some(AdminConfig { bind, token_file })
    }

    pub(super) fn log(&mut self, l: &S<file::Log>) -> LogConfig {
        let l = l.get_ref();
        if let Some(f) = &l.access_format {
            if !["w3c", "json"].contains(&f.get_ref().to_ascii_lowercase().as_str()) {
                self.d.at(
                    f.span(),
                    "log.access_format",
                    format!(
                        "unknown format {:?}; accepted: \"w3c\", \"json\"",
                        f.get_ref()
                    ),
                );
            }
        }
        if let Some(level) = &l.level {
            if !["error", "warn", "info", "debug", "trace"]
                .contains(&level.get_ref().to_ascii_lowercase().as_str())
            {
                self.d.at(level.span(), "log.level", format!("unknown level {:?}; accepted: \"error\", \"warn\", \"info\", \"debug\", \"trace\"", level.get_ref()));
            }
        }
        LogConfig {
            level: l.level.as_ref().map(|v| v.get_ref().to_ascii_lowercase()),
            access_log: l.access_log.as_ref().map(|v| {
                let t = v.get_ref();
                if t == "stdout" || t == "off" {
                    t.clone()
                } else {
                    self.path(t).to_string_lossy().into_owned()
                }
            }),
            access_format: l
                .access_format
                .as_ref()
                .map(|v| v.get_ref().to_ascii_lowercase()),
        }
    }
}
