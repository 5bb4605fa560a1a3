//! Portico's HTTP/1.1 codec (`portico::http1`). The first byte picks the part:
//! - a request or response head never panics, never consumes more than it was given, and
//!   what the writer makes of a parsed head parses back to the same head (method, target,
//!   status, fields, spellings, framing): forwarding a head cannot change its meaning;
//! - a chunked body decodes to the same body, trailers and end however the input is split
//!   (the decoder never consumes half a framing line), and never reports data outside it.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use portico::http1::chunked::{Decoder, Piece};
use portico::http1::head::{parse_request, parse_response, Limits};
use portico::http1::write;

const LIMITS: Limits = Limits { max_head_bytes: 16 * 1024 };

fn fields(h: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect()
}

fn names(h: &http::HeaderMap, s: Option<&portico::http1::spelling::Spelling>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut last = None;
    let mut nth = 0;
    for (n, _) in h {
        nth = if last == Some(n) { nth + 1 } else { 0 };
        last = Some(n);
        let mut spelled = Vec::new();
        match s.and_then(|s| s.name(n, nth)) {
            Some(b) => spelled.extend_from_slice(b),
            None => portico::http1::spelling::write_title_case(&mut spelled, n.as_str().as_bytes()),
        }
        out.push(spelled);
    }
    out
}

fn request(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let Ok(Some(head)) = parse_request(&mut buf, LIMITS) else { return };
    assert!(buf.len() < data.len());
    let mut out = Vec::new();
    write::request_head(&mut out, &head.method, &head.target, &head.headers, &[], head.spelling.as_ref());
    let mut again = BytesMut::from(&out[..]);
    let back = parse_request(&mut again, Limits { max_head_bytes: usize::MAX })
        .expect("a written head parses")
        .expect("a written head is complete");
    assert!(again.is_empty());
    assert_eq!(back.method, head.method);
    assert_eq!(back.target, head.target);
    // HTTP/1.0 with Transfer-Encoding is refused, so rewriting 1.0 as 1.1 frames the same.
    assert_eq!(back.framing, head.framing);
    // The writer always says HTTP/1.1; framing is judged again on the same fields.
    assert_eq!(fields(&back.headers), fields(&head.headers));
    assert_eq!(names(&back.headers, back.spelling.as_ref()), names(&head.headers, head.spelling.as_ref()));
}

fn response(data: &[u8], to_head: bool) {
    let mut buf = BytesMut::from(data);
    let Ok(Some(head)) = parse_response(&mut buf, LIMITS, to_head) else { return };
    assert!(buf.len() < data.len());
    let mut out = Vec::new();
    write::response_head(&mut out, head.status, Some(&head.reason), &head.headers, head.spelling.as_ref());
    let mut again = BytesMut::from(&out[..]);
    let back = parse_response(&mut again, Limits { max_head_bytes: usize::MAX }, to_head)
        .expect("a written head parses")
        .expect("a written head is complete");
    assert_eq!(back.status, head.status);
    if !head.reason.is_empty() {
        assert_eq!(back.reason, head.reason);
    }
    assert_eq!(fields(&back.headers), fields(&head.headers));
    assert_eq!(names(&back.headers, back.spelling.as_ref()), names(&head.headers, head.spelling.as_ref()));
    if head.version == http::Version::HTTP_11 {
        assert_eq!(back.framing, head.framing);
    }
}

type Outcome = Result<(Vec<u8>, Vec<Vec<u8>>, bool), portico::http1::chunked::ChunkedError>;

fn chunked_in_steps(input: &[u8], step: usize) -> Outcome {
    let mut d = Decoder::new();
    let (mut body, mut trailers, mut buf, mut fed) = (Vec::new(), Vec::new(), Vec::new(), 0);
    loop {
        let (used, piece) = d.decode(&buf)?;
        assert!(used <= buf.len());
        match &piece {
            Piece::Data(r) => {
                assert!(r.end <= used && !r.is_empty());
                body.extend_from_slice(&buf[r.clone()]);
            }
            Piece::Trailer(r) => {
                assert!(r.end <= used);
                trailers.push(buf[r.clone()].to_vec());
            }
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

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => request(rest),
        1 => response(rest, mode & 0x80 != 0),
        _ => {
            let whole = chunked_in_steps(rest, rest.len().max(1));
            let step = usize::from(mode >> 2).max(1);
            assert_eq!(chunked_in_steps(rest, step), whole, "step {step}");
        }
    }
});
