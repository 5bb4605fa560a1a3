//! Request and response heads, parsed in place. httparse finds the lines (it is the parser
//! hyper uses: SIMD, fuzzed, no allocation); this module turns them into `http` types whose
//! values are slices of the one buffer the head arrived in, records the spelling of names
//! only when it differs from what the writer would produce anyway, and frames the body
//! with [`super::framing`].

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use super::framing::{self, Framing, FramingError};
use super::spelling::{is_title_case, Spelling};

/// The most field lines a head may have; one more is a 431, as in hyper and nginx.
pub const MAX_FIELDS: usize = 100;
/// Field lines most heads stay within: parsed with room for these first.
const FEW_FIELDS: usize = 24;

/// A head larger than this many bytes is refused (431 from a client, 502 from a member)
/// instead of buffered further.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line or status line plus field lines, with their line ends.
    pub max_head_bytes: usize,
}

impl Limits {
    /// Offsets into a head are `u32`: no head may be longer.
    fn clamped(self) -> Limits {
        Limits {
            max_head_bytes: self.max_head_bytes.min(u32::MAX as usize),
        }
    }
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    /// The method, as sent.
    pub method: Method,
    /// The request-target exactly as sent (the raw path is forwarded untouched).
    pub target: Bytes,
    /// The target as a URI (sharing its bytes).
    pub uri: http::Uri,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Field lines in order; values are slices of the head's buffer.
    pub headers: HeaderMap,
    /// Names as the client spelled them; `None` when every name was Title-Case already.
    pub spelling: Option<Spelling>,
    /// How the body that follows is delimited.
    pub framing: Framing,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The status code.
    pub status: StatusCode,
    /// The reason phrase as sent (may be empty).
    pub reason: Bytes,
    /// Field lines in order; values are slices of the head's buffer.
    pub headers: HeaderMap,
    /// Names as the member spelled them; `None` when every name was Title-Case already.
    pub spelling: Option<Spelling>,
    /// How the body that follows is delimited.
    pub framing: Framing,
}

/// Why a head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than [`Limits::max_head_bytes`].
    TooLarge,
    /// More than [`MAX_FIELDS`] field lines.
    TooManyFields,
    /// A request target longer than [`MAX_TARGET`].
    TargetTooLong,
    /// Not HTTP/1.x syntax; the sentence says which part.
    Malformed(&'static str),
    /// Sound syntax, ambiguous body framing.
    Framing(FramingError),
}

