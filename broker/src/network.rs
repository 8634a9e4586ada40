//! Client listener: length-prefixed Kafka frames decoded and encoded with `kafka-protocol`.
//! A connection runs its requests one at a time, in order; a response that waits (acks=all)
//! does not hold up the requests behind it, and responses leave in request order.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::RequestKind as Kind;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::api::{self, Context, Handled, RequestInfo};
use crate::frame::{Frame, FrameBuf};
use crate::quota;
use crate::security::principal::{subject_dn, Principal};
use crate::security::session::{After, Session};
use crate::security::ListenerSecurity;
pub use strom_client::Transport;

/// Why a frame closed its connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative or above `socket.request.max.bytes`.
    #[error("frame size {0} is outside 1..={1} (socket.request.max.bytes; sasl.server.max.receive.size before SASL authentication)")]
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
    /// A request other than ApiVersions, SaslHandshake and SaslAuthenticate before SASL
    /// authentication completed.
    #[error("unexpected {0:?} request before SASL authentication")]
    Unauthenticated(ApiKey),
}

/// Limits on client connections and on the request bytes they hold, with Kafka's names:
/// `max.connections`, `max.connections.per.ip`, `connections.max.idle.ms`,
/// `queued.max.request.bytes`, and Strom's `request.read.timeout.ms` for a frame that has
/// started to arrive.
pub struct ConnectionLimits {
    max_connections: usize,
    max_per_ip: usize,
    idle: Duration,
    frame_read: Duration,
    /// Request bytes that may be held at once, one permit per byte (`None`: unbounded).
    request_bytes: Option<Arc<Semaphore>>,
    open: Mutex<OpenConnections>,
}

#[derive(Default)]
struct OpenConnections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused or closed by the broker.
#[derive(Debug, Clone, Copy)]
pub enum CloseReason {
    /// `max.connections` reached.
    MaxConnections,
    /// `max.connections.per.ip` reached for the peer's address.
    MaxConnectionsPerIp,
    /// Nothing arrived for `connections.max.idle.ms`.
    Idle,
    /// A started request did not arrive within `request.read.timeout.ms`.
    RequestReadTimeout,
    /// The peer's address opened connections faster than its `connection_creation_rate`
    /// quota; the connection is closed unserved after the throttle time, as Kafka does.
    ConnectionRate,
}

impl CloseReason {
    /// Every reason, so the metric's series exist before the first close.
    pub const ALL: [CloseReason; 5] = [
        CloseReason::MaxConnections,
        CloseReason::MaxConnectionsPerIp,
        CloseReason::Idle,
        CloseReason::RequestReadTimeout,
        CloseReason::ConnectionRate,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::MaxConnections => "max_connections",
            CloseReason::MaxConnectionsPerIp => "max_connections_per_ip",
            CloseReason::Idle => "idle",
            CloseReason::RequestReadTimeout => "request_read_timeout",
            CloseReason::ConnectionRate => "connection_rate",
        }
    }
}

/// A counted open connection; dropping it frees its place.
struct Admission {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimits {
    /// The limits of the broker configuration.
    pub fn from_config(config: &crate::config::BrokerConfig) -> Arc<Self> {
        let positive = |key: &str| usize::try_from(config.int(key)).unwrap_or(usize::MAX);
        let queued = config.long("queued.max.request.bytes");
        Arc::new(ConnectionLimits {
            max_connections: positive("max.connections"),
            max_per_ip: positive("max.connections.per.ip"),
            idle: Duration::from_millis(config.long("connections.max.idle.ms").max(1) as u64),
            frame_read: Duration::from_millis(config.long("request.read.timeout.ms").max(1) as u64),
            request_bytes: (queued > 0).then(|| {
                Arc::new(Semaphore::new(
                    usize::try_from(queued).unwrap_or(Semaphore::MAX_PERMITS),
                ))
            }),
            open: Mutex::new(OpenConnections::default()),
        })
    }

