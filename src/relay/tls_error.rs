//! What a failed TLS handshake says, in words an operator can act on: the certificate's issuer
//! is unknown, it expired, it names another host, the backend wants a client certificate. awc
//! wraps rustls' error in an `io::Error` in one of several places (the TCP/TLS connect, the
//! HTTP/2 handshake, the first read when TLS 1.3 refuses a client certificate after the
//! handshake), so every one is looked into.

use std::io;

use awc::error::{ConnectError, SendRequestError};
use rustls::{AlertDescription, CertificateError};

/// The reason, when `e` is a TLS failure.
pub fn tls_failure(e: &SendRequestError) -> Option<String> {
    let io = match e {
        SendRequestError::Connect(c) => connect_io(c),
        SendRequestError::Send(io) => Some(io),
        SendRequestError::Response(actix_web::error::ParseError::Io(io)) => Some(io),
        SendRequestError::H2(h2) => h2.get_io(),
        _ => None,
    }?;
    describe(rustls_error(io)?)
}

/// [`tls_failure`] for a connection error alone.
pub fn connect_tls_failure(e: &ConnectError) -> Option<String> {
    describe(rustls_error(connect_io(e)?)?)
}

fn connect_io(e: &ConnectError) -> Option<&io::Error> {
    match e {
        ConnectError::Io(io) => Some(io),
        ConnectError::H2(h2) => h2.get_io(),
        _ => None,
    }
}

fn rustls_error(io: &io::Error) -> Option<&rustls::Error> {
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

fn describe(e: &rustls::Error) -> Option<String> {
    use rustls::Error as E;
    use CertificateError as C;
    let words = match e {
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "certificate signed by an unknown issuer (trust its CA with the route's ca_file or UPSTREAM_CA_FILE)".to_string(),
            C::Expired | C::ExpiredContext { .. } => "certificate expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate not valid yet".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "certificate name mismatch (it is not issued for this host name)".into()
            }
            C::Revoked => "certificate revoked".into(),
            C::BadSignature => "certificate has a bad signature".into(),
            other => format!("invalid certificate ({other:?})"),
        },
        E::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => {
                "the backend requires a client certificate (set the route's client_cert_file and client_key_file)".into()
            }
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied => {
                format!("the backend refused the client certificate ({alert:?})")
            }
            AlertDescription::CertificateExpired => {
                "the backend refused the client certificate (expired)".into()
            }
            other => format!("the backend ended the handshake ({other:?})"),
        },
        E::NoCertificatesPresented => "the backend presented no certificate".into(),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            "the backend does not speak TLS here (is the URL's scheme right?)".into()
        }
        E::PeerIncompatible(p) => format!("no TLS version or cipher in common ({p:?})"),
        other => format!("TLS handshake failed ({other})"),
    };
    Some(words)
}
