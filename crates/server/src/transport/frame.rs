//! Frames on the byte stream: a length prefix, then one protobuf [`proto::Frame`].
//!
//! ```text
//! offset  size  content
//! 0       4     N, the length of what follows: u32, big-endian; N <= the maximum frame size
//! 4       N     a proto::Frame (proto/peer.proto), protobuf-encoded:
//!                 0x08 0x01          version = 1 (always first, always these two bytes)
//!                 0x10 <varint>      cluster_id (absent if 0)
//!                 0x18 <varint>      from
//!                 0x20 <varint>      to
//!                 0x2a <len> Hello   or   0x32 <len> Batch
//! ```
//!
//! The reader checks the length against its limit before allocating anything, so a hostile or
//! corrupt prefix (say 0xffffffff) costs four bytes of reading, not 4 GiB of memory. The limit
//! counts the protobuf bytes only, not the four bytes of the prefix.

use bytes::{BufMut, BytesMut};
use prost::Message as _;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::proto;

/// The protocol version this node speaks and requires (`Frame.version`).
pub const PROTOCOL_VERSION: u32 = 1;

/// The size of the length prefix, in bytes.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// An upper bound on the bytes a frame's envelope adds around its batch of messages: version
/// (2 bytes), cluster id, from and to (11 bytes each at most) and the batch's key and length
/// (6 bytes at most), rounded up.
pub const ENVELOPE_BYTES: usize = 64;

/// Why no frame could be read from a connection.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The connection failed or ended in the middle of a frame.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix exceeds the maximum frame size; nothing after it was read.
    #[error("frame of {length} bytes exceeds the maximum of {max}")]
    Oversize {
        /// The length the prefix announced.
        length: u32,
        /// The receiver's maximum frame size.
        max: usize,
    },
    /// The bytes are not a protobuf `Frame`.
    #[error("undecodable frame: {0}")]
    Garbage(#[from] prost::DecodeError),
}

/// The bytes of `frame` on the wire: length prefix and protobuf encoding.
pub fn encode_frame(frame: &proto::Frame) -> Vec<u8> {
    let length = frame.encoded_len();
    let prefix = u32::try_from(length).expect("frames are bounded by a u32 maximum frame size");
    let mut bytes = Vec::with_capacity(LENGTH_PREFIX_BYTES + length);
    bytes.put_u32(prefix);
    frame.encode(&mut bytes).expect("a Vec grows to hold any encoding");
    assert_eq!(bytes.len(), LENGTH_PREFIX_BYTES + length, "the prefix states the encoded length");
    bytes
}

/// Reads one frame, returning it with its size on the wire (prefix included), or `None` if the
/// connection ended cleanly between frames. A frame longer than `max_frame_bytes` is refused
/// before anything beyond its prefix is read or allocated. Not cancel-safe: a frame read in
/// part is lost, so a caller that gives up on a read must close the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_bytes: usize,
) -> Result<Option<(proto::Frame, usize)>, ReadError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    let first = reader.read(&mut prefix).await?;
    if first == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut prefix[first..]).await?;
    let length = u32::from_be_bytes(prefix);
    // A u32 always fits a usize on the 32- and 64-bit targets skiff builds for.
    let size = usize::try_from(length).expect("usize holds a u32");
    if size > max_frame_bytes {
        return Err(ReadError::Oversize { length, max: max_frame_bytes });
    }
    let mut buffer = BytesMut::zeroed(size);
    reader.read_exact(&mut buffer).await?;
    // Decoding from `Bytes` makes every command in the frame a slice of this one buffer.
    let frame = proto::Frame::decode(buffer.freeze())?;
    Ok(Some((frame, LENGTH_PREFIX_BYTES + size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> proto::Frame {
        proto::Frame {
            version: PROTOCOL_VERSION,
            cluster_id: 7,
            from: 1,
            to: 2,
            kind: Some(proto::frame::Kind::Hello(proto::Hello {
                client_addr: "127.0.0.1:2379".to_owned(),
            })),
        }
    }

    #[tokio::test]
    async fn a_frame_reads_back_as_written() {
        let bytes = encode_frame(&hello());
        let mut reader = bytes.as_slice();
        let read = read_frame(&mut reader, 1024).await.expect("a valid frame");
        assert_eq!(read, Some((hello(), bytes.len())));
        assert_eq!(read_frame(&mut reader, 1024).await.expect("clean end").map(|(f, _)| f), None);
    }

    #[test]
    fn every_frame_starts_with_its_length_then_the_version() {
        let bytes = encode_frame(&hello());
        let length = u32::from_be_bytes(bytes[..4].try_into().expect("four bytes"));
        assert_eq!(length as usize, bytes.len() - LENGTH_PREFIX_BYTES);
        assert_eq!(&bytes[4..6], &[0x08, 0x01]);
    }

    #[tokio::test]
    async fn an_oversize_prefix_is_refused_without_reading_on() {
        // Only the prefix is there: a reader that tried to read 4 GiB would fail with an
        // unexpected end instead.
        let mut reader: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        match read_frame(&mut reader, 1 << 20).await {
            Err(ReadError::Oversize { length: u32::MAX, max }) => assert_eq!(max, 1 << 20),
            other => panic!("expected Oversize, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let mut bytes = vec![0, 0, 0, 3];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
        let mut reader = bytes.as_slice();
        assert!(matches!(read_frame(&mut reader, 1024).await, Err(ReadError::Garbage(_))));
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_an_io_error() {
        let bytes = encode_frame(&hello());
        let mut reader = &bytes[..bytes.len() - 1];
        assert!(matches!(read_frame(&mut reader, 1024).await, Err(ReadError::Io(_))));
        let mut reader = &bytes[..2];
        assert!(matches!(read_frame(&mut reader, 1024).await, Err(ReadError::Io(_))));
    }

    #[test]
    fn the_envelope_bound_holds_for_the_largest_ids() {
        let frame = proto::Frame {
            version: u32::MAX,
            cluster_id: u64::MAX,
            from: u64::MAX,
            to: u64::MAX,
            kind: Some(proto::frame::Kind::Batch(proto::Batch { messages: vec![] })),
        };
        assert!(frame.encoded_len() <= ENVELOPE_BYTES, "{}", frame.encoded_len());
    }
}
