//! The chunked transfer coding (RFC 9112 §7.1), decoded as a stream and strictly: every line
//! of framing must end in CRLF (a bare LF or CR inside a chunk line is how chunk-extension
//! smuggling splits one body into two), sizes are 1 to 16 hex digits, and the lines that
//! are not data (size lines with their extensions, trailer fields) have bounded length.
//!
//! The decoder holds no buffer: it reads from the caller's, consumes what it can and says
//! so, and never consumes half a framing line (the caller reads more and calls again), so a
//! body is decoded the same whichever way the network splits it.

use std::ops::Range;

/// The longest size line (size, extensions and CRLF) accepted.
pub const MAX_SIZE_LINE: usize = 4096;
/// The most bytes of trailer fields accepted after the last chunk.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk size that is not 1 to 16 hex digits.
    BadSize,
    /// Something other than `;` extensions after the size, or a control character in them.
    BadExtension,
    /// A framing line that does not end in CRLF: a bare LF, a bare CR, or other bytes where
    /// the CRLF after a chunk's data belongs.
    BadLineEnd,
    /// A size line longer than [`MAX_SIZE_LINE`].
    LineTooLong,
    /// A trailer field that is not `name: value`, or trailers over [`MAX_TRAILERS`].
    BadTrailer,
}

impl ChunkedError {
    /// The sentence an error page or log line gives.
    pub fn message(self) -> &'static str {
        match self {
            Self::BadSize => "A chunk size is not 1 to 16 hexadecimal digits.",
            Self::BadExtension => "A chunk extension is malformed.",
            Self::BadLineEnd => "A chunk framing line does not end in CRLF.",
            Self::LineTooLong => "A chunk size line is longer than 4096 bytes.",
            Self::BadTrailer => "The chunked trailer fields are malformed or too large.",
        }
    }
}

impl std::fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ChunkedError {}

/// What one call to [`Decoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Body bytes at this range of the input.
    Data(Range<usize>),
    /// One trailer field line (without its CRLF) at this range of the input.
    Trailer(Range<usize>),
    /// Nothing more can be decoded from the input: read more and call again with what was
    /// not consumed.
    NeedMore,
    /// The last chunk and the trailer section are complete; the body has ended.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SizeLine,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// A chunked body's decoder; one per message.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    trailer_bytes: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Decoder {
            state: State::SizeLine,
            trailer_bytes: 0,
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the front of `input`: returns how many bytes it consumed and the piece
    /// it found (a data or trailer range lies inside the consumed bytes). Call again with
    /// `input[consumed..]` until [`Piece::NeedMore`] or [`Piece::End`].
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Piece), ChunkedError> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Done => return Ok((pos, Piece::End)),
                State::SizeLine => {
                    let Some(line) = line(&input[pos..], MAX_SIZE_LINE).map_err(|e| match e {
                        LineError::TooLong => ChunkedError::LineTooLong,
                        LineError::BadEnd => ChunkedError::BadLineEnd,
                    })?
                    else {
                        return Ok((pos, Piece::NeedMore));
                    };
                    let size = size_line(&input[pos..pos + line])?;
                    pos += line + 2;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    let avail = input.len() - pos;
                    if avail == 0 {
                        return Ok((pos, Piece::NeedMore));
                    }
                    let take = left.min(avail as u64) as usize;
                    self.state = if take as u64 == left {
                        State::DataEnd
                    } else {
                        State::Data(left - take as u64)
                    };
                    return Ok((pos + take, Piece::Data(pos..pos + take)));
                }
                State::DataEnd => match input.get(pos..pos + 2) {
                    None if input[pos..].iter().all(|&b| b == b'\r') => {
                        return Ok((pos, Piece::NeedMore))
                    }
                    Some(b"\r\n") => {
                        pos += 2;
                        self.state = State::SizeLine;
                    }
                    _ => return Err(ChunkedError::BadLineEnd),
                },
                State::Trailers => {
                    // One field line at most as long as a size line; at least room for the
                    // empty line that ends the section.
                    let room = MAX_TRAILERS
                        .saturating_sub(self.trailer_bytes)
                        .clamp(2, MAX_SIZE_LINE);
                    let Some(line) =
                        line(&input[pos..], room).map_err(|_| ChunkedError::BadTrailer)?
                    else {
                        return Ok((pos, Piece::NeedMore));
                    };
                    if line == 0 {
                        self.state = State::Done;
                        return Ok((pos + 2, Piece::End));
                    }
                    let field = &input[pos..pos + line];
                    if !is_field_line(field) {
                        return Err(ChunkedError::BadTrailer);
                    }
                    self.trailer_bytes += line + 2;
                    return Ok((pos + line + 2, Piece::Trailer(pos..pos + line)));
                }
            }
        }
    }
}

enum LineError {
    TooLong,
    BadEnd,
}

