//! The TLS flags of every command that talks to a node (`--ca-file`,
//! `--client-cert`, `--client-key`, each also in the environment), global
//! so that they can stand before or after the command's name.
//!
//! They are read once per process into [`client`]: one CLI process talks
//! to one cluster with one identity, so the commands' helpers (status,
//! cluster, swap) take it from here instead of each threading it through.

use std::path::PathBuf;
use std::sync::OnceLock;
use tsohost_client::tls::TlsConfig;

#[derive(clap::Args, Debug, Default)]
pub(super) struct ClientTlsArgs {
    /// For https:// nodes: trust the CA certificates of this PEM file (e.g.
    /// ca.pem of `tsohost certs init`).
    #[arg(long, env = "TSOHOST_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// For nodes that require client certificates (--tls-client-ca): this
    /// PEM certificate. Needs --client-key and --ca-file.
    #[arg(long, env = "TSOHOST_CLIENT_CERT", global = true)]
    client_cert: Option<PathBuf>,
    /// The PEM private key of --client-cert.
    #[arg(long, env = "TSOHOST_CLIENT_KEY", global = true)]
    client_key: Option<PathBuf>,
}

static CLIENT: OnceLock<Option<TlsConfig>> = OnceLock::new();

impl ClientTlsArgs {
    /// Read the files and make them what [`client`] answers; before any
    /// command talks to a node.
    pub(super) fn install(&self) -> anyhow::Result<()> {
        let config = match (&self.ca_file, &self.client_cert, &self.client_key) {
            (None, None, None) => None,
            (None, _, _) => anyhow::bail!(
                "--client-cert and --client-key need --ca-file (the CA that signed the node's \
                 certificate)"
            ),
            (Some(ca), None, None) => Some(TlsConfig::from_ca_file(ca)?),
            (Some(ca), Some(cert), Some(key)) => {
                Some(TlsConfig::from_ca_file(ca)?.with_client_cert(cert, key)?)
            }
            (Some(_), _, _) => anyhow::bail!("--client-cert and --client-key go together"),
        };
        let _ = CLIENT.set(config);
        Ok(())
    }
}

/// What the commands trust and present for `https://` nodes (`None`
/// before [`ClientTlsArgs::install`] or without `--ca-file`).
pub(super) fn client() -> Option<TlsConfig> {
    CLIENT.get().cloned().flatten()
}
