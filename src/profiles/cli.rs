//! `portico init sfb|exchange|oos`: flags, questions for what is missing, and the output file.

use super::prompt::Prompter;
use super::AcmeOut;
use super::{
    check_fqdn, parse_members, render, CertPair, Deployment, InitError, MemberSpec, Network, Pool,
    Service, SimpleUrls,
};
use std::io::{BufRead, IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;

/// Which deployment to write a config for.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum InitCommand {
    /// Skype for Business / Lync: pools (bridged 443->4443, 80->8080), meet, dialin,
    /// lyncdiscover, optionally Office Online Server and Exchange on the same listener.
    #[command(after_help = SFB_EXAMPLE)]
    Sfb(Box<SfbArgs>),
    /// Exchange Server alone (OWA, EWS, ActiveSync, MAPI/RPC over HTTP, Autodiscover).
    #[command(after_help = EXCHANGE_EXAMPLE)]
    Exchange(ExchangeArgs),
    /// Office Online Server / Office Web Apps alone.
    #[command(after_help = OOS_EXAMPLE)]
    Oos(OosArgs),
}

const SFB_EXAMPLE: &str = "Example:
  portico init sfb --sip-domain contoso.com --webext lyncweb.contoso.com \\
      --pool pool01.contoso.local --members fe01.contoso.local=10.0.1.11,fe02.contoso.local=10.0.1.12 \\
      --oos owas.contoso.com --oos-members owas01.contoso.local=10.0.1.21 \\
      --cert certs/public.pem --key certs/public.key --ca certs/contoso-root.pem \\
      --listen 203.0.113.10 --source-address 10.0.1.5 --output /etc/portico/portico.toml

Several pools (a Director pool and a Front End pool): repeat --webext, --pool and --members in
the same order. meet, dialin and lyncdiscover default to meet.DOMAIN, dialin.DOMAIN and
lyncdiscover.DOMAIN and are routed to the first pool. Missing facts are asked for when stdin is a
terminal (--no-prompt to fail instead).";

const EXCHANGE_EXAMPLE: &str = "Example:
  portico init exchange --namespace mail.contoso.com --namespace autodiscover.contoso.com \\
      --members ex01.contoso.local=10.0.2.11,ex02.contoso.local=10.0.2.12 \\
      --cert certs/mail.pem --key certs/mail.key --ca certs/contoso-root.pem";

const OOS_EXAMPLE: &str = "Example:
  portico init oos --fqdn owas.contoso.com --members owas01.contoso.local=10.0.1.21 \\
      --cert certs/owas.pem --key certs/owas.key --ca certs/contoso-root.pem";

/// Flags every profile takes: certificates, addresses, output.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// PEM certificate chain for the published names (repeat with --key for several; SNI picks).
    #[arg(long, value_name = "FILE")]
    pub cert: Vec<String>,
    /// PEM private key of the --cert at the same position.
    #[arg(long, value_name = "FILE")]
    pub key: Vec<String>,
    /// PEM file of the internal CA that issued the members' certificates.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<String>,
    /// External address to listen on.
    #[arg(long, value_name = "IP")]
    pub listen: Option<IpAddr>,
    /// HTTPS port of the listener.
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
    /// HTTP port of the listener.
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// Internal address that connections to the members leave from.
    #[arg(long, value_name = "IP")]
    pub source_address: Option<IpAddr>,
    /// Write the config here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Never ask: fail when a required fact is missing, even in a terminal.
    #[arg(long)]
    pub no_prompt: bool,
    /// Protect sign-ins from password spraying: count failed NTLM/Basic sign-ins and hold an
    /// account back before Active Directory locks it (docs/perimeter.md).
    #[arg(long)]
    pub lockout: bool,
    /// AD's account lockout threshold; Portico holds back at half of it per instance.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub ad_lockout_threshold: u32,
    /// Portico instances behind the L4 layer (each counts alone).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub instances: u32,
    /// Internal ranges never held back by --lockout: CIDR,CIDR,...
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    pub trusted: Vec<String>,
    /// Obtain the certificate with ACME from this directory URL (instead of --cert/--key),
    /// e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    #[arg(long, value_name = "DIRECTORY")]
    pub acme: Option<String>,
    /// Contact for the ACME account (repeatable), e.g. mailto:admin@contoso.com.
    #[arg(long, value_name = "MAILTO", requires = "acme")]
    pub acme_contact: Vec<String>,
}

