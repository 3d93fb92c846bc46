//! Kubernetes manifests on arbitrary text: parsed (YAML, JSON and TOML), applied to a store
//! over the example node and built into a snapshot: errors or a snapshot, never a panic.
#![no_main]

use control::k8s::{parse, Format, Validation};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

fn base() -> &'static control::config::Config {
    static BASE: OnceLock<control::config::Config> = OnceLock::new();
    BASE.get_or_init(|| toml::from_str(include_str!("../../configs/node-pcap.toml")).expect("example config"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for format in [Format::Yaml, Format::Json, Format::Toml] {
        let Ok(parsed) = parse(format, "fuzz", text, "node-1", Validation::Warn) else { continue };
        let mut store = control::store::Store::new(base().clone());
        store.begin();
        if store.apply(parsed.objects).is_ok() {
            let (cfg, origins) = store.config();
            if let Err(e) = control::build::build(&cfg, Path::new("/nonexistent"), 1) {
                let _ = origins.describe(&e);
            }
        }
        store.rollback();
    }
});
