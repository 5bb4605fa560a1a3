//! IIS import: any XML gives TOML or an error, never a panic; the TOML it writes parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico::import::{import, Source};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (app, web) = match text.split_once("\u{0}") {
        Some((a, w)) => (a, Some(w)),
        None => (text, None),
    };
    let app = Source {
        name: "applicationHost.config",
        text: app,
    };
    let web = web.map(|text| Source {
        name: "web.config",
        text,
    });
    if let Ok(imported) = import(app, web) {
        if let Err(e) = imported.toml.parse::<toml::Table>() {
            panic!(
                "import wrote TOML that does not parse: {e}\n{}",
                imported.toml
            );
        }
    }
});
