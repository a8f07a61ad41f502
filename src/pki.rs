//! The swarm's certificate authority: the root CA made at `init`, join tokens
//! that pin it, node certificates issued from CSRs, and the mutual-TLS settings
//! every connection between nodes uses.
//!
//! A node certificate names its holder the way SwarmKit's do: CN = node ID,
//! OU = `swarm-manager` or `swarm-worker`, O = cluster ID, with the role and the
//! node ID as DNS names, so a client reaching any manager verifies the server name
//! `swarm-manager`. A join token `SWMTKN-1-<digest>-<secret>` carries the SHA-256
//! digest of the root CA certificate (base 36, 50 digits) so a joining node can
//! check the CA it is shown before trusting anything, and a secret (base 36,
//! 25 digits) that says which role it joins as.
//!
//! Room: certificates and tokens only, no I/O; used by every other room, uses
//! no other room.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use swarm_core::Id;
use swarm_core::types::NodeRole;

/// Organisational unit of manager certificates (and the TLS server name managers answer to).
pub const MANAGER_OU: &str = "swarm-manager";
/// Organisational unit of worker certificates.
pub const WORKER_OU: &str = "swarm-worker";
/// Common name of the root CA.
pub const CA_CN: &str = "swarm-ca";
/// Lifetime of the root CA certificate (20 years, as SwarmKit).
pub const ROOT_CA_EXPIRY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Length of a join token's digest field.
const DIGEST_LEN: usize = 50;
/// Length of a join token's secret field.
const SECRET_LEN: usize = 25;

/// What can go wrong with certificates and tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// The token is not of the form `SWMTKN-1-<50 base-36 digits>-<25 base-36 digits>`.
    #[error("invalid join token: {0}")]
    InvalidToken(String),
    /// The token's digest is not the digest of the CA the node was shown: the
    /// manager is not the one the token came from, or is an impostor.
    #[error(
        "the join token does not match the swarm's root CA: the remote CA digest is {actual}, the token expects {expected}"
    )]
    CaMismatch {
        /// Digest in the token.
        expected: String,
        /// Digest of the CA presented.
        actual: String,
    },
    /// The token is well formed but is not one of the swarm's current tokens.
    #[error(
        "invalid join token: it is not a current worker or manager token of this swarm (it may have been rotated)"
    )]
    TokenRejected,
    /// The certificate signing request cannot be used.
    #[error("invalid certificate signing request: {0}")]
    BadCsr(String),
    /// A certificate or key cannot be parsed or does not say what it must.
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    /// The crypto library failed.
    #[error("certificate operation failed: {0}")]
    Crypto(String),
}

fn crypto(e: impl std::fmt::Display) -> CaError {
    CaError::Crypto(e.to_string())
}

/// The organisational unit of a role.
pub fn role_ou(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => MANAGER_OU,
        NodeRole::Worker => WORKER_OU,
    }
}

/// The cluster's root of trust: certificate, and key where this node can sign.
#[derive(Clone)]
pub struct RootCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: Option<String>,
}

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCa")
            .field("digest", &self.digest_string())
            .field("can_sign", &self.key_pem.is_some())
            .finish()
    }
}

