//! The header walker and every view it builds: no input may panic, and metadata offsets must
//! stay inside the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switch_core::parse::{parse, ParseOptions};

fuzz_target!(|data: &[u8]| {
    for verify in [false, true] {
        if let Ok(m) = parse(data, ParseOptions { verify_l4_checksum: verify }) {
            assert!(usize::from(m.ip_end) <= data.len() || m.l3 == switch_core::parse::L3::Arp);
            assert!(m.l4_off <= m.ip_end || m.l3 == switch_core::parse::L3::Arp);
        }
    }
});