impl CommonArgs {
    /// The protection these flags ask for (`ecp_from` is Exchange's own flag).
    fn protection(&self, ecp_from: &[String]) -> Result<super::Protection, InitError> {
        for (flag, list) in [
            ("--trusted", &self.trusted),
            ("--ecp-from", &ecp_from.to_vec()),
        ] {
            for c in list {
                crate::config::Cidr::parse(c).map_err(|reason| InitError::Invalid {
                    flag,
                    value: c.clone(),
                    reason,
                })?;
            }
        }
        if self.lockout && (self.ad_lockout_threshold < 2 || self.instances == 0) {
            return Err(InitError::Invalid {
                flag: "--ad-lockout-threshold",
                value: self.ad_lockout_threshold.to_string(),
                reason: "needs an AD threshold of at least 2 and at least one instance".into(),
            });
        }
        Ok(super::Protection {
            lockout: self.lockout.then(|| super::LockoutPlan {
                ad_threshold: self.ad_lockout_threshold,
                instances: self.instances,
                trusted: self.trusted.clone(),
            }),
            ecp_from: ecp_from.to_vec(),
        })
    }
}

/// `portico init sfb`: the facts for a Skype for Business / Lync publication.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SfbArgs {
    /// SIP domain (repeat for several); meet/lyncdiscover names default from each.
    #[arg(long = "sip-domain", alias = "domain", value_name = "DOMAIN")]
    pub sip_domains: Vec<String>,
    /// External web services FQDN of a Front End or Director pool (repeat per pool).
    #[arg(long, value_name = "FQDN")]
    pub webext: Vec<String>,
    /// Internal FQDN of the pool, in the order of --webext.
    #[arg(long, value_name = "FQDN")]
    pub pool: Vec<String>,
    /// The pool's members, in the order of --webext: NAME=IP,NAME=IP (or NAME, or IP).
    #[arg(long, value_name = "LIST")]
    pub members: Vec<String>,
    /// Meeting simple URL host (default meet.DOMAIN for each SIP domain).
    #[arg(long, value_name = "FQDN")]
    pub meet: Vec<String>,
    /// Dial-in simple URL host (default dialin.DOMAIN of the first SIP domain).
    #[arg(long, value_name = "FQDN")]
    pub dialin: Vec<String>,
    /// Mobile autodiscover host (default lyncdiscover.DOMAIN for each SIP domain).
    #[arg(long, value_name = "FQDN")]
    pub lyncdiscover: Vec<String>,
    /// Office Online Server FQDN to publish too.
    #[arg(long, value_name = "FQDN")]
    pub oos: Option<String>,
    /// Office Online Server members: NAME=IP,...
    #[arg(long, value_name = "LIST", requires = "oos")]
    pub oos_members: Option<String>,
    /// Exchange namespace(s) to publish too (repeat: mail.DOMAIN, autodiscover.DOMAIN).
    #[arg(long, value_name = "FQDN")]
    pub exchange: Vec<String>,
    /// Exchange members: NAME=IP,...
    #[arg(long, value_name = "LIST", requires = "exchange")]
    pub exchange_members: Option<String>,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// `portico init exchange`: the facts for an Exchange publication.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ExchangeArgs {
    /// Published Exchange name(s): mail.contoso.com, autodiscover.contoso.com (repeat).
    #[arg(long, value_name = "FQDN")]
    pub namespace: Vec<String>,
    /// Exchange servers: NAME=IP,NAME=IP (or NAME, or IP).
    #[arg(long, value_name = "LIST")]
    pub members: Option<String>,
    /// Keep /ecp (Exchange admin center and OWA's Options pages) to these ranges: CIDR,...
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    pub ecp_from: Vec<String>,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// `portico init oos`: the facts for an Office Online Server publication.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OosArgs {
    /// Published Office Online Server name (owas.contoso.com).
    #[arg(long, value_name = "FQDN")]
    pub fqdn: Option<String>,
    /// Office Online Server members: NAME=IP,... (or NAME, or IP).
    #[arg(long, value_name = "LIST")]
    pub members: Option<String>,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Runs `portico init`: asks on stderr when stdin is a terminal and facts are missing, writes