/// The length of the line at the front of `input` before its CRLF, `None` if its end has
/// not arrived. A CR not followed by LF, or an LF without its CR, is an error.
fn line(input: &[u8], max: usize) -> Result<Option<usize>, LineError> {
    let window = &input[..input.len().min(max)];
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) if window[i] == b'\n' => Err(LineError::BadEnd),
        Some(i) => match input.get(i + 1) {
            Some(b'\n') => Ok(Some(i)),
            Some(_) => Err(LineError::BadEnd),
            None => Ok(None),
        },
        None if input.len() >= max => Err(LineError::TooLong),
        None => Ok(None),
    }
}

/// `chunk-size [ BWS ; chunk-ext ]` with the CRLF already removed.
fn size_line(line: &[u8]) -> Result<u64, ChunkedError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(ChunkedError::BadSize);
    }
    let size = line[..digits].iter().fold(0u64, |n, &d| {
        (n << 4) | u64::from((d as char).to_digit(16).unwrap_or(0))
    });
    // Lengths past `i64::MAX` are refused, as for Content-Length.
    if size > i64::MAX as u64 {
        return Err(ChunkedError::BadSize);
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    match rest.first() {
        None if rest.len() == line.len() - digits => Ok(size),
        // Whitespace after the size is allowed only before an extension (BWS ";").
        None => Err(ChunkedError::BadSize),
        Some(b';')
            if rest
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80) =>
        {
            Ok(size)
        }
        Some(b';') => Err(ChunkedError::BadExtension),
        Some(_) => Err(ChunkedError::BadSize),
    }
}

/// Trailer fields that may not come after a body (RFC 9110 §6.5.1): framing, routing,
/// authentication and the fields that say how to read the content. A decoder's caller
/// drops them.
pub fn is_forbidden_trailer(name: &[u8]) -> bool {
    const FORBIDDEN: &[&[u8]] = &[
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"authorization",
        b"proxy-authorization",
        b"www-authenticate",
        b"proxy-authenticate",
        b"cookie",
        b"set-cookie",
        b"content-encoding",
        b"content-type",
        b"content-range",
        b"trailer",
        b"connection",
        b"keep-alive",
        b"upgrade",
        b"te",
        b"expect",
        b"cache-control",
        b"age",
        b"expires",
        b"date",
        b"location",
        b"retry-after",
        b"vary",
        b"warning",
        b"max-forwards",
        b"range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"if-range",
    ];
    FORBIDDEN.iter().any(|f| f.eq_ignore_ascii_case(name))
}

