//! `portico demo`: a Skype for Business pool in miniature on loopback — demo Front End
//! members (internal CA, ports 4443/8080), an Office Online member, two Exchange servers,
//! and a Portico routing the simple URLs, `mail.` and `autodiscover.` to them — so a
//! newcomer sees the whole job with nothing installed.

pub mod backend;
pub mod pki;

use anyhow::Context;
use backend::{Backend, BackendOptions, Role};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Options of `portico demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoOptions {
    /// Loopback port of the HTTPS listener (443 in production).
    #[arg(long, default_value_t = 8443)]
    pub https_port: u16,
    /// Loopback port of the plain HTTP listener (80 in production).
    #[arg(long, default_value_t = 8081)]
    pub http_port: u16,
    /// Where to write the demo certificates and portico.toml (default: a temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Demo pool members: name, loopback address, role.
const MEMBERS: [(&str, &str, Role); 5] = [
    ("fe01.contoso.local", "127.0.0.11", Role::FrontEnd),
    ("fe02.contoso.local", "127.0.0.12", Role::FrontEnd),
    ("owas01.contoso.local", "127.0.0.21", Role::OfficeOnline),
    ("ex01.contoso.local", "127.0.0.31", Role::Exchange),
    ("ex02.contoso.local", "127.0.0.32", Role::Exchange),
];

const FE_HTTPS: u16 = 4443;
const FE_HTTP: u16 = 8080;
/// Office Online listens on 443 in production; the demo cannot assume it may bind 443.
const OOS_HTTPS: u16 = 9443;
/// Exchange listens on 443 in production; the demo cannot assume it may bind 443.
const EX_HTTPS: u16 = 9444;

/// The Exchange farm's checks: one per virtual directory, each guarding its own path.
fn exchange_health() -> String {
    let checks: Vec<String> = backend::WORKLOADS
        .iter()
        .map(|w| {
            format!("  {{ url = \"/{w}/healthcheck.htm\", path = \"/{w}\", interval = \"5s\" }},")
        })
        .collect();
    format!("health = [\n{}\n]", checks.join("\n"))
}

/// The demo's config, written next to its certificates so it can be read and reused.
pub fn demo_config(https_port: u16, http_port: u16) -> String {
    format!(
        r#"# Written by `portico demo`: the three ARR server farms of a Lync/SfB deployment, plus
# lyncdiscover and Office Online, on loopback. Run it again with: portico run --config <this file>

[[listener]]                      # the external NIC (443 in production)
bind = "127.0.0.1:{https_port}"
tls = {{ certificates = [ {{ cert = "external.pem", key = "external.key" }} ], http1_only = [ "lyncweb.contoso.com", "mail.contoso.com", "autodiscover.contoso.com" ] }}
                                  # Windows auth flows on lyncweb and Exchange: keep them HTTP/1.1 (IIS refuses NTLM over h2)

[[listener]]                      # port 80 in production: bridged to the pool's 8080
bind = "127.0.0.1:{http_port}"

[resolve]                         # the ARR box's hosts file
"fe01.contoso.local" = ["127.0.0.11"]
"fe02.contoso.local" = ["127.0.0.12"]
"owas01.contoso.local" = ["127.0.0.21"]
"ex01.contoso.local" = ["127.0.0.31"]
"ex02.contoso.local" = ["127.0.0.32"]

[upstream]
ca = "internal-ca.pem"            # re-encryption to the pool is verified against the internal CA

[[farm]]
name = "lyncweb"
members = [ {{ address = "fe01.contoso.local" }}, {{ address = "fe02.contoso.local" }} ]
https_port = {FE_HTTPS}                 # port bridging 443 -> 4443
http_port = {FE_HTTP}                   # and 80 -> 8080
ssl_offload = false
timeout = "960s"                  # mobile push waits up to 900 s

[[farm]]
name = "meet"
members = [ {{ address = "fe01.contoso.local" }}, {{ address = "fe02.contoso.local" }} ]
https_port = {FE_HTTPS}
http_port = {FE_HTTP}
timeout = "960s"

[[farm]]
name = "dialin"
members = [ {{ address = "fe01.contoso.local" }}, {{ address = "fe02.contoso.local" }} ]
https_port = {FE_HTTPS}
http_port = {FE_HTTP}
timeout = "960s"

[[farm]]
name = "owas"
members = [ {{ address = "owas01.contoso.local" }} ]
https_port = {OOS_HTTPS}                 # 443 in production: Office Online is not bridged
timeout = "200s"

[[farm]]
name = "exchange"                 # Exchange 2016+: one farm, no affinity, health per protocol
members = [ {{ address = "ex01.contoso.local" }}, {{ address = "ex02.contoso.local" }} ]
https_port = {EX_HTTPS}                 # 443 in production
ssl_offload = false               # Extended Protection: re-encrypt, same certificate as the servers
timeout = "3600s"                 # ActiveSync Direct Push holds up to 59 minutes; RPC channels for hours
{exchange_health}

[[rule]]
name = "exchange"
match = ".*"
conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^(mail|autodiscover)\\." }} ]
action = {{ route = "exchange", scheme = "https", path = "/{{R:0}}" }}
stop = true

[[rule]]
name = "lyncweb"
match = ".*"
conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^(lyncweb|lyncdiscover)\\.contoso\\.com(:\\d+)?$" }} ]
action = {{ route = "lyncweb", path = "/{{R:0}}" }}
stop = true

[[rule]]
name = "meet"
match = ".*"
conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^meet\\." }} ]
action = {{ route = "meet", path = "/{{R:0}}" }}
stop = true

[[rule]]
name = "dialin"
match = ".*"
conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^dialin\\." }} ]
action = {{ route = "dialin", path = "/{{R:0}}" }}
stop = true

[[rule]]
name = "owas"
match = ".*"
conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^owas\\." }} ]
action = {{ route = "owas", scheme = "https", path = "/{{R:0}}" }}
stop = true
"#,
        exchange_health = exchange_health(),
    )
}

/// Generates the PKI, starts the members, writes and loads the config, starts Portico,
/// prints what to paste, and serves until Ctrl-C.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("portico-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let backends = start_members(&dir).await?;
    let config_path = dir.join("portico.toml");
    std::fs::write(&config_path, demo_config(opts.https_port, opts.http_port))
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = crate::config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let running = crate::server::start_from(config, Some(config_path.clone()))
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e}\n(choose other ports with --https-port / --http-port)")
        })?;
    print_instructions(&dir, &config_path, opts.https_port, opts.http_port);
    tokio::signal::ctrl_c().await.ok();
    running.shutdown(std::time::Duration::from_secs(5)).await;
    drop(backends);
    Ok(())
}

/// Writes the internal and "public" CAs and certificates; starts every demo member.
async fn start_members(dir: &Path) -> anyhow::Result<Vec<Backend>> {
    let internal = pki::TestCa::new("Contoso Internal Root CA (Portico demo)")?;
    let public = pki::TestCa::new("Portico Demo Public CA")?;
    std::fs::write(dir.join("internal-ca.pem"), internal.cert_pem())?;
    std::fs::write(dir.join("public-ca.pem"), public.cert_pem())?;
    public
        .issue(&["lyncweb.contoso.com", "*.contoso.com"])?
        .write(dir, "external")?;
    let mut backends = Vec::new();
    for (name, ip, role) in MEMBERS {
        let issued = internal.issue(&[name])?;
        let tls = backend::server_config_from_pem(&issued.cert_pem, &issued.key_pem)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (https, http) = match role {
            Role::OfficeOnline => (OOS_HTTPS, None),
            Role::Exchange => (EX_HTTPS, None),
            _ => (FE_HTTPS, Some(FE_HTTP)),
        };
        let member = name.split('.').next().unwrap_or(name).to_string();
        let addr: SocketAddr = format!("{ip}:{https}").parse()?;
        backends.push(
            Backend::start(
                addr,
                BackendOptions {
                    name: member.clone(),
                    tls: Some(tls),
                    role,
                },
            )
            .await
            .with_context(|| format!("cannot start demo member {name} on {addr}"))?,
        );
        if let Some(port) = http {
            let addr: SocketAddr = format!("{ip}:{port}").parse()?;
            backends.push(
                Backend::start(
                    addr,
                    BackendOptions {
                        name: member,
                        tls: None,
                        role,
                    },
                )
                .await
                .with_context(|| format!("cannot start demo member {name} on {addr}"))?,
            );
        }
    }
    Ok(backends)
}

fn print_instructions(dir: &Path, config: &Path, https: u16, http: u16) {
    let ca = dir.join("public-ca.pem");
    let ca = ca.display();
    let curl = |host: &str, path: &str| {
        format!("curl -si --cacert {ca} --resolve {host}.contoso.com:{https}:127.0.0.1 https://{host}.contoso.com:{https}{path}")
    };
    let curl_x = |host: &str, extra: &str, path: &str| {
        format!("curl -si {extra} --cacert {ca} --resolve {host}.contoso.com:{https}:127.0.0.1 https://{host}.contoso.com:{https}{path}")
    };
    println!(
        "\nPortico demo is running. Members: fe01/fe02 (Front End pool, TLS 4443 + HTTP 8080), owas01 (Office Online),\n\
ex01/ex02 (Exchange Server 2019 {build}, TLS {EX_HTTPS}; mail. and autodiscover.).\n\
Config: {config}\n\nTry these (each answer carries X-Backend: the member that served it):\n\
  {}    # 200 meeting page\n\
  {}    # 200 dial-in page\n\
  {}    # 401 NTLM/Negotiate challenge, passed through\n\
  {}    # 200 lyncdiscover JSON\n\
  {}    # 200 WOPI discovery XML\n\
  curl -si --resolve meet.contoso.com:{http}:127.0.0.1 http://meet.contoso.com:{http}/    # 200 over plain HTTP: port 80 -> 8080 bridging\n\
  curl -si --cacert {ca} --resolve unknown.contoso.com:{https}:127.0.0.1 https://unknown.contoso.com:{https}/    # 404: no default farm\n\n\
Exchange (each answer carries X-FEServer: the server that served it):\n\
  {}    # 200 OWA health page (the farm checks one per protocol)\n\
  {}    # 200 OWA sign-in page, X-OWA-Version shows the build\n\
  {}    # 401 Negotiate + NTLM challenge from EWS, passed through\n\
  {}    # 401 Autodiscover challenge\n\
  {}    # 200 ActiveSync protocol versions\n\
  {}    # 200 MAPI over HTTP: PROCESSING, PENDING..., DONE, each as it is written\n\n\
Play Managed Availability: https://mail.contoso.com:{https}/portico-demo/workload?name=ews&up=0 takes EWS down on the\n\
server that answers; within 15 s /ews goes only to the other one while OWA stays on both. up=1 brings it back.\n\n\
Stop with Ctrl-C.",
        curl("meet", "/"),
        curl("dialin", "/"),
        curl("lyncweb", "/abs/handler"),
        curl("lyncdiscover", "/"),
        curl("owas", "/hosting/discovery"),
        curl("mail", "/owa/healthcheck.htm"),
        curl("mail", "/owa/"),
        curl("mail", "/ews/exchange.asmx"),
        curl("autodiscover", "/autodiscover/autodiscover.xml"),
        curl_x("mail", "-X OPTIONS", "/Microsoft-Server-ActiveSync"),
        curl_x(
            "mail",
            "-N -X POST -H 'Authorization: Negotiate dGVzdA==' -H 'X-RequestType: Execute' -H 'Content-Type: application/mapi-http' --data-binary x",
            "/mapi/emsmdb/?MailboxId=alice@contoso.com"
        ),
        build = backend::EXCHANGE_BUILD,
        config = config.display(),
    );
}

/// Serves one demo member until Ctrl-C or SIGTERM (`portico member`, used by `bench/`).
pub async fn run_member(
    listen: SocketAddr,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    name: String,
    role: &str,
) -> anyhow::Result<()> {
    let role = match role {
        "front-end" | "sfb" => Role::FrontEnd,
        "oos" => Role::OfficeOnline,
        "exchange" => Role::Exchange,
        "echo" => Role::Echo,
        other => anyhow::bail!("--role {other:?}: expected front-end, oos, exchange or echo"),
    };
    let tls = match (cert, key) {
        (Some(c), Some(k)) => {
            let cert = std::fs::read_to_string(&c)
                .with_context(|| format!("cannot read {}", c.display()))?;
            let key = std::fs::read_to_string(&k)
                .with_context(|| format!("cannot read {}", k.display()))?;
            Some(backend::server_config_from_pem(&cert, &key).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
        _ => None,
    };
    let member = Backend::start(listen, BackendOptions { name, tls, role })
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("member listening on {}", member.addr);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    member.shutdown();
    Ok(())
}
