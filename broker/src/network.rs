//! Client listener: length-prefixed Kafka frames decoded and encoded with `kafka-protocol`.
//! A connection runs its requests one at a time, in order; a response that waits (acks=all)
//! does not hold up the requests behind it, and responses leave in request order.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::api::{self, Context, Handled, RequestInfo};

/// Why a frame closed its connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative or above `socket.request.max.bytes`.
    #[error("frame size {0} is outside 1..={1} (socket.request.max.bytes)")]
    Size(i32, usize),
    /// Too short to hold a request header.
    #[error("frame of {0} bytes is too short for a request header")]
    Short(usize),
    /// An API key this broker does not know.
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    /// A known API at a version outside the advertised range.
    #[error("{0:?} v{1} is not supported")]
    UnsupportedVersion(ApiKey, i16),
    /// The header or body did not decode.
    #[error("cannot decode {0}: {1}")]
    Decode(&'static str, String),
    /// The response did not encode.
    #[error("cannot encode response: {0}")]
    Encode(String),
    /// A routed API without a handler.
    #[error(transparent)]
    NoHandler(#[from] api::NoHandler),
}

/// Accepts connections until `shutdown` flips.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(stream, peer, ctx.clone(), shutdown.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) {
    let max = ctx.config.int("socket.request.max.bytes") as usize;
    let listener = ctx
        .config
        .client_listener()
        .map_or("", |l| l.name.as_str())
        .to_string();
    let open = ctx.metrics.connections.with_label_values(&[&listener]);
    open.inc();
    let _closed = scopeguard(move || open.dec());
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    // Responses not yet written, in request order; only acks=all produces wait here.
    let mut queued: VecDeque<Outgoing> = VecDeque::new();
    loop {
        while let Some(Outgoing::Ready(_)) = queued.front() {
            let Some(Outgoing::Ready(bytes)) = queued.pop_front() else {
                unreachable!("checked above");
            };
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        if reader.buffer().is_empty() && writer.flush().await.is_err() {
            return;
        }
        let head_waits = matches!(queued.front(), Some(Outgoing::Later(_)));
        let more = queued.len() < MAX_QUEUED_RESPONSES;
        tokio::select! {
            done = complete_head(&mut queued), if head_waits => match done {
                Ok(bytes) => queued[0] = Outgoing::Ready(bytes),
                Err(e) => {
                    malformed(&ctx, peer, e);
                    break;
                }
            },
            // `fill_buf` is cancel safe: losing the race to the head response reads nothing.
            eof = async { reader.fill_buf().await.map(|b| b.is_empty()) }, if more => match eof {
                Ok(false) => {}
                _ => break,
            },
            _ = shutdown.changed() => break,
        }
        if !more || reader.buffer().is_empty() {
            continue;
        }
        let size = match reader.read_i32().await {
            Ok(size) => size,
            Err(_) => break,
        };
        if size <= 0 || size as usize > max {
            malformed(&ctx, peer, FrameError::Size(size, max));
            break;
        }
        let mut frame = BytesMut::zeroed(size as usize);
        if reader.read_exact(&mut frame).await.is_err() {
            break;
        }
        match process(&ctx, peer, frame.freeze()).await {
            Ok(Some(response)) => queued.push_back(response),
            Ok(None) => {}
            Err(e) => {
                malformed(&ctx, peer, e);
                break;
            }
        }
    }
    // What was answered goes out before the connection closes.
    for response in queued {
        let bytes = match response {
            Outgoing::Ready(bytes) => bytes,
            Outgoing::Later(pending) => match pending.await {
                Ok(bytes) => bytes,
                Err(_) => break,
            },
        };
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
}

/// How many responses a connection may have queued (acks=all produces waiting for their
/// ISR) before it stops reading requests.
const MAX_QUEUED_RESPONSES: usize = 32;

/// A response frame, now or once its request completes.
pub enum Outgoing {
    /// Encoded and ready.
    Ready(Bytes),
    /// Completes later; encoded then.
    Later(Pin<Box<dyn Future<Output = Result<Bytes, FrameError>> + Send>>),
}

/// Waits for the response at the head of the queue, which must be `Later`.
async fn complete_head(queued: &mut VecDeque<Outgoing>) -> Result<Bytes, FrameError> {
    match queued.front_mut() {
        Some(Outgoing::Later(pending)) => pending.as_mut().await,
        _ => std::future::pending().await,
    }
}

/// Runs a closure when dropped, so every way out of a connection is counted.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

fn scopeguard<F: FnMut()>(f: F) -> OnDrop<F> {
    OnDrop(f)
}

fn malformed(ctx: &Context, peer: SocketAddr, error: FrameError) {
    ctx.metrics.malformed_requests.inc();
    warn!(%peer, %error, "closing connection after a bad request");
}

/// Decodes one request frame, runs it, and returns the response frame (or none).
pub async fn process(
    ctx: &Arc<Context>,
    peer: SocketAddr,
    mut frame: Bytes,
) -> Result<Option<Outgoing>, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::Short(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApi(raw_key))?;
    let (min, max) =
        api::supported_range(api_key).ok_or(FrameError::UnsupportedVersion(api_key, version))?;
    if api_key == ApiKey::ApiVersions && version > max {
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let response = ResponseKind::ApiVersions(api::unsupported_version_response());
        return encode(correlation_id, api_key, 0, &response).map(|b| Some(Outgoing::Ready(b)));
    }
    if version < min || version > max {
        return Err(FrameError::UnsupportedVersion(api_key, version));
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| FrameError::Decode("request header", e.to_string()))?;
    let request = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| FrameError::Decode("request body", format!("{api_key:?} v{version}: {e}")))?;
    debug!(
        ?api_key,
        version,
        correlation_id = header.correlation_id,
        "request"
    );
    let info = RequestInfo {
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        peer,
    };
    let started = std::time::Instant::now();
    let correlation_id = header.correlation_id;
    match api::handle(ctx, &info, api_key, version, request).await? {
        Handled::Now(response) => {
            ctx.metrics.observe_request(api_key, started.elapsed());
            response
                .map(|r| encode(correlation_id, api_key, version, &r).map(Outgoing::Ready))
                .transpose()
        }
        Handled::Later(pending) => {
            let ctx = ctx.clone();
            Ok(Some(Outgoing::Later(Box::pin(async move {
                let response = pending.await;
                ctx.metrics.observe_request(api_key, started.elapsed());
                encode(correlation_id, api_key, version, &response)
            }))))
        }
    }
}

fn encode(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> Result<Bytes, FrameError> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    response
        .encode(&mut buf, version)
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}
