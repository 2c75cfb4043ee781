//! Reading request bodies within limits: the wire body, then its decompressed form.

use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::ApiError;

/// How a body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    pub fn from_headers(headers: &HeaderMap) -> Result<Encoding, ApiError> {
        let Some(v) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        match v.to_str().unwrap_or("").trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "zstd" => Ok(Encoding::Zstd),
            other => Err(ApiError::unsupported(format!(
                "content encoding {other:?} is not supported; use gzip, zstd or none"
            ))),
        }
    }
}

/// A body left unread by an error answer (401, 413, 415, 429, ...) is read on and thrown away, up
/// to this much and for this long, before the answer goes out (a lingering close, as nginx and
/// Go's server do): a client still sending then reads the answer instead of failing on a broken
/// pipe and sending the same body again.
const LINGER_BYTES_MAX: u64 = 16 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Middleware: an error answered before the request's body was read to its end waits while the
/// rest is read and discarded (within the lingering bounds), and says the connection closes.
/// Handlers may answer as early as they like; a client sending a large body still reads why.
/// HTTP/2 (gRPC) needs none of it: a stream is reset on its own and the connection goes on.
pub async fn linger(request: Request, next: Next) -> Response {
    if request.version() >= axum::http::Version::HTTP_2 {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let slot = Arc::new(Mutex::new(Some(body)));
    let mut response = next.run(Request::from_parts(parts, Body::new(Kept(slot.clone())))).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let rest = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rest) = rest.filter(|b| !b.is_end_stream()) {
            drain(rest).await;
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    response
}

/// The request body as a handler reads it, while [`linger`] keeps hold of what it leaves.
struct Kept(Arc<Mutex<Option<Body>>>);

impl HttpBody for Kept {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

/// Reads and discards what is left of `body`, within the lingering bounds.
async fn drain(mut body: Body) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut read = 0u64;
    while read < LINGER_BYTES_MAX {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => return,
        }
    }
}

/// Reads the body frame by frame and stops with 413 as soon as it passes `bytes_max`, so an
/// endless body never gets buffered.
pub async fn read_limited(mut body: Body, headers: &HeaderMap, bytes_max: u64) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::too_large(format!("request body is larger than body_bytes_max ({bytes_max} bytes)"));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    // What is left of an oversized body is read by [`linger`], before the answer goes out.
    if declared.is_some_and(|n| n > bytes_max) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(64 * 1024).min(bytes_max) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > bytes_max {
                return Err(too_large());
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// A snappy block-format body (remote write, a Loki protobuf push), decompressed within
/// `bytes_max`: the length the block declares is checked, and taken from the memory budget with
/// `grow`, before anything is allocated, so a bomb costs nothing. `what` names the body in errors.
pub(crate) fn snappy_block(
    raw: &[u8],
    bytes_max: u64,
    what: &str,
    mut grow: impl FnMut(usize) -> Result<(), ApiError>,
) -> Result<Vec<u8>, ApiError> {
    let not_snappy = |e: snap::Error| ApiError::bad_request(format!("{what} is not snappy block format: {e}"));
    let len = snap::raw::decompress_len(raw).map_err(not_snappy)?;
    if len as u64 > bytes_max {
        return Err(ApiError::too_large(format!(
            "decompressed body of {len} bytes is larger than decompressed_bytes_max ({bytes_max} bytes)"
        )));
    }
    grow(len.saturating_mul(2))?;
    snap::raw::Decoder::new().decompress_vec(raw).map_err(not_snappy)
}

/// Decompresses `body`, stopping with 413 once the output passes `bytes_max`: a compression bomb
/// costs at most that much memory. `grow` is asked before each step of growth and may refuse.
pub fn decompress(
    body: Vec<u8>,
    encoding: Encoding,
    bytes_max: u64,
    mut grow: impl FnMut(usize) -> Result<(), ApiError>,
) -> Result<Vec<u8>, ApiError> {
    let mut reader: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => return Ok(body),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        Encoding::Zstd => Box::new(
            zstd::stream::read::Decoder::new(&body[..])
                .map_err(|e| ApiError::bad_request(format!("body is not valid zstd: {e}")))?,
        ),
    };
    const STEP: usize = 1 << 20;
    let mut out: Vec<u8> = Vec::new();
    loop {
        grow(STEP)?;
        let start = out.len();
        out.resize(start + STEP, 0);
        let mut filled = start;
        while filled < out.len() {
            match reader.read(&mut out[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let name = if encoding == Encoding::Gzip { "gzip" } else { "zstd" };
                    return Err(ApiError::bad_request(format!("body is not valid {name}: {e}")));
                }
            }
        }
        out.truncate(filled);
        if out.len() as u64 > bytes_max {
            return Err(ApiError::too_large(format!(
                "decompressed body is larger than decompressed_bytes_max ({bytes_max} bytes)"
            )));
        }
        if filled < start + STEP {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        let mut grown = 0usize;
        let err = decompress(bomb, Encoding::Gzip, 8 << 20, |n| {
            grown += n;
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.status, 413);
        assert!(grown <= (8 << 20) + (2 << 20), "memory asked for: {grown}");
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        let data = b"{\"a\":1}\n".repeat(1000);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(decompress(gz, Encoding::Gzip, 1 << 20, |_| Ok(())).unwrap(), data);
        let zs = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(decompress(zs, Encoding::Zstd, 1 << 20, |_| Ok(())).unwrap(), data);
        // Exactly at the limit is fine.
        let zs = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(decompress(zs, Encoding::Zstd, data.len() as u64, |_| Ok(())).unwrap().len(), data.len());
        let err = decompress(b"not gzip".to_vec(), Encoding::Gzip, 1 << 20, |_| Ok(())).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.starts_with("body is not valid gzip"), "{}", err.message);
        let err = decompress(b"not zstd".to_vec(), Encoding::Zstd, 1 << 20, |_| Ok(())).unwrap_err();
        assert!(err.message.starts_with("body is not valid zstd"), "{}", err.message);
    }
}
