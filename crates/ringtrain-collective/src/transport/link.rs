//! The HTTP/2 side of a `PeerService.Link` stream, below tonic's codec: the serving endpoint (a
//! tower service mounted on tonic's server), the dialing request (over a tonic `Channel`), the
//! outgoing body that hands head and payload chunks to hyper without copying them, and the reader
//! that feeds received DATA chunks to a [`FrameDecoder`]. The messages are standard gRPC, framed
//! by [`super::wire`]; tonic still provides the connections, HTTP/2 tuning and routing.

use super::wire::{FrameDecoder, Outgoing};
use bytes::Bytes;
use http_body::{Body as _, Frame};
use ringtrain_proto::v1 as pb;
use ringtrain_proto::v1::peer_frame::Body as FrameBody;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The gRPC path of the link method.
const LINK_PATH: &str = "/ringtrain.v1.PeerService/Link";

/// An outgoing link stream: drains a queue of messages, each as a head chunk then (if not empty)
/// a payload chunk; when the queue closes, ends the stream (with an OK status on the serving side,
/// which must send trailers).
struct LinkBody {
    rx: mpsc::Receiver<Outgoing>,
    payload: Option<Bytes>,
    trailers: bool,
    done: bool,
}

impl http_body::Body for LinkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(payload) = self.payload.take() {
            return Poll::Ready(Some(Ok(Frame::data(payload))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some((head, payload))) => {
                if !payload.is_empty() {
                    self.payload = Some(payload);
                }
                Poll::Ready(Some(Ok(Frame::data(head))))
            }
            Poll::Ready(None) => {
                self.done = true;
                if !self.trailers {
                    return Poll::Ready(None);
                }
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn link_body(rx: mpsc::Receiver<Outgoing>, trailers: bool) -> Body {
    Body::new(LinkBody {
        rx,
        payload: None,
        trailers,
        done: false,
    })
}

/// Why reading a link stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The stream broke or the peer ended it with an error status.
    Lost(String),
    /// The peer sent bytes that are not a valid frame.
    Bad(String),
}

/// The next frame of an incoming link stream; `Ok(None)` when the stream ended.
pub(crate) async fn next_frame(
    body: &mut Body,
    decoder: &mut FrameDecoder,
) -> Result<Option<pb::PeerFrame>, ReadError> {
    loop {
        if let Some(frame) = decoder.next_frame().map_err(ReadError::Bad)? {
            return Ok(Some(frame));
        }
        let polled = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        match polled {
            None => return Ok(None),
            Some(Err(status)) => {
                return Err(ReadError::Lost(format!(
                    "{}: {}",
                    status.code(),
                    status.message()
                )));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => decoder.push(data),
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers()
                        && let Some(status) = Status::from_header_map(&trailers)
                        && status.code() != Code::Ok
                    {
                        return Err(ReadError::Lost(format!(
                            "{}: {}",
                            status.code(),
                            status.message()
                        )));
                    }
                }
            },
        }
    }
}

/// What the serving side does with a link whose dialer said hello.
pub(crate) trait Accept: Send + Sync + 'static {
    /// Checks `hello` and takes over the incoming stream (`body`, with `decoder` holding whatever
    /// arrived after the hello); returns the queue of frames to send back. Errors refuse the link
    /// with that status.
    fn accept(
        &self,
        hello: pb::Hello,
        body: Body,
        decoder: FrameDecoder,
    ) -> Result<mpsc::Receiver<Outgoing>, Status>;
}

/// `ringtrain.v1.PeerService` as a tower service for tonic's server.
pub(crate) struct PeerEndpoint<A> {
    accept: Arc<A>,
    max_message: usize,
}

impl<A> Clone for PeerEndpoint<A> {
    fn clone(&self) -> Self {
        Self {
            accept: Arc::clone(&self.accept),
            max_message: self.max_message,
        }
    }
}

impl<A> PeerEndpoint<A> {
    /// An endpoint that hands links to `accept` and refuses messages over `max_message` bytes.
    pub(crate) fn new(accept: A, max_message: usize) -> Self {
        Self {
            accept: Arc::new(accept),
            max_message,
        }
    }
}

impl<A> NamedService for PeerEndpoint<A> {
    const NAME: &'static str = "ringtrain.v1.PeerService";
}

impl<A: Accept> Service<http::Request<Body>> for PeerEndpoint<A> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (accept, max_message) = (Arc::clone(&self.accept), self.max_message);
        Box::pin(async move {
            if request.uri().path() != LINK_PATH {
                return Ok(Status::unimplemented(format!(
                    "no method {} on a ringtrain peer",
                    request.uri().path()
                ))
                .into_http());
            }
            let mut body = request.into_body();
            let mut decoder = FrameDecoder::new(max_message);
            let hello = match next_frame(&mut body, &mut decoder).await {
                Ok(Some(pb::PeerFrame {
                    body: Some(FrameBody::Hello(h)),
                })) => h,
                _ => {
                    return Ok(
                        Status::invalid_argument("first frame of a link must be hello").into_http(),
                    );
                }
            };
            Ok(match accept.accept(hello, body, decoder) {
                Ok(rx) => grpc_response(link_body(rx, true)),
                Err(status) => status.into_http(),
            })
        })
    }
}

fn grpc_response(body: Body) -> http::Response<Body> {
    let mut response = http::Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Opens a link over `channel` to the peer at `address`, sending the frames queued on `rx` (the
/// caller queues its hello first). Returns the incoming stream once the peer accepted. Errors
/// (describing the problem) when the request fails or the peer refuses the link.
pub(crate) async fn dial(
    mut channel: Channel,
    address: &str,
    rx: mpsc::Receiver<Outgoing>,
) -> Result<Body, String> {
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://{address}{LINK_PATH}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(link_body(rx, false))
        .map_err(|e| format!("bad request to {address}: {e}"))?;
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| e.to_string())?;
    let response = channel.call(request).await.map_err(|e| e.to_string())?;
    if let Some(status) = Status::from_header_map(response.headers())
        && status.code() != Code::Ok
    {
        return Err(status.message().to_string());
    }
    if response.status() != http::StatusCode::OK {
        return Err(format!("HTTP status {}", response.status()));
    }
    Ok(response.into_body())
}