    /// Counts a new connection from `ip`, or says which limit refuses it.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, CloseReason> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max_connections {
            return Err(CloseReason::MaxConnections);
        }
        let from_ip = open.per_ip.entry(ip).or_default();
        if *from_ip >= self.max_per_ip {
            return Err(CloseReason::MaxConnectionsPerIp);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(Admission {
            limits: self.clone(),
            ip,
        })
    }
}

/// Accepts connections until `shutdown` flips; connections over a limit are closed at once.
/// The limits are shared by every client listener.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    security: Arc<ListenerSecurity>,
    limits: Arc<ConnectionLimits>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener_name = security.name.clone();
    for reason in CloseReason::ALL {
        ctx.metrics
            .connections_closed
            .with_label_values(&[&listener_name, reason.label()]);
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match limits.admit(peer.ip()) {
                    Ok(admission) => {
                        let quotas = &ctx.controller.image().client_quotas;
                        let wait = ctx.quotas.record_connection(quotas, peer.ip());
                        if !wait.is_zero() {
                            // Held open unserved, then closed, so the client slows down.
                            closed(&ctx, &listener_name, peer, CloseReason::ConnectionRate);
                            tokio::spawn(async move {
                                tokio::time::sleep(wait).await;
                                drop((stream, admission));
                            });
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(connection(
                            stream,
                            peer,
                            ctx.clone(),
                            security.clone(),
                            admission,
                            shutdown.clone(),
                        ));
                    }
                    Err(reason) => {
                        closed(&ctx, &listener_name, peer, reason);
                        drop(stream);
                    }
                },
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

fn closed(ctx: &Context, listener: &str, peer: SocketAddr, reason: CloseReason) {
    ctx.metrics
        .connections_closed
        .with_label_values(&[listener, reason.label()])
        .inc();
    debug!(%peer, reason = reason.label(), "connection closed by the broker");
}

/// Runs the TLS handshake of a TLS listener (within `request.read.timeout.ms`) and takes the
/// principal from the client certificate; plaintext listeners pass the stream through.
async fn secure(
    stream: TcpStream,
    security: &ListenerSecurity,
    limits: &ConnectionLimits,
) -> Result<(Box<dyn Transport>, Principal), String> {
    let Some(tls) = &security.tls else {
        return Ok((Box::new(stream), Principal::anonymous()));
    };
    let handshake = tls.get().accept(stream);
    let stream = tokio::time::timeout(limits.frame_read, handshake)
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let principal = match stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    {
        Some(cert) => {
            let dn = subject_dn(cert).map_err(|e| e.to_string())?;
            Principal::user(security.mapper.map(&dn).map_err(|e| e.to_string())?)
        }
        None => Principal::anonymous(),
    };
    Ok((Box::new(stream), principal))
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context>,
    security: Arc<ListenerSecurity>,
    admission: Admission,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = admission.limits.clone();
    let max = ctx.config.int("socket.request.max.bytes") as usize;
    // Until SASL authentication completes, frames are held to Kafka's smaller limit.
    let sasl_max = ctx.config.int("sasl.server.max.receive.size") as usize;
    let listener = security.name.clone();
    let open = ctx.metrics.connections.with_label_values(&[&listener]);
    open.inc();
    let _closed = scopeguard(move || open.dec());
    let (stream, principal) = match secure(stream, &security, &limits).await {
        Ok(secured) => secured,
        Err(reason) => {
            ctx.metrics
                .failed_authentications
                .with_label_values(&[&listener])
                .inc();
            debug!(%peer, %listener, %reason, "connection refused");
            return;
        }
    };
    let mut session = Session::new(security, principal);
    // Small buffers: an idle connection costs little; large frames bypass them. Reads and
    // writes never run at once, so one stream serves both.
    let mut stream =
        BufReader::with_capacity(8 * 1024, BufWriter::with_capacity(16 * 1024, stream));
    // Responses not yet written, in request order; only acks=all produces wait here.
    let mut queued: VecDeque<Outgoing> = VecDeque::new();
    // A connection with nothing in flight that stays silent this long is closed.
    let idle = tokio::time::sleep(limits.idle);
    tokio::pin!(idle);
    // A client over its quota is not read from until then (Kafka mutes its channel).
    let mut muted_until: Option<tokio::time::Instant> = None;
    loop {
        idle.as_mut()
            .reset(tokio::time::Instant::now() + limits.idle);
        while let Some(Outgoing::Ready(_)) = queued.front() {
            let Some(Outgoing::Ready(frame)) = queued.pop_front() else {
                unreachable!("checked above");
            };
            if write_frame(&mut stream, &frame).await.is_err() {
                return;
            }
        }
        if matches!(queued.front(), Some(Outgoing::Last(_))) {
            break;
        }
        if stream.buffer().is_empty() && stream.flush().await.is_err() {
            return;
        }
        let head_waits = matches!(queued.front(), Some(Outgoing::Later(_)));
        let more = muted_until.is_none()
            && queued.len() < MAX_QUEUED_RESPONSES
            && !matches!(queued.back(), Some(Outgoing::Last(_)));
        tokio::select! {
            _ = sleep_until_some(muted_until) => muted_until = None,
            done = complete_head(&mut queued), if head_waits => match done {
                Ok(frame) => queued[0] = Outgoing::Ready(frame),
                Err(e) => {
                    malformed(&ctx, peer, e);
                    break;
                }
            },
            // `fill_buf` is cancel safe: losing the race to the head response reads nothing.
            eof = async { stream.fill_buf().await.map(|b| b.is_empty()) }, if more => match eof {
                Ok(false) => {}
                _ => break,
            },
            _ = &mut idle, if queued.is_empty() => {
                closed(&ctx, &listener, peer, CloseReason::Idle);
                break;
            }
            _ = shutdown.changed() => break,
        }
        if !more || stream.buffer().is_empty() {
            continue;
        }
        let frame = match tokio::time::timeout(
            limits.frame_read,
            read_frame(
                &mut stream,
                if session.authenticated() {
                    max
                } else {
                    sasl_max.min(max)
                },
                limits.request_bytes.as_ref(),
            ),
        )
        .await
        {
            Err(_) => {
                closed(&ctx, &listener, peer, CloseReason::RequestReadTimeout);
                break;
            }
            Ok(Err(FrameRead::Closed)) => break,
            Ok(Err(FrameRead::Bad(e))) => {
                malformed(&ctx, peer, e);
                break;
            }
            Ok(Ok(frame)) => frame,
        };
        let (frame, _permit) = frame;
        if session.expects_raw_token() {
            // After a v0 SaslHandshake the token comes unframed, and so does the reply.
            match session.authenticate(&frame, &ctx.controller.image().security) {
                Ok(reply) => queued.push_back(Outgoing::Ready(size_prefixed(&reply))),
                Err(reason) => {
                    authentication_failed(&ctx, &listener, peer, &reason);
                    break;
                }
            }
            continue;
        }
        match process(&ctx, &mut session, peer, frame).await {
            Ok(processed) => {
                queued.extend(processed.response);
                if !processed.throttle.is_zero() {
                    muted_until = Some(tokio::time::Instant::now() + processed.throttle);
                }
            }
            Err(e) => {
                malformed(&ctx, peer, e);
                break;
            }
        }
    }
    // What was answered goes out before the connection closes.
    for response in queued {
        let frame = match response {
            Outgoing::Ready(frame) | Outgoing::Last(frame) => frame,
            Outgoing::Later(pending) => match pending.await {
                Ok(frame) => frame,
                Err(_) => break,
            },
        };
        if write_frame(&mut stream, &frame).await.is_err() {
            return;
        }
    }
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
    drop(admission);
}

/// Sleeps until `deadline`; never completes without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn size_prefixed(bytes: &[u8]) -> Frame {
    let mut frame = BytesMut::with_capacity(bytes.len() + 4);
    frame.put_u32(bytes.len() as u32);
    frame.extend_from_slice(bytes);
    Frame::from(frame.freeze())
}

/// Writes a frame's pieces in order. Through the connection's `BufWriter`, small pieces are
/// gathered and a large one (record data) goes to the socket straight from its own buffer.
async fn write_frame<W: AsyncWrite + Unpin>(stream: &mut W, frame: &Frame) -> std::io::Result<()> {
    for piece in frame.pieces() {
        stream.write_all(piece).await?;
    }
    Ok(())
}

fn authentication_failed(ctx: &Context, listener: &str, peer: SocketAddr, reason: &str) {
    ctx.metrics
        .failed_authentications
        .with_label_values(&[listener])
        .inc();
    debug!(%peer, %listener, %reason, "SASL authentication failed");
}

/// Why no frame came out of the socket.
enum FrameRead {
    /// The peer closed or the read failed.
    Closed,
    /// The size prefix is not acceptable.
    Bad(FrameError),
}

/// Frames up to this size are read at once, outside the `queued.max.request.bytes` pool:
/// small requests are never held up behind large ones. Larger frames are read in chunks of this
/// size, each reserved in the pool before it is read, so a frame that stalls holds only what
/// actually arrived.
const SMALL_FRAME_BYTES: usize = 64 * 1024;

/// Reads one length-prefixed frame; returns it with the pool reservation its bytes hold.
async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    max: usize,
    pool: Option<&Arc<Semaphore>>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), FrameRead> {
    let size = reader.read_i32().await.map_err(|_| FrameRead::Closed)?;
    if size <= 0 || size as usize > max {
        return Err(FrameRead::Bad(FrameError::Size(size, max)));
    }
    let size = size as usize;
    let mut frame = BytesMut::with_capacity(size.min(SMALL_FRAME_BYTES));
    let mut held: Option<OwnedSemaphorePermit> = None;
    while frame.len() < size {
        let want = (size - frame.len()).min(SMALL_FRAME_BYTES);
        if let Some(pool) = pool.filter(|_| size > SMALL_FRAME_BYTES) {
            let chunk = pool
                .clone()
                .acquire_many_owned(want as u32)
                .await
                .map_err(|_| FrameRead::Closed)?;
            match held.as_mut() {
                Some(permit) => permit.merge(chunk),
                None => held = Some(chunk),
            }
        }
        frame.reserve(want);
        let read = (&mut *reader)
            .take(want as u64)
            .read_buf(&mut frame)
            .await
            .map_err(|_| FrameRead::Closed)?;
        if read == 0 {
            return Err(FrameRead::Closed);
        }
        // A short read leaves part of the chunk reserved; the next one reserves only the rest.
        if let Some(permit) = held.as_mut() {
            let reserved = permit.num_permits();
            if reserved > frame.len() {
                drop(permit.split(reserved - frame.len()));
            }
        }
    }
    Ok((frame.freeze(), held))
}

