//! The credentials of an NBD export: a certificate authority per cluster, the server
//! and client certificates it issues, and the rustls configuration that requires them.
//!
//! Trust model: every cluster has its own CA ([`ClusterCa`]). One NBD server serves one
//! cluster's disks and accepts a client only if its certificate chains to that
//! cluster's CA, so a certificate of cluster B fails the TLS handshake with cluster
//! A's server before any option is read. The same CA signs the server certificate
//! (for `127.0.0.1`, `localhost` and any other name given), so the client's
//! `ca-cert.pem` authenticates the server too.
//!
//! Only the CA must be kept across restarts (its certificate and its key, the key as a
//! secret: wrapped or in a 0600 file): a server restarted with a fresh server
//! certificate from the same CA accepts the client credentials issued before.
//! Clients are not revoked one by one: a new CA (and new client credentials) replaces
//! them all.
//!
//! The client credentials are written the way libnbd (`tls-certificates=DIR`) and qemu
//! (`--object tls-creds-x509,dir=DIR,endpoint=client`) read them: `ca-cert.pem`,
//! `client-cert.pem` and `client-key.pem` (mode 0600).
//!
//! Keys are ECDSA P-256 from aws-lc-rs; certificates are valid for ten years from
//! an hour before their issue (to tolerate clock skew).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use zeroize::{Zeroize, Zeroizing};

/// Why credentials could not be made, read or used. Carries no key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    #[error("the CA certificate or key is not valid PEM for cluster {cluster_id}: {reason}")]
    BadCa { cluster_id: String, reason: String },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
    #[error("cannot write the credentials to {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, TlsError>;

fn generate_error(error: rcgen::Error) -> TlsError {
    TlsError::Generate(error.to_string())
}

/// An rcgen key pair wiped when dropped (rcgen only offers `Zeroize`).
struct SecretKeyPair(KeyPair);

impl Drop for SecretKeyPair {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl SecretKeyPair {
    fn generate() -> Result<SecretKeyPair> {
        KeyPair::generate()
            .map(SecretKeyPair)
            .map_err(generate_error)
    }

    fn pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.serialize_pem())
    }

    fn pkcs8_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.0.serialize_der().into())
    }
}

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
}

/// The CA's subject: derived from the cluster id alone, so a CA read back from its
/// PEM key issues certificates whose issuer matches the stored CA certificate.
fn ca_params(cluster_id: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "keyward");
    name.push(
        DnType::CommonName,
        format!("keyward NBD CA of cluster {cluster_id}"),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params);
    params
}

/// A cluster's certificate authority. Holds its private key: no `Debug`, no `Clone`,
/// wiped on drop; [`ClusterCa::key_pem`] is the one accessor of the key.
pub struct ClusterCa {
    cluster_id: String,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: SecretKeyPair,
}

impl ClusterCa {
    /// A new CA for `cluster_id`, with a fresh key.
    pub fn generate(cluster_id: &str) -> Result<ClusterCa> {
        let key = SecretKeyPair::generate()?;
        let cert = ca_params(cluster_id)
            .self_signed(&key.0)
            .map_err(generate_error)?;
        Ok(ClusterCa {
            cluster_id: cluster_id.to_owned(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
        })
    }

    /// The CA stored earlier by [`ClusterCa::cert_pem`] and [`ClusterCa::key_pem`].
    /// Refuses a key that is not the certificate's, or a certificate of another cluster.
    pub fn from_pem(cluster_id: &str, cert_pem: &str, key_pem: &str) -> Result<ClusterCa> {
        let bad = |reason: &str| TlsError::BadCa {
            cluster_id: cluster_id.to_owned(),
            reason: reason.to_owned(),
        };
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| bad("no CERTIFICATE block"))?;
        let key = SecretKeyPair(
            KeyPair::from_pem(key_pem).map_err(|_| bad("no usable PRIVATE KEY block"))?,
        );
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key.0);
        if !contains(&cert_der, &spki) {
            return Err(bad("the key is not the certificate's"));
        }
        let subject = format!("keyward NBD CA of cluster {cluster_id}");
        if !contains(&cert_der, subject.as_bytes()) {
            return Err(bad("the certificate is another cluster's CA"));
        }
        Ok(ClusterCa {
            cluster_id: cluster_id.to_owned(),
            cert_pem: cert_pem.to_owned(),
            cert_der,
            key,
        })
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The CA certificate (public): what clients trust as `ca-cert.pem`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PKCS#8 PEM. A secret: store it wrapped or in a 0600 file.
    pub fn key_pem(&self) -> Zeroizing<String> {
        self.key.pem()
    }

