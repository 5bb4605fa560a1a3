//! The config file: format (`file`), validation and compilation into the runtime model
//! (`model`). Nothing starts half-configured: `load` returns a whole `Config` or every error.

mod compile;
pub mod duration;
pub mod error;
pub mod file;
pub mod model;
pub mod size;

pub use compile::parse_status_ranges;
pub use error::{ConfigError, ConfigErrors};
pub use model::*;

use std::path::Path;

/// Reads, parses, validates and compiles a config file (certificates and CA files included).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    from_str(path, &source)
}

/// The config digest: SHA-256 of the file's bytes, lower-case hex, the same text
/// `sha256sum FILE` prints, so two instances (or an instance and a file) compare without Portico.
pub fn digest(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Like `load`, for a config held in memory (`path` names it in errors and anchors relative paths).
pub fn from_str(path: &Path, source: &str) -> Result<Config, ConfigErrors> {
    compile::compile(path, source)
}
