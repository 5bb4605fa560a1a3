//! What delimits a message's body (RFC 9112 §6), decided strictly: every field line that
//! could make Portico and the peer behind it read a different body length is refused, not
//! repaired. This is the one owner of those rules: [`crate::proxy::guard`] asks it about
//! requests that reach Portico over HTTP/1, and the HTTP/1.1 codec ([`super::head`]) frames
//! with it.

use std::fmt;

/// How a message's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// The chunked transfer coding (`Transfer-Encoding: chunked`).
    Chunked,
    /// Everything until the peer closes the connection: a response with neither header
    /// (RFC 9112 §6.3, rule 8).
    UntilClose,
}

/// Why a message's framing is refused. A request that earns one is answered 400 and its
/// connection closed; a member's response that earns one is a 502 and the member
/// connection is closed (its next bytes could not be told apart from this body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// More than one `Content-Length` field line, or a list in one.
    SeveralLengths,
    /// A `Content-Length` that is not 1 to 19 decimal digits.
    BadLength,
    /// Transfer-Encoding on an HTTP/1.0 message (RFC 9112 §6.1).
    CodingOnHttp10,
    /// A transfer coding other than exactly one `chunked`.
    UnsupportedCoding,
    /// More than one `Transfer-Encoding` field line.
    SeveralCodings,
    /// `Content-Length` and `Transfer-Encoding` together: the classic request-smuggling
    /// pair; RFC 9112 §6.1 lets a server refuse it, and Portico does.
    LengthAndCoding,
}

impl FramingError {
    /// The sentence an error page or log line gives.
    pub fn message(self) -> &'static str {
        match self {
            Self::SeveralLengths => "The message has more than one Content-Length.",
            Self::BadLength => "The Content-Length header is not a plain decimal number.",
            Self::CodingOnHttp10 => "Transfer-Encoding is not allowed on HTTP/1.0.",
            Self::UnsupportedCoding => {
                "The only Transfer-Encoding accepted is a single \"chunked\"."
            }
            Self::SeveralCodings => "The message has more than one Transfer-Encoding header.",
            Self::LengthAndCoding => "The message has both Content-Length and Transfer-Encoding.",
        }
    }
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for FramingError {}

/// The framing headers of one message, gathered in one pass over its field lines.
#[derive(Default)]
struct Fields<'a> {
    length: Option<&'a [u8]>,
    lengths: usize,
    coding: Option<&'a [u8]>,
    codings: usize,
}

impl<'a> Fields<'a> {
    fn gather<I>(fields: I) -> Self
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut f = Fields::default();
        for (name, value) in fields {
            // Both names are 14 and 17 bytes: the length test skips almost every other field.
            if name.len() == 14 && name.eq_ignore_ascii_case(b"content-length") {
                f.lengths += 1;
                f.length = Some(value);
            } else if name.len() == 17 && name.eq_ignore_ascii_case(b"transfer-encoding") {
                f.codings += 1;
                f.coding = Some(value);
            }
        }
        f
    }

    fn length(&self) -> Result<Option<u64>, FramingError> {
        match self.lengths {
            0 => Ok(None),
            1 => content_length(self.length.unwrap_or_default()).map(Some),
            _ => Err(FramingError::SeveralLengths),
        }
    }
}

/// The value of one `Content-Length` field: 1 to 19 decimal digits and nothing else (no
/// sign, no spaces inside, no list — `5, 5` is refused although RFC 9110 lets a recipient
/// fold it: no legitimate sender writes it, and smuggling probes do), at most `i64::MAX`,
/// the largest length nginx, IIS and .NET agree on.
pub fn content_length(value: &[u8]) -> Result<u64, FramingError> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(FramingError::BadLength);
    }
    let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    if n > i64::MAX as u64 {
        return Err(FramingError::BadLength);
    }
    Ok(n)
}

/// How a request's body is delimited: `http10` for an HTTP/1.0 request. A request with
/// neither header has no body (RFC 9112 §6.3, rule 7).
pub fn request<'a, I>(http10: bool, fields: I) -> Result<Framing, FramingError>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let f = Fields::gather(fields);
    if f.codings > 0 {
        if http10 {
            return Err(FramingError::CodingOnHttp10);
        }
        if f.lengths > 0 {
            return Err(FramingError::LengthAndCoding);
        }
        if f.codings > 1 {
            return Err(FramingError::SeveralCodings);
        }
        // A request's last coding must be chunked or its length is unknowable (§6.3 rule
        // 4); Portico decodes no other coding, so exactly one `chunked` is the only choice.
        return match f.coding.map(<[u8]>::trim_ascii) {
            Some(c) if c.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
            _ => Err(FramingError::UnsupportedCoding),
        };
    }
    Ok(f.length()?.map_or(Framing::Empty, Framing::Length))
}

