//! `tsohost serve`: its flags (each also `TSOHOST_<FLAG>`, and a key of
//! `--config FILE`, see [`super::config`]), checked into a [`ServeConfig`]
//! before anything starts.

use super::DEFAULT_LISTEN;
use super::parse::{
    driver_source, parse_duration, parse_listen, parse_member, parse_option, read_secret_file,
};
use crate::server::{self, ServeConfig};
use crate::tls::Source;
use crate::tls::cert::check_validity;
use crate::tls::peer::PeerTlsFiles;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub(super) struct ServeArgs {
    /// Read settings from this TOML file: the flags' names without the
    /// dashes as keys (`listen = "127.0.0.1:7373"`, `driver-option =
    /// ["k=v"]`, `bootstrap = true`). Flags and TSOHOST_* variables
    /// override it.
    #[arg(long, env = "TSOHOST_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// A built-in driver (file, raft, paxos) or the path of a driver component (.wasm).
    #[arg(long, env = "TSOHOST_DRIVER", default_value = "file")]
    driver: String,
    /// A driver-specific setting, KEY=VALUE; repeatable.
    #[arg(long = "driver-option", env = "TSOHOST_DRIVER_OPTIONS", value_delimiter = ',', value_parser = parse_option)]
    driver_options: Vec<(String, String)>,
    /// Where the node keeps its state.
    #[arg(long, env = "TSOHOST_DATA_DIR", default_value = "./tsohost-data")]
    data_dir: PathBuf,
    /// HTTP listen address (port 0: any free port, printed at start).
    #[arg(long, env = "TSOHOST_LISTEN", default_value = DEFAULT_LISTEN, value_parser = parse_listen)]
    listen: SocketAddr,
    /// How far ahead of the clock the durable high water is kept (10ms..60s).
    #[arg(long, env = "TSOHOST_WINDOW", default_value = "3s", value_parser = parse_duration)]
    window: Duration,
    /// This node's id.
    #[arg(long, env = "TSOHOST_NODE_ID", default_value_t = 1)]
    node_id: u64,
    /// Guest memory cap in MiB.
    #[arg(long, env = "TSOHOST_GUEST_MEMORY_MIB", default_value_t = 128)]
    guest_memory_mib: usize,
    /// Longest a single call into the driver may run (e.g. 1s).
    #[arg(long, env = "TSOHOST_GUEST_CALL_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    guest_call_timeout: Duration,
    /// A file holding the bearer token of the admin API (off without it).
    #[arg(long, env = "TSOHOST_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Serve the admin API (/v1/admin/*) on this address only (e.g.
    /// 127.0.0.1:7375), and not on --listen. Needs --admin-token-file.
    #[arg(long, env = "TSOHOST_ADMIN_LISTEN", value_parser = parse_listen)]
    admin_listen: Option<SocketAddr>,
    /// Turn on /v1/admin/faults (clock steps, failing storage, driver
    /// crashes): for tests and `tsohost chaos` only, never in production.
    /// Needs --admin-token-file.
    #[arg(long, env = "TSOHOST_ENABLE_FAULT_INJECTION")]
    enable_fault_injection: bool,
    /// Cluster members and their peer addresses, `ID=HOST:PORT,...`, this
    /// node included. Without it the node runs alone.
    #[arg(long, env = "TSOHOST_PEERS", value_delimiter = ',', value_parser = parse_member)]
    peers: Vec<(u64, String)>,
    /// Peer listen address (default: this node's address in --peers).
    #[arg(long, env = "TSOHOST_PEER_LISTEN", value_parser = parse_listen)]
    peer_listen: Option<SocketAddr>,
    /// A file holding the cluster secret (at least 16 bytes), the same on
    /// every node.
    #[arg(long, env = "TSOHOST_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Speak mutual TLS to peers, presenting this PEM certificate chain.
    /// The certificate must name this node, and only it, as the DNS name
    /// node-ID.peer.tsohost. Needs --peer-tls-key and --peer-ca; SIGHUP,
    /// or a change of a file, reloads them.
    #[arg(long, env = "TSOHOST_PEER_TLS_CERT", requires_all = ["peer_tls_key", "peer_ca"])]
    peer_tls_cert: Option<PathBuf>,
    /// The PEM private key of --peer-tls-cert.
    #[arg(long, env = "TSOHOST_PEER_TLS_KEY", requires = "peer_tls_cert")]
    peer_tls_key: Option<PathBuf>,
    /// PEM certificates of the cluster CA, which signs every node's peer
    /// certificate; peers presenting anything else are refused.
    #[arg(long, env = "TSOHOST_PEER_CA", requires = "peer_tls_cert")]
    peer_ca: Option<PathBuf>,
    /// Allow plaintext peer connections on addresses other than loopback
    /// (without peer TLS a node refuses them): only on a network you trust.
    #[arg(long, env = "TSOHOST_INSECURE_PEERS", conflicts_with = "peer_tls_cert")]
    insecure_peers: bool,
    /// Create the cluster on first start (on one node, or on all with the
    /// same --peers).
    #[arg(long, env = "TSOHOST_BOOTSTRAP")]
    bootstrap: bool,
    /// The URL other nodes redirect clients to (default: http:// + --listen,
    /// https:// with --tls-cert).
    #[arg(long, env = "TSOHOST_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// Most HTTP connections open at once; more are closed on accept.
    #[arg(long, env = "TSOHOST_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// How long a client may take to send a request's headers; an idle
    /// keep-alive connection is closed after as long (e.g. 30s).
    #[arg(long, env = "TSOHOST_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Serve HTTPS on --listen with this PEM certificate chain (the node's
    /// certificate first). Needs --tls-key. SIGHUP, or a change of the
    /// file, reloads it.
    #[arg(long, env = "TSOHOST_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (RSA, ECDSA or Ed25519).
    #[arg(long, env = "TSOHOST_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by a CA of this PEM file (mutual
    /// TLS). Needs --tls-cert.
    #[arg(long, env = "TSOHOST_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

pub(super) fn serve_config(args: ServeArgs) -> anyhow::Result<ServeConfig> {
    if let Some(file) = &args.config {
        // Its settings came in as flags (cli/config.rs); say where from.
        tracing::info!(config = %file.display(), "settings read from the configuration file");
    }
    let driver = driver_source(&args.driver)?;
    if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&args.window) {
        bail!("--window must be from 10ms to 60s, got {:?}", args.window);
    }
    if args.guest_call_timeout < Duration::from_millis(10) {
        bail!("--guest-call-timeout must be at least 10ms");
    }
    if !(16..=4096).contains(&args.guest_memory_mib) {
        bail!("--guest-memory-mib must be from 16 to 4096");
    }
    if !(1..=1_000_000).contains(&args.max_connections) {
        bail!("--max-connections must be from 1 to 1000000");
    }
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&args.header_timeout) {
        bail!("--header-timeout must be from 100ms to 1h");
    }
    let admin_token = match &args.admin_token_file {
        None => None,
        Some(path) => {
            let token = read_secret_file(path, "--admin-token-file")?;
            let token = String::from_utf8(token)
                .ok()
                .filter(|t| t.len() >= 16)
                .with_context(|| {
                    format!(
                        "--admin-token-file {}: the token must be at least 16 characters of text",
                        path.display()
                    )
                })?;
            Some(token)
        }
    };
    if admin_token.is_none() && (args.admin_listen.is_some() || args.enable_fault_injection) {
        bail!(
            "--admin-listen and --enable-fault-injection need the admin API: pass \
             --admin-token-file FILE too"
        );
    }
    if args.admin_listen == Some(args.listen) && args.listen.port() != 0 {
        bail!(
            "--admin-listen {} is also --listen: give the admin API an address of its own, \
             or leave --admin-listen out to serve it on --listen",
            args.listen
        );
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = crate::tls::TlsFiles {
                cert,
                key,
                client_ca: args.tls_client_ca,
            };
            // Checked now, before storage and the driver are touched.
            files
                .load()
                .context("cannot serve HTTPS (--tls-cert, --tls-key, --tls-client-ca)")?;
            let info = files
                .check_at_start(time::OffsetDateTime::now_utc())
                .context("cannot serve HTTPS (--tls-cert)")?;
            if let Some(info) = info {
                warn_unless_covered(&info, &files, args.advertise_url.as_deref(), args.listen);
            }
            Some(files)
        }
        _ => None,
    };
    if let Some(url) = &args.advertise_url {
        let scheme = if tls.is_some() { "https://" } else { "http://" };
        if !url.starts_with(scheme) {
            bail!("--advertise-url {url} must start with {scheme} (the scheme this node serves)");
        }
    }
    let cluster =
        if args.peers.is_empty() {
            if args.peer_listen.is_some()
                || args.cluster_secret_file.is_some()
                || args.peer_tls_cert.is_some()
                || args.insecure_peers
            {
                bail!(
                    "--peer-listen, --cluster-secret-file, --peer-tls-cert and --insecure-peers \
                 need --peers"
                );
            }
            None
        } else {
            let members: std::collections::BTreeMap<u64, String> =
                args.peers.iter().cloned().collect();
            if members.len() != args.peers.len() {
                bail!("--peers names a node id twice");
            }
            if args.listen.ip().is_unspecified() && args.advertise_url.is_none() {
                bail!(
                    "--listen {} accepts connections on every address, so other nodes cannot tell \
                 clients where to find this one: pass --advertise-url with the URL clients \
                 reach it at (e.g. --advertise-url http://tso-1.example.com:{})",
                    args.listen,
                    args.listen.port()
                );
            }
            let Some(own) = members.get(&args.node_id) else {
                bail!(
                    "--peers must include this node (--node-id {}) with its peer address",
                    args.node_id
                );
            };
            let peer_listen = match args.peer_listen {
            Some(addr) => addr,
            None => parse_listen(own).map_err(anyhow::Error::msg).with_context(|| {
                format!("--peers gives this node the address {own}; pass --peer-listen HOST:PORT")
            })?,
        };
            let path = args
                .cluster_secret_file
                .as_ref()
                .context("a cluster needs --cluster-secret-file (the same secret on every node)")?;
            let secret =
                crate::peer::auth::Secret::new(&read_secret_file(path, "--cluster-secret-file")?)
                    .with_context(|| {
                    format!(
                        "--cluster-secret-file {}: the secret must be at least 16 bytes",
                        path.display()
                    )
                })?;
            let tls = match (args.peer_tls_cert, args.peer_tls_key, args.peer_ca) {
                (Some(cert), Some(key), Some(ca)) => {
                    let files = PeerTlsFiles {
                        node_id: args.node_id,
                        cert,
                        key,
                        ca,
                    };
                    // Checked now, before storage and the driver are touched.
                    files.load().context(
                        "cannot start peer TLS (--peer-tls-cert, --peer-tls-key, --peer-ca)",
                    )?;
                    check_validity(
                        &files.cert,
                        "--peer-tls-cert",
                        time::OffsetDateTime::now_utc(),
                    )
                    .context("cannot start peer TLS (--peer-tls-cert)")?;
                    Some(files)
                }
                _ => {
                    if !args.insecure_peers
                        && let Some(addr) = off_loopback(peer_listen, &members)
                    {
                        bail!(
                            "peer traffic would cross {addr} in plaintext, and that is not a \
                         loopback address. Give every node --peer-tls-cert, --peer-tls-key and \
                         --peer-ca (for a test setup: `tsohost certs init DIR --peer-ids \
                         1,2,3`), or pass --insecure-peers on a network you trust"
                        );
                    }
                    None
                }
            };
            Some(server::ClusterConfig {
                peer_listen,
                members,
                secret,
                tls,
                bootstrap: args.bootstrap,
                advertise_url: args.advertise_url,
            })
        };
    Ok(ServeConfig {
        cluster,
        admin_token,
        admin_listen: args.admin_listen,
        fault_injection: args.enable_fault_injection,
        tls,
        driver,
        driver_options: args.driver_options,
        data_dir: args.data_dir,
        listen: args.listen,
        window: args.window,
        node_id: args.node_id,
        guest_memory: args.guest_memory_mib << 20,
        guest_call_timeout: args.guest_call_timeout,
        http: crate::http::Limits {
            max_connections: args.max_connections,
            header_timeout: args.header_timeout,
        },
    })
}