/// the config to `--output` or returns it for stdout. `Ok(Some(text))` = print it.
pub fn run(cmd: &InitCommand) -> Result<Option<String>, InitError> {
    let common = match cmd {
        InitCommand::Sfb(a) => &a.common,
        InitCommand::Exchange(a) => &a.common,
        InitCommand::Oos(a) => &a.common,
    };
    let interactive = !common.no_prompt && std::io::stdin().is_terminal();
    let stdin = std::io::stdin();
    let mut prompter = Prompter::new(stdin.lock(), std::io::stderr());
    let ask = if interactive {
        Some(&mut prompter)
    } else {
        None
    };
    let deployment = build(cmd, ask)?;
    let text = render(&deployment);
    match &common.output {
        Some(path) => {
            write_file(path, &text)?;
            eprintln!(
                "wrote {} (publishes {}); check it with: portico validate --config {}",
                path.display(),
                deployment.published_names().join(", "),
                path.display()
            );
            Ok(None)
        }
        None => Ok(Some(text)),
    }
}

fn write_file(path: &std::path::Path, text: &str) -> Result<(), InitError> {
    let err = |source| InitError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

/// Turns flags (and answers, when `ask` is given) into a [`Deployment`].
pub fn build<R: BufRead, W: Write>(
    cmd: &InitCommand,
    mut ask: Option<&mut Prompter<R, W>>,
) -> Result<Deployment, InitError> {
    match cmd {
        InitCommand::Sfb(a) => sfb(a, ask),
        InitCommand::Exchange(a) => {
            let names = names_or_ask(
                &a.namespace,
                ask.as_deref_mut(),
                "Exchange namespace(s), comma-separated",
                &[],
                "--namespace",
            )?;
            if names.is_empty() {
                return Err(InitError::Missing {
                    what: "the Exchange namespace",
                    flag: "--namespace",
                    example: "--namespace mail.contoso.com --namespace autodiscover.contoso.com",
                });
            }
            let members = members_or_ask(
                a.members.as_deref(),
                ask.as_deref_mut(),
                "Exchange servers",
                "--members",
            )?;
            let network = network(&a.common, ask, &names[0])?;
            Ok(Deployment {
                profile: "exchange",
                sip_domains: vec![],
                pools: vec![],
                simple_urls: SimpleUrls::default(),
                oos: None,
                exchange: Some(Service { names, members }),
                network,
                protection: a.common.protection(&a.ecp_from)?,
            })
        }
        InitCommand::Oos(a) => {
            let given: Vec<String> = a.fqdn.iter().cloned().collect();
            let names = names_or_ask(
                &given,
                ask.as_deref_mut(),
                "Office Online Server FQDN",
                &[],
                "--fqdn",
            )?;
            if names.is_empty() {
                return Err(InitError::Missing {
                    what: "the Office Online Server FQDN",
                    flag: "--fqdn",
                    example: "--fqdn owas.contoso.com",
                });
            }
            let members = members_or_ask(
                a.members.as_deref(),
                ask.as_deref_mut(),
                "Office Online Server members",
                "--members",
            )?;
            let network = network(&a.common, ask, &names[0])?;
            Ok(Deployment {
                profile: "oos",
                sip_domains: vec![],
                pools: vec![],
                simple_urls: SimpleUrls::default(),
                oos: Some(Service { names, members }),
                exchange: None,
                network,
                protection: a.common.protection(&[])?,
            })
        }
    }
}

fn fqdns(flag: &'static str, names: &[String]) -> Result<Vec<String>, InitError> {
    let mut out = Vec::new();
    for n in names {
        let n = check_fqdn(flag, n)?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// The flag's names; else (interactive) the answer, with `default`.
fn names_or_ask<R: BufRead, W: Write>(
    given: &[String],
    ask: Option<&mut Prompter<R, W>>,
    question: &str,
    default: &[String],
    flag: &'static str,
) -> Result<Vec<String>, InitError> {
    if !given.is_empty() {
        return fqdns(flag, given);
    }
    match ask {
        Some(p) => {
            let d = default.join(",");
            p.ask_valid(question, &d, |a| {
                let list: Vec<String> = a
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                fqdns(flag, &list)
            })
        }
        None => fqdns(flag, default),
    }
}

fn members_or_ask<R: BufRead, W: Write>(
    given: Option<&str>,
    ask: Option<&mut Prompter<R, W>>,
    what: &str,
    flag: &'static str,
) -> Result<Vec<MemberSpec>, InitError> {
    match (given, ask) {
        (Some(g), _) => parse_members(flag, g),
        (None, Some(p)) => p.ask_valid(
            &format!("{what}: NAME=IP,NAME=IP (empty: resolve by DNS)"),
            "",
            |a| parse_members(flag, a),
        ),
        (None, None) => Ok(vec![]),
    }
}

fn sfb<R: BufRead, W: Write>(
    a: &SfbArgs,
    mut ask: Option<&mut Prompter<R, W>>,
) -> Result<Deployment, InitError> {
    let domains = names_or_ask(
        &a.sip_domains,
        ask.as_deref_mut(),
        "SIP domain(s), comma-separated",
        &[],
        "--sip-domain",
    )?;
    if domains.is_empty() {
        return Err(InitError::Missing {
            what: "the SIP domain",
            flag: "--sip-domain",
            example: "--sip-domain contoso.com",
        });
    }
    let d0 = domains[0].clone();
    let mut pools = Vec::new();
    if a.webext.is_empty() {
        let Some(p) = ask.as_deref_mut() else {
            return Err(InitError::Missing {
                what: "the external web services FQDN of a pool",
                flag: "--webext (with --pool and --members)",
                example: "--webext lyncweb.contoso.com --pool pool01.contoso.local --members fe01.contoso.local=10.0.1.11",
            });
        };
        loop {
            let n = pools.len() + 1;
            let default = if n == 1 {
                format!("lyncweb.{d0}")
            } else {
                String::new()
            };
            let webext = p.ask_valid(
                &format!("Pool {n}: external web services FQDN"),
                &default,
                |x| check_fqdn("--webext", x),
            )?;
            let fqdn = p.ask_valid(&format!("Pool {n}: internal pool FQDN"), "", |x| {
                check_fqdn("--pool", x)
            })?;
            let members = members_or_ask(
                None,
                Some(&mut *p),
                &format!("Pool {n}: members"),
                "--members",
            )?;
            pools.push(Pool {
                webext,
                fqdn,
                members,
            });
            let more = p.ask(
                "Another pool (a Director or second Front End pool)? y/N",
                "n",
            )?;
            if !more.eq_ignore_ascii_case("y") && !more.eq_ignore_ascii_case("yes") {
                break;
            }
        }
    } else {
        if a.pool.len() != a.webext.len() {
            return Err(InitError::Invalid {
                flag: "--pool",
                value: a.pool.join(","),
                reason: format!(
                    "give one internal pool FQDN per --webext ({} --webext, {} --pool), in the same order",
                    a.webext.len(),
                    a.pool.len()
                ),
            });
        }
        if !a.members.is_empty() && a.members.len() != a.webext.len() {
            return Err(InitError::Invalid {
                flag: "--members",
                value: a.members.join(" "),
                reason: format!("give one member list per --webext ({} --webext, {} --members), in the same order", a.webext.len(), a.members.len()),
            });
        }
        for (i, w) in a.webext.iter().enumerate() {
            pools.push(Pool {
                webext: check_fqdn("--webext", w)?,
                fqdn: check_fqdn("--pool", &a.pool[i])?,
                members: match a.members.get(i) {
                    Some(m) => parse_members("--members", m)?,
                    None => vec![],
                },
            });
        }
    }
    let per_domain =
        |prefix: &str| -> Vec<String> { domains.iter().map(|d| format!("{prefix}.{d}")).collect() };
    let simple_urls = SimpleUrls {
        meet: names_or_ask(
            &a.meet,
            ask.as_deref_mut(),
            "Meet simple URL host(s)",
            &per_domain("meet"),
            "--meet",
        )?,
        dialin: names_or_ask(
            &a.dialin,
            ask.as_deref_mut(),
            "Dial-in simple URL host",
            &[format!("dialin.{d0}")],
            "--dialin",
        )?,
        lyncdiscover: names_or_ask(
            &a.lyncdiscover,
            ask.as_deref_mut(),
            "Mobile autodiscover host(s)",
            &per_domain("lyncdiscover"),
            "--lyncdiscover",
        )?,
    };
    let oos = match (&a.oos, ask.as_deref_mut()) {
        (Some(f), _) => Some(Service {
            names: vec![check_fqdn("--oos", f)?],
            members: match &a.oos_members {
                Some(m) => parse_members("--oos-members", m)?,
                None => vec![],
            },
        }),
        (None, Some(p)) => {
            let f = p.ask("Office Online Server FQDN to publish too (empty: none)", "")?;
            if f.is_empty() {
                None
            } else {
                let names = vec![check_fqdn("--oos", &f)?];
                let members = members_or_ask(
                    None,
                    Some(&mut *p),
                    "Office Online Server members",
                    "--oos-members",
                )?;
                Some(Service { names, members })
            }
        }
        (None, None) => None,
    };
    let exchange = match (a.exchange.is_empty(), ask.as_deref_mut()) {
        (false, _) => Some(Service {
            names: fqdns("--exchange", &a.exchange)?,
            members: match &a.exchange_members {
                Some(m) => parse_members("--exchange-members", m)?,
                None => vec![],
            },
        }),
        (true, Some(p)) => {
            let names = p.ask_list("Exchange namespace(s) to publish too (empty: none)", &[])?;
            if names.is_empty() {
                None
            } else {
                let names = fqdns("--exchange", &names)?;
                let members = members_or_ask(
                    None,
                    Some(&mut *p),
                    "Exchange servers",
                    "--exchange-members",
                )?;
                Some(Service { names, members })
            }
        }
        (true, None) => None,
    };
    let network = network(&a.common, ask, &d0)?;
    Ok(Deployment {
        profile: "sfb",
        sip_domains: domains,
        pools,
        simple_urls,
        oos,
        exchange,
        network,
        protection: a.common.protection(&[])?,
    })
}

fn network<R: BufRead, W: Write>(
    c: &CommonArgs,
    ask: Option<&mut Prompter<R, W>>,
    stem_from: &str,
) -> Result<Network, InitError> {
    if c.cert.len() != c.key.len() {
        return Err(InitError::Invalid {
            flag: "--key",
            value: c.key.join(","),
            reason: format!(
                "give one --key per --cert ({} --cert, {} --key), in the same order",
                c.cert.len(),
                c.key.len()
            ),
        });
    }
    let mut certificates: Vec<CertPair> = c
        .cert
        .iter()
        .zip(&c.key)
        .map(|(cert, key)| CertPair {
            cert: cert.clone(),
            key: key.clone(),
        })
        .collect();
    let mut listen = c.listen;
    let mut source_address = c.source_address;
    let mut ca = c.ca.clone();
    let stem = format!("certs/{stem_from}");
    if c.acme.is_some() && !certificates.is_empty() {
        return Err(InitError::Invalid {
            flag: "--acme",
            value: c.acme.clone().unwrap_or_default(),
            reason: "give either --acme or --cert/--key, not both".into(),
        });
    }
    for contact in &c.acme_contact {
        if !contact.starts_with("mailto:") {
            return Err(InitError::Invalid {
                flag: "--acme-contact",
                value: contact.clone(),
                reason: "not a mailto: URL (expected e.g. mailto:admin@contoso.com)".into(),
            });
        }
    }
    if let Some(p) = ask {
        if certificates.is_empty() && c.acme.is_none() {
            let cert = p.ask(
                "Certificate file (PEM chain) covering every published name",
                &format!("{stem}.pem"),
            )?;
            let key = p.ask("Its private key file", &format!("{stem}.key"))?;
            certificates.push(CertPair { cert, key });
        }
        if ca.is_none() {
            let answer = p.ask(
                "Internal CA file (PEM) of the members' certificates (empty: public roots)",
                "",
            )?;
            ca = (!answer.is_empty()).then_some(answer);
        }
        let ip = |flag: &'static str| {
            move |x: &str| {
                x.parse::<IpAddr>().map_err(|_| InitError::Invalid {
                    flag,
                    value: x.to_string(),
                    reason: "not an IP address".into(),
                })
            }
        };
        if listen.is_none() {
            listen =
                Some(p.ask_valid("External address to listen on", "0.0.0.0", ip("--listen"))?);
        }
        if source_address.is_none() {
            let answer = p.ask(
                "Internal address connections to members leave from (empty: any)",
                "",
            )?;
            if !answer.is_empty() {
                source_address = Some(ip("--source-address")(&answer)?);
            }
        }
    }
    if certificates.is_empty() && c.acme.is_none() {
        certificates.push(CertPair {
            cert: format!("{stem}.pem"),
            key: format!("{stem}.key"),
        });
    }
    Ok(Network {
        listen: listen.unwrap_or(IpAddr::from([0, 0, 0, 0])),
        https_port: c.https_port,
        http_port: c.http_port,
        source_address,
        ca,
        certificates,
        acme: c.acme.clone().map(|directory| AcmeOut {
            directory,
            contact: c.acme_contact.clone(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_ask() -> Option<&'static mut Prompter<&'static [u8], Vec<u8>>> {
        None
    }

    #[test]
    fn missing_sip_domain_names_the_flag_when_not_interactive() {
        let err = build(&InitCommand::Sfb(Box::default()), no_ask()).unwrap_err();
        assert!(err.to_string().contains("--sip-domain"), "{err}");
    }

    #[test]
    fn interactive_answers_fill_the_missing_facts_with_defaults() {
        let answers = "contoso.com\n\npool01.contoso.local\nfe01.contoso.local=10.0.1.11\nn\n\n\n\nowas.contoso.com\nowas01.contoso.local=10.0.1.21\n\n\n\n\n\n";
        let mut out = Vec::new();
        let mut p = Prompter::new(answers.as_bytes(), &mut out);
        let d = build(&InitCommand::Sfb(Box::default()), Some(&mut p)).unwrap();
        assert_eq!(d.pools[0].webext, "lyncweb.contoso.com");
        assert_eq!(d.pools[0].fqdn, "pool01.contoso.local");
        assert_eq!(d.simple_urls.meet, vec!["meet.contoso.com"]);
        assert_eq!(d.simple_urls.dialin, vec!["dialin.contoso.com"]);
        assert_eq!(d.oos.as_ref().unwrap().names, vec!["owas.contoso.com"]);
        assert!(d.exchange.is_none());
        assert_eq!(d.network.certificates[0].cert, "certs/contoso.com.pem");
    }

    #[test]
    fn pools_and_member_lists_pair_by_position() {
        let args = SfbArgs {
            sip_domains: vec!["contoso.com".into()],
            webext: vec!["lyncweb.contoso.com".into(), "dirweb.contoso.com".into()],
            pool: vec!["pool01.contoso.local".into()],
            ..Default::default()
        };
        let err = build(&InitCommand::Sfb(Box::new(args)), no_ask()).unwrap_err();
        assert!(
            err.to_string()
                .contains("one internal pool FQDN per --webext"),
            "{err}"
        );
    }
}
