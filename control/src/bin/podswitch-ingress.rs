//! podswitch-ingress: the ingress controller. Runs in the nginx pod's network namespace (as
//! ingress-nginx's controller runs beside its nginx), reads Ingresses, IngressClasses,
//! Services, EndpointSlices and Secrets from podswitchd over the control socket, renders
//! nginx's configuration (`control::ingress::render`) into a private prefix directory, starts
//! nginx on it and reloads it gracefully (`nginx -s reload`) after `nginx -t` accepts a new
//! one; a configuration nginx refuses is reported and the running one kept. It writes the
//! address of the LoadBalancer Service that exposes it (`--publish-service`) into the
//! `status.loadBalancer.ingress` of the Ingresses it serves.
//!
//! It polls the daemon's generation (`Version`, every `--interval-ms`) and lists the objects
//! again only when it moved: one small call per interval, no stream to resume.

use clap::Parser;
use control::api::pb;
use control::ingress::render::{render, Input, Options, Rendered};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "podswitch-ingress",
    version,
    about = "Ingress controller: programs a real nginx from podswitchd's objects"
)]
struct Args {
    /// podswitchd's control socket.
    #[arg(long, default_value = "/run/podswitch/podswitch.sock")]
    socket: PathBuf,
    /// nginx's prefix directory (configuration, certificates, logs, pid), created mode 0700.
    #[arg(long, default_value = "/var/lib/podswitch-ingress")]
    prefix: PathBuf,
    /// The IngressClass name served even without an IngressClass object.
    #[arg(long, default_value = "podswitch")]
    class: String,
    /// IngressClasses with this spec.controller are served.
    #[arg(long, default_value = control::ingress::CONTROLLER)]
    controller: String,
    /// Serve Ingresses that name no class even when no IngressClass of ours is the default.
    #[arg(long)]
    watch_ingress_without_class: bool,
    /// NAMESPACE/NAME of the LoadBalancer Service exposing nginx: its addresses go into the
    /// served Ingresses' status.loadBalancer.ingress.
    #[arg(long)]
    publish_service: Option<String>,
    /// How often the daemon's generation is polled.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// The nginx binary.
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    #[arg(long, default_value_t = 1)]
    worker_processes: u32,
    #[arg(long, default_value_t = 80)]
    http_port: u16,
    #[arg(long, default_value_t = 443)]
    https_port: u16,
    /// No access log (benchmarks).
    #[arg(long)]
    no_access_log: bool,
    /// Write this process's pid here.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Render once from the daemon's objects, print nginx.conf and the warnings, and exit.
    #[arg(long)]
    print: bool,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).init();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("podswitch-ingress: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("podswitch-ingress: {e}");
        std::process::exit(1);
    }
}

