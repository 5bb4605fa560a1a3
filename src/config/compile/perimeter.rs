//! Perimeter settings: address conditions (`cidr`, `cidr_file`), rule and listener rate
//! limits, `[lockout]`.

use super::*;
use crate::perimeter::cidr::{CidrFile, CidrSet, CidrSource};
use crate::perimeter::lockout::{Answer, LockoutSettings};
use crate::perimeter::ratelimit::{self, RateSpec};

impl Compiler<'_> {
    /// A condition's ranges: `Ok(None)` for a `pattern` condition. Errors are reported.
    pub(super) fn condition_cidr(
        &mut self,
        c: &S<file::Condition>,
        key: &str,
    ) -> Result<Option<CidrSource>, ()> {
        let cc = c.get_ref();
        let n = usize::from(cc.pattern.is_some())
            + usize::from(cc.cidr.is_some())
            + usize::from(cc.cidr_file.is_some());
        if n != 1 {
            self.d.at(
                c.span(),
                key,
                if n == 0 {
                    "tests nothing: give `pattern` (a regular expression), or `cidr = [\"10.0.0.0/8\", ...]` or `cidr_file = \"FILE\"` for an address input"
                } else {
                    "has more than one of `pattern`, `cidr`, `cidr_file`; a condition takes exactly one"
                },
            );
            return Err(());
        }
        if cc.cidr.is_some() || cc.cidr_file.is_some() {
            let input = cc.input.get_ref().trim();
            if !input.eq_ignore_ascii_case("{REMOTE_ADDR}") {
                self.d.at(
                    cc.input.span(),
                    format!("{key}.input"),
                    format!("`cidr` / `cidr_file` test a client address: the input must be \"{{REMOTE_ADDR}}\", not {input:?}"),
                );
                return Err(());
            }
        }
        if let Some(list) = &cc.cidr {
            if list.get_ref().is_empty() {
                self.d.at(
                    list.span(),
                    format!("{key}.cidr"),
                    "lists no range; give ranges such as [\"10.0.0.0/8\", \"fd00::/8\"]",
                );
                return Err(());
            }
            let mut ranges = Vec::with_capacity(list.get_ref().len());
            let mut ok = true;
            for r in list.get_ref() {
                match Cidr::parse(r.get_ref()) {
                    Ok(c) => ranges.push(c),
                    Err(e) => {
                        self.d.at(r.span(), format!("{key}.cidr"), e);
                        ok = false;
                    }
                }
            }
            if !ok {
                return Err(());
            }
            return Ok(Some(CidrSource::Inline(Arc::new(CidrSet::new(ranges)))));
        }
        if let Some(f) = &cc.cidr_file {
            let path = self.path(f.get_ref());
            return match CidrFile::open(path) {
                Ok(file) => Ok(Some(CidrSource::File(file))),
                Err(e) => {
                    self.d.at(f.span(), format!("{key}.cidr_file"), format!("{e} (one range per line, such as 40.96.0.0/13 or 2603:1006::/40; # starts a comment)"));
                    Err(())
                }
            };
        }
        Ok(None)
    }

    /// `{ requests, per, burst }` → a spec; `None` (reported) when invalid.
    pub(super) fn rate_spec(
        &mut self,
        count: &S<u32>,
        count_key: &str,
        per: &S<String>,
        burst: Option<&S<u32>>,
        key: &str,
    ) -> Option<RateSpec> {
        let mut ok = true;
        if *count.get_ref() == 0 {
            self.d.at(
                count.span(),
                format!("{key}.{count_key}"),
                "must be at least 1",
            );
            ok = false;
        }
        let per = match crate::config::duration::parse_duration(per.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.d
                    .at(per.span(), format!("{key}.per"), "must be longer than zero");
                return None;
            }
            Err(e) => {
                self.d.at(per.span(), format!("{key}.per"), e);
                return None;
            }
        };
        let burst = match burst {
            None => *count.get_ref(),
            Some(b) if *b.get_ref() == 0 => {
                self.d.at(
                    b.span(),
                    format!("{key}.burst"),
                    "must be at least 1 (the requests allowed at once)",
                );
                ok = false;
                1
            }
            Some(b) => *b.get_ref(),
        };
        ok.then_some(RateSpec {
            requests: *count.get_ref(),
            per,
            burst,
        })
    }

    /// A rule's `rate_limit`; only a route rule may have one.
    pub(super) fn rule_rate_limit(
        &mut self,
        r: &file::Rule,
        key: &str,
    ) -> Option<Arc<ratelimit::RateLimiter>> {
        let rl = r.rate_limit.as_ref()?;
        let key = format!("{key}.rate_limit");
        if r.action.get_ref().route.is_none() {
            self.d.at(rl.span(), &key, "applies to rules whose action is `route` (other actions are answered by Portico and cost nothing upstream)");
            return None;
        }
        let v = rl.get_ref();
        let spec = self.rate_spec(&v.requests, "requests", &v.per, v.burst.as_ref(), &key)?;
        let cap = v
            .max_clients
            .as_ref()
            .map_or(ratelimit::DEFAULT_CAPACITY, |n| (*n.get_ref()).max(16));
        Some(Arc::new(ratelimit::RateLimiter::new(spec, cap)))
    }

    /// A listener's `max_connection_rate`.
    pub(super) fn connection_rate(
        &mut self,
        l: &file::Listener,
        key: &str,
    ) -> Option<(RateSpec, usize)> {
        let cr = l.max_connection_rate.as_ref()?;
        let v = cr.get_ref();
        let key = format!("{key}.max_connection_rate");
        let spec = self.rate_spec(
            &v.connections,
            "connections",
            &v.per,
            v.burst.as_ref(),
            &key,
        )?;
        let cap = v
            .max_clients
            .as_ref()
            .map_or(ratelimit::DEFAULT_CAPACITY, |n| (*n.get_ref()).max(16));
        Some((spec, cap))
    }

    /// `[lockout]`; defaults apply when a farm says `lockout = true` without the table.
    pub(super) fn lockout(
        &mut self,
        l: Option<&S<file::Lockout>>,
        farms: &[Arc<FarmConfig>],
    ) -> Option<Arc<LockoutSettings>> {
        let any_farm = farms.iter().any(|f| f.lockout);
        let Some(l) = l else {
            return any_farm.then(|| Arc::new(default_lockout()));
        };
        let v = l.get_ref();
        let mut s = default_lockout();
        let positive = |this: &mut Self, n: &S<u32>, key: &str| {
            if *n.get_ref() == 0 {
                this.d.at(n.span(), key, "must be at least 1");
                false
            } else {
                true
            }
        };
        let instances = match &v.instances {
            Some(n) if positive(self, n, "lockout.instances") => *n.get_ref(),
            _ => 1,
        };
        let ad = v
            .ad_threshold
            .as_ref()
            .filter(|n| positive(self, n, "lockout.ad_threshold"))
            .map(|n| *n.get_ref());
        match (&v.threshold, ad) {
            (Some(t), ad) if positive(self, t, "lockout.threshold") => {
                s.threshold = *t.get_ref();
                if let Some(ad) = ad {
                    let max = LockoutSettings::max_safe_threshold(ad, instances);
                    if s.threshold > max {
                        self.d.at(t.span(), "lockout.threshold", format!(
                            "{} instance(s) each letting {} failures through reach AD's threshold of {ad} first; use at most {max} (= floor(({ad} - 1) / {instances})), or leave threshold out to derive {}",
                            instances, s.threshold, LockoutSettings::derived_threshold(ad, instances)
                        ));
                    }
                }
            }
            (Some(_), _) => {}
            (None, Some(ad)) => s.threshold = LockoutSettings::derived_threshold(ad, instances),
            (None, None) => {}
        }
        s.window = self.duration(&v.window, "lockout.window", s.window);
        s.familiar_for = self.duration(&v.familiar_for, "lockout.familiar_for", s.familiar_for);
        let mut trusted = Vec::new();
        for r in &v.trusted {
            match Cidr::parse(r.get_ref()) {
                Ok(c) => trusted.push(c),
                Err(e) => self.d.at(r.span(), "lockout.trusted", e),
            }
        }
        s.trusted = CidrSet::new(trusted);
        s.address_threshold = match &v.address_threshold {
            Some(n) => *n.get_ref(),
            None => s.threshold.saturating_mul(4),
        };
        if let Some(a) = &v.answer {
            s.answer = match *a.get_ref() {
                429 => Answer::TooManyRequests,
                401 => Answer::Unauthorized,
                other => {
                    self.d.at(a.span(), "lockout.answer", format!("{other} is not an answer Portico gives for a held sign-in; accepted: 429 (default, with Retry-After), 401 (a fresh challenge)"));
                    Answer::TooManyRequests
                }
            };
        }
        if let Some(n) = &v.max_entries {
            s.max_entries = (*n.get_ref()).max(16);
        }
        Some(Arc::new(s))
    }
}

fn default_lockout() -> LockoutSettings {
    LockoutSettings {
        threshold: 5,
        window: Duration::from_secs(15 * 60),
        trusted: CidrSet::default(),
        address_threshold: 20,
        familiar_for: Duration::from_secs(30 * 86_400),
        answer: Answer::TooManyRequests,
        max_entries: 100_000,
    }
}
