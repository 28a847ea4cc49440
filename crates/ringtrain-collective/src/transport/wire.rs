//! gRPC message framing of `PeerFrame`s on a link, done by hand so that tensor payloads are never
//! copied in user space. tonic's codec copies every message twice: into its encode buffer on the
//! way out and from the HTTP/2 frames into its decode buffer on the way in, which on 2 cores cost
//! a third of an all-reduce's user CPU. Here an outgoing `Data` frame is a small head (gRPC prefix,
//! protobuf tags and fields) followed by the payload `Bytes` as its own HTTP/2 DATA chunk, and an
//! incoming message is decoded straight from the received chunks, the payload sliced out of them.
//! The bytes on the wire are ordinary gRPC messages of `ringtrain.v1.PeerFrame`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use ringtrain_proto::v1 as pb;
use std::collections::VecDeque;

/// One outgoing message: the head and the payload, sent back to back (the payload may be empty).
pub(crate) type Outgoing = (Bytes, Bytes);

/// Length of the gRPC message prefix: compressed flag and big-endian u32 length.
const PREFIX: usize = 5;
/// Field numbers in `collective.proto`.
const FRAME_DATA_FIELD: u32 = 2;
const DATA_PAYLOAD_FIELD: u32 = 5;

/// Encodes a frame without tensor data (hello, abort, bye, or a data frame with a small payload).
pub(crate) fn encode_frame(frame: &pb::PeerFrame) -> Outgoing {
    let body = frame.encode_to_vec();
    let mut buf = BytesMut::with_capacity(PREFIX + body.len());
    buf.put_u8(0);
    buf.put_u32(body.len() as u32);
    buf.put_slice(&body);
    (buf.freeze(), Bytes::new())
}

/// Encodes a `Data` frame whose payload travels as its own chunk: the result decodes to
/// `PeerFrame { body: Data { group, fingerprint, step, piece, payload } }`. The payload must be
/// under 4 GiB minus a few bytes (pieces are ~1 MiB).
pub(crate) fn encode_data(
    group: u32,
    fingerprint: pb::Fingerprint,
    step: u32,
    piece: u32,
    payload: Bytes,
) -> Outgoing {
    let head = pb::Data {
        group,
        fingerprint: Some(fingerprint),
        step,
        piece,
        payload: Bytes::new(),
    };
    let head_len = head.encoded_len();
    // proto3 leaves an empty `bytes` field out, and so does this.
    let payload_field = if payload.is_empty() {
        0
    } else {
        key_len(DATA_PAYLOAD_FIELD) + encoded_len_varint(payload.len() as u64)
    };
    let data_len = head_len + payload_field + payload.len();
    let frame_len = key_len(FRAME_DATA_FIELD) + encoded_len_varint(data_len as u64) + data_len;
    let mut buf = BytesMut::with_capacity(PREFIX + frame_len - payload.len());
    buf.put_u8(0);
    buf.put_u32(frame_len as u32);
    encode_key(FRAME_DATA_FIELD, WireType::LengthDelimited, &mut buf);
    encode_varint(data_len as u64, &mut buf);
    buf.put_slice(&head.encode_to_vec());
    if !payload.is_empty() {
        encode_key(DATA_PAYLOAD_FIELD, WireType::LengthDelimited, &mut buf);
        encode_varint(payload.len() as u64, &mut buf);
    }
    (buf.freeze(), payload)
}

/// A byte sequence held as the chunks it arrived in. As a [`Buf`], `copy_to_bytes` (what prost
/// uses for `bytes` fields) slices a chunk instead of copying whenever the range lies in one chunk.
#[derive(Debug, Default)]
struct Chunks {
    parts: VecDeque<Bytes>,
    len: usize,
}

impl Chunks {
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.parts.push_back(b);
        }
    }

    /// Removes and returns the first `n` bytes (`n <= self.len`), splitting at most one chunk.
    fn split_to(&mut self, n: usize) -> Chunks {
        let mut out = Chunks::default();
        while out.len < n {
            let Some(mut front) = self.parts.pop_front() else {
                break;
            };
            let want = n - out.len;
            if front.len() > want {
                let head = front.split_to(want);
                self.parts.push_front(front);
                out.push(head);
            } else {
                out.push(front);
            }
        }
        self.len -= out.len;
        out
    }
}

