//! The network-namespace half of the plugin: the veth pair, the container end's addresses,
//! routes, MTU and checksum offload, the host end's state. Every function runs its netlink
//! work on a thread of its own (which may enter another network namespace with `setns`; a
//! thread's namespace is its own, the process's other threads are not moved) with a
//! single-threaded tokio runtime and a fresh rtnetlink connection opened inside that
//! namespace, so they can be called from anywhere, including tests, without a daemon.
//!
//! Errors are [`NetError`]s: a message and, when the kernel gave one, its errno.

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::RouteFlags;
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::str::FromStr;

/// Prefix of every host-end name this plugin creates.
pub const HOST_PREFIX: &str = "psw";

/// A failed netlink, namespace, sysctl or ioctl step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetError {
    /// What failed, with the object's name.
    pub msg: String,
    /// The kernel's errno, when there was one.
    pub errno: Option<i32>,
}

impl NetError {
    fn new(msg: impl Into<String>) -> Self {
        NetError { msg: msg.into(), errno: None }
    }

    fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        NetError { msg: format!("{what}: {e}"), errno: e.raw_os_error() }
    }

    fn nl(what: impl fmt::Display, e: rtnetlink::Error) -> Self {
        let errno = match &e {
            rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
            _ => None,
        };
        NetError { msg: format!("{what}: {e}"), errno }
    }

    /// Whether the kernel said the object already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno == Some(libc::EEXIST)
    }

    /// Whether the kernel said the object does not exist (ENODEV, ENOENT).
    pub fn is_missing(&self) -> bool {
        matches!(self.errno, Some(libc::ENODEV) | Some(libc::ENOENT))
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for NetError {}

/// An address with a prefix length: `10.244.1.5/24`, `fd00::5/64`, or a prefix such as
/// `0.0.0.0/0` (the address is kept as written, host bits included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length in bits (at most 32 for IPv4, 128 for IPv6).
    pub len: u8,
}

impl Prefix {
    /// Whether `ip` is inside this prefix (same family, same first `len` bits).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = if self.len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.len)) };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = if self.len == 0 { 0 } else { u128::MAX << (128 - u32::from(self.len)) };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').ok_or_else(|| format!("{s:?} has no prefix length"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
        let len: u8 = l.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("{s:?}: prefix length over {max}"));
        }
        Ok(Prefix { addr, len })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A route for the container: destination prefix, optional gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination, `0.0.0.0/0` for the default route.
    pub dst: Prefix,
    /// Next hop; `None`: directly on the link.
    pub gw: Option<IpAddr>,
}

/// What a link looks like: index, MAC (`aa:bb:cc:dd:ee:ff`, empty if none), MTU in bytes,
/// whether it is administratively up, its addresses (not IPv6 link-local ones) and, for a
/// veth, its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index in its namespace.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, lower-case hex with colons.
    pub mac: String,
    /// MTU in bytes.
    pub mtu: u32,
    /// IFF_UP is set.
    pub up: bool,
    /// `IFLA_INFO_KIND` ("veth"), empty when absent.
    pub kind: String,
    /// Addresses on the link, without IPv6 link-local ones.
    pub addresses: Vec<Prefix>,
}

/// The host end's name for a container interface: `psw` followed by 11 hex digits of a 64-bit
/// FNV-1a hash of `container_id`, a NUL byte and `ifname` (14 bytes, under the kernel's 15).
/// Deterministic, so DEL finds it without a prevResult.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([0u8]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{HOST_PREFIX}{:011x}", h >> 20)
}

/// Whether `name` has the shape of a host end this plugin names (`psw` + 11 hex digits).
pub fn is_host_ifname(name: &str) -> bool {
    name.len() == 14
        && name.starts_with(HOST_PREFIX)
        && name[3..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Runs `f` with a netlink handle on a new thread, inside the network namespace at `netns`
/// (`None`: the caller's namespace), and returns its result.
fn run<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T, NetError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, NetError>>,
{
    let ns = match netns {
        Some(p) => Some(File::open(p).map_err(|e| NetError::io(format!("network namespace {}", p.display()), e))?),
        None => None,
    };
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            if let Some(ns) = &ns {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetError::io("setns", std::io::Error::from(e)))?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| NetError::io("tokio runtime", e))?;
            rt.block_on(async move {
                let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| NetError::io("netlink socket", e))?;
                let task = tokio::spawn(conn);
                let out = f(handle).await;
                task.abort();
                out
            })
        });
        worker.join().unwrap_or_else(|_| Err(NetError::new("netlink worker thread panicked")))
    })
}