impl HeadError {
    /// The status a client is answered with (a member's bad head is always a 502).
    pub fn status(self) -> StatusCode {
        match self {
            Self::TooLarge | Self::TooManyFields => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::TargetTooLong => StatusCode::URI_TOO_LONG,
            Self::Malformed(_) | Self::Framing(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The sentence an error page or log line gives.
    pub fn message(self) -> &'static str {
        match self {
            Self::TooLarge => "The message head is larger than the limit.",
            Self::TooManyFields => "The message head has too many header fields.",
            Self::TargetTooLong => "The request target is longer than 65,534 bytes.",
            Self::Malformed(why) => why,
            Self::Framing(e) => e.message(),
        }
    }
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for HeadError {}

fn malformed(e: httparse::Error) -> HeadError {
    HeadError::Malformed(match e {
        httparse::Error::TooManyHeaders => return HeadError::TooManyFields,
        httparse::Error::HeaderName => "A header name is not a token (or is followed by a space).",
        httparse::Error::HeaderValue => "A header value holds a control character or a bare CR.",
        httparse::Error::NewLine => "A line does not end in CRLF or LF.",
        httparse::Error::Status => "The status code is not three digits.",
        httparse::Error::Token => "The method or request target is not valid.",
        httparse::Error::Version => "The HTTP version is not HTTP/1.0 or HTTP/1.1.",
    })
}

/// Where one field line's name and value lie in the head, recorded while httparse borrows
/// the buffer and used once the head is frozen.
#[derive(Clone, Copy, Default)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

fn offsets(base: &[u8], part: &[u8]) -> (u32, u32) {
    // httparse returns subslices of what it was given, except for an empty part (a missing
    // reason phrase comes back as a static ""): no bytes, so no position needed.
    if part.is_empty() {
        return (0, 0);
    }
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    debug_assert!(start + part.len() <= base.len() && base.len() <= u32::MAX as usize);
    (start as u32, (start + part.len()) as u32)
}

/// Finds the blank line that ends a head, scanning only bytes it has not scanned before:
/// a head that trickles in a byte at a time costs linear time, and httparse runs once it
/// can finish instead of on every read.
#[derive(Debug, Default, Clone, Copy)]
pub struct EndScan {
    from: usize,
}

impl EndScan {
    /// Whether `buf` (the same buffer, grown since the last call) may hold a whole head.
    /// `true` can be early (blank lines before a request line): then httparse says
    /// "partial" and the next call looks for the next blank line.
    pub fn complete(&mut self, buf: &[u8]) -> bool {
        // A blank line is `\n\n` or `\n\r\n`: look back two bytes for one split by a read.
        let mut i = self.from.saturating_sub(2).min(buf.len());
        while let Some(at) = memchr::memchr(b'\n', &buf[i..]) {
            let lf = i + at;
            match (buf.get(lf + 1), buf.get(lf + 2)) {
                (Some(b'\n'), _) | (Some(b'\r'), Some(b'\n')) => {
                    self.from = lf + 1;
                    return true;
                }
                _ => i = lf + 1,
            }
        }
        self.from = buf.len();
        false
    }

    /// Starts over, for the next head.
    pub fn reset(&mut self) {
        self.from = 0;
    }
}

/// The longest request target served (hyper's limit, which Portico had before; IIS allows
/// far less by default). Longer ones get 414 whatever the head limit.
pub const MAX_TARGET: usize = 65_534;

/// Request targets Portico forwards: origin-form (`/path?query`), absolute-form
/// (`http://host/path`, checked against Host by the guard) and `*` for OPTIONS. A fragment
/// is refused: `http::Uri` would drop what follows `#` while the raw target goes to the
/// member, past a path rule. (A backslash in the path is the guard's to refuse, for h2 as
/// well.) CONNECT is refused: Portico publishes sites; it is not a forward proxy.
fn check_target(method: &Method, target: &[u8]) -> Result<(), HeadError> {
    if target.len() > MAX_TARGET {
        return Err(HeadError::TargetTooLong);
    }
    if *method == Method::CONNECT {
        return Err(HeadError::Malformed("CONNECT is not served here."));
    }
    if target.contains(&b'#') {
        return Err(HeadError::Malformed(
            "The request target holds a fragment (#).",
        ));
    }
    let absolute = |scheme: &[u8]| {
        target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme)
    };
    match target {
        [b'/', ..] => Ok(()),
        b"*" if *method == Method::OPTIONS => Ok(()),
        _ if absolute(b"http://") || absolute(b"https://") => Ok(()),
        _ => Err(HeadError::Malformed(
            "The request target is neither a path nor an absolute URI.",
        )),
    }
}

/// Turns recorded spans into a header map whose values share `head`, and a spelling if
/// any name needs one.
fn fields(head: &Bytes, spans: &[Span]) -> Result<(HeaderMap, Option<Spelling>), HeadError> {
    // Room for the few fields Portico adds (X-Forwarded-*, Via) without a regrow.
    let mut headers = super::recycle::header_map(spans.len() + 4);
    let (mut spelled, mut lower) = (false, true);
    for s in spans {
        let name_bytes = &head[s.name.0 as usize..s.name.1 as usize];
        spelled |= !is_title_case(name_bytes);
        lower &= !name_bytes.iter().any(u8::is_ascii_uppercase);
        let name = HeaderName::from_bytes(name_bytes).map_err(|_| {
            HeadError::Malformed("A header name is not a token (or is followed by a space).")
        })?;
        // httparse allowed only HTAB, SP, VCHAR and obs-text: what `HeaderValue` holds.
        let value =
            HeaderValue::from_maybe_shared(head.slice(s.value.0 as usize..s.value.1 as usize))
                .map_err(|_| {
                    HeadError::Malformed("A header value holds a control character or a bare CR.")
                })?;
        headers.append(name, value);
    }
    let spelling = spelled.then(|| {
        if lower {
            Spelling::lower_case()
        } else {
            Spelling::new(head.clone(), spans.iter().map(|s| s.name))
        }
    });
    Ok((headers, spelling))
}

/// A complete head's length, `None` while it is incomplete and within the limit; over the
/// limit, complete or not, it is refused.
fn head_len(
    status: httparse::Status<usize>,
    buffered: usize,
    limits: Limits,
) -> Result<Option<usize>, HeadError> {
    match status {
        httparse::Status::Complete(len) if len <= limits.max_head_bytes => Ok(Some(len)),
        httparse::Status::Partial if buffered <= limits.max_head_bytes => Ok(None),
        _ => Err(HeadError::TooLarge),
    }
}

fn pairs<'a>(head: &'a [u8], spans: &'a [Span]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    spans.iter().map(move |s| {
        (
            &head[s.name.0 as usize..s.name.1 as usize],
            &head[s.value.0 as usize..s.value.1 as usize],
        )
    })
}

