//! The small vocabulary of a collective call: reductions, wire encodings and the fingerprint every
//! rank attaches to every message so that ranks disagreeing about "the current call" fail loudly
//! instead of exchanging garbage or hanging.

use std::fmt;

/// How [`crate::Communicator::all_reduce`] and `reduce_scatter` combine contributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise sum divided by the group size (gradient averaging).
    Mean,
    /// Element-wise maximum.
    Max,
    /// Element-wise minimum.
    Min,
}

impl ReduceOp {
    /// Code used in [`Fingerprint::arg`] (matches the proto contract).
    pub fn code(self) -> u32 {
        match self {
            ReduceOp::Sum => 1,
            ReduceOp::Mean => 2,
            ReduceOp::Max => 3,
            ReduceOp::Min => 4,
        }
    }

    /// Combines one received value into an accumulator; `Mean` accumulates as a sum.
    #[inline(always)]
    pub(crate) fn combine(self, acc: f32, x: f32) -> f32 {
        match self {
            ReduceOp::Sum | ReduceOp::Mean => acc + x,
            ReduceOp::Max => acc.max(x),
            ReduceOp::Min => acc.min(x),
        }
    }
}

/// Element encoding on the wire. Buffers are always f32 in memory and accumulation is always f32;
/// f16/bf16 halve the bytes sent at the cost of rounding every transmitted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WireDType {
    /// 4 bytes per element, exact.
    #[default]
    F32,
    /// IEEE binary16, 2 bytes per element.
    F16,
    /// bfloat16, 2 bytes per element.
    Bf16,
}

impl WireDType {
    /// Bytes per element on the wire.
    pub fn size(self) -> usize {
        match self {
            WireDType::F32 => 4,
            WireDType::F16 | WireDType::Bf16 => 2,
        }
    }
}

impl fmt::Display for WireDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireDType::F32 => "f32",
            WireDType::F16 => "f16",
            WireDType::Bf16 => "bf16",
        })
    }
}

/// The operation a fingerprint names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`crate::Communicator::all_reduce`].
    AllReduce,
    /// [`crate::Communicator::broadcast`].
    Broadcast,
    /// [`crate::Communicator::all_gather`].
    AllGather,
    /// [`crate::Communicator::reduce_scatter`].
    ReduceScatter,
    /// [`crate::Communicator::barrier`].
    Barrier,
    /// [`crate::Communicator::send`] (matched by `recv`).
    Send,
}

impl OpKind {
    /// Snake-case name used in errors, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::AllReduce => "all_reduce",
            OpKind::Broadcast => "broadcast",
            OpKind::AllGather => "all_gather",
            OpKind::ReduceScatter => "reduce_scatter",
            OpKind::Barrier => "barrier",
            OpKind::Send => "send",
        }
    }
}

/// What one rank believes the current call is. Every message carries its sender's fingerprint and
/// the receiver compares it with its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The operation.
    pub op: OpKind,
    /// Collective sequence number in the communicator (per-pair count for point-to-point).
    pub seq: u64,
    /// Number of f32 elements the caller passed.
    pub elements: u64,
    /// Wire encoding.
    pub dtype: WireDType,
    /// Reduction code ([`ReduceOp::code`]) or broadcast root; 0 otherwise.
    pub arg: u32,
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}(seq {}, {} elements, {}",
            self.op.name(),
            self.seq,
            self.elements,
            self.dtype
        )?;
        match self.op {
            OpKind::AllReduce | OpKind::ReduceScatter => {
                let op = match self.arg {
                    1 => "sum",
                    2 => "mean",
                    3 => "max",
                    4 => "min",
                    _ => "?",
                };
                write!(f, ", {op})")
            }
            OpKind::Broadcast => write!(f, ", root {})", self.arg),
            _ => f.write_str(")"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_display_names_everything_a_user_needs() {
        let fp = Fingerprint {
            op: OpKind::AllReduce,
            seq: 3,
            elements: 10,
            dtype: WireDType::F16,
            arg: ReduceOp::Mean.code(),
        };
        assert_eq!(fp.to_string(), "all_reduce(seq 3, 10 elements, f16, mean)");
    }
}