fn mac_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

async fn get_link(h: &Handle, name: &str) -> Result<Option<LinkMessage>, NetError> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m),
        Err(e) => {
            let e = NetError::nl(format!("link {name}"), e);
            if e.is_missing() {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

async fn describe(h: &Handle, msg: LinkMessage) -> Result<Link, NetError> {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: String::new(),
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        kind: String::new(),
        addresses: Vec::new(),
    };
    for a in msg.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(m) => link.mac = mac_string(&m),
            LinkAttribute::Mtu(m) => link.mtu = m,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = k.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    let mut addrs = h.address().get().set_link_index_filter(link.index).execute();
    while let Some(m) = addrs.try_next().await.map_err(|e| NetError::nl(format!("addresses of {}", link.name), e))? {
        if m.header.index != link.index {
            continue;
        }
        let len = m.header.prefix_len;
        let ip = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        match ip {
            Some(IpAddr::V6(v6)) if v6.segments()[0] & 0xffc0 == 0xfe80 => {}
            Some(addr) => link.addresses.push(Prefix { addr, len }),
            None => {}
        }
    }
    Ok(link)
}

/// The link named `name` in `netns` (`None`: the caller's namespace), or `None` if there is
/// no such link.
pub fn link(netns: Option<&Path>, name: &str) -> Result<Option<Link>, NetError> {
    run(netns, |h| async move {
        match get_link(&h, name).await? {
            Some(m) => Ok(Some(describe(&h, m).await?)),
            None => Ok(None),
        }
    })
}

/// Creates a veth pair: `host` in the caller's namespace, its peer created directly inside
/// the namespace at `netns` under the name `ifname` (so it never exists under a temporary
/// name in the host namespace). Both ends are left down. Errors carry EEXIST when either
/// name is taken.
pub fn create_pair(host: &str, netns: &Path, ifname: &str, queues: u32) -> Result<(), NetError> {
    let ns = File::open(netns).map_err(|e| NetError::io(format!("network namespace {}", netns.display()), e))?;
    let fd = ns.as_raw_fd();
    run(None, |h| async move {
        let peer = LinkUnspec::new_with_name(ifname)
            .setns_by_fd(fd)
            .append_extra_attribute(LinkAttribute::NumRxQueues(queues))
            .append_extra_attribute(LinkAttribute::NumTxQueues(queues))
            .build();
        let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .append_extra_attribute(LinkAttribute::NumRxQueues(queues))
            .append_extra_attribute(LinkAttribute::NumTxQueues(queues))
            .name(host.to_string())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        h.link().add(msg).execute().await.map_err(|e| NetError::nl(format!("creating veth {host} / {ifname}"), e))
    })
}

/// Deletes the host end `host` (which removes its peer too). `Ok(false)` when it did not
/// exist: DEL and the undo of a failed ADD are idempotent.
pub fn delete_host(host: &str) -> Result<bool, NetError> {
    run(None, |h| async move {
        let Some(m) = get_link(&h, host).await? else { return Ok(false) };
        match h.link().del(m.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) => {
                let e = NetError::nl(format!("deleting {host}"), e);
                if e.is_missing() {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    })
}

/// Writes an IPv6 sysctl (`ipv6/...`) under /proc/sys/net, which shows the calling thread's
/// namespace. Without IPv6 in the kernel (no /proc/sys/net/ipv6) there is nothing to do.
fn sysctl_ipv6(path: &str, value: &str) -> Result<(), NetError> {
    let full = format!("/proc/sys/net/{path}");
    match std::fs::write(&full, value) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !Path::new("/proc/sys/net/ipv6").exists() => Ok(()),
        Err(e) => Err(NetError::io(full, e)),
    }
}

/// Prepares the host end: MTU (when given, in bytes), IPv6 off (`disable_ipv6`, so the
/// switch's port never sees router solicitations or DAD from the host side), no addresses,
/// up. Returns the link as it is then.
pub fn configure_host(host: &str, mtu: Option<u32>) -> Result<Link, NetError> {
    run(None, |h| async move {
        let m = get_link(&h, host).await?.ok_or_else(|| NetError::new(format!("host end {host} does not exist")))?;
        let index = m.header.index;
        sysctl_ipv6(&format!("ipv6/conf/{host}/disable_ipv6"), "1")?;
        let mut set = LinkUnspec::new_with_index(index).up();
        if let Some(mtu) = mtu {
            set = set.mtu(mtu);
        }
        h.link().set(set.build()).execute().await.map_err(|e| NetError::nl(format!("setting up {host}"), e))?;
        let m = get_link(&h, host).await?.ok_or_else(|| NetError::new(format!("host end {host} vanished")))?;
        describe(&h, m).await
    })
}

/// `struct ethtool_value` of linux/ethtool.h: a command and its 32-bit argument.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;

/// Runs one ETHTOOL_[GS]TXCSUM-style command on `ifname` in the calling thread's namespace
/// and returns the value the kernel left in `data`.
fn ethtool_value(ifname: &str, cmd: u32, data: u32) -> Result<u32, NetError> {
    // SAFETY: socket(2) takes no pointers; the returned descriptor is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(NetError::io("ethtool socket", std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a descriptor we just opened and own; OwnedFd closes it exactly once.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: ifreq is plain old data (a name array and a union of integers and pointers);
    // all zeroes is a valid value of it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if ifname.len() >= req.ifr_name.len() {
        return Err(NetError::new(format!("interface name {ifname:?} too long")));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL reads the ifreq (a NUL-terminated name, zero-filled above, and
    // ifr_data) and reads/writes the ethtool_value ifr_data points to; both live on this
    // stack frame for the whole call and have the layouts the kernel expects.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(NetError::io(format!("ethtool {cmd:#x} on {ifname}"), std::io::Error::last_os_error()));
    }
    Ok(value.data)
}

/// Whether transmit checksum offload is on for `ifname` in `netns` (ETHTOOL_GTXCSUM).
pub fn tx_checksum_offload(netns: &Path, ifname: &str) -> Result<bool, NetError> {
    run(Some(netns), |_h| async move { ethtool_value(ifname, ETHTOOL_GTXCSUM, 0).map(|v| v != 0) })
}

async fn add_route(h: &Handle, index: u32, r: &RouteSpec, onlink: bool) -> Result<(), NetError> {
    let what = || format!("route {} via {:?}", r.dst, r.gw);
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dst.addr, r.dst.len)
        .map_err(|e| NetError::new(format!("{}: {e}", what())))?
        .output_interface(index);
    if let Some(gw) = r.gw {
        b = b.gateway(gw).map_err(|e| NetError::new(format!("{}: {e}", what())))?;
    }
    let mut msg = b.build();
    if onlink {
        msg.header.flags |= RouteFlags::Onlink;
    }
    h.route().add(msg).replace().execute().await.map_err(|e| NetError::nl(what(), e))
}

/// Configures the container end `ifname` inside `netns`: MTU (bytes, when given), `lo` up,
/// addresses (IPv6 ones with IFA_F_NODAD, and `accept_dad` off), the link up, then the routes
/// (a gateway outside every address's prefix is reached with an on-link route), and transmit
/// checksum offload off (ETHTOOL_STXCSUM: the switch reads frames from the host end, so the
/// pod's kernel must fill in checksums). Idempotent: addresses and routes are replaced.
/// Returns the link as it is then.
pub fn configure_container(
    netns: &Path,
    ifname: &str,
    addresses: &[Prefix],
    routes: &[RouteSpec],
    mtu: Option<u32>,
) -> Result<Link, NetError> {
    run(Some(netns), |h| async move {
        let m = get_link(&h, ifname)
            .await?
            .ok_or_else(|| NetError::new(format!("{ifname} does not exist in {}", netns.display())))?;
        let index = m.header.index;
        if let Some(mtu) = mtu {
            h.link()
                .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
                .execute()
                .await
                .map_err(|e| NetError::nl(format!("MTU {mtu} on {ifname}"), e))?;
        }
        if let Some(lo) = get_link(&h, "lo").await? {
            h.link()
                .set(LinkUnspec::new_with_index(lo.header.index).up().build())
                .execute()
                .await
                .map_err(|e| NetError::nl("lo up", e))?;
        }
        if addresses.iter().any(|a| a.addr.is_ipv6()) {
            sysctl_ipv6(&format!("ipv6/conf/{ifname}/accept_dad"), "0")?;
        }
        for a in addresses {
            let mut req = h.address().add(index, a.addr, a.len).replace();
            if a.addr.is_ipv6() {
                req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
            }
            req.execute().await.map_err(|e| NetError::nl(format!("address {a} on {ifname}"), e))?;
        }
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| NetError::nl(format!("{ifname} up"), e))?;
        for r in routes {
            let onlink = r.gw.is_some_and(|gw| !addresses.iter().any(|a| a.contains(gw)));
            add_route(&h, index, r, onlink).await?;
        }
        ethtool_value(ifname, ETHTOOL_STXCSUM, 0)?;
        let m = get_link(&h, ifname).await?.ok_or_else(|| NetError::new(format!("{ifname} vanished")))?;
        describe(&h, m).await
    })
}

