//! Mutual TLS between peers (`--peer-tls-cert --peer-tls-key --peer-ca`,
//! docs/architecture.md §6).
//!
//! - Both sides present a certificate signed by the cluster CA
//!   (`--peer-ca`) and check the other's against it; nothing else is
//!   trusted (not the system's roots).
//! - **The node id is bound to the certificate.** A peer certificate names
//!   its node as the DNS name [`node_name`] (`node-3.peer.tsohost`), and
//!   only that node: a certificate naming no node, several nodes, or a
//!   wildcard is no node's. The dialer connects to peer `n` with server
//!   name `node-n.peer.tsohost` (rustls checks it) and then requires the
//!   certificate to name exactly node `n`; the acceptor requires the
//!   dialer's certificate to name exactly the node id its greeting claims.
//!   A node holding only its own key cannot speak as another node, whatever
//!   id it claims and whatever address it answers on.
//! - A node refuses a certificate of its own that is not its node's
//!   ([`LoadError::NotThisNode`]), at start and on reload: the mistake
//!   shows on the node that made it, not as refusals on every other node.
//! - ALPN is [`ALPN`] on both sides, so a peer connection cannot be made
//!   to the HTTPS port or an HTTPS client to the peer port by accident.
//! - The cluster-secret handshake of [`crate::peer::auth`] still runs
//!   inside the TLS connection (see the README for why it is kept).

use super::{LoadError, Reloading, Source, cert::CertInfo, client_verifier};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};
use tsohost_client::tls::{TlsConfig, certified_key, provider, read_certs};

/// The application protocol of peer connections.
pub const ALPN: &[u8] = b"tsohost-peer/1";

/// The DNS name under which every node's name lives; never resolved.
pub const DOMAIN: &str = "peer.tsohost";

/// The DNS name a peer certificate of node `id` carries:
/// `node-{id}.peer.tsohost`.
pub fn node_name(id: u64) -> String {
    format!("node-{id}.{DOMAIN}")
}

/// The node ids a certificate's DNS names claim (`node-N.peer.tsohost`,
/// exactly, in any case), in order.
pub fn node_ids(info: &CertInfo) -> Vec<u64> {
    info.dns_names
        .iter()
        .filter_map(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let id = name.strip_suffix(DOMAIN)?.strip_suffix('.')?;
            let id = id.strip_prefix("node-")?;
            // Digits only: "node-+3" or "node-03" is no node's name.
            if id.starts_with('0') && id != "0" || !id.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            id.parse().ok()
        })
        .collect()
}

/// Whether the certificate `der` names node `id` and no other; if not,
/// what it names instead, for the error.
fn names_only(der: &CertificateDer<'_>, id: u64) -> Result<(), String> {
    let info = CertInfo::parse(der).map_err(|e| format!("it cannot be read ({e})"))?;
    match node_ids(&info)[..] {
        [only] if only == id => Ok(()),
        [] => Err(format!(
            "it names no node (its names: {}; a node's is {})",
            info.names(),
            node_name(id)
        )),
        [other] => Err(format!("it is node {other}'s")),
        ref several => Err(format!("it names several nodes ({several:?})")),
    }
}

/// The files of `--peer-tls-cert`, `--peer-tls-key` and `--peer-ca`, and
/// the node they are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTlsFiles {
    pub node_id: u64,
    /// PEM certificate chain, the node's peer certificate first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM certificates of the cluster CA, which signs every peer
    /// certificate.
    pub ca: PathBuf,
}

/// Both ends of a peer connection, made from one set of files.
#[derive(Clone)]
pub struct PeerConfigs {
    /// For connections other nodes dial: a client certificate required.
    pub server: Arc<ServerConfig>,
    /// For dialing other nodes: this node's certificate presented.
    pub client: Arc<ClientConfig>,
}

impl Source for PeerTlsFiles {
    type Config = PeerConfigs;

    fn paths(&self) -> Vec<&Path> {
        vec![&self.cert, &self.key, &self.ca]
    }

    fn load(&self) -> Result<PeerConfigs, LoadError> {
        let identity = certified_key(&self.cert, &self.key)?;
        let chain = read_certs(&self.cert)?;
        names_only(&chain[0], self.node_id).map_err(|found| LoadError::NotThisNode {
            path: self.cert.clone(),
            node: self.node_id,
            expected: node_name(self.node_id),
            found,
        })?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_client_cert_verifier(client_verifier(&self.ca)?)
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                identity.clone(),
            )));
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = (*TlsConfig::from_ca_file(&self.ca)?
            .with_client_cert(&self.cert, &self.key)?
            .client_config())
        .clone();
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(PeerConfigs {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    fn describe(&self) -> String {
        format!(
            "the peer TLS certificate {} and key {} (CA {})",
            self.cert.display(),
            self.key.display(),
            self.ca.display()
        )
    }
}

/// The peer network's TLS.
pub type PeerTls = Reloading<PeerTlsFiles>;

impl PeerTls {
    /// The TLS handshake of a connection this node dialed to node `peer`:
    /// the other side must present node `peer`'s certificate.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        peer: u64,
    ) -> Result<client::TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(node_name(peer)).map_err(|e| e.to_string())?;
        let stream = TlsConnector::from(self.current().client)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
        let first = certs.first().ok_or("it presented no certificate")?;
        names_only(first, peer)
            .map_err(|why| format!("its certificate is not node {peer}'s: {why}"))?;
        Ok(stream)
    }

    /// The TLS handshake of a connection another node dialed. Returns the
    /// stream and the first certificate the dialer presented, which
    /// [`PeerTls::check_dialer`] checks once the dialer has said who it is.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<(server::TlsStream<TcpStream>, CertificateDer<'static>), String> {
        super::expect_handshake(
            &tcp,
            "peer protocol",
            "the dialing node runs without --peer-tls-cert; give every node the same peer TLS \
             settings",
        )
        .await?;
        let stream = TlsAcceptor::from(self.current().server)
            .accept(tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("it presented no certificate")?
            .clone()
            .into_owned();
        Ok((stream, cert))
    }

    /// Whether `cert`, presented by a dialer that says it is node `id`, is
    /// node `id`'s.
    pub fn check_dialer(cert: &CertificateDer<'_>, id: u64) -> Result<(), String> {
        names_only(cert, id)
            .map_err(|why| format!("it says it is node {id}, but its certificate is not: {why}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn named(names: &[&str]) -> CertInfo {
        CertInfo {
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH,
            dns_names: names.iter().map(|n| n.to_string()).collect(),
            ips: Vec::new(),
        }
    }

    #[test]
    fn a_node_name_round_trips_and_nothing_else_is_a_node() {
        for id in [0, 1, 3, u64::MAX] {
            assert_eq!(node_ids(&named(&[&node_name(id)])), vec![id]);
        }
        assert_eq!(
            node_ids(&named(&["NODE-7.Peer.Tsohost.", "localhost"])),
            vec![7]
        );
        for name in [
            "*.peer.tsohost",
            "node-.peer.tsohost",
            "node-03.peer.tsohost",
            "node-+3.peer.tsohost",
            "node-3.peer.tsohost.example.com",
            "node-3.xpeer.tsohost",
            "x.node-3.peer.tsohost",
            "node-99999999999999999999.peer.tsohost",
        ] {
            assert_eq!(node_ids(&named(&[name])), Vec::<u64>::new(), "{name}");
        }
    }
}
