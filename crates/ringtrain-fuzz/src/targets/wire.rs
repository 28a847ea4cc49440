//! Peer frame decoder target: the bytes as the DATA chunks a link receives, cut at points the
//! first byte chooses, through `ringtrain_collective::transport::fuzz_decode` (the link's
//! `FrameDecoder` with a 1 MiB message limit).

use crate::{Rng, Target, class_of};
use bytes::Bytes;
use pb::peer_frame::Body;
use prost::Message as _;
use ringtrain_proto::v1 as pb;

/// Message limit of the decoder under test (links use 64 MiB; smaller keeps runs fast).
const MAX_MESSAGE: usize = 1 << 20;

/// Fuzzes the peer frame decoder.
#[derive(Debug)]
pub struct WireTarget;

fn framed(frame: &pb::PeerFrame) -> Vec<u8> {
    let body = frame.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

impl Target for WireTarget {
    fn name(&self) -> &'static str {
        "wire"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        let hello = pb::PeerFrame {
            body: Some(Body::Hello(pb::Hello {
                rank: 1,
                world: 4,
                session: "job-1/attempt-0".into(),
                token: "t0k3n".into(),
            })),
        };
        let data = pb::PeerFrame {
            body: Some(Body::Data(pb::Data {
                group: 7,
                fingerprint: Some(pb::Fingerprint {
                    op: 1,
                    seq: 300,
                    elements: 64,
                    dtype: 1,
                    arg: 2,
                }),
                step: 3,
                piece: 1,
                payload: Bytes::from((0..256).map(|i| i as u8).collect::<Vec<_>>()),
            })),
        };
        let abort = pb::PeerFrame {
            body: Some(Body::Abort(pb::Abort::default())),
        };
        let bye = pb::PeerFrame {
            body: Some(Body::Bye(pb::Bye::default())),
        };
        let mut all = vec![3u8];
        for f in [&hello, &data, &abort, &bye] {
            all.extend_from_slice(&framed(f));
        }
        let mut seeds = vec![all];
        for f in [&hello, &data, &abort, &bye] {
            let mut s = vec![0u8];
            s.extend_from_slice(&framed(f));
            seeds.push(s);
        }
        seeds
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"\0\0\0\0\0",
            b"\0\0\0\0\x05",
            b"\x01",
            b"\x0a",
            b"\x12",
            b"\x1a",
            b"\x22",
            b"\x2a",
            b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
            b"\xff\xff\xff\xff\x0f",
        ]
    }

    fn run(&mut self, input: &[u8]) -> String {
        let Some((&cut, stream)) = input.split_first() else {
            return "empty".into();
        };
        // Chunk sizes from the first byte: 0 = one chunk, else cycling 1..=cut.
        let mut chunks = Vec::new();
        if cut == 0 {
            chunks.push(stream);
        } else {
            let (mut i, mut n) = (0, 1usize);
            while i < stream.len() {
                let end = (i + n).min(stream.len());
                chunks.push(&stream[i..end]);
                i = end;
                n = n % cut as usize + 1;
            }
        }
        match ringtrain_collective::transport::fuzz_decode(&chunks, MAX_MESSAGE) {
            Ok(n) => format!("ok {}", n.min(8)),
            Err(e) => class_of(&e),
        }
    }

    fn mutate(&mut self, input: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
        // Rewrite the first message's length prefix to match, exceed or undershoot its body.
        let mut out = input.to_vec();
        if out.len() >= 6 {
            let body = (out.len() - 6) as u32;
            let len = match rng.below(4) {
                0 => body,
                1 => body.wrapping_add(1),
                2 => body.saturating_sub(1),
                _ => MAX_MESSAGE as u32 + rng.below(2) as u32,
            };
            out[2..6].copy_from_slice(&len.to_be_bytes());
        }
        Some(out)
    }
}