impl RootCa {
    /// A new self-signed ECDSA P-256 root CA.
    pub fn generate() -> Result<RootCa, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(crypto)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_CN);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + ROOT_CA_EXPIRY;
        let cert = params.self_signed(&key).map_err(crypto)?;
        Ok(RootCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: Some(key.serialize_pem()),
        })
    }

    /// A root CA from its certificate and, where this node signs, its key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: Option<&str>) -> Result<RootCa, CaError> {
        let der = pem_to_der(cert_pem, "CERTIFICATE")?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| CaError::BadCertificate(e.to_string()))?;
        if !cert.is_ca() {
            return Err(CaError::BadCertificate(
                "the root certificate is not a CA certificate".into(),
            ));
        }
        if let Some(k) = key_pem {
            KeyPair::from_pem(k)
                .map_err(|e| CaError::BadCertificate(format!("root CA key: {e}")))?;
        }
        Ok(RootCa {
            cert_pem: cert_pem.to_string(),
            cert_der: CertificateDer::from(der),
            key_pem: key_pem.map(str::to_string),
        })
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The key, PEM, if this node holds it.
    pub fn key_pem(&self) -> Option<&str> {
        self.key_pem.as_deref()
    }

    /// SHA-256 of the certificate (DER).
    pub fn digest(&self) -> [u8; 32] {
        digest_of(&self.cert_der)
    }

    /// The digest as `sha256:<hex>`, as the cluster object records it.
    pub fn digest_string(&self) -> String {
        let hex: String = self.digest().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// A fresh join token for this CA: `SWMTKN-1-<digest>-<secret>`.
    pub fn new_join_token(&self) -> String {
        let secret: u128 = rand::random();
        format!(
            "SWMTKN-1-{}-{}",
            base36(&self.digest(), DIGEST_LEN),
            base36(&secret.to_be_bytes(), SECRET_LEN)
        )
    }

    /// Signs a node certificate for the key in `csr_pem`. The subject is set here,
    /// whatever the CSR asks: CN = `node_id`, OU = the role's, O = `cluster_id`.
    pub fn issue(
        &self,
        csr_pem: &str,
        node_id: &Id,
        role: NodeRole,
        cluster_id: &Id,
        expiry: Duration,
    ) -> Result<String, CaError> {
        let key_pem = self
            .key_pem
            .as_deref()
            .ok_or_else(|| CaError::Crypto("this node does not hold the root CA key".into()))?;
        let key = KeyPair::from_pem(key_pem).map_err(crypto)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, key).map_err(crypto)?;
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::BadCsr(e.to_string()))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id.as_str());
        dn.push(DnType::OrganizationalUnitName, role_ou(role));
        dn.push(DnType::OrganizationName, cluster_id.as_str());
        let params = &mut csr.params;
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::DnsName(role_ou(role).try_into().map_err(crypto)?),
            SanType::DnsName(
                node_id
                    .as_str()
                    .try_into()
                    .map_err(|e| CaError::BadCsr(format!("node ID {node_id}: {e}")))?,
            ),
        ];
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + expiry;
        let serial: [u8; 16] = rand::random();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        Ok(csr.signed_by(&issuer).map_err(crypto)?.pem())
    }
}

