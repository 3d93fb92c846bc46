use super::*;

#[test]
fn blocks_leave_out_network_and_broadcast() {
    let b = Block::cidr("10.96.0.0/12", true).unwrap();
    assert_eq!(b.first, u128::from(u32::from(std::net::Ipv4Addr::new(10, 96, 0, 1))));
    assert_eq!(b.last, u128::from(u32::from(std::net::Ipv4Addr::new(10, 111, 255, 254))));
    let b = Block::cidr("fd00:96::/108", true).unwrap();
    assert_eq!(b.last - b.first + 1, (1 << 20) - 1, "IPv6 has no broadcast address");
    // A /31 or /32 keeps every address.
    assert_eq!(Block::cidr("192.0.2.4/31", true).unwrap().last - Block::cidr("192.0.2.4/31", true).unwrap().first, 1);
    assert!(Block::cidr("10.96.0.1/12", true).unwrap_err().contains("host bits"));
    assert!(Block::cidr("10.96.0.0/33", true).is_err());
    assert!(Block::cidr("10.96.0.0", true).is_err());
}

#[test]
fn pools_take_cidrs_and_ranges_of_one_family() {
    let r = Block::pool("192.0.2.10-192.0.2.12").unwrap();
    assert!(r.contains("192.0.2.12".parse().unwrap()) && !r.contains("192.0.2.13".parse().unwrap()));
    assert!(!r.contains("::1".parse().unwrap()));
    assert!(Block::pool("192.0.2.12-192.0.2.10").is_err());
    assert!(Block::pool("192.0.2.1-::2").is_err());
    assert!(Block::pool("nonsense").is_err());
}

#[test]
fn picks_skip_what_others_hold_and_stop_when_full() {
    let b = Block::pool("192.0.2.1-192.0.2.3").unwrap();
    let mut used = InUse::default();
    let mut got = Vec::new();
    for i in 0..3 {
        let owner = format!("ns/s{i}");
        let ip = b.pick(&owner, "lb", &used, Held::LoadBalancerIp).expect("room");
        used.hold(&owner, [Held::LoadBalancerIp(ip)]);
        got.push(ip);
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 3);
    assert!(b.pick("ns/s4", "lb", &used, Held::LoadBalancerIp).is_none());
    // What an owner holds is free to itself.
    assert!(b.pick("ns/s0", "lb", &used, Held::LoadBalancerIp).is_some());
    used.release("ns/s1");
    assert!(b.pick("ns/s4", "lb", &used, Held::LoadBalancerIp).is_some());
}

#[test]
fn the_probe_start_is_stable() {
    assert_eq!(start_of("default/web", "clusterip"), start_of("default/web", "clusterip"));
    assert_ne!(start_of("default/web", "clusterip"), start_of("default/web2", "clusterip"));
    assert_ne!(start_of("a", "bc"), start_of("ab", "c"));
    // Every node computes the same start: a fixed function (FNV-1a), not a per-process key.
    assert_eq!(start_of("", ""), 0xaf63_bd4c_8601_b7df);
}
