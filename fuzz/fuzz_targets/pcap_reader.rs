//! The pcap reader on arbitrary files: records or an error, never a panic or a huge allocation.
#![no_main]

use io_backends::pcap::PcapReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = PcapReader::new(data) {
        let mut buf = Vec::new();
        for _ in 0..64 {
            match r.next_into(&mut buf) {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
});