/// How many responses a connection may have queued (acks=all produces waiting for their
/// ISR) before it stops reading requests.
const MAX_QUEUED_RESPONSES: usize = 32;

/// A response frame, now or once its request completes.
pub enum Outgoing {
    /// Encoded and ready.
    Ready(Frame),
    /// Completes later; encoded then.
    Later(Pin<Box<dyn Future<Output = Result<Frame, FrameError>> + Send>>),
    /// Encoded and ready; the connection closes once it is sent (failed authentication).
    Last(Frame),
}

/// Waits for the response at the head of the queue, which must be `Later`.
async fn complete_head(queued: &mut VecDeque<Outgoing>) -> Result<Frame, FrameError> {
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

/// A request frame that passed [`decode_request`].
// Decoded once per request and moved straight into its handler; boxing would add an
// allocation to every request.
#[allow(clippy::large_enum_variant)]
pub enum DecodedFrame {
    /// ApiVersions above the supported range: answered at once with the supported versions
    /// (at v0, as Kafka does), without decoding the body.
    UnsupportedApiVersions {
        /// The header's correlation id.
        correlation_id: i32,
    },
    /// A request to run.
    Request {
        /// The API.
        api_key: ApiKey,
        /// Its version, within the supported range.
        version: i16,
        /// The request header.
        header: RequestHeader,
        /// The request body.
        request: RequestKind,
    },
}

/// The decode half of [`process`]: the size, API key and version checks, the request header,
/// the body's shape against Kafka's schema ([`crate::protocol::check_request_body`]), then
/// `kafka-protocol`'s decode. Pure; an error closes the connection.
pub fn decode_request(mut frame: Bytes) -> Result<DecodedFrame, FrameError> {
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
        return Ok(DecodedFrame::UnsupportedApiVersions { correlation_id });
    }
    if version < min || version > max {
        return Err(FrameError::UnsupportedVersion(api_key, version));
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| FrameError::Decode("request header", e.to_string()))?;
    // kafka-protocol reserves array capacity from counts on the wire; check them against the
    // bytes first so a hostile count closes the connection instead of aborting the process.
    crate::protocol::check_request_body(api_key, version, &frame)
        .map_err(|e| FrameError::Decode("request body", format!("{api_key:?} v{version}: {e}")))?;
    let request = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| FrameError::Decode("request body", format!("{api_key:?} v{version}: {e}")))?;
    Ok(DecodedFrame::Request {
        api_key,
        version,
        header,
        request,
    })
}

