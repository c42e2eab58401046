//! `tsohost certs init DIR`: a CA and the certificates signed by it that
//! HTTPS needs, for trying TLS out and for tests (rcgen, ECDSA P-256).
//!
//! Production deployments bring their own PKI; what this writes is
//! complete but deliberately plain: one CA, one node certificate valid for
//! the loopback names and the `--name`s given, one client certificate, and
//! one peer certificate per `--peer-ids` node, naming that node as peer TLS
//! requires (`node-N.peer.tsohost`, see `crate::tls::peer`).
//! Nothing is ever overwritten: a CA that has signed certificates in use
//! must not silently change.

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Names every node certificate is valid for, besides `--name`s.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(clap::Subcommand, Debug)]
pub(super) enum CertsCmd {
    /// Write ca.pem/ca.key, node.pem/node.key (a server certificate for
    /// localhost, 127.0.0.1, ::1 and every --name), client.pem/client.key
    /// (for mutual TLS) and peer-N.pem/peer-N.key for each of --peer-ids
    /// (peer TLS) into DIR. Keys are written with mode 0600; existing files
    /// are never overwritten.
    Init {
        /// The directory to write to (created if missing).
        dir: PathBuf,
        /// Another DNS name or IP address of the node certificate; repeatable.
        #[arg(long = "name")]
        names: Vec<String>,
        /// How long the node and client certificates are valid, in days
        /// (the CA: ten times as long).
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// The node ids to write peer certificates for (peer-N.pem,
        /// peer-N.key).
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        peer_ids: Vec<u64>,
    },
}

/// The files `init` writes, in order, besides the peer certificates
/// ([`peer_files`]).
pub const FILES: [&str; 6] = [
    "ca.pem",
    "ca.key",
    "node.pem",
    "node.key",
    "client.pem",
    "client.key",
];

pub(super) fn certs(cmd: CertsCmd) -> anyhow::Result<()> {
    match cmd {
        CertsCmd::Init {
            dir,
            names,
            days,
            peer_ids,
        } => {
            init(&dir, &names, days, &peer_ids)?;
            let d = dir.display();
            let files: Vec<String> = FILES
                .iter()
                .map(|f| f.to_string())
                .chain(peer_ids.iter().flat_map(|&id| peer_files(id)))
                .collect();
            println!(
                "wrote {} in {d}\n\
                 serve:  tsohost serve --tls-cert {d}/node.pem --tls-key {d}/node.key \
                 [--tls-client-ca {d}/ca.pem]\n\
                 client: tsohost status --url https://127.0.0.1:7373 --ca-file {d}/ca.pem \
                 [--client-cert {d}/client.pem --client-key {d}/client.key]\n\
                 curl:   curl --cacert {d}/ca.pem [--cert {d}/client.pem --key {d}/client.key] \
                 https://127.0.0.1:7373/v1/timestamp\n\
                 peers:  tsohost serve --node-id N --peer-tls-cert {d}/peer-N.pem \
                 --peer-tls-key {d}/peer-N.key --peer-ca {d}/ca.pem ...",
                files.join(", ")
            );
            Ok(())
        }
    }
}

/// The certificate and key files of node `id`'s peer certificate.
pub fn peer_files(id: u64) -> [String; 2] {
    [format!("peer-{id}.pem"), format!("peer-{id}.key")]
}

/// Write the CA, node, client and peer certificates and keys into `dir`.
pub fn init(dir: &Path, names: &[String], days: u32, peer_ids: &[u64]) -> anyhow::Result<()> {
    if days == 0 {
        bail!("--days must be at least 1");
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}; pass a writable DIR", dir.display()))?;
    let files: Vec<String> = FILES
        .iter()
        .map(|f| f.to_string())
        .chain(peer_ids.iter().flat_map(|&id| peer_files(id)))
        .collect();
    for file in &files {
        let path = dir.join(file);
        if path.exists() {
            bail!(
                "{} exists: `certs init` never overwrites certificates or keys. Move the old \
                 files away or pick another DIR",
                path.display()
            );
        }
    }
    let now = OffsetDateTime::now_utc();
    // An hour back, for clocks a little behind this one.
    let not_before = now - Duration::hours(1);
    let valid = Duration::days(i64::from(days));
    let params = |cn: &str, sans: Vec<String>, ca_years: bool| -> anyhow::Result<_> {
        let mut p = CertificateParams::new(sans)
            .with_context(|| format!("a --name is not a DNS name or IP address: {names:?}"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.not_before = not_before;
        p.not_after = now + if ca_years { valid * 10 } else { valid };
        p.serial_number = Some(serial()?);
        p.use_authority_key_identifier_extension = !ca_years;
        Ok(p)
    };
    let mut ca = params("tsohost CA", Vec::new(), true)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let sans: Vec<String> = LOOPBACK
        .iter()
        .map(|s| s.to_string())
        .chain(names.iter().cloned())
        .collect();
    let mut node = params("tsohost node", sans, false)?;
    node.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let node_key = KeyPair::generate()?;
    let node = node.signed_by(&node_key, &*ca)?;

    let mut client = params("tsohost client", Vec::new(), false)?;
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client = client.signed_by(&client_key, &*ca)?;

    let mut contents = vec![
        ca.pem(),
        ca.key().serialize_pem(),
        node.pem(),
        node_key.serialize_pem(),
        client.pem(),
        client_key.serialize_pem(),
    ];
    for &id in peer_ids {
        // Both ends of a peer connection: served and presented as a client.
        let mut peer = params("tsohost peer", vec![crate::tls::peer::node_name(id)], false)?;
        peer.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        peer.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let peer_key = KeyPair::generate()?;
        contents.push(peer.signed_by(&peer_key, &*ca)?.pem());
        contents.push(peer_key.serialize_pem());
    }
    for (file, text) in files.iter().zip(contents) {
        let mode = if file.ends_with(".key") { 0o600 } else { 0o644 };
        write_new(&dir.join(file), text.as_bytes(), mode)?;
    }
    Ok(())
}

/// A random positive 16-byte serial number (RFC 5280: at most 20 bytes,
/// unique per CA).
fn serial() -> anyhow::Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).context("the system's random source failed")?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Create `path` with `mode` (never replacing a file) and write `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
