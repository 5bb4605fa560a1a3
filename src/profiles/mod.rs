//! Config generators for Skype for Business / Lync, Exchange and Office Online Server
//! (`portico init sfb|exchange|oos`).
//!
//! A [`Deployment`] holds the few facts an administrator knows (published names, pool FQDNs,
//! member addresses, certificate files); [`render`] turns it into a complete, commented config
//! that follows Microsoft's published reverse-proxy requirements (port bridging 443->4443 and
//! 80->8080 for pools, re-encryption, Host kept, long idle timeouts, HTTP/1.1 where Windows
//! authentication flows). `cli` parses the flags and `prompt` asks for what is missing.

pub mod cli;
pub mod prompt;
mod render;
pub mod toml_out;

pub use render::{render, EXCHANGE_VDIRS};

use std::net::IpAddr;

/// Something `init` cannot work with; the message says which flag and what to give.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A fact `init` needs was neither given nor asked for (no terminal).
    #[error("missing {what}: give {flag} (e.g. {example}), or run in a terminal to be asked")]
    Missing {
        /// The fact, in words.
        what: &'static str,
        /// The flag that gives it.
        flag: &'static str,
        /// An example value.
        example: &'static str,
    },
    /// A flag's value cannot be used.
    #[error("{flag} {value:?}: {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// Why it cannot be used, and what is accepted.
        reason: String,
    },
    /// The config file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file to write.
        path: String,
        /// Why writing failed.
        source: std::io::Error,
    },
    /// Reading the answer to a question from the terminal failed.
    #[error("cannot read the answer: {0}")]
    Prompt(std::io::Error),
}

/// One farm member: a host name, and the address `[resolve]` maps it to (none = DNS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    pub(crate) name: String,
    pub(crate) address: Option<IpAddr>,
}

/// Parses `fe01.contoso.local=10.0.1.11,fe02.contoso.local=10.0.1.12`; an entry may be a bare
/// host name (resolved by DNS) or a bare IP address (then `pool` names it, see [`Pool`]).
pub fn parse_members(flag: &'static str, text: &str) -> Result<Vec<MemberSpec>, InitError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let invalid = |reason: &str| InitError::Invalid {
            flag,
            value: part.to_string(),
            reason: reason.to_string(),
        };
        let (name, address) = match part.split_once('=') {
            Some((n, a)) => {
                let ip = a.trim().parse::<IpAddr>().map_err(|_| {
                    invalid("after '=' comes the member's IP address, e.g. fe01.contoso.local=10.0.1.11")
                })?;
                (n.trim().to_string(), Some(ip))
            }
            None => match part.parse::<IpAddr>() {
                Ok(ip) => (String::new(), Some(ip)),
                Err(_) => (part.to_string(), None),
            },
        };
        if !name.is_empty() && !valid_fqdn(&name) {
            return Err(invalid("not a host name (letters, digits, '-', '.')"));
        }
        out.push(MemberSpec { name, address });
    }
    Ok(out)
}

/// A host name as published or as used inside: letters, digits, `-` and `.`, a dot inside.
pub fn valid_fqdn(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// Checks a published or internal name given on the command line.
pub fn check_fqdn(flag: &'static str, name: &str) -> Result<String, InitError> {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if valid_fqdn(&n) {
        Ok(n)
    } else {
        Err(InitError::Invalid {
            flag,
            value: name.to_string(),
            reason: "not a host name (letters, digits, '-', '.')".into(),
        })
    }
}

/// A Front End or Director pool: its external web services FQDN, its internal FQDN, members.
#[derive(Debug, Clone)]
pub struct Pool {
    /// External web services FQDN (`lyncweb.contoso.com`, `webext.contoso.com`).
    pub webext: String,
    /// Internal pool FQDN (`pool01.contoso.local`); members given as bare IPs are reached by it.
    pub fqdn: String,
    pub(crate) members: Vec<MemberSpec>,
}