/// What running one request frame produced.
pub struct Processed {
    /// The response frame, if one is sent.
    pub response: Option<Outgoing>,
    /// How long the connection is not read from: the client went over a quota.
    pub throttle: Duration,
}

impl Processed {
    fn unthrottled(response: Outgoing) -> Self {
        Processed {
            response: Some(response),
            throttle: Duration::ZERO,
        }
    }
}

/// Decodes one request frame, runs it, and returns the response frame (or none).
pub async fn process(
    ctx: &Arc<Context>,
    session: &mut Session,
    peer: SocketAddr,
    frame: Bytes,
) -> Result<Processed, FrameError> {
    let size = frame.len();
    let (api_key, version, header, request) = match decode_request(frame)? {
        DecodedFrame::Request {
            api_key,
            version,
            header,
            request,
        } => (api_key, version, header, request),
        DecodedFrame::UnsupportedApiVersions { correlation_id } => {
            let response = ResponseKind::ApiVersions(api::unsupported_version_response());
            return encode(correlation_id, ApiKey::ApiVersions, 0, &response)
                .map(|b| Processed::unthrottled(Outgoing::Ready(b)));
        }
    };
    debug!(
        ?api_key,
        version,
        correlation_id = header.correlation_id,
        "request"
    );
    if !session.allows(api_key) {
        return Err(FrameError::Unauthenticated(api_key));
    }
    let correlation_id = header.correlation_id;
    let (response, after) = match request {
        Kind::SaslHandshake(r) => {
            let (response, after) = session.handshake(&r, version);
            (ResponseKind::SaslHandshake(response), after)
        }
        Kind::SaslAuthenticate(r) => {
            let image = ctx.controller.image();
            let (response, after) = session.authenticate_request(&r.auth_bytes, &image.security);
            if after == After::Close {
                let reason = response
                    .error_message
                    .as_deref()
                    .unwrap_or_default()
                    .to_string();
                authentication_failed(ctx, &session.listener().name, peer, &reason);
            }
            (ResponseKind::SaslAuthenticate(response), after)
        }
        request => {
            let call = Call {
                header: &header,
                api_key,
                version,
                size,
            };
            return dispatch(ctx, session, peer, call, request).await;
        }
    };
    let bytes = encode(correlation_id, api_key, version, &response)?;
    Ok(Processed::unthrottled(match after {
        After::KeepOpen => Outgoing::Ready(bytes),
        After::Close => Outgoing::Last(bytes),
    }))
}

