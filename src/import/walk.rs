//! The walk over `<configuration>`: what each section becomes, and warnings for the rest.

use super::emit::{self, ListenerOut, Model};
use super::farms::{self, ProxySettings};
use super::rules;
use super::{ImportError, Imported, Source, Warning};
use roxmltree::{Document, Node};

/// Where warnings go, with the document for line numbers.
pub(super) struct Ctx<'a, 'input> {
    pub file: &'a str,
    pub doc: &'a Document<'input>,
    pub warnings: &'a mut Vec<Warning>,
}

impl Ctx<'_, '_> {
    pub fn line(&self, n: Node) -> u32 {
        self.doc.text_pos_at(n.range().start).row
    }

    /// `webFarm name="x"` or just the tag.
    pub fn label(n: Node) -> String {
        let tag = n.tag_name().name();
        match n.attribute("name") {
            Some(name) => format!("{tag} name=\"{name}\""),
            None => tag.to_string(),
        }
    }

    pub fn warn(&mut self, n: Node, message: impl Into<String>) {
        self.warnings.push(Warning {
            file: self.file.to_string(),
            line: self.line(n),
            element: Self::label(n),
            message: message.into(),
        });
    }

    /// Warns about each attribute not in `known` (IIS locking metadata aside).
    pub fn check_attrs(&mut self, n: Node, known: &[&str]) {
        for a in n.attributes() {
            let name = a.name();
            if known.contains(&name)
                || name.starts_with("lock")
                || a.namespace().is_some()
                || name == "xmlns"
            {
                continue;
            }
            self.warn(
                n,
                format!(
                    "attribute {name}=\"{}\" is not carried over (not something Portico knows here)",
                    a.value()
                ),
            );
        }
    }

    /// Warns about one child element nobody handles.
    pub fn unknown(&mut self, n: Node, what: &str) {
        self.warn(
            n,
            format!("unknown element inside {what}; not carried over"),
        );
    }
}

pub(super) fn elements<'a, 'input>(n: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
    n.children().filter(|c| c.is_element())
}