fn digest_of(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn pem_to_der(pem: &str, label: &str) -> Result<Vec<u8>, CaError> {
    use rustls::pki_types::pem::PemObject;
    match label {
        "CERTIFICATE" => CertificateDer::from_pem_slice(pem.as_bytes())
            .map(|c| c.to_vec())
            .map_err(|e| CaError::BadCertificate(format!("not a PEM certificate: {e}"))),
        _ => PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map(|k| k.secret_der().to_vec())
            .map_err(|e| CaError::BadCertificate(format!("not a PEM private key: {e}"))),
    }
}

/// Big-endian bytes in base 36, zero-padded to `width` digits.
fn base36(bytes: &[u8], width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n: Vec<u8> = bytes.to_vec();
    let mut out = Vec::new();
    while n.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | *b as u32;
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        out.push(DIGITS[rem as usize]);
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// Parses base-36 digits into `N` big-endian bytes; `None` on a bad digit or overflow.
fn unbase36<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut n = [0u8; N];
    for c in s.chars() {
        let d = c.to_digit(36)?;
        let mut carry = d;
        for b in n.iter_mut().rev() {
            let cur = *b as u32 * 36 + carry;
            *b = cur as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(n)
}

/// Compares in time independent of where the inputs differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the root CA certificate the token pins.
    pub ca_digest: [u8; 32],
    /// The secret part, as written in the token.
    pub secret: String,
    raw: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("JoinToken")
            .field("ca_digest", &base36(&self.ca_digest, DIGEST_LEN))
            .finish_non_exhaustive()
    }
}

impl JoinToken {
    /// Parses `SWMTKN-1-<digest>-<secret>`; the error says what is wrong.
    pub fn parse(token: &str) -> Result<JoinToken, CaError> {
        let token = token.trim();
        let parts: Vec<&str> = token.split('-').collect();
        if parts.len() != 4 || parts[0] != "SWMTKN" {
            return Err(CaError::InvalidToken(
                "expected SWMTKN-1-<CA digest>-<secret>".into(),
            ));
        }
        if parts[1] != "1" {
            return Err(CaError::InvalidToken(format!(
                "unsupported token version {:?}",
                parts[1]
            )));
        }
        if parts[2].len() != DIGEST_LEN || parts[3].len() != SECRET_LEN {
            return Err(CaError::InvalidToken(format!(
                "the CA digest must have {DIGEST_LEN} characters and the secret {SECRET_LEN}"
            )));
        }
        let ca_digest = unbase36::<32>(parts[2])
            .ok_or_else(|| CaError::InvalidToken("the CA digest is not base 36".into()))?;
        unbase36::<17>(parts[3])
            .ok_or_else(|| CaError::InvalidToken("the secret is not base 36".into()))?;
        Ok(JoinToken {
            ca_digest,
            secret: parts[3].to_string(),
            raw: token.to_string(),
        })
    }

    /// Checks that `ca_cert_der` is the CA the token pins.
    pub fn check_ca(&self, ca_cert_der: &[u8]) -> Result<(), CaError> {
        let actual = digest_of(ca_cert_der);
        if ct_eq(&actual, &self.ca_digest) {
            Ok(())
        } else {
            Err(CaError::CaMismatch {
                expected: base36(&self.ca_digest, DIGEST_LEN),
                actual: base36(&actual, DIGEST_LEN),
            })
        }
    }

    /// The role this token grants, given the swarm's current tokens; a token that
    /// is neither (wrong or rotated) is `TokenRejected`.
    pub fn role_in(&self, worker_token: &str, manager_token: &str) -> Result<NodeRole, CaError> {
        let eq = |a: &str| ct_eq(a.as_bytes(), self.raw.as_bytes());
        if !manager_token.is_empty() && eq(manager_token) {
            Ok(NodeRole::Manager)
        } else if !worker_token.is_empty() && eq(worker_token) {
            Ok(NodeRole::Worker)
        } else {
            Err(CaError::TokenRejected)
        }
    }
}

/// A node's key and, once issued, its certificate.
#[derive(Clone)]
pub struct NodeIdentity {
    key_pem: String,
    cert_pem: String,
    /// Who the certificate says the node is.
    pub peer: PeerIdentity,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// A fresh key and a CSR for it (the subject is the CA's to decide).
pub fn new_key_and_csr() -> Result<(String, String), CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    let params = CertificateParams::new(Vec::<String>::new()).map_err(crypto)?;
    let csr = params.serialize_request(&key).map_err(crypto)?;
    Ok((key.serialize_pem(), csr.pem().map_err(crypto)?))
}

impl NodeIdentity {
    /// An identity from a key and the certificate issued for it (PEM).
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<NodeIdentity, CaError> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| CaError::BadCertificate(format!("node key: {e}")))?;
        let der = pem_to_der(cert_pem, "CERTIFICATE")?;
        let peer = PeerIdentity::from_der(&der)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| CaError::BadCertificate(e.to_string()))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CaError::BadCertificate(
                "the certificate is not for this key".into(),
            ));
        }
        Ok(NodeIdentity {
            key_pem: key_pem.to_string(),
            cert_pem: cert_pem.to_string(),
            peer,
        })
    }

    /// The key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    fn chain(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let cert = CertificateDer::from(pem_to_der(&self.cert_pem, "CERTIFICATE")?);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pem_to_der(&self.key_pem, "KEY")?));
        Ok((vec![cert], key))
    }
}

/// Who a certificate names: the node, its role and its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The node ID (CN).
    pub node_id: Id,
    /// The role (OU).
    pub role: NodeRole,
    /// The cluster ID (O).
    pub cluster_id: Id,
    /// When the certificate became valid (seconds since the epoch).
    pub not_before: i64,
    /// When the certificate expires (seconds since the epoch).
    pub not_after: i64,
}

impl PeerIdentity {
    /// When a node should renew this certificate: at `fraction` (0..1) of its
    /// validity (SwarmKit renews at a random point between half and 80 %).
    pub fn renew_at(&self, fraction: f64) -> i64 {
        let span = (self.not_after - self.not_before).max(0) as f64;
        self.not_before + (span * fraction.clamp(0.0, 1.0)) as i64
    }

