//! The pipe protocol between the server and a `harmony plugin-host` child: frames of
//! `[u32 little-endian length][u8 tag][payload]`, where the length counts the tag and the
//! payload. The server writes to the child's stdin; the child answers on its stdout.

use std::io::{self, Read, Write};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 64 << 20;

/// Server → child. (The child describes the plugin unasked, in its hello.)
pub const EVENT: u8 = 2;
pub const REQUEST: u8 = 3;
pub const TASK: u8 = 4;
pub const HOST_REPLY_OK: u8 = 5;
pub const HOST_REPLY_ERROR: u8 = 6;

/// Child → server.
pub const HELLO: u8 = 10;
pub const RESULT_OK: u8 = 11;
pub const RESULT_FAILED: u8 = 12;
pub const RESULT_PANIC: u8 = 13;
pub const HOST_CALL: u8 = 14;
/// Payload: one byte of level, then the UTF-8 message.
pub const LOG: u8 = 15;
/// The library could not be loaded; payload: why.
pub const FATAL: u8 = 16;

/// One message.
#[derive(Debug)]
pub struct Frame {
    pub tag: u8,
    pub payload: Vec<u8>,
}

fn header(tag: u8, len: usize) -> io::Result<[u8; 5]> {
    let total = u32::try_from(len + 1)
        .ok()
        .filter(|n| (*n as usize) <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "frame too large"))?;
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&total.to_le_bytes());
    head[4] = tag;
    Ok(head)
}

fn checked_len(head: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_le_bytes(head) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad frame length {len}"),
        ));
    }
    Ok(len)
}

pub fn write_frame(out: &mut impl Write, tag: u8, payload: &[u8]) -> io::Result<()> {
    out.write_all(&header(tag, payload.len())?)?;
    out.write_all(payload)?;
    out.flush()
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame(input: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 4];
    match input.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = checked_len(head)?;
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    let tag = body.remove(0);
    Ok(Some(Frame { tag, payload: body }))
}

pub async fn write_frame_async(
    out: &mut (impl AsyncWrite + Unpin),
    tag: u8,
    payload: &[u8],
) -> io::Result<()> {
    out.write_all(&header(tag, payload.len())?).await?;
    out.write_all(payload).await?;
    out.flush().await
}

pub async fn read_frame_async(input: &mut (impl AsyncRead + Unpin)) -> io::Result<Frame> {
    let mut head = [0u8; 4];
    input.read_exact(&mut head).await?;
    let len = checked_len(head)?;
    let mut tag = [0u8; 1];
    input.read_exact(&mut tag).await?;
    let mut payload = vec![0u8; len - 1];
    input.read_exact(&mut payload).await?;
    Ok(Frame {
        tag: tag[0],
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_clean_end_is_none() {
        let mut wire = Vec::new();
        write_frame(&mut wire, EVENT, b"{\"a\":1}").unwrap();
        write_frame(&mut wire, LOG, b"").unwrap();
        let mut input = &wire[..];
        let first = read_frame(&mut input).unwrap().unwrap();
        assert_eq!(
            (first.tag, first.payload.as_slice()),
            (EVENT, &b"{\"a\":1}"[..])
        );
        let second = read_frame(&mut input).unwrap().unwrap();
        assert_eq!((second.tag, second.payload.len()), (LOG, 0));
        assert!(read_frame(&mut input).unwrap().is_none());
    }

    #[test]
    fn an_oversized_or_empty_length_is_refused() {
        let mut input = &(u32::MAX.to_le_bytes())[..];
        assert!(read_frame(&mut input).is_err());
        let mut input = &(0u32.to_le_bytes())[..];
        assert!(read_frame(&mut input).is_err());
    }
}
