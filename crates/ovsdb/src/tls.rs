//! `ssl:` remotes: TLS with a CA certificate and a client certificate and key, as
//! `ovn-nbctl --db=ssl:… -p KEY -c CERT -C CACERT` uses them. The server's chain must lead to
//! the CA, and its certificate must name the remote's host (an IP or DNS subjectAltName), so a
//! certificate of another server of the same CA cannot stand in. Open vSwitch's own SSL streams
//! check only the chain, and OVS PKI certificates do not carry the servers' addresses: for
//! those, `check_name: false` pins the CA only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::{
    self, CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::error::Error;

/// The PEM files of an `ssl:` connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the server's certificate.
    pub ca_certificate: PathBuf,
    /// Our certificate.
    pub certificate: PathBuf,
    /// Our private key.
    pub private_key: PathBuf,
    /// Whether the server's certificate must name the remote's host (else: the CA only).
    pub check_name: bool,
}

impl TlsFiles {
    /// Reads the files and builds a connector.
    pub fn connector(&self) -> Result<TlsConnector, Error> {
        let tls_error = |path: &Path, reason: String| Error::Tls {
            path: path.to_path_buf(),
            reason,
        };
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(&self.ca_certificate)
            .map_err(|e| tls_error(&self.ca_certificate, e.to_string()))?
        {
            let certificate =
                certificate.map_err(|e| tls_error(&self.ca_certificate, e.to_string()))?;
            roots
                .add(certificate)
                .map_err(|e| tls_error(&self.ca_certificate, e.to_string()))?;
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.certificate)
            .map_err(|e| tls_error(&self.certificate, e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| tls_error(&self.certificate, e.to_string()))?;
        let key = PrivateKeyDer::from_pem_file(&self.private_key)
            .map_err(|e| tls_error(&self.private_key, e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| tls_error(&self.ca_certificate, e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.check_name {
            verifier
        } else {
            Arc::new(ChainOnly(verifier))
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(&self.certificate, e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(|e| {
                tls_error(
                    &self.certificate,
                    format!("unusable with {}: {e}", self.private_key.display()),
                )
            })?;
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

/// Checks the chain, signatures and validity like WebPKI, but not the server's name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                ..
            })) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