/// Every link in the caller's namespace whose name has the shape of a host end
/// ([`is_host_ifname`]).
pub fn host_links() -> Result<Vec<String>, NetError> {
    run(None, |h| async move {
        let mut out = Vec::new();
        let mut s = h.link().get().execute();
        while let Some(m) = s.try_next().await.map_err(|e| NetError::nl("listing links", e))? {
            for a in m.attributes {
                if let LinkAttribute::IfName(n) = a {
                    if is_host_ifname(&n) {
                        out.push(n);
                    }
                }
            }
        }
        Ok(out)
    })
}

/// A network namespace of the process's own: a thread unshares its network namespace
/// (unshare(2) CLONE_NEWNET, which needs CAP_SYS_ADMIN), opens it and ends; the returned
/// descriptor keeps the namespace alive (with any socket or interface in it) until it is
/// closed, and the kernel deletes it then, also when the process is killed.
pub fn new_netns() -> std::io::Result<File> {
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        File::open("/proc/thread-self/ns/net")
    })
    .join()
    .map_err(|_| std::io::Error::other("namespace thread panicked"))?
}

/// Runs `f` on a thread inside the network namespace `ns` (setns(2)): sockets it makes
/// belong to that namespace for their whole life.
pub fn in_netns<T: Send + 'static>(ns: &File, f: impl FnOnce() -> T + Send + 'static) -> std::io::Result<T> {
    let ns = ns.try_clone()?;
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        Ok(f())
    })
    .join()
    .map_err(|_| std::io::Error::other("namespace thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_short_stable_and_distinct() {
        let a = host_ifname("3f6940ab5ab43bc522569d15b23f8c1bbde1d7678b080398506924fc01d72755", "eth0");
        assert_eq!(a, host_ifname("3f6940ab5ab43bc522569d15b23f8c1bbde1d7678b080398506924fc01d72755", "eth0"));
        assert_eq!(a.len(), 14);
        assert!(is_host_ifname(&a), "{a}");
        assert_ne!(a, host_ifname("3f6940ab5ab43bc522569d15b23f8c1bbde1d7678b080398506924fc01d72755", "net1"));
        assert_ne!(host_ifname("ab", "c"), host_ifname("a", "bc"));
        assert!(!is_host_ifname("psw0123456789g"));
        assert!(!is_host_ifname("eth0"));
    }

    #[test]
    fn prefixes_parse_and_contain() {
        let p: Prefix = "10.244.1.5/24".parse().unwrap();
        assert!(p.contains("10.244.1.1".parse().unwrap()));
        assert!(!p.contains("10.244.2.1".parse().unwrap()));
        assert!(!p.contains("fd00::1".parse().unwrap()));
        let d: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(d.contains("192.0.2.1".parse().unwrap()));
        let v6: Prefix = "fd00:10::5/64".parse().unwrap();
        assert!(v6.contains("fd00:10::1".parse().unwrap()));
        assert_eq!(v6.to_string(), "fd00:10::5/64");
        for bad in ["10.0.0.1", "10.0.0.1/33", "x/1", "::/129", "1.2.3.4/-1"] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
    }
}
