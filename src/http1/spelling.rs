//! Header names as the peer spelled them. Old Outlook builds break on lower-cased response
//! headers, so on HTTP/1.1 a name leaves Portico as the other side wrote it. Most peers
//! write Title-Case, which is what the writer produces for a name it has no spelling for,
//! so a spelling is only kept for a head with at least one name that is not Title-Case:
//! most messages carry none and cost nothing here. A head whose names are all lower-case
//! (hyper, Node and Go members, and h2 clients' habits carried to HTTP/1.1) keeps no list
//! either: its message leaves all lower-case, Portico's own fields included, as the peer
//! wrote it.

use bytes::Bytes;
use http::HeaderName;

/// The names of one head in wire order, as offsets into the head's own bytes (no copy),
/// each with a hash of its lower-case form: a lookup compares hashes first, so writing a
/// head of 100 fields costs 100 × 100 integer compares, not string compares.
#[derive(Clone)]
pub struct Spelling(Names);

#[derive(Clone)]
enum Names {
    /// Every name was lower-case: each goes out as `HeaderName` holds it.
    Lower,
    Listed {
        head: Bytes,
        names: Vec<(u32, u32, u32)>,
    },
}

/// FNV-1a of the lower-case form of `name`.
fn hash(name: &[u8]) -> u32 {
    name.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0193)
    })
}

impl std::fmt::Debug for Spelling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Names::Lower => f.write_str("Spelling(lower-case)"),
            Names::Listed { head, names } => f
                .debug_list()
                .entries(
                    names
                        .iter()
                        .map(|&(s, e, _)| String::from_utf8_lossy(&head[s as usize..e as usize])),
                )
                .finish(),
        }
    }
}

impl Spelling {
    /// `names`: start and end of each name in `head`, in wire order.
    pub fn new(head: Bytes, names: impl Iterator<Item = (u32, u32)>) -> Self {
        let names = names
            .map(|(s, e)| (s, e, hash(&head[s as usize..e as usize])))
            .collect();
        Spelling(Names::Listed { head, names })
    }

    /// The spelling of a head whose names were all lower-case: nothing to list.
    pub fn lower_case() -> Self {
        Spelling(Names::Lower)
    }

    /// How the peer spelled the `nth` (from 0) field line named `name`; `None` for a field
    /// it did not send (one Portico added), which is then written Title-Case. After an
    /// all-lower-case head, every name is lower-case.
    pub fn name<'a>(&'a self, name: &'a HeaderName, nth: usize) -> Option<&'a [u8]> {
        let want = name.as_str().as_bytes();
        let Names::Listed { head, names } = &self.0 else {
            return Some(want);
        };
        let h = hash(want);
        names
            .iter()
            .filter(|&&(_, _, nh)| nh == h)
            .map(|&(s, e, _)| &head[s as usize..e as usize])
            .filter(|n| n.eq_ignore_ascii_case(want))
            .nth(nth)
    }
}

/// Whether `name` is already what [`write_title_case`] makes of its lower-case form.
pub fn is_title_case(name: &[u8]) -> bool {
    let mut upper = true;
    name.iter().all(|&b| {
        let ok = if upper {
            !b.is_ascii_lowercase()
        } else {
            !b.is_ascii_uppercase()
        };
        upper = b == b'-';
        ok
    })
}

/// Writes a lower-case name Title-Case: the first letter and each one after `-` upper.
pub fn write_title_case(out: &mut Vec<u8>, name: &[u8]) {
    let mut upper = true;
    out.extend(name.iter().map(|&b| {
        let c = if upper { b.to_ascii_uppercase() } else { b };
        upper = b == b'-';
        c
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_case_is_recognised_and_written_the_same_way() {
        for name in [
            "Host",
            "Content-Length",
            "X-Forwarded-For",
            "Www-Authenticate",
            "X-1a",
            "A",
        ] {
            assert!(is_title_case(name.as_bytes()), "{name}");
            let mut out = Vec::new();
            write_title_case(&mut out, name.to_ascii_lowercase().as_bytes());
            assert_eq!(out, name.as_bytes());
        }
        for name in [
            "host",
            "WWW-Authenticate",
            "X-FEServer",
            "request-id",
            "CONTENT-LENGTH",
            "x-A",
        ] {
            assert!(!is_title_case(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn after_an_all_lower_case_head_every_name_is_lower_case() {
        let s = Spelling::lower_case();
        assert_eq!(
            s.name(&http::header::SET_COOKIE, 3),
            Some(&b"set-cookie"[..])
        );
        assert_eq!(s.name(&http::header::DATE, 0), Some(&b"date"[..]));
    }

    #[test]
    fn repeated_names_keep_each_spelling_in_order() {
        let head = Bytes::from_static(b"set-cookie Set-Cookie SET-COOKIE Host");
        let s = Spelling::new(head, [(0, 10), (11, 21), (22, 32), (33, 37)].into_iter());
        let name = http::header::SET_COOKIE;
        assert_eq!(s.name(&name, 0), Some(&b"set-cookie"[..]));
        assert_eq!(s.name(&name, 1), Some(&b"Set-Cookie"[..]));
        assert_eq!(s.name(&name, 2), Some(&b"SET-COOKIE"[..]));
        assert_eq!(s.name(&name, 3), None);
        assert_eq!(s.name(&http::header::HOST, 0), Some(&b"Host"[..]));
        assert_eq!(s.name(&http::header::VIA, 0), None);
    }
}
