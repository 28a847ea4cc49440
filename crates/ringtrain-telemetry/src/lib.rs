//! The Prometheus endpoint of ringtrain's services: `GET /metrics` (and `GET /`) answered with
//! the text exposition a caller renders, on a listener the caller bound — so a service started
//! with port 0 knows and reports the port it got, which the exporter crate's own listener cannot
//! do. The HTTP is axum's (already in the tree through tonic); this crate only wires the routes,
//! so the coordinator and the workers serve their series the same way.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `render()`'s text at `GET /metrics` and `GET /` on `listener` until `shutdown`
/// resolves; other paths are 404 (naming `/metrics`), other methods 405. `render` runs on every
/// scrape, so it should be cheap (a recorder's render is).
///
/// # Errors
/// Accepting connections failed in a way the server could not recover from.
pub async fn serve(
    listener: tokio::net::TcpListener,
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
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
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
