//! f32 buffers to and from little-endian wire bytes, with the reduction fused into decoding so a
//! received piece is added straight from the network buffer (no intermediate `Vec<f32>`).

use crate::error::{CollectiveError, Result};
use crate::types::{ReduceOp, WireDType};
use bytes::{BufMut, Bytes, BytesMut};
use half::{bf16, f16};

/// A `Vec<f32>` seen as its little-endian bytes, so that a freshly computed f32 piece becomes a
/// [`Bytes`] by ownership transfer instead of a copy.
#[cfg(target_endian = "little")]
struct F32Owner(Vec<f32>);

#[cfg(target_endian = "little")]
impl AsRef<[u8]> for F32Owner {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// Encodes `src` as `dtype` into a fresh buffer: the one copy every sent piece needs.
pub fn encode(src: &[f32], dtype: WireDType) -> Bytes {
    #[cfg(target_endian = "little")]
    if dtype == WireDType::F32 {
        // The wire layout is the memory layout: one memcpy, no re-encoding.
        return Bytes::from_owner(F32Owner(src.to_vec()));
    }
    let mut out = BytesMut::with_capacity(src.len() * dtype.size());
    match dtype {
        #[cfg(target_endian = "little")]
        WireDType::F32 => unreachable!("handled above"),
        #[cfg(not(target_endian = "little"))]
        WireDType::F32 => {
            for x in src {
                out.put_f32_le(*x);
            }
        }
        WireDType::F16 => {
            for x in src {
                out.put_u16_le(f16::from_f32(*x).to_bits());
            }
        }
        WireDType::Bf16 => {
            for x in src {
                out.put_u16_le(bf16::from_f32(*x).to_bits());
            }
        }
    }
    out.freeze()
}

fn check_len(dst: usize, payload: &[u8], dtype: WireDType) -> Result<()> {
    if payload.len() != dst * dtype.size() {
        return Err(CollectiveError::Transport(format!(
            "piece of {} bytes does not hold {dst} {dtype} elements",
            payload.len()
        )));
    }
    Ok(())
}

/// Combines `acc` with the decoded payload (as [`reduce_into`]) and returns the result encoded as
/// `dtype`, leaving `acc` untouched: one pass for a partial sum that is only forwarded (the
/// reduce-scatter steps before a chunk is complete), instead of reduce, then encode. Errors when
/// the payload length does not match.
pub fn reduce_encode(acc: &[f32], payload: &[u8], dtype: WireDType, op: ReduceOp) -> Result<Bytes> {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => reduce_encode_with(acc, payload, dtype, |a, x| a + x),
        ReduceOp::Max => reduce_encode_with(acc, payload, dtype, f32::max),
        ReduceOp::Min => reduce_encode_with(acc, payload, dtype, f32::min),
    }
}

