//! Every config under examples/ validates once its certificate files exist.

use std::process::Command;

#[test]
fn example_configs_validate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        let ca = portico::demo::pki::TestCa::new("example CA").unwrap();
        std::fs::write(certs.join("contoso-root.pem"), ca.cert_pem()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // Create every certificate the example names.
        for stem in text
            .split("cert = \"certs/")
            .skip(1)
            .filter_map(|rest| rest.split(".pem").next())
        {
            ca.issue(&["lyncweb.contoso.com", "*.contoso.com"])
                .unwrap()
                .write(&certs, stem)
                .unwrap();
        }
        let copy = dir.path().join(path.file_name().unwrap());
        std::fs::write(&copy, &text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["validate", "--config"])
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 1, "no example config found");
}
