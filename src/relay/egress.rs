//! The TCP connector of every outbound client: straight to the backend, or through an HTTP
//! proxy. awc has no proxy support, but takes any connector service; this one hands awc a
//! stream it then uses as if it were the backend's socket:
//! - https backends: a `CONNECT host:port` tunnel through the proxy; awc runs TLS inside it,
//!   so the proxy sees only the host name and encrypted bytes;
//! - http backends: a connection to the proxy whose request lines are rewritten to absolute
//!   form (`GET http://host:port/path HTTP/1.1`), as HTTP proxies expect.
//!
//! `Proxy-Authorization` is added to the CONNECT request or to each forwarded request; it is
//! never logged (the proxy is shown as `http://***@host:port`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use actix_rt::net::{ActixStream, Ready, TcpStream};
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService, Resolver};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tracing::debug;

use super::proxy_env::EnvProxies;
use crate::config::{ProxyChoice, ProxyUrl};

/// Longest proxy answer to CONNECT, and longest request line, that is accepted.
const MAX_HEAD: usize = 16 * 1024;

/// awc's TCP connector, deciding per call whether and how to go through a proxy.
#[derive(Clone)]
pub struct EgressConnector {
    direct: ConnectorService,
    choice: ProxyChoice,
    env: Arc<EnvProxies>,
}

impl EgressConnector {
    pub fn new(choice: ProxyChoice, env: Arc<EnvProxies>) -> EgressConnector {
        EgressConnector {
            direct: actix_tls::connect::Connector::new(Resolver::default()).service(),
            choice,
            env,
        }
    }
}

impl Service<ConnectInfo<Uri>> for EgressConnector {
    type Response = Connection<Uri, EgressStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let tls = matches!(req.request().scheme_str(), Some("https" | "wss"));
        let (host, port) = (req.hostname().to_string(), req.port());
        let Some(proxy) = self.env.proxy_for(&self.choice, &host, port, tls).cloned() else {
            let connecting = self.direct.call(req);
            return Box::pin(async move {
                let (tcp, uri) = connecting.await?.into_parts();
                Ok(Connection::new(uri, EgressStream::direct(tcp)))
            });
        };
        let uri = req.request().clone();
        Box::pin(async move {
            let target = authority(&host, port);
            debug!(%proxy, %target, tunnel = tls, "connecting through the egress proxy");
            let mut tcp = TcpStream::connect((proxy.host_for_connect(), proxy.port()))
                .await
                .map_err(|e| proxy_error(&proxy, format!("cannot connect: {e}")))?;
            let _ = tcp.set_nodelay(true);
            let stream = if tls {
                open_tunnel(&mut tcp, &target, &proxy).await?;
                EgressStream::direct(tcp)
            } else {
                EgressStream::forwarded(tcp, format!("http://{target}"), &proxy)
            };
            Ok(Connection::new(uri, stream))
        })
    }
}

/// `host:port`, IPv6 hosts in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn proxy_error(proxy: &ProxyUrl, what: impl std::fmt::Display) -> ConnectError {
    ConnectError::Io(io::Error::other(format!("egress proxy {proxy}: {what}")))
}

/// Ask the proxy for a tunnel to `target` and read its answer up to the blank line, byte by
/// byte so nothing of the tunnel itself is read here.
async fn open_tunnel(
    tcp: &mut TcpStream,
    target: &str,
    proxy: &ProxyUrl,
) -> Result<(), ConnectError> {
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = proxy.authorization() {
        request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| proxy_error(proxy, e))?;
    let mut head = Vec::with_capacity(128);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(proxy_error(proxy, "answer to CONNECT too long"));
        }
        let byte = tcp.read_u8().await.map_err(|e| {
            proxy_error(
                proxy,
                format!("closed while answering CONNECT to {target}: {e}"),
            )
        })?;
        head.push(byte);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or("");
    let ok = status_line
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.len() == 3 && code.starts_with('2'));
    if ok {
        Ok(())
    } else {
        let shown: String = status_line.chars().take(120).collect();
        Err(proxy_error(
            proxy,
            format!("refused CONNECT to {target}: {shown}"),
        ))
    }
}

/// The socket awc talks HTTP over.
#[derive(Debug)]
pub struct EgressStream {
    tcp: TcpStream,
    /// Set on plain-HTTP connections to a proxy.
    forward: Option<AbsoluteForm>,
}

impl EgressStream {
    fn direct(tcp: TcpStream) -> EgressStream {
        EgressStream { tcp, forward: None }
    }

    fn forwarded(tcp: TcpStream, origin: String, proxy: &ProxyUrl) -> EgressStream {
        EgressStream {
            tcp,
            forward: Some(AbsoluteForm {
                origin,
                authorization: proxy.authorization().map(crate::config::Secret::new),
                at_head: true,
                line: Vec::new(),
                pending: Vec::new(),
                sent: 0,
            }),
        }
    }
}