    /// Reads CN, OU and O from a certificate (DER).
    pub fn from_der(der: &[u8]) -> Result<PeerIdentity, CaError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| CaError::BadCertificate(e.to_string()))?;
        let subject = cert.subject();
        let first = |it: &mut dyn Iterator<
            Item = &x509_parser::x509::AttributeTypeAndValue<'_>,
        >,
                     what: &str| {
            it.next()
                .and_then(|a| a.as_str().ok())
                .map(str::to_string)
                .ok_or_else(|| CaError::BadCertificate(format!("the certificate has no {what}")))
        };
        let node_id = first(&mut subject.iter_common_name(), "common name (node ID)")?;
        let ou = first(
            &mut subject.iter_organizational_unit(),
            "organisational unit (role)",
        )?;
        let cluster_id = first(
            &mut subject.iter_organization(),
            "organisation (cluster ID)",
        )?;
        let role = match ou.as_str() {
            MANAGER_OU => NodeRole::Manager,
            WORKER_OU => NodeRole::Worker,
            other => {
                return Err(CaError::BadCertificate(format!(
                    "unknown role {other:?} in the certificate"
                )));
            }
        };
        Ok(PeerIdentity {
            node_id: Id::from(node_id),
            role,
            cluster_id: Id::from(cluster_id),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &RootCa) -> Result<Arc<rustls::RootCertStore>, CaError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.cert_der().clone())
        .map_err(|e| CaError::BadCertificate(e.to_string()))?;
    Ok(Arc::new(roots))
}

/// TLS settings for a node accepting connections: it presents `identity` and
/// requires a client certificate issued by `ca`.
#[cfg(test)]
pub fn server_config(
    ca: &RootCa,
    identity: &NodeIdentity,
) -> Result<Arc<rustls::ServerConfig>, CaError> {
    build_server_config(ca, identity, false)
}

/// TLS settings for a manager's cluster port: like [`server_config`], but a
/// client without a certificate may connect too (a node joining with a token);
/// each RPC then checks the peer's role, and only the CA service serves
/// anonymous clients.
pub fn cluster_server_config(
    ca: &RootCa,
    identity: &NodeIdentity,
) -> Result<Arc<rustls::ServerConfig>, CaError> {
    build_server_config(ca, identity, true)
}

/// The ALPN name of HTTP/2, which the cluster port speaks (gRPC): clients that
/// insist on negotiating it (grpc-go, grpcio) need the server to offer it.
const ALPN_H2: &[u8] = b"h2";

/// `config`, offering HTTP/2 by ALPN.
fn h2(mut config: rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Arc::new(config)
}

fn build_server_config(
    ca: &RootCa,
    identity: &NodeIdentity,
    allow_anonymous: bool,
) -> Result<Arc<rustls::ServerConfig>, CaError> {
    let mut builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider());
    if allow_anonymous {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder.build().map_err(crypto)?;
    let (chain, key) = identity.chain()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(crypto)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(crypto)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// TLS settings for a joining node that has no certificate yet: it trusts only
/// `ca` (already checked against the join token) and presents nothing.
pub fn anonymous_client_config(ca: &RootCa) -> Result<Arc<rustls::ClientConfig>, CaError> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(crypto)?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    Ok(h2(config))
}

/// TLS settings that accept any server certificate: only for fetching the root
/// CA at join time, whose digest the caller then checks against the join token
/// before trusting it. Never use it for anything else.
pub fn unverified_client_config() -> Result<Arc<rustls::ClientConfig>, CaError> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(crypto)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider())))
        .with_no_client_auth();
    Ok(h2(config))
}

/// Accepts any server certificate (signatures are still checked, so the server
/// holds the key of the certificate it shows). See [`unverified_client_config`].
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS settings for a node connecting out: it trusts only `ca` and presents
/// `identity`. Connect to managers with the server name [`MANAGER_OU`].
pub fn client_config(
    ca: &RootCa,
    identity: &NodeIdentity,
) -> Result<Arc<rustls::ClientConfig>, CaError> {
    let (chain, key) = identity.chain()?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(crypto)?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(chain, key)
        .map_err(crypto)?;
    Ok(h2(config))
}

/// For tests: a key and an hour's certificate issued by `ca` to `node` with
/// `role` in `cluster`.
#[cfg(test)]
pub(crate) fn test_identity(ca: &RootCa, node: &str, role: NodeRole, cluster: &Id) -> NodeIdentity {
    let (key, csr) = new_key_and_csr().expect("a key and CSR");
    let cert = ca
        .issue(
            &csr,
            &Id::from(node),
            role,
            cluster,
            Duration::from_secs(3600),
        )
        .expect("a certificate");
    NodeIdentity::from_pem(&key, &cert).expect("an identity")
}

/// The identity of the peer of an established TLS connection.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Result<PeerIdentity, CaError> {
    let leaf = certs
        .and_then(|c| c.first())
        .ok_or_else(|| CaError::BadCertificate("the peer sent no certificate".into()))?;
    PeerIdentity::from_der(leaf)
}

#[cfg(test)]
mod tests;
