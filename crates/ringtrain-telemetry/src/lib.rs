//! The Prometheus endpoint of ringtrain's services: `GET /metrics` (and `GET /`) answered with
//! the text exposition a caller renders, on a listener the caller bound — so a service started
//! with port 0 knows and reports the port it got, which the exporter crate's own listener cannot
//! do. The HTTP is axum's (already in the tree through tonic); this crate only wires the routes,
//! so the coordinator and the workers serve their series the same way. With TLS settings
//! ([`serve_with`]) each accepted connection is a rustls session first, handshakes running
//! concurrently and bounded in time, so a slow or failing client never holds up the others.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
pub use tokio_rustls::rustls::ServerConfig as TlsServerConfig;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections whose handshake finished, waiting for the HTTP server to take them.
const ACCEPTED_DEPTH: usize = 64;

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `render()`'s text at `GET /metrics` and `GET /` on `listener` (plain HTTP) until
/// `shutdown` resolves; other paths are 404 (naming `/metrics`), other methods 405. `render` runs on every
/// scrape, so it should be cheap (a recorder's render is).
///
/// # Errors
/// Accepting connections failed in a way the server could not recover from.
pub async fn serve(
    listener: TcpListener,
    render: impl Fn() -> String + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, None, render, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (the rustls settings decide the certificate and
/// whether clients must present one). Connections whose handshake fails or takes longer than
/// 10 s are closed (logged at debug level) without disturbing the others.
///
/// # Errors
/// As [`serve`].
pub async fn serve_with(
    listener: TcpListener,
    tls: Option<Arc<TlsServerConfig>>,
    render: impl Fn() -> String + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let render = Arc::new(render);
    let scrape = move || {
        let render = render.clone();
        async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], render()) }
    };
    let app = Router::new()
        .route("/metrics", get(scrape.clone()))
        .route("/", get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found; try /metrics\n") });
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            axum::serve(TlsListener::new(listener, config)?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// An axum listener yielding TLS sessions: a background task accepts TCP connections and runs
/// each handshake in its own task; finished sessions queue for the HTTP server.
struct TlsListener {
    ready: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: TcpListener, config: Arc<TlsServerConfig>) -> std::io::Result<TlsListener> {
        let addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(ACCEPTED_DEPTH);
        let tls = tokio_rustls::TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: wait instead of spinning.
                            tracing::debug!(error = %e, "metrics endpoint: accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(session)) => {
                            let _ = tx.send((session, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "metrics endpoint: TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "metrics endpoint: TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            addr,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(session) => session,
            // The acceptor task ended (only when aborted, i.e. this listener is going away).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get_raw(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_refuses_the_rest() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, || "up 1\n".to_string(), async {
            let _ = stopped.await;
        }));
        let close = "Host: x\r\nConnection: close\r\n\r\n";
        let ok = get_raw(addr, &format!("GET /metrics HTTP/1.1\r\n{close}")).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(
            ok.contains("version=0.0.4") && ok.ends_with("up 1\n"),
            "{ok}"
        );
        let root = get_raw(addr, &format!("GET / HTTP/1.1\r\n{close}")).await;
        assert!(root.ends_with("up 1\n"), "{root}");
        let missing = get_raw(addr, &format!("GET /nope HTTP/1.1\r\n{close}")).await;
        assert!(
            missing.starts_with("HTTP/1.1 404") && missing.contains("/metrics"),
            "{missing}"
        );
        let post = get_raw(
            addr,
            &format!("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n{close}"),
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