/// The first peer address, listened on or dialed, that is not loopback:
/// `localhost` or a loopback IP. A host name other than `localhost` counts
/// as not loopback (it may resolve anywhere).
fn off_loopback(
    listen: SocketAddr,
    members: &std::collections::BTreeMap<u64, String>,
) -> Option<String> {
    if !listen.ip().is_loopback() {
        return Some(listen.to_string());
    }
    members
        .values()
        .find(|addr| {
            let loopback = match addr.parse::<SocketAddr>() {
                Ok(addr) => addr.ip().is_loopback(),
                Err(_) => addr
                    .rsplit_once(':')
                    .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
            };
            !loopback
        })
        .cloned()
}

/// Warn when the node's certificate does not name the host clients reach
/// it at (`--advertise-url`'s, else `--listen`'s unless that is 0.0.0.0 or
/// ::): they would refuse it. Not an error: a load balancer in front may
/// present a certificate of its own name.
fn warn_unless_covered(
    info: &crate::tls::CertInfo,
    files: &crate::tls::TlsFiles,
    advertise_url: Option<&str>,
    listen: SocketAddr,
) {
    let (host, from) = match advertise_url.and_then(crate::tls::url_host) {
        Some(host) => (host.to_string(), "--advertise-url"),
        None if listen.ip().is_unspecified() => return,
        None => (listen.ip().to_string(), "--listen"),
    };
    if !info.covers(&host) {
        tracing::warn!(
            "the certificate {} (--tls-cert) does not cover {host} ({from}): it names {}. \
             Clients that reach this node at {host} will refuse it, unless a load balancer \
             in front presents its own certificate; issue one that names {host} (`tsohost \
             certs init DIR --name {host}` for a test setup)",
            files.cert.display(),
            info.names()
        );
    }
}