/// `"true"`/`"false"` as IIS writes them (case-insensitive); other text → `None`.
pub(super) fn bool_attr(n: Node, name: &str) -> Option<bool> {
    n.attribute(name)
        .and_then(|v| match v.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
}

fn parse<'input>(src: &Source<'input>) -> Result<Document<'input>, ImportError> {
    let doc = Document::parse(src.text).map_err(|e| {
        let pos = e.pos();
        ImportError::Xml {
            file: src.name.to_string(),
            line: pos.row,
            column: pos.col,
            message: e.to_string(),
        }
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "configuration" {
        return Err(ImportError::NotConfiguration {
            file: src.name.to_string(),
            line: doc.text_pos_at(root.range().start).row,
            found: root.tag_name().name().to_string(),
        });
    }
    Ok(doc)
}

/// Translates `app_host` (and `web_config`'s rules, which run after the global rules).
pub fn import(
    app_host: Source<'_>,
    web_config: Option<Source<'_>>,
) -> Result<Imported, ImportError> {
    let doc = parse(&app_host)?;
    let web_doc = web_config.as_ref().map(parse).transpose()?;
    let mut warnings = Vec::new();
    let mut model = Model {
        source: app_host.name.to_string(),
        ..Model::default()
    };
    let mut proxy = ProxySettings::server_defaults();
    let mut rewrite_sections: Vec<(Node, Option<String>)> = Vec::new();
    {
        let mut ctx = Ctx {
            file: app_host.name,
            doc: &doc,
            warnings: &mut warnings,
        };
        let mut farm_nodes = Vec::new();
        for top in elements(doc.root_element()) {
            match top.tag_name().name() {
                "configSections" => {}
                "system.applicationHost" => application_host(&mut ctx, top, &mut model),
                "webFarms" => farm_nodes.push(top),
                "system.webServer" => {
                    web_server(&mut ctx, top, &mut proxy, &mut rewrite_sections, None)
                }
                "location" => {
                    let path = top.attribute("path").unwrap_or("").to_string();
                    for c in elements(top) {
                        if c.tag_name().name() == "system.webServer" {
                            web_server(
                                &mut ctx,
                                c,
                                &mut proxy,
                                &mut rewrite_sections,
                                Some(path.clone()),
                            );
                        } else {
                            ctx.warn(c, format!("section under <location path=\"{path}\"> is not about proxying; not imported"));
                        }
                    }
                }
                _ => ctx.warn(top, "section is not about proxying; not imported"),
            }
        }
        for f in farm_nodes {
            farms::web_farms(&mut ctx, f, &mut model);
        }
        if model.listeners.is_empty() {
            ctx.warn(
                doc.root_element(),
                "no <site> bindings found: writing listeners on 0.0.0.0:443 and 0.0.0.0:80",
            );
            model
                .listeners
                .push(ListenerOut::https("0.0.0.0:443", "default", 0));
            model.listeners.push(ListenerOut::http("0.0.0.0:80", 0));
        }
        let mut converter = rules::Converter::new(&mut model, &proxy);
        for (section, location) in &rewrite_sections {
            converter.section(&mut ctx, *section, location.as_deref());
        }
        let routes = converter.finish();
        if routes > 0 && !proxy.enabled {
            ctx.warn(
                doc.root_element(),
                "rules route to farms or URLs but server-level <proxy enabled=\"true\"> is not set, so IIS would not have proxied them; Portico routes them",
            );
        }
    }
    if let (Some(web), Some(wdoc)) = (&web_config, &web_doc) {
        let mut ctx = Ctx {
            file: web.name,
            doc: wdoc,
            warnings: &mut warnings,
        };
        let mut sections = Vec::new();
        for top in elements(wdoc.root_element()) {
            match top.tag_name().name() {
                "system.webServer" => web_server(&mut ctx, top, &mut proxy, &mut sections, None),
                _ => ctx.warn(top, "section is not about proxying; not imported"),
            }
        }
        let mut converter = rules::Converter::new(&mut model, &proxy);
        for (section, location) in &sections {
            converter.section(&mut ctx, *section, location.as_deref());
        }
        converter.finish();
    }
    rules::merge_https_pairs(&mut model.rules);
    rules::validate(&mut model, &mut warnings);
    Ok(Imported {
        toml: emit::render(&model, &warnings),
        warnings,
    })
}

/// `<system.applicationHost>`: site bindings become listeners; the rest is IIS hosting.
fn application_host(ctx: &mut Ctx, n: Node, model: &mut Model) {
    for c in elements(n) {
        if c.tag_name().name() != "sites" {
            ctx.warn(c, "IIS hosting setting, not about proxying; not imported");
            continue;
        }
        let sites: Vec<Node> = elements(c)
            .filter(|s| s.tag_name().name() == "site")
            .collect();
        for s in elements(c).filter(|s| s.tag_name().name() != "site") {
            if !matches!(
                s.tag_name().name(),
                "siteDefaults" | "applicationDefaults" | "virtualDirectoryDefaults"
            ) {
                ctx.unknown(s, "<sites>");
            }
        }
        if sites.len() > 1 {
            ctx.warn(c, format!("{} sites: Portico's rules apply to every listener, so all bindings are served by the same rules", sites.len()));
        }
        for site in sites {
            let site_name = site.attribute("name").unwrap_or("site");
            for b in elements(site) {
                match b.tag_name().name() {
                    "bindings" => {
                        for binding in elements(b) {
                            self::binding(ctx, binding, site_name, model);
                        }
                    }
                    "application" => {}
                    _ => ctx.warn(b, "site setting, not about proxying; not imported"),
                }
            }
        }
    }
}

fn binding(ctx: &mut Ctx, b: Node, site: &str, model: &mut Model) {
    let protocol = b.attribute("protocol").unwrap_or("").to_ascii_lowercase();
    let info = b.attribute("bindingInformation").unwrap_or("");
    let mut parts = info.splitn(3, ':');
    let (ip, port, host) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let ip = match ip {
        "*" | "" => "0.0.0.0".to_string(),
        ip if ip.contains(':') && !ip.starts_with('[') => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let Ok(port) = port.parse::<u16>() else {
        ctx.warn(
            b,
            format!("bindingInformation {info:?} is not IP:port:host; not imported"),
        );
        return;
    };
    let bind = format!("{ip}:{port}");
    let line = ctx.line(b);
    match protocol.as_str() {
        "http" => {
            if !model.listeners.iter().any(|l| l.bind == bind) {
                model.listeners.push(ListenerOut::http(&bind, line));
            }
        }
        "https" => {
            let stem = if host.is_empty() {
                slug(site)
            } else {
                slug(host)
            };
            match model.listeners.iter_mut().find(|l| l.bind == bind) {
                Some(l) => {
                    if !l.certs.iter().any(|(c, _)| c.contains(&stem)) {
                        l.add_cert(&stem);
                    }
                }
                None => model.listeners.push(ListenerOut::https(&bind, &stem, line)),
            }
            ctx.warn(
                b,
                format!(
                    "the certificate of this binding lives in the Windows certificate store: export it (with its chain and key) to PEM at certs/{stem}.pem and certs/{stem}.key"
                ),
            );
        }
        other => ctx.warn(b, format!("{other:?} binding is not HTTP(S); not imported")),
    }
}

/// `Default Web Site` → `default-web-site`.
pub(super) fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let t = out.trim_matches('-').to_string();
    if t.is_empty() {
        "site".into()
    } else {
        t
    }
}

/// `<security>`: request filtering's body limit becomes each route's `max_body` (Exchange's
/// RPC over HTTP needs it at 2 GB); the rest is reported.
fn security(ctx: &mut Ctx, n: Node, proxy: &mut ProxySettings) {
    for c in elements(n) {
        if c.tag_name().name() != "requestFiltering" {
            ctx.warn(c, "IIS security setting, not about proxying; not imported");
            continue;
        }
        for l in elements(c) {
            if l.tag_name().name() != "requestLimits" {
                ctx.warn(l, "request filtering rule is not carried over (Portico's rules can refuse requests by path, header or address instead)");
                continue;
            }
            if let Some(v) = l.attribute("maxAllowedContentLength") {
                match v.trim().parse::<u64>() {
                    Ok(n) => proxy.max_body = Some(n),
                    Err(_) => ctx.warn(l, format!("maxAllowedContentLength=\"{v}\" is not a number; Portico's default (2GB) applies")),
                }
            }
            for attr in ["maxUrl", "maxQueryString"] {
                if let Some(v) = l.attribute(attr) {
                    ctx.warn(l, format!("{attr}=\"{v}\" is not carried over (Portico limits the whole request head: listener max_header_bytes)"));
                }
            }
        }
    }
}

/// `<system.webServer>`: `<proxy>`, `<rewrite>`; disk cache and the rest are reported.
fn web_server<'a, 'input>(
    ctx: &mut Ctx,
    n: Node<'a, 'input>,
    proxy: &mut ProxySettings,
    rewrite: &mut Vec<(Node<'a, 'input>, Option<String>)>,
    location: Option<String>,
) {
    for c in elements(n) {
        match c.tag_name().name() {
            "proxy" => farms::server_proxy(ctx, c, proxy),
            "rewrite" => rewrite.push((c, location.clone())),
            "diskCache" => ctx.warn(c, "ARR disk cache is not carried over: Portico does not cache (SfB requires the cache off anyway)"),
            "security" => security(ctx, c, proxy),
            _ => ctx.warn(c, "IIS web server setting, not about proxying; not imported"),
        }
    }
}