#[inline(always)]
fn reduce_encode_with(
    acc: &[f32],
    payload: &[u8],
    dtype: WireDType,
    f: impl Fn(f32, f32) -> f32,
) -> Result<Bytes> {
    check_len(acc.len(), payload, dtype)?;
    #[cfg(target_endian = "little")]
    if dtype == WireDType::F32 {
        // Zip of two exact-size iterators: the extend vectorizes and writes the result once.
        let mut out = Vec::with_capacity(acc.len());
        out.extend(
            acc.iter()
                .zip(payload.chunks_exact(4))
                .map(|(a, b)| f(*a, f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        );
        return Ok(Bytes::from_owner(F32Owner(out)));
    }
    let mut sum = acc.to_vec();
    reduce_with(&mut sum, payload, dtype, f)?;
    Ok(encode(&sum, dtype))
}

/// [`reduce_encode`] for a received payload this rank owns: when no other reference to the
/// payload's memory exists (the usual case for a piece just read off a link), the result is written
/// over the payload, which the network read just brought into cache, instead of into a fresh
/// buffer. Same result, bit for bit. Errors when the payload length does not match.
pub fn reduce_encode_owned(
    acc: &[f32],
    payload: Bytes,
    dtype: WireDType,
    op: ReduceOp,
) -> Result<Bytes> {
    if dtype != WireDType::F32 {
        return reduce_encode(acc, &payload, dtype, op);
    }
    match payload.try_into_mut() {
        Ok(mut own) => {
            check_len(acc.len(), &own, dtype)?;
            match op {
                ReduceOp::Sum | ReduceOp::Mean => reduce_over(acc, &mut own, |a, x| a + x),
                ReduceOp::Max => reduce_over(acc, &mut own, f32::max),
                ReduceOp::Min => reduce_over(acc, &mut own, f32::min),
            }
            Ok(own.freeze())
        }
        Err(shared) => reduce_encode(acc, &shared, dtype, op),
    }
}

/// `payload[i] = f(acc[i], payload[i])` on little-endian f32 bytes.
#[inline(always)]
fn reduce_over(acc: &[f32], payload: &mut [u8], f: impl Fn(f32, f32) -> f32) {
    for (a, b) in acc.iter().zip(payload.chunks_exact_mut(4)) {
        let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        b.copy_from_slice(&f(*a, x).to_le_bytes());
    }
}

/// Overwrites `dst` with the decoded payload. Errors when the payload length does not match.
pub fn decode_into(dst: &mut [f32], payload: &[u8], dtype: WireDType) -> Result<()> {
    reduce_with(dst, payload, dtype, |_, x| x)
}

/// Combines the decoded payload into `dst` with `op` (`Mean` sums; the caller divides once at the
/// end). Errors when the payload length does not match.
pub fn reduce_into(dst: &mut [f32], payload: &[u8], dtype: WireDType, op: ReduceOp) -> Result<()> {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => reduce_with(dst, payload, dtype, |a, x| a + x),
        ReduceOp::Max => reduce_with(dst, payload, dtype, f32::max),
        ReduceOp::Min => reduce_with(dst, payload, dtype, f32::min),
    }
}

#[inline(always)]
fn reduce_with(
    dst: &mut [f32],
    payload: &[u8],
    dtype: WireDType,
    f: impl Fn(f32, f32) -> f32,
) -> Result<()> {
    check_len(dst.len(), payload, dtype)?;
    match dtype {
        WireDType::F32 => {
            for (d, b) in dst.iter_mut().zip(payload.chunks_exact(4)) {
                *d = f(*d, f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            }
        }
        WireDType::F16 => {
            for (d, b) in dst.iter_mut().zip(payload.chunks_exact(2)) {
                *d = f(
                    *d,
                    f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
                );
            }
        }
        WireDType::Bf16 => {
            for (d, b) in dst.iter_mut().zip(payload.chunks_exact(2)) {
                *d = f(
                    *d,
                    bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
                );
            }
        }
    }
    Ok(())
}

/// Rounds `buf` in place to what the wire can carry, so the rank that keeps a value locally holds
/// exactly what its peers decode (all ranks must end bit-identical).
pub fn round_to_wire(buf: &mut [f32], dtype: WireDType) {
    match dtype {
        WireDType::F32 => {}
        WireDType::F16 => buf.iter_mut().for_each(|x| *x = f16::from_f32(*x).to_f32()),
        WireDType::Bf16 => buf
            .iter_mut()
            .for_each(|x| *x = bf16::from_f32(*x).to_f32()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reduces_every_dtype() {
        let src = [1.0f32, -2.5, 3.25, 0.0];
        for dtype in [WireDType::F32, WireDType::F16, WireDType::Bf16] {
            let bytes = encode(&src, dtype);
            assert_eq!(bytes.len(), 4 * dtype.size());
            let mut out = [0.0; 4];
            decode_into(&mut out, &bytes, dtype).unwrap();
            assert_eq!(out, src, "{dtype}");
            let mut acc = [1.0f32; 4];
            reduce_into(&mut acc, &bytes, dtype, ReduceOp::Max).unwrap();
            assert_eq!(acc, [1.0, 1.0, 3.25, 1.0]);
        }
        let mut short = [0.0; 3];
        assert!(decode_into(&mut short, &encode(&src, WireDType::F32), WireDType::F32).is_err());
    }

    #[test]
    fn reduce_encode_equals_reduce_then_encode() {
        let acc = [1.0f32, -2.5, 3.25, 0.0, 7.0];
        let x = [0.5f32, 4.0, -3.25, 2.0, -8.0];
        for dtype in [WireDType::F32, WireDType::F16, WireDType::Bf16] {
            for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min] {
                let payload = encode(&x, dtype);
                let fused = reduce_encode(&acc, &payload, dtype, op).unwrap();
                let mut two_pass = acc;
                reduce_into(&mut two_pass, &payload, dtype, op).unwrap();
                assert_eq!(fused, encode(&two_pass, dtype), "{dtype} {op:?}");
            }
        }
        assert!(
            reduce_encode(
                &acc[..4],
                &encode(&x, WireDType::F32),
                WireDType::F32,
                ReduceOp::Sum
            )
            .is_err()
        );
    }

    #[test]
    fn owned_reduce_encode_equals_the_copying_one() {
        let acc = [1.0f32, -2.5, 3.25, 0.0, 7.0];
        let x = [0.5f32, 4.0, -3.25, 2.0, -8.0];
        for dtype in [WireDType::F32, WireDType::F16, WireDType::Bf16] {
            for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min] {
                let expected = reduce_encode(&acc, &encode(&x, dtype), dtype, op).unwrap();
                // A uniquely owned payload (reused in place) and a shared one (copied).
                let unique = Bytes::from(encode(&x, dtype).to_vec());
                let at = unique.as_ptr();
                let in_place = reduce_encode_owned(&acc, unique, dtype, op).unwrap();
                assert_eq!(in_place, expected, "{dtype} {op:?} unique");
                if dtype == WireDType::F32 {
                    assert_eq!(in_place.as_ptr(), at, "f32 result written over the payload");
                }
                let shared = Bytes::from(encode(&x, dtype).to_vec());
                let copied = reduce_encode_owned(&acc, shared.clone(), dtype, op).unwrap();
                assert_eq!(copied, expected, "{dtype} {op:?} shared");
                assert_eq!(shared, encode(&x, dtype), "a shared payload is left alone");
            }
        }
        let short = Bytes::from(encode(&x[..4], WireDType::F32).to_vec());
        assert!(reduce_encode_owned(&acc, short, WireDType::F32, ReduceOp::Sum).is_err());
    }

    #[test]
    fn rounding_matches_the_wire() {
        let mut x = [1.0f32 + 1e-4];
        round_to_wire(&mut x, WireDType::Bf16);
        let mut y = [0.0];
        decode_into(
            &mut y,
            &encode(&[1.0 + 1e-4], WireDType::Bf16),
            WireDType::Bf16,
        )
        .unwrap();
        assert_eq!(x, y);
    }
}