/// A service published on 443/80 without bridging (Office Online Server, Exchange).
#[derive(Debug, Clone)]
pub struct Service {
    /// Published names (`owas.contoso.com`; `mail.contoso.com`, `autodiscover.contoso.com`).
    pub names: Vec<String>,
    /// Members; empty = the first published name, resolved by (split) DNS.
    pub members: Vec<MemberSpec>,
}

/// The simple URLs and mobile names of a SfB deployment.
#[derive(Debug, Clone, Default)]
pub struct SimpleUrls {
    pub(crate) meet: Vec<String>,
    pub(crate) dialin: Vec<String>,
    pub(crate) lyncdiscover: Vec<String>,
}

/// A certificate and its key, as the listener will read them.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub(crate) cert: String,
    pub(crate) key: String,
}

/// Where Portico listens and how it reaches the members.
#[derive(Debug, Clone)]
pub struct Network {
    /// External address (`203.0.113.10`, `0.0.0.0`).
    pub listen: IpAddr,
    pub(crate) https_port: u16,
    pub(crate) http_port: u16,
    /// Internal NIC address connections to members leave from.
    pub source_address: Option<IpAddr>,
    /// The internal CA that issued the members' certificates.
    pub ca: Option<String>,
    pub(crate) certificates: Vec<CertPair>,
    /// `--acme`: the certificate comes from this ACME directory instead of files.
    pub acme: Option<AcmeOut>,
}

/// An `[[acme]]` entry `portico init --acme` writes, for every published name.
#[derive(Debug, Clone)]
pub struct AcmeOut {
    pub(crate) directory: String,
    pub(crate) contact: Vec<String>,
}

/// Everything `render` needs.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// What was asked for, for the header comment (`sfb`, `exchange`, `oos`).
    pub profile: &'static str,
    pub(crate) sip_domains: Vec<String>,
    pub(crate) pools: Vec<Pool>,
    pub(crate) simple_urls: SimpleUrls,
    pub(crate) oos: Option<Service>,
    pub(crate) exchange: Option<Service>,
    pub(crate) network: Network,
    /// Perimeter protection offered by `init` (off unless asked for).
    pub protection: Protection,
}

/// Failed-sign-in protection and address ranges the generated config applies.
#[derive(Debug, Clone, Default)]
pub struct Protection {
    /// `--lockout`: the farms that sign users in get `lockout = true`.
    pub lockout: Option<LockoutPlan>,
    /// `--ecp-from`: /ecp of the Exchange names only from these ranges.
    pub ecp_from: Vec<String>,
}

/// What `[lockout]` is derived from.
#[derive(Debug, Clone)]
pub struct LockoutPlan {
    /// AD's account lockout threshold (Default Domain Policy).
    pub ad_threshold: u32,
    /// Portico instances that each count alone.
    pub instances: u32,
    /// Ranges never held back (the internal network).
    pub trusted: Vec<String>,
}

impl Deployment {
    /// Every name clients reach through Portico, in the order the rules list them.
    pub fn published_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |n: &String| {
            if !out.contains(n) {
                out.push(n.clone());
            }
        };
        self.pools.iter().for_each(|p| push(&p.webext));
        let s = &self.simple_urls;
        s.meet
            .iter()
            .chain(&s.dialin)
            .chain(&s.lyncdiscover)
            .for_each(&mut push);
        if let Some(o) = &self.oos {
            o.names.iter().for_each(&mut push);
        }
        if let Some(e) = &self.exchange {
            e.names.iter().for_each(&mut push);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_with_and_without_addresses() {
        let m = parse_members(
            "--members",
            "fe01.contoso.local=10.0.1.11, fe02.contoso.local ,10.0.1.13",
        )
        .unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].address, Some("10.0.1.11".parse().unwrap()));
        assert_eq!(m[1].address, None);
        assert_eq!(m[2].name, "");
        let err = parse_members("--members", "fe01=notanip").unwrap_err();
        assert!(err.to_string().contains("--members"), "{err}");
    }
}
