//! Config loading: any text gives a `Config` or errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // A directory that does not exist: certificate and CA paths resolve to nothing.
        let _ =
            portico::config::from_str(Path::new("/nonexistent/portico-fuzz/portico.toml"), text);
    }
});