fn version(minor: Option<u8>) -> Version {
    if minor == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    }
}

impl RequestHead {
    /// The request this head begins, with `body`; the spelling goes in its extensions.
    pub fn into_request<B>(self, body: B) -> http::Request<B> {
        let mut req = http::Request::new(body);
        *req.method_mut() = self.method;
        // `check_target` has accepted it: origin or absolute form, or `*` for OPTIONS.
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        if let Some(s) = self.spelling {
            req.extensions_mut().insert(s);
        }
        req
    }
}

/// Runs `scan` with room for a usual head's fields and, only for a head with more, again
/// with room for all: zeroing room for 100 spans per head was 0.3% of a request's
/// instructions. `scan` gives the head's other parts and how many spans it filled; at most
/// as many fields as it has room for, or `TooManyFields`.
fn scan_fields<'s, T>(
    few: &'s mut [Span; FEW_FIELDS],
    all: &'s mut Option<[Span; MAX_FIELDS]>,
    mut scan: impl FnMut(&mut [Span]) -> Result<Option<(T, usize)>, HeadError>,
) -> Result<Option<(T, &'s [Span])>, HeadError> {
    match scan(few) {
        Err(HeadError::TooManyFields) => {}
        Ok(Some((parts, n))) => return Ok(Some((parts, &few[..n]))),
        other => return other.map(|_| None),
    }
    let all = all.insert([Span::default(); MAX_FIELDS]);
    Ok(scan(all)?.map(|(parts, n)| (parts, &all[..n])))
}

/// Slots for httparse's fields: uninitialised, so their number costs nothing; a parse gets
/// as many as it has spans for.
type Slots<'h> = [MaybeUninit<httparse::Header<'h>>; MAX_FIELDS];

/// A request head's length, method, target and minor version, with its fields' spans in
/// `spans`; `Ok(None)`: not complete yet.
#[allow(clippy::type_complexity)]
fn scan_request(
    buf: &BytesMut,
    limits: Limits,
    spans: &mut [Span],
) -> Result<Option<((usize, Method, (u32, u32), Option<u8>), usize)>, HeadError> {
    let mut slots: Slots<'_> = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots[..spans.len()])
        .map_err(malformed)?;
    let Some(len) = head_len(status, buf.len(), limits)? else {
        return Ok(None);
    };
    let mut kept = 0;
    for h in req.headers.iter() {
        // Dropped, as nginx does by default: IIS turns `-` into `_` in server variables,
        // so a client's `X_Forwarded_For` could pass for the X-Forwarded-For Portico sets.
        if h.name.as_bytes().contains(&b'_') {
            continue;
        }
        spans[kept] = Span {
            name: offsets(buf, h.name.as_bytes()),
            value: offsets(buf, h.value),
        };
        kept += 1;
    }
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Malformed("The method or request target is not valid."))?;
    // A complete parse always has a method and a path.
    let target = req.path.map_or((0, 0), |p| offsets(buf, p.as_bytes()));
    Ok(Some(((len, method, target, req.version), kept)))
}

/// Parses a request head from the front of `buf`. `Ok(None)`: not complete yet, read more.
/// On success the head's bytes are split off `buf`, which keeps what follows (the body, or
/// a pipelined request).
pub fn parse_request(buf: &mut BytesMut, limits: Limits) -> Result<Option<RequestHead>, HeadError> {
    let limits = limits.clamped();
    let (mut few, mut all) = ([Span::default(); FEW_FIELDS], None);
    let Some(((len, method, target, minor), spans)) =
        scan_fields(&mut few, &mut all, |spans| scan_request(buf, limits, spans))?
    else {
        return Ok(None);
    };
    check_target(&method, &buf[target.0 as usize..target.1 as usize])?;
    let version = version(minor);
    let framing = framing::request(version == Version::HTTP_10, pairs(&buf[..len], spans))
        .map_err(HeadError::Framing)?;
    let head = buf.split_to(len).freeze();
    let (headers, spelling) = fields(&head, spans)?;
    let target = head.slice(target.0 as usize..target.1 as usize);
    // httparse accepts bytes `http::Uri` does not (`<`, `"`, a backslash in an authority):
    // refused here, so the request is never routed as something else.
    let uri = http::Uri::from_maybe_shared(target.clone())
        .map_err(|_| HeadError::Malformed("The request target is not a valid URI."))?;
    Ok(Some(RequestHead {
        method,
        uri,
        target,
        version,
        headers,
        spelling,
        framing,
    }))
}

