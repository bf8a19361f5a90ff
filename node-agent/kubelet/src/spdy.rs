//! SPDY/3.1 framing, the server side of the multiplexed connection `kubectl port-forward` opens
//! (apimachinery's `httpstream/spdy`, built on moby/spdystream). The frame layout and the
//! header-block compression follow the SPDY/3 draft (chromium.org, "SPDY Protocol - Draft 3",
//! sections 2.2–2.6): an 8-byte frame header, name/value header blocks compressed with one
//! zlib stream per direction primed with the draft's dictionary (section 2.6.10.1).
//!
//! What spdystream does not do is not done here either: no flow control (WINDOW_UPDATE and
//! SETTINGS are read and ignored; spdystream never sends them), no server push, no priorities.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The dictionary both zlib streams are primed with (SPDY/3 draft, section 2.6.10.1).
const DICTIONARY: &[u8] = include_bytes!("spdy3_dictionary.bin");

const VERSION: u16 = 3;
/// The largest payload a frame header can carry (24-bit length).
pub const MAX_FRAME: usize = (1 << 24) - 1;
/// The largest control frame we read: header blocks of a port-forward stream are tiny.
const MAX_CONTROL_FRAME: usize = 1 << 20;

pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes (draft section 2.6.4).
pub const PROTOCOL_ERROR: u32 = 1;
pub const REFUSED_STREAM: u32 = 3;

/// A header block: lower-case names, values as sent (several values NUL-separated).
pub type Headers = Vec<(String, String)>;

/// The first value of header `name`.
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Ping(u32),
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        headers: Headers,
    },
    Data {
        stream: u32,
        fin: bool,
        data: Bytes,
    },
    /// SETTINGS, WINDOW_UPDATE and unknown control frames: read past.
    Ignored(u16),
}

/// Reads frames and inflates their header blocks (one zlib stream for the connection).
pub struct Reader<R> {
    io: R,
    inflate: Decompress,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(io: R) -> Reader<R> {
        Reader {
            io,
            inflate: Decompress::new(true),
        }
    }

    /// The next frame, or None when the peer closed the connection between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e).context("reading a SPDY frame header"),
        }
        let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if first & 0x8000_0000 == 0 {
            let mut data = vec![0u8; len];
            self.io
                .read_exact(&mut data)
                .await
                .context("reading a SPDY data frame")?;
            let stream = first & 0x7fff_ffff;
            if stream == 0 {
                bail!("SPDY data frame on stream 0");
            }
            return Ok(Some(Frame::Data {
                stream,
                fin: flags & FLAG_FIN != 0,
                data: data.into(),
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        let kind = (first & 0xffff) as u16;
        if version != VERSION {
            bail!("SPDY version {version} is not supported (only 3)");
        }
        if len > MAX_CONTROL_FRAME {
            bail!("SPDY control frame of {len} bytes is too large");
        }
        let mut body = vec![0u8; len];
        self.io
            .read_exact(&mut body)
            .await
            .context("reading a SPDY control frame")?;
        let word = |at: usize| -> Result<u32> {
            body.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .with_context(|| format!("SPDY control frame type {kind} is too short"))
        };
        Ok(Some(match kind {
            1 => {
                let stream = word(0)? & 0x7fff_ffff;
                let block = body.get(10..).context("SPDY SYN_STREAM is too short")?;
                Frame::SynStream {
                    stream,
                    flags,
                    headers: self.headers(block)?,
                }
            }
            2 => Frame::SynReply {
                stream: word(0)? & 0x7fff_ffff,
                flags,
                headers: self.headers(&body[4.min(len)..])?,
            },
            3 => Frame::RstStream {
                stream: word(0)? & 0x7fff_ffff,
                status: word(4)?,
            },
            6 => Frame::Ping(word(0)?),
            7 => Frame::GoAway {
                last_good: word(0)? & 0x7fff_ffff,
                status: word(4).unwrap_or(0),
            },
            8 => Frame::Headers {
                stream: word(0)? & 0x7fff_ffff,
                headers: self.headers(&body[4.min(len)..])?,
            },
            other => Frame::Ignored(other),
        }))
    }

    /// Inflates one header block (the stream continues across frames) and parses it.
    fn headers(&mut self, block: &[u8]) -> Result<Headers> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            let before = self.inflate.total_in();
            let produced = out.len();
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let r = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before) as usize;
            input = &input[used..];
            match r {
                Ok(Status::StreamEnd) => break,
                Ok(_) if input.is_empty() && out.capacity() > out.len() => break,
                // No progress with input left: the block is cut or corrupt.
                Ok(_) if used == 0 && out.len() == produced => {
                    bail!("inflating a SPDY header block: no progress")
                }
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| anyhow::anyhow!("priming the header inflater: {e}"))?;
                }
                Err(e) => bail!("inflating a SPDY header block: {e}"),
            }
            if out.len() > MAX_CONTROL_FRAME {
                bail!("SPDY header block inflates beyond {MAX_CONTROL_FRAME} bytes");
            }
        }
        parse_block(&out)
    }
}