impl Buf for Chunks {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| b.as_ref())
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advance past the end of a frame");
        self.len -= cnt;
        while cnt > 0 {
            let Some(front) = self.parts.front_mut() else {
                break;
            };
            if front.len() > cnt {
                front.advance(cnt);
                break;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        assert!(len <= self.len, "copy_to_bytes past the end of a frame");
        if let Some(front) = self.parts.front_mut()
            && front.len() >= len
        {
            let out = front.split_to(len);
            if front.is_empty() {
                self.parts.pop_front();
            }
            self.len -= len;
            return out;
        }
        // The range spans chunks (the sender's HTTP/2 flow control split a payload): one copy.
        let mut out = BytesMut::with_capacity(len);
        out.put((&mut *self).take(len));
        out.freeze()
    }
}

/// Reassembles gRPC messages from the DATA chunks of one HTTP/2 stream.
#[derive(Debug)]
pub(crate) struct FrameDecoder {
    queue: Chunks,
    /// Length of the message whose prefix was read, until the message is complete.
    pending: Option<usize>,
    max_message: usize,
}

impl FrameDecoder {
    /// A decoder that refuses messages longer than `max_message` bytes.
    pub(crate) fn new(max_message: usize) -> Self {
        Self {
            queue: Chunks::default(),
            pending: None,
            max_message,
        }
    }

    /// Appends received bytes.
    pub(crate) fn push(&mut self, data: Bytes) {
        self.queue.push(data);
    }

    /// The next complete frame, `None` until one is complete. Errors (describing the problem)
    /// on a compressed or oversized message or bytes that are not a `PeerFrame`.
    pub(crate) fn next_frame(&mut self) -> Result<Option<pb::PeerFrame>, String> {
        let len = match self.pending {
            Some(len) => len,
            None => {
                if self.queue.remaining() < PREFIX {
                    return Ok(None);
                }
                let compressed = self.queue.get_u8();
                let len = self.queue.get_u32() as usize;
                if compressed != 0 {
                    return Err("compressed message on a link (links never compress)".into());
                }
                if len > self.max_message {
                    return Err(format!(
                        "message of {len} bytes exceeds the limit of {} bytes",
                        self.max_message
                    ));
                }
                self.pending = Some(len);
                len
            }
        };
        if self.queue.remaining() < len {
            return Ok(None);
        }
        self.pending = None;
        let mut message = self.queue.split_to(len);
        pb::PeerFrame::decode(&mut message)
            .map(Some)
            .map_err(|e| format!("undecodable frame: {e}"))
    }
}

