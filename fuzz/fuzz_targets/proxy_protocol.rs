//! The PROXY protocol header parser: never panics, never claims more bytes than it was given,
//! and a v1 header never uses more than 107 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico::listener::proxy_protocol::{parse_slice, V1_MAX_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok((header, used)) = parse_slice(data) {
        assert!(used <= data.len());
        if data.starts_with(b"PROXY ") {
            assert!(used <= V1_MAX_LEN);
        }
        assert_eq!(header.source.is_some(), header.destination.is_some());
    }
});
