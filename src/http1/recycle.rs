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
//!
//! Read buffers for heads are kept too: each head read into a fresh one cost two allocations
//! (the buffer, then the shared count its first split adds) and their frees, a tenth of a
//! plain-HTTP request's instructions. A read buffer comes back while the head's fields may
//! still point into it, so it is used again only once nothing does (`BytesMut::try_reclaim`,
//! which the `bytes` crate grants only to the last handle): the oldest first, and one still
//! in use when its turn comes is let go, to be freed by its last holder.

use std::cell::RefCell;
use std::collections::VecDeque;

use bytes::BytesMut;
use http::HeaderMap;

/// Kept per thread, of each kind: a worker has this many messages in flight at most
/// before a free one is simply dropped.
const KEEP: usize = 32;
/// A map with room for more fields than this is freed, not kept.
const MAX_ROOM: usize = 96;
/// A head buffer larger than this is freed, not kept.
const MAX_HEAD: usize = 8 * 1024;

/// A read buffer with more room than this left is freed, not kept. Only `Reader` gives
/// buffers back, and only those it took here and never grew.
const MAX_READ: usize = 8 * 1024;
/// Read buffers still in use looked at, at most, before a new one is made.
const READ_TRIES: usize = 2;

thread_local! {
    static MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    static HEADS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static READS: RefCell<VecDeque<BytesMut>> = const { RefCell::new(VecDeque::new()) };
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

/// An empty read buffer with room for at least `room` bytes, that nothing else points into.
pub(super) fn read_buf(room: usize) -> BytesMut {
    let kept = READS.with(|r| {
        let mut r = r.try_borrow_mut().ok()?;
        for _ in 0..READ_TRIES {
            let mut buf = r.pop_front()?;
            if buf.try_reclaim(room) {
                return Some(buf);
            }
        }
        None
    });
    kept.unwrap_or_else(|| BytesMut::with_capacity(room))
}

/// An emptied read buffer (or what is left of one after its head was split off).
pub(super) fn give_read(buf: BytesMut) {
    debug_assert!(buf.is_empty());
    if buf.capacity() > MAX_READ {
        return;
    }
    READS.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            if r.len() < KEEP {
                r.push_back(buf);
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

    /// The invariant that makes keeping read buffers safe: bytes handed out of one are never
    /// written over, however many heads are read on the thread meanwhile.
    #[test]
    fn a_read_buffer_is_used_again_only_once_nothing_points_into_it() {
        READS.with(|r| r.borrow_mut().clear());
        let mut a = read_buf(4096);
        a.extend_from_slice(b"GET /a HTTP/1.1\r\n\r\n");
        let head_a = a.split().freeze();
        let a_at = head_a.as_ptr() as usize;
        give_read(a);
        // Taken while `head_a` is alive: a new buffer, and the kept one is let go.
        let mut b = read_buf(4096);
        assert!(!(a_at..a_at + 4096).contains(&(b.as_ptr() as usize)));
        b.extend_from_slice(b"GET /b HTTP/1.1\r\n\r\n");
        assert_eq!(&head_a[..], b"GET /a HTTP/1.1\r\n\r\n");
        let head_b = b.split().freeze();
        let b_at = head_b.as_ptr();
        give_read(b);
        drop(head_b);
        // Nothing points into it any more: the same memory, from its start, with its room.
        let c = read_buf(4096);
        assert_eq!(c.as_ptr(), b_at);
        assert!(c.is_empty() && c.capacity() >= 4096);
        assert_eq!(&head_a[..], b"GET /a HTTP/1.1\r\n\r\n");
        // One with more room than the bound is freed, not kept.
        drop(c);
        give_read(BytesMut::with_capacity(MAX_READ * 4));
        assert!(read_buf(4096).capacity() <= MAX_READ);
    }
}