/// How a member's response body is delimited, for a response with `status` to a request
/// whose method was HEAD or not (`to_head`). `http10`: the response's own version.
pub fn response<'a, I>(
    to_head: bool,
    status: u16,
    http10: bool,
    fields: I,
) -> Result<Framing, FramingError>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    // §6.3 rule 1: these have no body whatever their headers say (a 304's Content-Length
    // is the representation's, not this message's).
    if to_head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    let f = Fields::gather(fields);
    if f.codings > 0 {
        if http10 {
            return Err(FramingError::CodingOnHttp10);
        }
        // A member that sends both may be desynchronised from us on this connection.
        if f.lengths > 0 {
            return Err(FramingError::LengthAndCoding);
        }
        if f.codings > 1 {
            return Err(FramingError::SeveralCodings);
        }
        // Exactly one `chunked`, as nginx accepts: any other coding (`gzip`, `chunked,` with
        // an empty element, a list) would be relayed in a framing the client cannot undo.
        return if f
            .coding
            .unwrap_or_default()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked")
        {
            Ok(Framing::Chunked)
        } else {
            Err(FramingError::UnsupportedCoding)
        };
    }
    Ok(f.length()?.map_or(Framing::UntilClose, Framing::Length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(http10: bool, fields: &[(&str, &str)]) -> Result<Framing, FramingError> {
        request(
            http10,
            fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        )
    }

    fn resp(status: u16, fields: &[(&str, &str)]) -> Result<Framing, FramingError> {
        response(
            false,
            status,
            false,
            fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        )
    }

    #[test]
    fn sound_requests_are_framed() {
        assert_eq!(req(false, &[("Host", "a")]), Ok(Framing::Empty));
        assert_eq!(
            req(false, &[("Content-Length", "0")]),
            Ok(Framing::Length(0))
        );
        assert_eq!(
            req(false, &[("content-length", " 1048576 ")]),
            Ok(Framing::Length(1 << 20))
        );
        assert_eq!(
            req(false, &[("CONTENT-LENGTH", "9223372036854775807")]),
            Ok(Framing::Length(i64::MAX as u64))
        );
        assert_eq!(
            req(false, &[("Transfer-Encoding", "Chunked")]),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            req(true, &[("Content-Length", "3")]),
            Ok(Framing::Length(3))
        );
    }

    #[test]
    fn ambiguous_requests_are_refused_with_the_reason() {
        use FramingError::*;
        type Case<'a> = (&'a str, bool, &'a [(&'a str, &'a str)], FramingError);
        let cases: &[Case] = &[
            (
                "CL and TE",
                false,
                &[("Content-Length", "4"), ("Transfer-Encoding", "chunked")],
                LengthAndCoding,
            ),
            (
                "TE and CL",
                false,
                &[("Transfer-Encoding", "chunked"), ("Content-Length", "4")],
                LengthAndCoding,
            ),
            (
                "two CL, same value",
                false,
                &[("Content-Length", "4"), ("Content-Length", "4")],
                SeveralLengths,
            ),
            (
                "two CL, differing",
                false,
                &[("Content-Length", "0"), ("Content-Length", "48")],
                SeveralLengths,
            ),
            ("CL list", false, &[("Content-Length", "0, 48")], BadLength),
            (
                "CL with a sign",
                false,
                &[("Content-Length", "+0")],
                BadLength,
            ),
            ("CL in hex", false, &[("Content-Length", "0x0")], BadLength),
            ("CL empty", false, &[("Content-Length", "")], BadLength),
            (
                "CL of 20 digits",
                false,
                &[("Content-Length", "18446744073709551615")],
                BadLength,
            ),
            (
                "CL over i64::MAX",
                false,
                &[("Content-Length", "9223372036854775808")],
                BadLength,
            ),
            (
                "TE chunked, identity",
                false,
                &[("Transfer-Encoding", "chunked, identity")],
                UnsupportedCoding,
            ),
            (
                "TE xchunked",
                false,
                &[("Transfer-Encoding", "xchunked")],
                UnsupportedCoding,
            ),
            (
                "TE gzip, chunked",
                false,
                &[("Transfer-Encoding", "gzip, chunked")],
                UnsupportedCoding,
            ),
            (
                "TE in two lines",
                false,
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Transfer-Encoding", "identity"),
                ],
                SeveralCodings,
            ),
            (
                "TE on HTTP/1.0",
                true,
                &[("Transfer-Encoding", "chunked")],
                CodingOnHttp10,
            ),
        ];
        for (name, http10, fields, want) in cases {
            assert_eq!(req(*http10, fields), Err(*want), "{name}");
        }
    }

    #[test]
    fn responses_follow_rfc9112_section_6_3() {
        assert_eq!(resp(200, &[]), Ok(Framing::UntilClose));
        assert_eq!(
            resp(200, &[("Content-Length", "12")]),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            resp(200, &[("Transfer-Encoding", "chunked")]),
            Ok(Framing::Chunked)
        );
        for coding in ["gzip", "identity", "chunked,", "", "chunked, chunked"] {
            let got = resp(200, &[("Transfer-Encoding", coding)]);
            assert_eq!(got, Err(FramingError::UnsupportedCoding), "{coding:?}");
        }
        assert_eq!(
            resp(200, &[("Transfer-Encoding", "gzip, chunked")]),
            Err(FramingError::UnsupportedCoding)
        );
        assert_eq!(
            resp(
                200,
                &[("Transfer-Encoding", "chunked"), ("Content-Length", "3")]
            ),
            Err(FramingError::LengthAndCoding)
        );
        assert_eq!(
            resp(200, &[("Content-Length", "3"), ("Content-Length", "3")]),
            Err(FramingError::SeveralLengths)
        );
        for status in [100, 101, 199, 204, 304] {
            assert_eq!(
                resp(status, &[("Content-Length", "12")]),
                Ok(Framing::Empty),
                "{status}"
            );
        }
        let to_head = response(true, 200, false, [(&b"Content-Length"[..], &b"12"[..])]);
        assert_eq!(to_head, Ok(Framing::Empty));
        let http10 = response(
            false,
            200,
            true,
            [(&b"Transfer-Encoding"[..], &b"chunked"[..])],
        );
        assert_eq!(http10, Err(FramingError::CodingOnHttp10));
    }
}
