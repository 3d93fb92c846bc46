//! kube-proxy's health check server for LoadBalancer Services with
//! `externalTrafficPolicy: Local`: on each such Service's `spec.healthCheckNodePort`, an HTTP
//! `GET` is answered `200` when this node has a ready endpoint of the Service and `503` when it
//! has none, with kube-proxy's JSON body (`{"service": {"namespace", "name"}, "localEndpoints":
//! N, "serviceProxyHealthy": true}`), so that an external load balancer sends the Service's
//! traffic only to nodes that can serve it without a second hop.
//!
//! It listens on the kernel stack of the daemon's namespace (traffic to the node's address
//! reaches the kernel through the host port), off the packet path, on one thread: the set of
//! ports follows the applied Services every second; connections are answered one at a time,
//! each bounded by a one-second timeout.

use crate::controller::Controller;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switch_core::service::BackendState;
use switch_core::snapshot::Tables;

/// The ready endpoints of Service `namespace/name` on this node, counted once per address.
pub fn local_endpoints(t: &Tables, namespace: &str, name: &str) -> usize {
    let prefix = format!("{namespace}/{name}:");
    let mut seen: Vec<switch_core::addr::Addr> = t
        .services
        .ports()
        .iter()
        .filter(|p| p.spec.name.starts_with(&prefix))
        .flat_map(|p| p.backends().iter().filter(|b| b.local && b.state == BackendState::Ready).map(|b| b.addr))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

/// The answer to a probe of Service `namespace/name`: status code and body.
pub fn answer(t: &Tables, namespace: &str, name: &str) -> (u16, String) {
    let n = local_endpoints(t, namespace, name);
    let body = serde_json::json!({
        "service": {"namespace": namespace, "name": name},
        "localEndpoints": n,
        "serviceProxyHealthy": true,
    })
    .to_string();
    (if n > 0 { 200 } else { 503 }, body)
}

fn respond(mut s: TcpStream, t: &Tables, namespace: &str, name: &str) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    // The request line and headers; what they ask does not matter (kube-proxy answers any
    // path the same way), only that the client has sent them.
    let mut buf = [0u8; 2048];
    let mut got = 0;
    // One second in all, however slowly the client sends.
    let deadline = Instant::now() + Duration::from_secs(1);
    while got < buf.len() && Instant::now() < deadline {
        let _ =
            s.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))));
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got += n;
                if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let (code, body) = answer(t, namespace, name);
    let reason = if code == 200 { "OK" } else { "Service Unavailable" };
    let _ = write!(
        s,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A non-blocking listener on `ip:port`; the unspecified IPv6 address (both families) falls
/// back to IPv4's where the kernel has no IPv6.
fn listen(ip: IpAddr, port: u16) -> std::io::Result<TcpListener> {
    let l = match TcpListener::bind(SocketAddr::new(ip, port)) {
        Err(e) if ip == IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) && e.kind() != std::io::ErrorKind::AddrInUse => {
            TcpListener::bind(SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port))?
        }
        r => r?,
    };
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves the health check node ports of `c`'s Services on `ip` (the unspecified address in
/// the daemon's namespace; loopback in tests) until `stop`.
pub fn spawn(c: Arc<Controller>, ip: IpAddr, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("psw-health".into()).spawn(move || {
        let mut open: HashMap<u16, (TcpListener, String, String)> = HashMap::new();
        let mut failed: HashMap<u16, Instant> = HashMap::new();
        let mut last = Instant::now() - Duration::from_secs(10);
        while !stop.load(Ordering::Relaxed) {
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                let want = c.health_check_ports();
                open.retain(|p, _| want.iter().any(|(q, _, _)| q == p));
                for (port, ns, name) in want {
                    match open.get_mut(&port) {
                        Some(o) => (o.1, o.2) = (ns, name),
                        None if failed.get(&port).is_some_and(|t| t.elapsed() < Duration::from_secs(30)) => {}
                        None => match listen(ip, port) {
                            Ok(l) => {
                                tracing::info!("health check of {ns}/{name} on port {port}");
                                open.insert(port, (l, ns, name));
                            }
                            Err(e) => {
                                tracing::warn!("health check port {port} of {ns}/{name} not served: {e}");
                                failed.insert(port, Instant::now());
                            }
                        },
                    }
                }
            }
            let t = c.cell().load();
            let mut busy = false;
            for (l, ns, name) in open.values() {
                if let Ok((s, _)) = l.accept() {
                    let _ = s.set_nonblocking(false);
                    respond(s, &t, ns, name);
                    busy = true;
                }
            }
            if !busy {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    })
}