    fn issuer(&self) -> Issuer<'static, &KeyPair> {
        Issuer::new(ca_params(&self.cluster_id), &self.key.0)
    }

    /// A leaf certificate with a fresh key: `names` as its subject alternative names,
    /// `subject` as its common name, `usage` its one extended key usage.
    fn issue(
        &self,
        names: Vec<String>,
        subject: String,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(rcgen::Certificate, SecretKeyPair)> {
        let mut params = CertificateParams::new(names).map_err(generate_error)?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "keyward");
        params.distinguished_name.push(DnType::CommonName, subject);
        // What gnutls (libnbd, qemu) checks of a leaf: a signing key usage and the
        // right purpose.
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params);
        let key = SecretKeyPair::generate()?;
        let cert = params
            .signed_by(&key.0, &self.issuer())
            .map_err(generate_error)?;
        Ok((cert, key))
    }

    /// A server certificate for `127.0.0.1`, `::1`, `localhost` and `extra_names`
    /// (host names or IP addresses), with a fresh key.
    pub fn issue_server(&self, extra_names: &[String]) -> Result<ServerIdentity> {
        let mut names = vec![
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
            "localhost".to_owned(),
        ];
        names.extend(extra_names.iter().cloned());
        let (cert, key) = self.issue(
            names,
            format!("keyward NBD server of cluster {}", self.cluster_id),
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        Ok(ServerIdentity {
            ca_cert_pem: self.cert_pem.clone(),
            ca_cert_der: self.cert_der.clone(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
        })
    }

    /// Credentials for one client of this cluster, named `client` in its subject (for
    /// the logs; authorization is by the CA alone).
    pub fn issue_client(&self, client: &str) -> Result<ClientCredentials> {
        let (cert, key) = self.issue(
            Vec::new(),
            format!("{client} of cluster {}", self.cluster_id),
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(ClientCredentials {
            ca_cert_pem: self.cert_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.pem(),
        })
    }

    /// The server side of mutual TLS for this cluster: `identity` presented to clients,
    /// and only client certificates issued by this CA accepted.
    pub fn server_tls(&self, identity: &ServerIdentity) -> Result<NbdTls> {
        NbdTls::new(&self.cert_der, identity)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A server certificate and its key. No `Debug`; the key is wiped on drop.
pub struct ServerIdentity {
    ca_cert_pem: String,
    ca_cert_der: CertificateDer<'static>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: SecretKeyPair,
}

impl ServerIdentity {
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes `ca-cert.pem`, `server-cert.pem` and `server-key.pem` (0600) into `dir`
    /// (made 0700 if missing): the layout of qemu's `tls-creds-x509,endpoint=server`.
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        make_private_dir(dir)?;
        write_file(&dir.join("ca-cert.pem"), self.ca_cert_pem.as_bytes(), 0o644)?;
        write_file(
            &dir.join("server-cert.pem"),
            self.cert_pem.as_bytes(),
            0o644,
        )?;
        write_file(
            &dir.join("server-key.pem"),
            self.key.pem().as_bytes(),
            0o600,
        )
    }
}

/// What a client needs to reach its cluster's exports. No `Debug`; the key is wiped
/// on drop.
pub struct ClientCredentials {
    ca_cert_pem: String,
    cert_pem: String,
    key_pem: Zeroizing<String>,
}

impl ClientCredentials {
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The client's private key, PKCS#8 PEM (a secret).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Writes `ca-cert.pem`, `client-cert.pem` and `client-key.pem` (0600) into `dir`
    /// (made 0700 if missing), for `nbds://…?tls-certificates=DIR` and qemu's
    /// `tls-creds-x509,dir=DIR,endpoint=client`.
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        make_private_dir(dir)?;
        write_file(&dir.join("ca-cert.pem"), self.ca_cert_pem.as_bytes(), 0o644)?;
        write_file(
            &dir.join("client-cert.pem"),
            self.cert_pem.as_bytes(),
            0o644,
        )?;
        write_file(&dir.join("client-key.pem"), self.key_pem.as_bytes(), 0o600)
    }
}

fn make_private_dir(dir: &Path) -> Result<()> {
    let error = |source| TlsError::Write {
        path: dir.display().to_string(),
        source,
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(error)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(error)?;
    }
    Ok(())
}

/// Writes through a temporary file created with `mode` (never readable by others,
/// even for a moment) and renamed over `path`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let error = |source| TlsError::Write {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&tmp, path).map_err(error)
}

/// The rustls server configuration of one cluster's exports: TLS 1.2 or 1.3 on
/// aws-lc-rs, a client certificate required and checked against the cluster's CA.
#[derive(Clone)]
pub struct NbdTls {
    config: Arc<rustls::ServerConfig>,
}

impl NbdTls {
    fn new(ca: &CertificateDer<'static>, identity: &ServerIdentity) -> Result<NbdTls> {
        let config_error = |e: rustls::Error| TlsError::Config(e.to_string());
        if identity.ca_cert_der != *ca {
            return Err(TlsError::Config(
                "the server certificate was issued by another CA".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).map_err(config_error)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![identity.cert_der.clone()], identity.key.pkcs8_der())
            .map_err(config_error)?;
        Ok(NbdTls {
            config: Arc::new(config),
        })
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_read_back_from_pem_issues_certificates_its_stored_certificate_verifies() {
        let ca = ClusterCa::generate("c-1").unwrap();
        let again = ClusterCa::from_pem("c-1", ca.cert_pem(), &ca.key_pem()).unwrap();
        let identity = again.issue_server(&[]).unwrap();
        // The original CA's verifier accepts the server certificate issued after reload.
        assert!(ca.server_tls(&identity).is_ok());
        let other = ClusterCa::generate("c-2").unwrap();
        assert!(matches!(
            ClusterCa::from_pem("c-1", ca.cert_pem(), &other.key_pem()),
            Err(TlsError::BadCa { .. })
        ));
        assert!(matches!(
            ClusterCa::from_pem("c-2", ca.cert_pem(), &ca.key_pem()),
            Err(TlsError::BadCa { .. })
        ));
        assert!(other.server_tls(&identity).is_err());
    }

    #[test]
    fn client_credentials_are_written_with_a_private_key_file() {
        let ca = ClusterCa::generate("c-1").unwrap();
        let creds = ca.issue_client("test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        creds.write_dir(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join("client-key.pem")), 0o600);
        assert_eq!(
            std::fs::read_to_string(path.join("ca-cert.pem")).unwrap(),
            ca.cert_pem()
        );
        assert!(std::fs::read_to_string(path.join("client-key.pem"))
            .unwrap()
            .contains("PRIVATE KEY"));
    }
}