/// A response head's length, status code, reason and minor version, with its fields' spans
/// in `spans`; `Ok(None)`: not complete yet.
#[allow(clippy::type_complexity)]
fn scan_response(
    buf: &BytesMut,
    limits: Limits,
    spans: &mut [Span],
) -> Result<Option<((usize, u16, (u32, u32), Option<u8>), usize)>, HeadError> {
    let mut slots: Slots<'_> = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots[..spans.len()])
        .map_err(malformed)?;
    let Some(len) = head_len(status, buf.len(), limits)? else {
        return Ok(None);
    };
    for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
        span.name = offsets(buf, h.name.as_bytes());
        span.value = offsets(buf, h.value);
    }
    let reason = resp.reason.map_or((0, 0), |r| offsets(buf, r.as_bytes()));
    Ok(Some((
        (len, resp.code.unwrap_or_default(), reason, resp.version),
        resp.headers.len(),
    )))
}

/// Parses a member's response head from the front of `buf`; `to_head`: the request was
/// HEAD (its response has no body whatever it says). `Ok(None)`: read more.
pub fn parse_response(
    buf: &mut BytesMut,
    limits: Limits,
    to_head: bool,
) -> Result<Option<ResponseHead>, HeadError> {
    let limits = limits.clamped();
    let (mut few, mut all) = ([Span::default(); FEW_FIELDS], None);
    let Some(((len, code, reason, minor), spans)) = scan_fields(&mut few, &mut all, |spans| {
        scan_response(buf, limits, spans)
    })?
    else {
        return Ok(None);
    };
    let status = StatusCode::from_u16(code)
        .map_err(|_| HeadError::Malformed("The status code is not three digits."))?;
    let version = version(minor);
    let framing = framing::response(
        to_head,
        code,
        version == Version::HTTP_10,
        pairs(&buf[..len], spans),
    )
    .map_err(HeadError::Framing)?;
    let head = buf.split_to(len).freeze();
    let (headers, spelling) = fields(&head, spans)?;
    let reason = head.slice(reason.0 as usize..reason.1 as usize);
    Ok(Some(ResponseHead {
        version,
        status,
        reason,
        headers,
        spelling,
        framing,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head_bytes: 64 * 1024,
    };

    fn request(raw: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        parse_request(&mut BytesMut::from(raw), LIMITS)
    }

    #[test]
    fn heads_past_the_first_room_parse_whole_up_to_the_limit() {
        for (fields, whole) in [
            (FEW_FIELDS, true),
            (FEW_FIELDS + 1, true),
            (MAX_FIELDS, true),
            (MAX_FIELDS + 1, false),
        ] {
            let mut req = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
            let mut resp = String::from("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
            for i in 1..fields {
                req.push_str(&format!("X-F{i}: {i}\r\n"));
                resp.push_str(&format!("X-F{i}: {i}\r\n"));
            }
            req.push_str("\r\n");
            resp.push_str("\r\n");
            let parsed = parse_request(&mut BytesMut::from(req.as_bytes()), LIMITS);
            let answered = parse_response(&mut BytesMut::from(resp.as_bytes()), LIMITS, false);
            if whole {
                let head = parsed.unwrap().unwrap();
                assert_eq!(head.headers.len(), fields, "{fields} request fields");
                assert_eq!(head.headers.get("x-f1").unwrap(), "1");
                let last = format!("x-f{}", fields - 1);
                assert!(fields == 1 || head.headers.contains_key(last.as_str()));
                assert_eq!(
                    answered.unwrap().unwrap().headers.len(),
                    fields,
                    "{fields} response fields"
                );
            } else {
                assert!(
                    matches!(parsed, Err(HeadError::TooManyFields)),
                    "{fields} request fields"
                );
                assert!(
                    matches!(answered, Err(HeadError::TooManyFields)),
                    "{fields} response fields"
                );
            }
        }
    }

    #[test]
    fn a_request_head_is_split_off_and_its_values_share_the_buffer() {
        let mut buf = BytesMut::from(
            &b"POST /owa/ev.owa?ns=x%2Fy HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 5\r\nX-OWA-CANARY: abc\r\n\r\nhelloGET"[..],
        );
        let head = parse_request(&mut buf, LIMITS).unwrap().unwrap();
        assert_eq!(
            &buf[..],
            b"helloGET",
            "the body and what follows stay in the buffer"
        );
        assert_eq!(head.method, Method::POST);
        assert_eq!(
            &head.target[..],
            b"/owa/ev.owa?ns=x%2Fy",
            "the raw target, not decoded"
        );
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.framing, Framing::Length(5));
        assert_eq!(head.headers["host"], "mail.contoso.com");
        assert_eq!(head.headers["x-owa-canary"], "abc");
        let spelling = head.spelling.expect("X-OWA-CANARY is not Title-Case");
        assert_eq!(spelling.name(&http::header::HOST, 0), Some(&b"Host"[..]));
        assert_eq!(
            spelling.name(&HeaderName::from_static("x-owa-canary"), 0),
            Some(&b"X-OWA-CANARY"[..])
        );
    }

    #[test]
    fn title_case_names_need_no_spelling() {
        let head = request(
            b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: wrk\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.spelling.is_none());
        assert_eq!(head.framing, Framing::Empty);
    }

    #[test]
    fn a_head_arrives_in_pieces() {
        let raw = b"GET /a HTTP/1.0\r\nHost: a\r\n\r\n";
        for cut in 0..raw.len() {
            assert!(request(&raw[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let head = request(raw).unwrap().unwrap();
        assert_eq!(head.version, Version::HTTP_10);
    }

    #[test]
    fn bare_lf_ends_lines_and_cannot_hide_a_field() {
        let head = request(b"GET / HTTP/1.1\nHost: a\nX-A: b\n\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.headers.len(), 2);
        let head = request(b"GET / HTTP/1.1\r\nHost: a\nHost: evil\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            head.headers.get_all("host").iter().count(),
            2,
            "both Host lines are seen"
        );
    }

    #[test]
    fn malformed_requests_are_refused_with_the_right_status() {
        let post = "POST /echo HTTP/1.1\r\nHost: a\r\n";
        let cases: Vec<(&str, String, u16)> = vec![
            (
                "space before the colon",
                format!("{post}Transfer-Encoding : chunked\r\n\r\n"),
                400,
            ),
            (
                "tab before the colon",
                format!("{post}Content-Length\t: 0\r\n\r\n"),
                400,
            ),
            ("obs-fold", format!("{post}X-Folded: a\r\n b\r\n\r\n"), 400),
            (
                "obs-fold hiding TE",
                format!("{post}X-A: a\r\n Transfer-Encoding: chunked\r\n\r\n"),
                400,
            ),
            (
                "bare CR in a line",
                format!("{post}X-A: a\rTransfer-Encoding: chunked\r\n\r\n"),
                400,
            ),
            (
                "bare CR as line end",
                "GET /echo HTTP/1.1\rHost: a\r\r".to_string(),
                400,
            ),
            ("NUL in a value", format!("{post}X-A: a\0b\r\n\r\n"), 400),
            ("NUL in a name", format!("{post}X-\0A: b\r\n\r\n"), 400),
            ("bad name character", format!("{post}X(A): b\r\n\r\n"), 400),
            (
                "control character in a value",
                format!("{post}X-A: a\x01b\r\n\r\n"),
                400,
            ),
            (
                "line without a colon",
                format!("{post}Transfer-Encoding chunked\r\n\r\n"),
                400,
            ),
            (
                "space after the version",
                "GET /echo HTTP/1.1 \r\nHost: a\r\n\r\n".to_string(),
                400,
            ),
            (
                "HTTP/2.0 request line",
                "GET / HTTP/2.0\r\nHost: a\r\n\r\n".to_string(),
                400,
            ),
            (
                "CL and TE",
                format!("{post}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"),
                400,
            ),
            (
                "two differing CL",
                format!("{post}Content-Length: 0\r\nContent-Length: 48\r\n\r\n"),
                400,
            ),
            (
                "TE gzip, chunked",
                format!("{post}Transfer-Encoding: gzip, chunked\r\n\r\n"),
                400,
            ),
            (
                "TE on HTTP/1.0",
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_string(),
                400,
            ),
            (
                "too many fields",
                format!(
                    "GET / HTTP/1.1\r\n{}\r\n",
                    (0..150)
                        .map(|i| format!("X-H{i}: v\r\n"))
                        .collect::<String>()
                ),
                431,
            ),
        ];
        for (name, raw, status) in cases {
            let err = request(raw.as_bytes()).expect_err(name);
            assert_eq!(err.status().as_u16(), status, "{name}: {err}");
        }
    }

    #[test]
    fn targets_that_could_pass_a_path_rule_are_refused() {
        for raw in [
            &b"GET /owa/#/../../ecp/ HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"CONNECT mail.contoso.com:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET owa/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            let err = request(raw).expect_err(std::str::from_utf8(raw).unwrap());
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        }
        for raw in [
            &b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET http://a/owa/?x=%23 HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(request(raw).unwrap().is_some());
        }
    }

    #[test]
    fn names_with_underscores_are_dropped_as_nginx_does() {
        let head = request(
            b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nContent_Length: 5\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.headers.len(), 1);
        assert_eq!(head.framing, Framing::Empty);
    }

    #[test]
    fn the_end_of_a_head_is_found_in_linear_time_however_it_arrives() {
        let raw = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut scan = EndScan::default();
        let mut seen = Vec::new();
        let mut found = Vec::new();
        for &b in raw.iter() {
            seen.push(b);
            if scan.complete(&seen) {
                found.push(seen.len());
            }
        }
        assert_eq!(
            found,
            vec![raw.len()],
            "only the full head's blank line counts"
        );
        let mut scan = EndScan::default();
        assert!(scan.complete(b"GET / HTTP/1.0\n\n"));
        scan.reset();
        assert!(!scan.complete(b"GET / HTTP/1.0\r\nHost: a\r\n"));
    }

    #[test]
    fn a_head_over_the_limit_is_refused_before_it_completes() {
        let limits = Limits {
            max_head_bytes: 1024,
        };
        let mut partial =
            BytesMut::from(format!("GET /?{} HTTP/1.1\r\n", "a".repeat(2000)).as_bytes());
        assert_eq!(
            parse_request(&mut partial, limits).unwrap_err(),
            HeadError::TooLarge
        );
        let mut whole = BytesMut::from(
            format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(1100)).as_bytes(),
        );
        assert_eq!(
            parse_request(&mut whole, limits).unwrap_err(),
            HeadError::TooLarge
        );
    }

    #[test]
    fn a_response_head_keeps_its_reason_and_spelling() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\nrequest-id: 6d0c\r\nContent-Length: 0\r\n\r\n"[..],
        );
        let head = parse_response(&mut buf, LIMITS, false).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(head.status, StatusCode::UNAUTHORIZED);
        assert_eq!(&head.reason[..], b"Unauthorized");
        assert_eq!(head.framing, Framing::Length(0));
        let spelling = head.spelling.unwrap();
        assert_eq!(
            spelling.name(&http::header::WWW_AUTHENTICATE, 0),
            Some(&b"WWW-Authenticate"[..])
        );
        assert_eq!(
            spelling.name(&HeaderName::from_static("request-id"), 0),
            Some(&b"request-id"[..])
        );
    }

    #[test]
    fn a_response_without_a_reason_or_length_runs_to_the_close() {
        let mut buf = BytesMut::from(&b"HTTP/1.0 200\r\nServer: x\r\n\r\nbody"[..]);
        let head = parse_response(&mut buf, LIMITS, false).unwrap().unwrap();
        assert_eq!(head.version, Version::HTTP_10);
        assert!(head.reason.is_empty());
        assert_eq!(head.framing, Framing::UntilClose);
        assert_eq!(&buf[..], b"body");
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..]);
        assert_eq!(
            parse_response(&mut buf, LIMITS, true)
                .unwrap()
                .unwrap()
                .framing,
            Framing::Empty
        );
    }

    #[test]
    fn malformed_responses_are_refused() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A : a\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(raw);
            assert!(
                parse_response(&mut buf, LIMITS, false).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
