//! The resolver's parsers on arbitrary bytes: the first byte picks one. 0: a client query
//! through `check_query` (the checked query then dressed as an error response and encoded);
//! 1: `resolv.conf` text; 2: the same text as every kube-dns ConfigMap key. An answer or an
//! error, never a panic.
#![no_main]

use control::dns::forward::{check_query, encode_or_servfail, error_response, QueryCheck, EDNS_PAYLOAD};
use control::dns::{parse_kube_dns_config, parse_resolv_conf};
use hickory_proto::op::ResponseCode;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 3 {
        0 => match check_query(rest) {
            QueryCheck::Query(q) => {
                let _ = encode_or_servfail(&error_response(&q, ResponseCode::ServFail, EDNS_PAYLOAD));
            }
            QueryCheck::Error(e) => {
                let _ = encode_or_servfail(&e);
            }
            QueryCheck::Drop => {}
        },
        1 => {
            let _ = parse_resolv_conf(&String::from_utf8_lossy(rest));
        }
        _ => {
            let text = String::from_utf8_lossy(rest).into_owned();
            let data: BTreeMap<String, String> = ["stubDomains", "upstreamNameservers", "hosts", "other"]
                .iter()
                .map(|k| (k.to_string(), text.clone()))
                .collect();
            let _ = parse_kube_dns_config(&data);
        }
    }
});