/// A trailer field line: a token name, a colon, then visible characters, spaces and tabs.
fn is_field_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    colon > 0
        && line[..colon]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && line[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

/// The line that opens a chunk of `len` bytes: its size in hex and CRLF.
pub fn chunk_header(len: usize) -> ChunkHeader {
    let mut buf = [0u8; 18];
    let digits = if len == 0 {
        1
    } else {
        (usize::BITS - len.leading_zeros()).div_ceil(4) as usize
    };
    for (i, out) in buf[..digits].iter_mut().enumerate() {
        *out = b"0123456789abcdef"[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    buf[digits] = b'\r';
    buf[digits + 1] = b'\n';
    ChunkHeader {
        buf,
        len: digits + 2,
    }
}

/// A chunk's size line, on the stack.
#[derive(Clone, Copy)]
pub struct ChunkHeader {
    buf: [u8; 18],
    len: usize,
}

impl AsRef<[u8]> for ChunkHeader {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What ends each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// The body, the trailer lines, and whether the body ended.
    type Decoded = (Vec<u8>, Vec<Vec<u8>>, bool);

    /// Decodes `input` fed in pieces of `step` bytes, as a connection would: unconsumed
    /// bytes stay and more are appended. Returns the body, the trailers, and whether it ended.
    fn decode_in_steps(input: &[u8], step: usize) -> Result<Decoded, ChunkedError> {
        let mut d = Decoder::new();
        let (mut body, mut trailers) = (Vec::new(), Vec::new());
        let mut buf = Vec::new();
        let mut fed = 0;
        loop {
            let (used, piece) = d.decode(&buf)?;
            match &piece {
                Piece::Data(r) => body.extend_from_slice(&buf[r.clone()]),
                Piece::Trailer(r) => trailers.push(buf[r.clone()].to_vec()),
                Piece::End => return Ok((body, trailers, true)),
                Piece::NeedMore => {}
            }
            buf.drain(..used);
            if piece == Piece::NeedMore {
                if fed == input.len() {
                    return Ok((body, trailers, false));
                }
                let next = (fed + step).min(input.len());
                buf.extend_from_slice(&input[fed..next]);
                fed = next;
            }
        }
    }

    #[test]
    fn a_body_decodes_the_same_however_it_is_split() {
        let raw = b"5\r\nhello\r\n1A;name=\"v\" ; x\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\nX-B: two\r\n\r\nNEXT";
        let whole = decode_in_steps(raw, raw.len()).unwrap();
        assert_eq!(whole.0, b"helloabcdefghijklmnopqrstuvwxyz");
        assert_eq!(whole.1, vec![b"X-Sum: 1".to_vec(), b"X-B: two".to_vec()]);
        assert!(whole.2);
        for step in 1..raw.len() {
            assert_eq!(decode_in_steps(raw, step).unwrap(), whole, "step {step}");
        }
    }

    #[test]
    fn what_follows_the_last_chunk_is_not_consumed() {
        let raw = b"0\r\n\r\nGET / HTTP/1.1\r\n";
        let mut d = Decoder::new();
        assert_eq!(d.decode(raw).unwrap(), (5, Piece::End));
        assert!(d.is_done());
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        use ChunkedError::*;
        let cases: &[(&str, &[u8], ChunkedError)] = &[
            (
                "size 0x10",
                b"0x10\r\n0123456789abcdef\r\n0\r\n\r\n",
                BadSize,
            ),
            ("size -1", b"-1\r\n0\r\n\r\n", BadSize),
            ("17 hex digits", b"FFFFFFFFFFFFFFFFF1\r\n", BadSize),
            ("over i64::MAX", b"8000000000000000\r\n", BadSize),
            ("empty size", b"\r\nhello\r\n", BadSize),
            ("garbage after the size", b"5 x\r\nhello\r\n", BadSize),
            ("space then nothing", b"5 \r\nhello\r\n", BadSize),
            (
                "bare LF in an extension",
                b"5;a\nb\r\nhello\r\n0\r\n\r\n",
                BadLineEnd,
            ),
            (
                "bare CR in an extension",
                b"5;a\rb\r\nhello\r\n0\r\n\r\n",
                BadLineEnd,
            ),
            (
                "bare LF ending the size",
                b"5\nhello\r\n0\r\n\r\n",
                BadLineEnd,
            ),
            (
                "control character in an extension",
                b"5;a\x01\r\nhello\r\n",
                BadExtension,
            ),
            (
                "data longer than its size",
                b"2\r\nhello\r\n0\r\n\r\n",
                BadLineEnd,
            ),
            ("no CRLF after the data", b"5\r\nhello0\r\n\r\n", BadLineEnd),
            (
                "bare LF after the data",
                b"5\r\nhello\n0\r\n\r\n",
                BadLineEnd,
            ),
            ("trailer without a colon", b"0\r\nX-A\r\n\r\n", BadTrailer),
            (
                "trailer with a bare LF",
                b"0\r\nX-A: 1\nX-B: 2\r\n\r\n",
                BadTrailer,
            ),
        ];
        for (name, raw, want) in cases {
            for step in [1, raw.len()] {
                assert_eq!(
                    decode_in_steps(raw, step).map(|_| ()),
                    Err(*want),
                    "{name}, step {step}"
                );
            }
        }
    }

    #[test]
    fn framing_lines_are_bounded() {
        let mut long = b"5;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_SIZE_LINE));
        assert_eq!(
            decode_in_steps(&long, 1000).map(|_| ()),
            Err(ChunkedError::LineTooLong)
        );
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_TRAILERS + 100 {
            trailers.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(
            decode_in_steps(&trailers, 512).map(|_| ()),
            Err(ChunkedError::BadTrailer)
        );
    }

    #[test]
    fn the_largest_size_is_read_without_overflow() {
        let mut d = Decoder::new();
        let (used, piece) = d.decode(b"7FFFFFFFFFFFFFFF\r\nab").unwrap();
        assert_eq!((used, piece), (20, Piece::Data(18..20)));
        assert!(!d.is_done());
    }

    #[test]
    fn chunk_headers_are_lower_case_hex() {
        for (len, want) in [
            (0, "0\r\n"),
            (1, "1\r\n"),
            (15, "f\r\n"),
            (16, "10\r\n"),
            (8192, "2000\r\n"),
            (usize::MAX, "ffffffffffffffff\r\n"),
        ] {
            assert_eq!(chunk_header(len).as_ref(), want.as_bytes(), "{len}");
        }
    }

    #[test]
    fn what_the_encoder_writes_the_decoder_reads() {
        let mut wire = Vec::new();
        let parts: [&[u8]; 3] = [b"abc", &[7u8; 300], b"z"];
        for p in parts {
            wire.extend_from_slice(chunk_header(p.len()).as_ref());
            wire.extend_from_slice(p);
            wire.extend_from_slice(CHUNK_END);
        }
        wire.extend_from_slice(LAST_CHUNK);
        let (body, trailers, ended) = decode_in_steps(&wire, 7).unwrap();
        assert_eq!(body, parts.concat());
        assert!(trailers.is_empty() && ended);
    }
}