/// Rewrites each request's first line to absolute form. awc's HTTP/1 client writes a whole
/// request before it reads the answer, and reuses a connection only after the answer, so the
/// first write after a read starts the next request.
#[derive(Debug)]
struct AbsoluteForm {
    /// `http://host:port`.
    origin: String,
    authorization: Option<crate::config::Secret>,
    /// The next bytes written begin a request.
    at_head: bool,
    /// The request line so far.
    line: Vec<u8>,
    /// The rewritten request line (and Proxy-Authorization), not yet all written.
    pending: Vec<u8>,
    sent: usize,
}

impl AbsoluteForm {
    /// Take `buf`'s bytes up to the end of the request line; returns how many were taken.
    fn take(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(end) = buf.iter().position(|&b| b == b'\n') else {
            if self.line.len() + buf.len() > MAX_HEAD {
                return Err(io::Error::other("request line too long"));
            }
            self.line.extend_from_slice(buf);
            return Ok(buf.len());
        };
        self.line.extend_from_slice(&buf[..=end]);
        let line = std::mem::take(&mut self.line);
        self.pending = self.rewrite(&line);
        self.sent = 0;
        self.at_head = false;
        Ok(end + 1)
    }

    /// `GET /v1/x HTTP/1.1` → `GET http://host:port/v1/x HTTP/1.1` (+ Proxy-Authorization).
    fn rewrite(&self, line: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(line.len() + self.origin.len() + 64);
        match line.iter().position(|&b| b == b' ') {
            Some(space) if line.get(space + 1) == Some(&b'/') => {
                out.extend_from_slice(&line[..=space]);
                out.extend_from_slice(self.origin.as_bytes());
                out.extend_from_slice(&line[space + 1..]);
            }
            _ => out.extend_from_slice(line),
        }
        if let Some(auth) = &self.authorization {
            out.extend_from_slice(b"Proxy-Authorization: ");
            out.extend_from_slice(auth.expose().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Write what is pending; ready once nothing is.
    fn poll_pending(&mut self, tcp: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut *tcp).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for EgressStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
        if let Some(form) = &mut this.forward {
            if buf.filled().len() > before {
                form.at_head = true;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for EgressStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(form) = &mut this.forward else {
            return Pin::new(&mut this.tcp).poll_write(cx, buf);
        };
        ready!(form.poll_pending(&mut this.tcp, cx))?;
        if form.at_head {
            Poll::Ready(form.take(buf))
        } else {
            Pin::new(&mut this.tcp).poll_write(cx, buf)
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(form) = &mut this.forward {
            ready!(form.poll_pending(&mut this.tcp, cx))?;
        }
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(form) = &mut this.forward {
            ready!(form.poll_pending(&mut this.tcp, cx))?;
        }
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

impl ActixStream for EgressStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_read_ready(&self.tcp, cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_write_ready(&self.tcp, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_in_absolute_form() {
        let form = |auth: Option<&str>| AbsoluteForm {
            origin: "http://backend:8000".into(),
            authorization: auth.map(crate::config::Secret::new),
            at_head: true,
            line: Vec::new(),
            pending: Vec::new(),
            sent: 0,
        };
        let cases: &[(Option<&str>, &str, &str)] = &[
            (
                None,
                "GET /v1/models HTTP/1.1\r\n",
                "GET http://backend:8000/v1/models HTTP/1.1\r\n",
            ),
            (
                None,
                "POST /v1/chat/completions?x=1 HTTP/1.1\r\n",
                "POST http://backend:8000/v1/chat/completions?x=1 HTTP/1.1\r\n",
            ),
            (None, "OPTIONS * HTTP/1.1\r\n", "OPTIONS * HTTP/1.1\r\n"),
            (
                Some("Basic abc"),
                "GET / HTTP/1.1\r\n",
                "GET http://backend:8000/ HTTP/1.1\r\nProxy-Authorization: Basic abc\r\n",
            ),
        ];
        for (auth, line, want) in cases {
            assert_eq!(
                form(*auth).rewrite(line.as_bytes()),
                want.as_bytes(),
                "{line}"
            );
        }
    }

    #[test]
    fn the_request_line_may_arrive_in_pieces() {
        let mut form = AbsoluteForm {
            origin: "http://b:1".into(),
            authorization: None,
            at_head: true,
            line: Vec::new(),
            pending: Vec::new(),
            sent: 0,
        };
        assert_eq!(form.take(b"GET /a").unwrap(), 6);
        assert!(form.at_head);
        assert_eq!(form.take(b"b HTTP/1.1\r\nHost: b\r\n").unwrap(), 12);
        assert!(!form.at_head);
        assert_eq!(form.pending, b"GET http://b:1/ab HTTP/1.1\r\n");
    }
}
