//! A lean HTTP/1.1 client for load generation: one keep-alive connection that sends a request
//! head built once with each prebuilt body and reads the answer by its `Content-Length`, as wrk
//! does. The load generator runs on the cores of the server it measures, so what it spends per
//! request is taken from the server: a general client (URL and header maps per request, a
//! connection pool, a timer of its own) cost about 45 µs of CPU a request, two thirds of what the
//! server itself spends on a request's HTTP exchange.

use std::io::IoSlice;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Why an exchange brought no answer, as the report names transport failures.
pub type Cause = &'static str;

pub struct Http1 {
    /// `host:port` to connect to.
    authority: String,
    /// The request head up to (not including) `Content-Length`.
    head: Vec<u8>,
    timeout: Duration,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// An answer: its status and its body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The most an answer's head may take.
const HEAD_BYTES_MAX: usize = 64 * 1024;

impl Http1 {
    /// A client that POSTs to `url` (plain `http://`) with `headers`.
    pub fn new(url: &str, headers: &[(&str, &str)], timeout: Duration) -> anyhow::Result<Http1> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid url {url:?}"))?;
        anyhow::ensure!(parsed.scheme() == "http", "invalid url {url:?}: the scheme must be http");
        let host = parsed.host_str().with_context(|| format!("url {url:?} has no host"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let authority = format!("{host}:{port}");
        let path = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: {authority}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        Ok(Http1 { authority, head: head.into_bytes(), timeout, stream: None, buf: Vec::with_capacity(4096) })
    }

    /// Sends `body` and reads the answer, on the open connection or a new one.
    pub async fn post(&mut self, body: &[u8]) -> Result<Answer, Cause> {
        match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Ok(Ok((answer, keep))) => {
                if !keep {
                    self.stream = None;
                }
                Ok(answer)
            }
            Ok(Err(cause)) => {
                self.stream = None;
                Err(cause)
            }
            Err(_) => {
                self.stream = None;
                Err("timeout")
            }
        }
    }

    async fn exchange(&mut self, body: &[u8]) -> Result<(Answer, bool), Cause> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.authority).await.map_err(|_| "connect")?;
            stream.set_nodelay(true).map_err(|_| "connect")?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        let length = format!("Content-Length: {}\r\n\r\n", body.len());
        write_all(stream, &[&self.head, length.as_bytes(), body]).await.map_err(|_| "error")?;
        self.buf.clear();
        loop {
            if stream.read_buf(&mut self.buf).await.map_err(|_| "error")? == 0 {
                return Err("error");
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            let head_len = match response.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if self.buf.len() < HEAD_BYTES_MAX => continue,
                _ => return Err("invalid_answer"),
            };
            let status = response.code.unwrap_or(0);
            let header =
                |name: &str| response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
            let length = header("content-length")
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
                .ok_or("invalid_answer")?;
            let keep = !header("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
            while self.buf.len() < head_len + length {
                if stream.read_buf(&mut self.buf).await.map_err(|_| "error")? == 0 {
                    return Err("error");
                }
            }
            let body = self.buf[head_len..head_len + length].to_vec();
            return Ok((Answer { status, body }, keep));
        }
    }
}

/// Writes every part, with as few system calls as the socket allows.
async fn write_all(stream: &mut TcpStream, parts: &[&[u8]]) -> std::io::Result<()> {
    let (mut part, mut offset) = (0, 0);
    while part < parts.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&parts[part][offset..])
            .chain(parts[part + 1..].iter().copied())
            .map(IoSlice::new)
            .collect();
        let mut n = stream.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while part < parts.len() && n >= parts[part].len() - offset {
            n -= parts[part].len() - offset;
            part += 1;
            offset = 0;
        }
        offset += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A server that reads each request whole and answers it with the next of `answers`,
    /// returning the requests it read.
    async fn serve(answers: Vec<&'static str>) -> (String, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ingest/v1/logs?x=1", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut requests = Vec::new();
            let (mut socket, _) = listener.accept().await.unwrap();
            for answer in answers {
                let mut request = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = socket.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        (socket, _) = listener.accept().await.unwrap();
                        continue;
                    }
                    request.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap();
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                requests.push(request);
                socket.write_all(answer.as_bytes()).await.unwrap();
                if answer.contains("Connection: close") {
                    drop(socket);
                    (socket, _) = listener.accept().await.unwrap();
                }
            }
            requests
        });
        (url, task)
    }

    #[tokio::test]
    async fn requests_go_out_whole_and_answers_are_read_by_their_length() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let closing = "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig";
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let (url, server) = serve(vec![ok, closing, ok, chunked]).await;
        let headers = [("Content-Type", "application/x-ndjson"), ("Authorization", "Bearer k")];
        let mut client = Http1::new(&url, &headers, Duration::from_secs(5)).unwrap();
        let big = vec![b'x'; 300_000];
        let answer = client.post(&big).await.unwrap();
        assert_eq!((answer.status, answer.body.as_slice()), (200, &b"{}"[..]));
        let answer = client.post(b"second").await.unwrap();
        assert_eq!((answer.status, answer.body.as_slice()), (413, &b"big"[..]));
        assert!(client.stream.is_none(), "a closing answer ends the connection");
        assert_eq!(client.post(b"third").await.unwrap().status, 200);
        assert_eq!(client.post(b"fourth").await.err(), Some("invalid_answer"));
        let requests = server.await.unwrap();
        let head = String::from_utf8_lossy(&requests[0][..200]).to_string();
        assert!(head.starts_with("POST /ingest/v1/logs?x=1 HTTP/1.1\r\nHost: 127.0.0.1:"), "{head}");
        assert!(head.contains("Authorization: Bearer k\r\nContent-Length: 300000\r\n\r\nxxx"), "{head}");
        assert_eq!(requests[0].len(), head.find("xxx").unwrap() + 300_000);
        assert!(requests[2].ends_with(b"\r\n\r\nthird"));
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let mut client = Http1::new(&url, &[], Duration::from_secs(5)).unwrap();
        assert_eq!(client.post(b"x").await.err(), Some("connect"));
    }
}
