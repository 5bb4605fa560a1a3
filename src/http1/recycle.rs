//! The two allocations every message needs, kept per thread for the next message: a header
//! map (two allocations of its own) and a buffer to write a head into. Under keep-alive
//! load they were 6 of the 16 allocations of a proxied request, a fifth of its allocator
//! instructions (callgrind, `bench/instructions.sh`). A map or buffer is given back once
//! its head is written, and taken again for the next head parsed or written on the same
//! thread; each worker thread keeps its own, so nothing here is shared or locked.
//!
//! Only small ones are kept, and only a few: what a thread holds here is bounded
//! (`KEEP` of each, with room for at most `MAX_ROOM` fields or `MAX_HEAD` bytes), and a map or
//! buffer that grew past the bound (a head of 200 cookies) is freed as before.

use std::cell::RefCell;

use http::HeaderMap;

/// Kept per thread, of each kind: a worker has this many messages in flight at most
/// before a free one is simply dropped.
const KEEP: usize = 32;
/// A map with room for more fields than this is freed, not kept.
const MAX_ROOM: usize = 96;
/// A head buffer larger than this is freed, not kept.
const MAX_HEAD: usize = 8 * 1024;

thread_local! {
    static MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    static HEADS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for `fields`.
pub(super) fn header_map(fields: usize) -> HeaderMap {
    let kept = MAPS.with(|m| m.try_borrow_mut().ok().and_then(|mut m| m.pop()));
    match kept {
        Some(mut map) => {
            map.reserve(fields);
            map
        }
        None => HeaderMap::with_capacity(fields),
    }
}

/// A map whose head is written: its fields are dropped now, its room kept.
pub(super) fn give_map(mut map: HeaderMap) {
    if map.capacity() > MAX_ROOM || map.capacity() == 0 {
        return;
    }
    map.clear();
    MAPS.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            if m.len() < KEEP {
                m.push(map);
            }
        }
    });
}

/// An empty buffer to write a head into.
pub(super) fn head_buf() -> Vec<u8> {
    HEADS
        .with(|h| h.try_borrow_mut().ok().and_then(|mut h| h.pop()))
        .unwrap_or_default()
}

/// A head buffer whose bytes are written (or no longer needed).
pub(super) fn give_head(mut buf: Vec<u8>) {
    if buf.capacity() > MAX_HEAD || buf.capacity() == 0 {
        return;
    }
    buf.clear();
    HEADS.with(|h| {
        if let Ok(mut h) = h.try_borrow_mut() {
            if h.len() < KEEP {
                h.push(buf);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_given_back_comes_back_empty_with_its_room() {
        let mut m = header_map(4);
        m.insert("x-a", "1".parse().unwrap());
        let room = m.capacity();
        give_map(m);
        let again = header_map(2);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room);
        // A big one is freed, not kept.
        let mut big = HeaderMap::with_capacity(500);
        big.insert("x-b", "2".parse().unwrap());
        give_map(again);
        give_map(big);
        assert!(header_map(1).capacity() < 500);
    }

    #[test]
    fn a_head_buffer_given_back_comes_back_empty() {
        let mut b = head_buf();
        b.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
        let cap = b.capacity();
        give_head(b);
        let again = head_buf();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), cap);
        give_head(vec![0; MAX_HEAD * 2]);
        assert!(head_buf().capacity() <= MAX_HEAD);
    }
}
