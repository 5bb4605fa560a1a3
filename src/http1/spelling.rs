//! Header names as the peer spelled them. Old Outlook builds break on lower-cased response
//! headers, so on HTTP/1.1 a name leaves Portico as the other side wrote it. Most peers
//! write Title-Case, which is what the writer produces for a name it has no spelling for,
//! so a spelling is only kept for a head with at least one name that is not Title-Case:
//! most messages carry none and cost nothing here.

use bytes::Bytes;
use http::HeaderName;

/// The names of one head in wire order, as offsets into the head's own bytes (no copy),
/// each with a hash of its lower-case form: a lookup compares hashes first, so writing a
/// head of 100 fields costs 100 × 100 integer compares, not string compares.
#[derive(Clone)]
pub struct Spelling {
    head: Bytes,
    names: Vec<(u32, u32, u32)>,
}

/// FNV-1a of the lower-case form of `name`.
fn hash(name: &[u8]) -> u32 {
    name.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0193)
    })
}

impl std::fmt::Debug for Spelling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.names
                    .iter()
                    .map(|&(s, e, _)| String::from_utf8_lossy(&self.head[s as usize..e as usize])),
            )
            .finish()
    }
}

impl Spelling {
    /// `names`: start and end of each name in `head`, in wire order.
    pub fn new(head: Bytes, names: impl Iterator<Item = (u32, u32)>) -> Self {
        let names = names
            .map(|(s, e)| (s, e, hash(&head[s as usize..e as usize])))
            .collect();
        Spelling { head, names }
    }

    /// How the peer spelled the `nth` (from 0) field line named `name`; `None` for a field
    /// it did not send (one Portico added), which is then written Title-Case.
    pub fn name(&self, name: &HeaderName, nth: usize) -> Option<&[u8]> {
        let want = name.as_str().as_bytes();
        let h = hash(want);
        self.names
            .iter()
            .filter(|&&(_, _, nh)| nh == h)
            .map(|&(s, e, _)| &self.head[s as usize..e as usize])
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
