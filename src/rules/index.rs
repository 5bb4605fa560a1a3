//! Finding the host rules that can match a request without walking them all.
//!
//! URL Rewrite's semantics are a walk in order, and they are kept exactly: the index only
//! skips rules that could not have matched. A rule is keyed when all its conditions must hold
//! and one of them tests `{HTTP_HOST}` against an anchored literal (`^owa\.contoso\.com$`:
//! the whole host; `^lyncweb\.`: its first label). Runs of at least [`MIN_BLOCK`] keyed rules
//! in a row become a block with two hash maps, host → rules and first label → rules; the walk
//! jumps over a block, running only the rules its maps name for this host, in their order.
//! A rewrite inside a block cannot change the answer: it changes the path, never the host.

use std::collections::HashMap;

use super::Rule;

/// Shorter runs are walked: a few comparisons cost less than a lookup.
const MIN_BLOCK: usize = 8;

/// Hosts longer than this are not looked up (the block is walked): the key is lower-cased
/// on the stack.
const MAX_HOST: usize = 255;

#[derive(Debug, Default)]
pub(super) struct Block {
    pub start: usize,
    pub end: usize,
    exact: HashMap<Box<str>, Vec<u32>>,
    label: HashMap<Box<str>, Vec<u32>>,
}

/// What a rule's host condition demands of the host.
enum Key {
    Exact(String),
    /// The host's first label, before the first dot.
    Label(String),
}

fn key(rule: &Rule) -> Option<Key> {
    if rule.any {
        return None;
    }
    rule.conditions.iter().find_map(|c| {
        if c.negate || !c.input.is_http_host() {
            return None;
        }
        let (text, exact) = c.test.host_literal()?;
        if exact {
            return Some(Key::Exact(text.to_owned()));
        }
        let label = text.strip_suffix('.')?;
        (!label.is_empty() && !label.contains('.')).then(|| Key::Label(label.to_owned()))
    })
}

/// Blocks over `rules`, in order.
pub(super) fn build(rules: &[Rule]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut run: Vec<(usize, Key)> = Vec::new();
    let mut flush = |run: &mut Vec<(usize, Key)>| {
        if run.len() >= MIN_BLOCK {
            let mut b = Block {
                start: run[0].0,
                end: run[run.len() - 1].0 + 1,
                ..Block::default()
            };
            for (i, k) in run.drain(..) {
                let (map, text) = match k {
                    Key::Exact(t) => (&mut b.exact, t),
                    Key::Label(t) => (&mut b.label, t),
                };
                map.entry(text.into_boxed_str()).or_default().push(i as u32);
            }
            blocks.push(b);
        }
        run.clear();
    };
    for (i, r) in rules.iter().enumerate() {
        match key(r) {
            Some(k) => run.push((i, k)),
            None => flush(&mut run),
        }
    }
    flush(&mut run);
    blocks
}

impl Block {
    /// The rules of this block that may match `host`, in order; None: walk the whole block
    /// (a host the lookup does not handle).
    pub(super) fn candidates(&self, host: &str) -> Option<Candidates<'_>> {
        if host.len() > MAX_HOST || !host.is_ascii() {
            return None;
        }
        let mut buf = [0u8; MAX_HOST];
        let lower = &mut buf[..host.len()];
        lower.copy_from_slice(host.as_bytes());
        lower.make_ascii_lowercase();
        let lower = std::str::from_utf8(lower).ok()?;
        let exact = self.exact.get(lower).map_or(&[][..], Vec::as_slice);
        let label = match lower.split_once('.') {
            Some((first, _)) => self.label.get(first).map_or(&[][..], Vec::as_slice),
            None => &[],
        };
        Some(Candidates { a: exact, b: label })
    }
}

/// Two ascending lists of rule indices, merged.
pub(super) struct Candidates<'a> {
    a: &'a [u32],
    b: &'a [u32],
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let take_a = match (self.a.first(), self.b.first()) {
            (Some(x), Some(y)) => x <= y,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let list = if take_a { &mut self.a } else { &mut self.b };
        let (first, rest) = list.split_first()?;
        *list = rest;
        Some(*first as usize)
    }
}
