//! The config builder on arbitrary text: an error or a snapshot, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = control::build::build_text(text, Path::new("fuzz.toml"), Path::new("/nonexistent"), 1);
    }
});
