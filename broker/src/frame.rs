//! Response frames in pieces: record data a response already holds in memory (a fetch's reads
//! from the log) goes out from the buffer it was read into instead of being copied into the
//! encoded frame.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Record data shorter than this is copied: a piece of its own would cost more than the copy.
const SHARE_AT_LEAST: usize = 4 * 1024;

/// One response frame, written piece after piece.
#[derive(Debug, Default)]
pub struct Frame(Vec<Bytes>);

impl Frame {
    /// The pieces, in the order they go out.
    pub fn pieces(&self) -> &[Bytes] {
        &self.0
    }
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Frame {
        Frame(vec![bytes])
    }
}

/// A buffer `kafka-protocol` encodes into. When the encoder writes a slice that is exactly the
/// next of the `shared` buffers (the same memory, not merely equal bytes), that buffer becomes a
/// piece of the frame by reference; every other byte is copied.
#[derive(Debug, Default)]
pub struct FrameBuf {
    pieces: Vec<Bytes>,
    /// Bytes in `pieces`.
    before: usize,
    current: BytesMut,
    shared: VecDeque<Bytes>,
}

impl FrameBuf {
    /// A buffer that keeps `shared`, in the order the encoder will write them, by reference.
    pub fn sharing(shared: impl IntoIterator<Item = Bytes>) -> FrameBuf {
        FrameBuf {
            current: BytesMut::with_capacity(256),
            shared: shared
                .into_iter()
                .filter(|b| b.len() >= SHARE_AT_LEAST)
                .collect(),
            ..FrameBuf::default()
        }
    }

    /// The frame: what was encoded, after a 4-byte big-endian length prefix.
    pub fn into_frame(mut self) -> Frame {
        let length = (self.before + self.current.len()) as u32;
        let mut pieces = Vec::with_capacity(self.pieces.len() + 2);
        pieces.push(Bytes::copy_from_slice(&length.to_be_bytes()));
        pieces.append(&mut self.pieces);
        if !self.current.is_empty() {
            pieces.push(self.current.freeze());
        }
        Frame(pieces)
    }

    /// Copies the pieces back into one buffer, for an encoder that revisits earlier bytes.
    fn flatten(&mut self) {
        if self.pieces.is_empty() {
            return;
        }
        let mut all = BytesMut::with_capacity(self.before + self.current.len());
        for piece in self.pieces.drain(..) {
            all.extend_from_slice(&piece);
        }
        all.extend_from_slice(&self.current);
        self.current = all;
        self.before = 0;
    }
}

// SAFETY: every method but `put_slice` hands on to `current`, a `BytesMut`, which keeps
// `BufMut`'s contract; `put_slice` only appends through safe calls.
unsafe impl BufMut for FrameBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, count: usize) {
        // SAFETY: the caller initialised `count` bytes of `chunk_mut`, which is `current`'s.
        unsafe { self.current.advance_mut(count) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.shared.front() {
            Some(next) if next.as_ptr() == src.as_ptr() && next.len() == src.len() => {
                let next = next.clone();
                self.shared.pop_front();
                if !self.current.is_empty() {
                    self.before += self.current.len();
                    self.pieces.push(self.current.split().freeze());
                }
                self.before += next.len();
                self.pieces.push(next);
            }
            _ => self.current.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for FrameBuf {
    fn offset(&self) -> usize {
        self.before + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        if offset < self.before {
            self.flatten();
        }
        self.current.resize(offset - self.before, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        if r.start < self.before {
            self.flatten();
        }
        &mut self.current[r.start - self.before..r.end - self.before]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn joined(frame: &Frame) -> Vec<u8> {
        frame.pieces().concat()
    }

    fn fetch_response(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_records(Some(r.clone()))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)])
    }

    #[test]
    fn shared_records_go_out_by_reference_and_the_bytes_are_kafka_protocols() {
        let big = Bytes::from(vec![7u8; 10_000]);
        let small = Bytes::from(vec![9u8; 100]);
        let records = [big.clone(), small.clone(), big.clone()];
        let response = fetch_response(&records);
        for version in [4, 11, 12, 16] {
            let mut expected = BytesMut::new();
            response.encode(&mut expected, version).unwrap();
            let mut buf = FrameBuf::sharing(records.iter().cloned());
            response.encode(&mut buf, version).unwrap();
            let frame = buf.into_frame();
            let mut prefixed = (expected.len() as u32).to_be_bytes().to_vec();
            prefixed.extend_from_slice(&expected);
            assert_eq!(joined(&frame), prefixed, "version {version}");
            let by_reference = frame
                .pieces()
                .iter()
                .filter(|p| p.as_ptr() == big.as_ptr())
                .count();
            assert_eq!(
                by_reference, 2,
                "version {version}: both large reads shared"
            );
            assert!(
                frame.pieces().iter().all(|p| p.as_ptr() != small.as_ptr()),
                "small records are copied"
            );
        }
    }

    #[test]
    fn equal_bytes_elsewhere_are_copied_and_order_is_kept() {
        let shared = Bytes::from(vec![1u8; 5_000]);
        let lookalike = vec![1u8; 5_000];
        let mut buf = FrameBuf::sharing([shared.clone()]);
        buf.put_slice(&lookalike);
        buf.put_slice(b"x");
        buf.put_slice(&shared);
        let frame = buf.into_frame();
        assert_eq!(
            frame.pieces().len(),
            3,
            "prefix, copied bytes, shared records"
        );
        assert_eq!(frame.pieces()[2].as_ptr(), shared.as_ptr());
        assert_eq!(joined(&frame).len(), 4 + 5_000 + 1 + 5_000);
    }

    #[test]
    fn revisiting_earlier_bytes_flattens_the_pieces() {
        let shared = Bytes::from(vec![2u8; 5_000]);
        let mut buf = FrameBuf::sharing([shared.clone()]);
        buf.put_slice(b"ab");
        buf.put_slice(&shared);
        buf.put_slice(b"cd");
        buf.range(0..1)[0] = b'z';
        assert_eq!(buf.offset(), 5_004);
        buf.seek(3);
        let frame = buf.into_frame();
        assert_eq!(
            joined(&frame),
            [&3u32.to_be_bytes()[..], b"zb\x02"].concat()
        );
    }
}