fn parse_block(b: &[u8]) -> Result<Headers> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let s = b
            .get(at..at + n)
            .context("SPDY header block is truncated")?;
        at += n;
        Ok(s)
    };
    let word = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
    let count = word(take(4)?);
    let mut out = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = word(take(4)?);
        let name = String::from_utf8_lossy(take(n)?).into_owned();
        let n = word(take(4)?);
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        out.push((name.to_ascii_lowercase(), value));
    }
    Ok(out)
}

/// Encodes frames, deflating header blocks with the connection's one zlib stream.
pub struct Writer {
    deflate: Compress,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Writer {
        let mut deflate = Compress::new(Compression::best(), true);
        // Cannot fail on a fresh stream.
        let _ = deflate.set_dictionary(DICTIONARY);
        Writer { deflate }
    }

    fn block(&mut self, headers: &Headers) -> Result<Vec<u8>> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (n, v) in headers {
            raw.extend_from_slice(&(n.len() as u32).to_be_bytes());
            raw.extend_from_slice(n.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| anyhow::anyhow!("deflating a SPDY header block: {e}"))?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            // A sync flush is complete once it had room left over.
            if input.is_empty() && out.capacity() > out.len() {
                break;
            }
        }
        Ok(out)
    }

    /// The frame's bytes on the wire.
    pub fn encode(&mut self, f: &Frame) -> Result<Vec<u8>> {
        let control = |kind: u16, flags: u8, body: &[u8]| -> Vec<u8> {
            let mut v = Vec::with_capacity(8 + body.len());
            v.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
            v.extend_from_slice(&kind.to_be_bytes());
            v.push(flags);
            v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            v.extend_from_slice(body);
            v
        };
        Ok(match f {
            Frame::SynStream {
                stream,
                flags,
                headers,
            } => {
                let mut body = stream.to_be_bytes().to_vec();
                body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                body.extend(self.block(headers)?);
                control(1, *flags, &body)
            }
            Frame::SynReply {
                stream,
                flags,
                headers,
            } => {
                let mut body = stream.to_be_bytes().to_vec();
                body.extend(self.block(headers)?);
                control(2, *flags, &body)
            }
            Frame::RstStream { stream, status } => {
                let mut body = stream.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(3, 0, &body)
            }
            Frame::Ping(id) => control(6, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                let mut body = last_good.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(7, 0, &body)
            }
            Frame::Headers { stream, headers } => {
                let mut body = stream.to_be_bytes().to_vec();
                body.extend(self.block(headers)?);
                control(8, 0, &body)
            }
            Frame::Data { stream, fin, data } => {
                if data.len() > MAX_FRAME {
                    bail!("SPDY data frame of {} bytes is too large", data.len());
                }
                let mut v = Vec::with_capacity(8 + data.len());
                v.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                v.push(if *fin { FLAG_FIN } else { 0 });
                v.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                v.extend_from_slice(data);
                v
            }
            Frame::Ignored(kind) => bail!("cannot encode control frame type {kind}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn frames_round_trip_through_one_compression_context() {
        let frames = vec![
            Frame::SynStream {
                stream: 1,
                flags: 0,
                headers: hdrs(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynStream {
                stream: 3,
                flags: 0,
                headers: hdrs(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream: 3,
                flags: 0,
                headers: vec![],
            },
            Frame::Data {
                stream: 3,
                fin: false,
                data: Bytes::from_static(b"GET / HTTP/1.0\r\n\r\n"),
            },
            Frame::Data {
                stream: 3,
                fin: true,
                data: Bytes::new(),
            },
            Frame::Ping(7),
            Frame::RstStream {
                stream: 1,
                status: REFUSED_STREAM,
            },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
        ];
        let mut w = Writer::new();
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(w.encode(f).unwrap());
        }
        let mut r = Reader::new(&wire[..]);
        let mut back = Vec::new();
        while let Some(f) = r.next().await.unwrap() {
            back.push(f);
        }
        assert_eq!(back, frames);
    }

    #[test]
    fn the_header_stream_is_primed_with_the_draft_dictionary() {
        // The zlib header announces a preset dictionary (FDICT) whose Adler-32 is the draft's.
        let mut w = Writer::new();
        let wire = w
            .encode(&Frame::SynReply {
                stream: 1,
                flags: 0,
                headers: vec![],
            })
            .unwrap();
        let z = &wire[12..];
        assert_eq!(z[1] & 0x20, 0x20, "FDICT flag");
        assert_eq!(&z[2..6], &0xe3c6_a7c2u32.to_be_bytes());
        assert_eq!(DICTIONARY.len(), 1423);
    }

    #[tokio::test]
    async fn bad_frames_are_errors_not_panics() {
        // Version 2 control frame.
        let v2 = [0x80, 2, 0, 1, 0, 0, 0, 0];
        let e = Reader::new(&v2[..]).next().await.unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        // A SYN_STREAM whose header block is garbage.
        let mut bad = vec![0x80, 3, 0, 1, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        bad.extend_from_slice(&[1, 2, 3, 4]);
        assert!(Reader::new(&bad[..]).next().await.is_err());
        // A truncated frame.
        let cut = [0x80, 3, 0, 6, 0, 0, 0, 4, 0];
        assert!(Reader::new(&cut[..]).next().await.is_err());
    }
}