/// A decoded request's header, API, version and size on the wire.
struct Call<'a> {
    header: &'a RequestHeader,
    api_key: ApiKey,
    version: i16,
    size: usize,
}

/// A future that also reports the time spent inside its `poll`: the time a request kept a
/// worker thread, which Kafka's request-time quota measures (waits for data or replicas
/// do not count).
struct Busy<F> {
    inner: F,
    busy: Duration,
}

impl<F: Future + Unpin> Future for Busy<F> {
    type Output = (F::Output, Duration);

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let start = std::time::Instant::now();
        let polled = Pin::new(&mut self.inner).poll(cx);
        self.busy += start.elapsed();
        let busy = self.busy;
        polled.map(|out| (out, busy))
    }
}

/// Runs an API request as the session's principal, and charges it to the client's quotas.
async fn dispatch(
    ctx: &Arc<Context>,
    session: &Session,
    peer: SocketAddr,
    call: Call<'_>,
    request: RequestKind,
) -> Result<Processed, FrameError> {
    let Call {
        header,
        api_key,
        version,
        size,
    } = call;
    let info = RequestInfo {
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        peer,
        principal: session.principal().clone(),
        listener: session.listener().clone(),
    };
    let started = std::time::Instant::now();
    let correlation_id = header.correlation_id;
    let usage = quota::Usage::of(&request, version, size);
    let handling = std::pin::pin!(api::handle(ctx, &info, api_key, version, request));
    let (handled, busy) = Busy {
        inner: handling,
        busy: Duration::ZERO,
    }
    .await;
    let image = ctx.controller.image();
    let charge = |response: Option<&ResponseKind>| {
        let who = (info.principal.name.as_str(), info.client_id.as_str());
        let throttle = ctx
            .quotas
            .throttle(&image.client_quotas, who, usage, busy, response);
        let Some((kind, wait)) = throttle else {
            return Duration::ZERO;
        };
        ctx.metrics
            .throttled_responses
            .with_label_values(&[kind.label()])
            .inc();
        ctx.metrics
            .throttle_time
            .with_label_values(&[kind.label()])
            .inc_by(wait.as_secs_f64());
        wait
    };
    match handled? {
        Handled::Now(mut response) => {
            ctx.metrics.observe_request(api_key, started.elapsed());
            let throttle = charge(response.as_ref());
            if let Some(r) = response.as_mut().filter(|_| !throttle.is_zero()) {
                quota::set_throttle_time(r, throttle);
            }
            let response = response
                .map(|r| encode(correlation_id, api_key, version, &r).map(Outgoing::Ready))
                .transpose()?;
            Ok(Processed { response, throttle })
        }
        Handled::Later(pending) => {
            // A produce waiting for its replicas is charged now: its size is known.
            let throttle = charge(None);
            let ctx = ctx.clone();
            let response = Outgoing::Later(Box::pin(async move {
                let mut response = pending.await;
                ctx.metrics.observe_request(api_key, started.elapsed());
                if !throttle.is_zero() {
                    quota::set_throttle_time(&mut response, throttle);
                }
                encode(correlation_id, api_key, version, &response)
            }));
            Ok(Processed {
                response: Some(response),
                throttle,
            })
        }
    }
}

/// Encodes a response frame; a fetch's record data stays in the buffers it was read into.
fn encode(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> Result<Frame, FrameError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(version);
    let encoded = match response {
        ResponseKind::Fetch(fetch) => {
            let records = fetch
                .responses
                .iter()
                .flat_map(|topic| topic.partitions.iter())
                .filter_map(|partition| partition.records.clone());
            let mut buf = FrameBuf::sharing(records);
            header
                .encode(&mut buf, header_version)
                .and_then(|()| fetch.encode(&mut buf, version))
                .map(|()| buf.into_frame())
        }
        _ => {
            let mut buf = BytesMut::with_capacity(256);
            buf.put_i32(0);
            header
                .encode(&mut buf, header_version)
                .and_then(|()| response.encode(&mut buf, version))
                .map(|()| {
                    let len = (buf.len() - 4) as i32;
                    buf[0..4].copy_from_slice(&len.to_be_bytes());
                    Frame::from(buf.freeze())
                })
        }
    };
    encoded.map_err(|e| FrameError::Encode(e.to_string()))
}