/// Fuzzing entry point, not an API: feeds `chunks` to a fresh [`FrameDecoder`] (limit
/// `max_message`) as a link's received DATA chunks, decoding after each, and returns how many
/// frames decoded or the first error. Used by `crates/ringtrain-fuzz`; must never panic.
#[doc(hidden)]
pub fn fuzz_decode(chunks: &[&[u8]], max_message: usize) -> Result<usize, String> {
    let mut dec = FrameDecoder::new(max_message);
    let mut frames = 0;
    for chunk in chunks {
        dec.push(Bytes::copy_from_slice(chunk));
        while dec.next_frame()?.is_some() {
            frames += 1;
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::peer_frame::Body;

    fn data_frame(payload: Bytes) -> pb::PeerFrame {
        pb::PeerFrame {
            body: Some(Body::Data(pb::Data {
                group: 7,
                fingerprint: Some(pb::Fingerprint {
                    op: 1,
                    seq: 300,
                    elements: 1 << 20,
                    dtype: 1,
                    arg: 2,
                }),
                step: 3,
                piece: 129,
                payload,
            })),
        }
    }

    fn hand_encoded(payload: &Bytes) -> Outgoing {
        let Some(Body::Data(d)) = data_frame(payload.clone()).body else {
            unreachable!()
        };
        encode_data(
            d.group,
            d.fingerprint.unwrap(),
            d.step,
            d.piece,
            payload.clone(),
        )
    }

    #[test]
    fn hand_framing_is_the_standard_encoding() {
        for n in [0usize, 1, 127, 128, 1 << 20] {
            let payload = Bytes::from((0..n).map(|i| i as u8).collect::<Vec<_>>());
            let (head, body) = hand_encoded(&payload);
            let mut wire = head.to_vec();
            wire.extend_from_slice(&body);
            let standard = data_frame(payload).encode_to_vec();
            assert_eq!(&wire[PREFIX..], &standard[..], "payload of {n} bytes");
            assert_eq!(wire[0], 0);
            assert_eq!(
                u32::from_be_bytes(wire[1..5].try_into().unwrap()) as usize,
                standard.len()
            );
        }
    }

    #[test]
    fn decodes_across_any_chunking_and_slices_an_aligned_payload() {
        let payload = Bytes::from((0..5000).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        let (head, body) = hand_encoded(&payload);
        let hello = pb::PeerFrame {
            body: Some(Body::Hello(pb::Hello {
                rank: 1,
                world: 4,
                session: "s".into(),
                token: String::new(),
            })),
        };
        let (hello_head, _) = encode_frame(&hello);

        // As sent: head and payload are separate chunks, so the payload is not copied.
        let mut dec = FrameDecoder::new(1 << 20);
        dec.push(hello_head.clone());
        dec.push(head.clone());
        assert_eq!(dec.next_frame().unwrap(), Some(hello.clone()));
        assert_eq!(dec.next_frame().unwrap(), None, "payload not here yet");
        dec.push(body.clone());
        let got = dec.next_frame().unwrap().unwrap();
        assert_eq!(got, data_frame(payload.clone()));
        let Some(Body::Data(d)) = got.body else {
            unreachable!()
        };
        assert_eq!(
            d.payload.as_ptr(),
            body.as_ptr(),
            "payload sliced, not copied"
        );

        // Byte stream cut at arbitrary points: same frames.
        let mut stream = hello_head.to_vec();
        stream.extend_from_slice(&head);
        stream.extend_from_slice(&body);
        for cut in [1usize, 3, 5, 7, 64, 1000, 4999] {
            let mut dec = FrameDecoder::new(1 << 20);
            let mut frames = Vec::new();
            for part in stream.chunks(cut) {
                dec.push(Bytes::copy_from_slice(part));
                while let Some(f) = dec.next_frame().unwrap() {
                    frames.push(f);
                }
            }
            assert_eq!(
                frames,
                vec![hello.clone(), data_frame(payload.clone())],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_claimed_huge_length_is_refused_from_the_prefix_alone() {
        // A forged prefix announcing a 4 GiB message: refused as soon as the 5 prefix bytes are
        // in, before any of the claimed body is awaited or buffered.
        let mut dec = FrameDecoder::new(64 << 20);
        dec.push(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]));
        let e = dec.next_frame().unwrap_err();
        assert!(e.contains("4294967295") && e.contains("exceeds"), "{e}");
        assert_eq!(dec.queue.remaining(), 0, "nothing buffered");
    }

    #[test]
    fn refuses_oversized_compressed_and_garbage_messages() {
        let (head, body) = hand_encoded(&Bytes::from(vec![1u8; 100]));
        let mut dec = FrameDecoder::new(50);
        dec.push(head.clone());
        assert!(dec.next_frame().unwrap_err().contains("exceeds"));

        let mut compressed = head.to_vec();
        compressed[0] = 1;
        let mut dec = FrameDecoder::new(1 << 20);
        dec.push(Bytes::from(compressed));
        dec.push(body);
        assert!(dec.next_frame().unwrap_err().contains("compressed"));

        let mut dec = FrameDecoder::new(1 << 20);
        dec.push(Bytes::from_static(&[0, 0, 0, 0, 2, 0xff, 0xff]));
        assert!(dec.next_frame().unwrap_err().contains("undecodable"));
    }
}