fn options(a: &Args) -> Options {
    Options {
        class: a.class.clone(),
        controller: a.controller.clone(),
        watch_without_class: a.watch_ingress_without_class,
        prefix: a.prefix.display().to_string(),
        worker_processes: a.worker_processes,
        user_root: is_root(),
        http_port: a.http_port,
        https_port: a.https_port,
        access_log: !a.no_access_log,
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

type Client = pb::control_client::ControlClient<tonic::transport::Channel>;

async fn list(c: &mut Client, kind: &str) -> Result<Vec<serde_json::Value>, String> {
    let r = c
        .list(pb::ListRequest { kind: kind.into(), ..Default::default() })
        .await
        .map_err(|e| format!("list {kind}: {}", e.message()))?
        .into_inner();
    Ok(r.objects.iter().filter_map(|o| serde_json::from_str(&o.kubernetes).ok()).collect())
}

fn typed<T: serde::de::DeserializeOwned>(v: &[serde_json::Value]) -> Vec<T> {
    v.iter().filter_map(|x| serde_json::from_value(x.clone()).ok()).collect()
}

/// The objects to render from, and the stored Ingresses (for their status).
async fn read(c: &mut Client) -> Result<(Input, Vec<serde_json::Value>), String> {
    let ingresses = list(c, "ingresses").await?;
    let input = Input {
        ingresses: typed(&ingresses),
        classes: typed(&list(c, "ingressclasses").await?),
        services: typed(&list(c, "services").await?),
        slices: typed(&list(c, "endpointslices").await?),
        secrets: typed(&list(c, "secrets").await?),
    };
    Ok((input, ingresses))
}

/// Writes `path` atomically with `mode`.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

fn prepare_prefix(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    for d in ["", "certs", "logs", "tmp"] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(p.join(d))
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

struct Nginx {
    bin: PathBuf,
    prefix: PathBuf,
    child: Option<Child>,
}

impl Nginx {
    fn conf(&self) -> PathBuf {
        self.prefix.join("nginx.conf")
    }

    fn cmd(&self, conf: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("-p").arg(&self.prefix).arg("-c").arg(conf);
        c
    }

    /// Installs `r` if nginx accepts it: files, `nginx -t`, then start or reload.
    fn apply(&mut self, r: &Rendered) -> Result<&'static str, String> {
        for (name, data) in &r.files {
            write_file(&self.prefix.join(name), data, 0o600)?;
        }
        let next = self.prefix.join("nginx.conf.next");
        write_file(&next, r.conf.as_bytes(), 0o600)?;
        let t = self.cmd(&next).arg("-t").arg("-q").output().map_err(|e| format!("{}: {e}", self.bin.display()))?;
        if !t.status.success() {
            return Err(format!(
                "nginx -t refused the new configuration (the running one is kept): {}",
                String::from_utf8_lossy(&t.stderr).trim()
            ));
        }
        std::fs::rename(&next, self.conf()).map_err(|e| e.to_string())?;
        self.remove_unused(r);
        if let Some(ch) = &mut self.child {
            if let Ok(None) = ch.try_wait() {
                let o = self.cmd(&self.conf()).args(["-s", "reload"]).output().map_err(|e| e.to_string())?;
                if !o.status.success() {
                    return Err(format!("nginx -s reload: {}", String::from_utf8_lossy(&o.stderr).trim()));
                }
                return Ok("reloaded");
            }
            tracing::warn!("nginx exited ({:?}); starting it again", ch.try_wait());
        }
        let child = self.cmd(&self.conf()).spawn().map_err(|e| format!("start nginx: {e}"))?;
        self.child = Some(child);
        Ok("started")
    }

    /// Removes certificate files the installed configuration does not name (old
    /// certificates, deleted Secrets).
    fn remove_unused(&self, r: &Rendered) {
        let Ok(dir) = std::fs::read_dir(self.prefix.join("certs")) else { return };
        for e in dir.flatten() {
            let name = format!("certs/{}", e.file_name().to_string_lossy());
            if !r.files.contains_key(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Graceful stop: nginx finishes the requests it has.
    fn quit(&mut self) {
        if let Some(mut ch) = self.child.take() {
            let _ = self.cmd(&self.conf()).args(["-s", "quit"]).output();
            for _ in 0..100 {
                if let Ok(Some(_)) = ch.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }
}

/// The `status.loadBalancer.ingress` of the published Service.
fn published(services: &[k8s_openapi::api::core::v1::Service], name: &str) -> Option<serde_json::Value> {
    let (ns, n) = name.split_once('/').unwrap_or(("default", name));
    let s = services.iter().find(|s| {
        s.metadata.namespace.as_deref().unwrap_or("default") == ns && s.metadata.name.as_deref() == Some(n)
    })?;
    let ing = s.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?;
    let out: Vec<serde_json::Value> = ing
        .iter()
        .filter_map(|i| {
            i.ip.as_ref()
                .map(|ip| serde_json::json!({ "ip": ip }))
                .or_else(|| i.hostname.as_ref().map(|h| serde_json::json!({ "hostname": h })))
        })
        .collect();
    Some(serde_json::Value::Array(out))
}

/// Applies the served Ingresses whose status does not carry `addrs`, with it.
async fn write_status(
    c: &mut Client,
    stored: &[serde_json::Value],
    served: &[(String, String)],
    addrs: &serde_json::Value,
) -> Result<usize, String> {
    let mut docs = Vec::new();
    for v in stored {
        let meta = &v["metadata"];
        let key = (
            meta["namespace"].as_str().unwrap_or("default").to_string(),
            meta["name"].as_str().unwrap_or("").to_string(),
        );
        if !served.contains(&key) || v["status"]["loadBalancer"]["ingress"] == *addrs {
            continue;
        }
        let mut v = v.clone();
        v["status"] = serde_json::json!({ "loadBalancer": { "ingress": addrs } });
        docs.push(v);
    }
    if docs.is_empty() {
        return Ok(0);
    }
    let n = docs.len();
    let content = serde_json::to_string(&serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": docs }))
        .map_err(|e| e.to_string())?;
    c.apply(pb::ApplyRequest {
        manifests: vec![pb::Manifest { format: "json".into(), source: "podswitch-ingress status".into(), content }],
        dry_run: false,
        validate: "strict".into(),
    })
    .await
    .map_err(|e| format!("writing Ingress status: {}", e.message()))?;
    Ok(n)
}

async fn run(args: Args) -> Result<(), String> {
    let opts = options(&args);
    let mut c = control::api::client::connect(args.socket.clone()).await?;
    if args.print {
        let (input, _) = read(&mut c).await?;
        let r = render(&input, &opts);
        print!("{}", r.conf);
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
        return Ok(());
    }
    prepare_prefix(&args.prefix)?;
    if let Some(p) = &args.pid_file {
        write_file(p, format!("{}\n", std::process::id()).as_bytes(), 0o644)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    let mut nginx = Nginx { bin: args.nginx.clone(), prefix: args.prefix.clone(), child: None };
    let mut last: Option<Rendered> = None;
    let mut generation = None;
    let mut seen_warnings = BTreeSet::new();
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let g = match c.version(pb::VersionRequest {}).await {
            Ok(v) => Some(v.into_inner().generation),
            Err(e) => {
                tracing::warn!("podswitchd: {}", e.message());
                None
            }
        };
        let exited = nginx.child.as_mut().is_some_and(|ch| matches!(ch.try_wait(), Ok(Some(_))));
        if g.is_some() && (g != generation || exited) {
            match read(&mut c).await {
                Ok((input, stored)) => {
                    let r = render(&input, &opts);
                    for w in &r.warnings {
                        if seen_warnings.insert(w.clone()) {
                            tracing::warn!("{w}");
                        }
                    }
                    if last.as_ref() != Some(&r) || exited {
                        match nginx.apply(&r) {
                            Ok(what) => {
                                tracing::info!(
                                    "nginx {what} (generation {}; {} Ingresses served)",
                                    g.unwrap_or(0),
                                    r.served.len()
                                );
                                last = Some(r.clone());
                            }
                            Err(e) => tracing::error!("{e}"),
                        }
                    }
                    if let Some(addrs) = args.publish_service.as_deref().and_then(|s| published(&input.services, s)) {
                        match write_status(&mut c, &stored, &r.served, &addrs).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!("status.loadBalancer.ingress written to {n} Ingresses"),
                            Err(e) => tracing::warn!("{e}"),
                        }
                    }
                    generation = g;
                }
                Err(e) => tracing::warn!("podswitchd: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    };
    nginx.quit();
    if let Some(p) = &args.pid_file {
        let _ = std::fs::remove_file(p);
    }
    result
}
