//! f32 buffers to and from little-endian wire bytes, with the reduction fused into decoding so a
//! received piece is added straight from the network buffer (no intermediate `Vec<f32>`).

use crate::error::{CollectiveError, Result};
use crate::types::{ReduceOp, WireDType};
use bytes::{BufMut, Bytes, BytesMut};
use half::{bf16, f16};

/// Encodes `src` as `dtype` into a fresh buffer: the one copy every sent piece needs.
pub fn encode(src: &[f32], dtype: WireDType) -> Bytes {
    let mut out = BytesMut::with_capacity(src.len() * dtype.size());
    match dtype {
        // On little-endian hosts the wire layout is the memory layout: one memcpy.
        #[cfg(target_endian = "little")]
        WireDType::F32 => out.extend_from_slice(bytemuck::cast_slice(src)),
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
