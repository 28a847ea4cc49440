//! Pure ring schedules: which chunk a rank sends to its right neighbour and which it receives from
//! its left neighbour at each step, and how a buffer is cut into chunks and pieces. No IO here; the
//! driver in `algo` moves the bytes. Every plan has the "forwarding" property the pipelined driver
//! relies on: what a rank receives at step `s` is exactly what it sends at step `s + 1`.

use std::ops::Range;

/// What happens to a received piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepMode {
    /// Combine the piece into the local chunk (reduce-scatter phase).
    Reduce,
    /// Overwrite the local chunk with the piece (all-gather phase).
    Copy,
}

/// One step of a ring plan for one rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingStep {
    /// Chunk index sent to the right neighbour (`rank + 1`).
    pub send_chunk: usize,
    /// Chunk index received from the left neighbour (`rank - 1`).
    pub recv_chunk: usize,
    /// What to do with the received chunk.
    pub mode: StepMode,
    /// True when the received chunk is complete after this step (fully reduced): the point where
    /// `Mean` divides and wire rounding is applied, once, by the chunk's owner.
    pub finalize: bool,
}

/// Which collective a plan implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingKind {
    /// Reduce-scatter then all-gather: 2(N−1) steps, every rank ends with every chunk reduced.
    AllReduce,
    /// N−1 reduce steps; rank `r` ends owning the reduced chunk `r`.
    ReduceScatter,
    /// N−1 copy steps; rank `r` starts owning chunk `r` and ends with all of them.
    AllGather,
}

fn wrap(x: isize, n: usize) -> usize {
    x.rem_euclid(n as isize) as usize
}

/// The ring plan of `kind` for `rank` in a ring of `world` ranks (empty for `world <= 1`).
pub fn ring_plan(kind: RingKind, rank: usize, world: usize) -> Vec<RingStep> {
    if world <= 1 {
        return Vec::new();
    }
    let (r, n) = (rank as isize, world);
    let steps = (n - 1) as isize;
    let reduce = |shift: isize| {
        (0..steps).map(move |s| RingStep {
            send_chunk: wrap(r - s - shift, n),
            recv_chunk: wrap(r - s - 1 - shift, n),
            mode: StepMode::Reduce,
            finalize: s == steps - 1,
        })
    };
    let gather = |shift: isize| {
        (0..steps).map(move |t| RingStep {
            send_chunk: wrap(r - t + shift, n),
            recv_chunk: wrap(r - t - 1 + shift, n),
            mode: StepMode::Copy,
            finalize: false,
        })
    };
    match kind {
        // Reduce-scatter leaves rank r owning chunk r+1, so the gather starts from there.
        RingKind::AllReduce => reduce(0).chain(gather(1)).collect(),
        RingKind::ReduceScatter => reduce(1).collect(),
        RingKind::AllGather => gather(0).collect(),
    }
}

/// Splits `len` elements into `parts` contiguous ranges as equal as possible (the first
/// `len % parts` ranges one longer).
pub fn chunks(len: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let (base, extra) = (len / parts, len % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let end = start + base + usize::from(i < extra);
            let range = start..end;
            start = end;
            range
        })
        .collect()
}

/// Cuts `range` into pieces of at most `piece` elements. Always at least one piece (possibly
/// empty), so every step exchanges at least one message and every call checks fingerprints.
pub fn pieces(range: Range<usize>, piece: usize) -> Vec<Range<usize>> {
    let piece = piece.max(1);
    if range.is_empty() {
        // One empty piece, not "no pieces" (see above).
        #[allow(clippy::single_range_in_vec_init)]
        return vec![range.start..range.start];
    }
    (range.start..range.end)
        .step_by(piece)
        .map(|s| s..(s + piece).min(range.end))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a plan over symbolic chunks: each rank's chunk is the set of ranks whose
    /// contribution it contains.
    fn simulate(kind: RingKind, world: usize) -> Vec<Vec<Vec<usize>>> {
        let mut state: Vec<Vec<Vec<usize>>> = (0..world)
            .map(|r| {
                (0..world)
                    .map(|c| match kind {
                        RingKind::AllGather if c != r => vec![],
                        _ => vec![r],
                    })
                    .collect()
            })
            .collect();
        let plans: Vec<_> = (0..world).map(|r| ring_plan(kind, r, world)).collect();
        for s in 0..plans[0].len() {
            let sent: Vec<Vec<usize>> = (0..world)
                .map(|r| state[r][plans[r][s].send_chunk].clone())
                .collect();
            for r in 0..world {
                let left = (r + world - 1) % world;
                let step = plans[r][s];
                assert_eq!(
                    plans[left][s].send_chunk, step.recv_chunk,
                    "left sends what r expects"
                );
                let incoming = sent[left].clone();
                let chunk = &mut state[r][step.recv_chunk];
                match step.mode {
                    StepMode::Reduce => {
                        assert!(
                            incoming.iter().all(|x| !chunk.contains(x)),
                            "no double count"
                        );
                        chunk.extend(incoming);
                    }
                    StepMode::Copy => *chunk = incoming,
                }
                if s + 1 < plans[r].len() {
                    assert_eq!(plans[r][s + 1].send_chunk, step.recv_chunk, "forwarding");
                }
            }
        }
        state
    }

    #[test]
    fn all_reduce_gives_every_rank_every_contribution() {
        for world in 1..=9 {
            assert_eq!(
                ring_plan(RingKind::AllReduce, 0, world).len(),
                2 * (world - 1)
            );
            for rank_state in simulate(RingKind::AllReduce, world) {
                for mut chunk in rank_state {
                    chunk.sort();
                    assert_eq!(chunk, (0..world).collect::<Vec<_>>());
                }
            }
        }
    }

    #[test]
    fn reduce_scatter_leaves_rank_r_with_chunk_r_and_finalizes_once() {
        for world in 2..=9 {
            let state = simulate(RingKind::ReduceScatter, world);
            for r in 0..world {
                let mut own = state[r][r].clone();
                own.sort();
                assert_eq!(own, (0..world).collect::<Vec<_>>());
                let plan = ring_plan(RingKind::ReduceScatter, r, world);
                assert_eq!(plan.iter().filter(|s| s.finalize).count(), 1);
                assert_eq!(plan.last().unwrap().recv_chunk, r);
            }
        }
    }

    #[test]
    fn all_gather_distributes_every_block() {
        for world in 2..=9 {
            for rank_state in simulate(RingKind::AllGather, world) {
                for (c, chunk) in rank_state.iter().enumerate() {
                    assert_eq!(chunk, &vec![c]);
                }
            }
        }
    }

    #[test]
    fn chunks_and_pieces_cover_exactly() {
        assert_eq!(chunks(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(chunks(2, 4), vec![0..1, 1..2, 2..2, 2..2]);
        assert_eq!(pieces(3..3, 4), vec![3..3]);
        assert_eq!(pieces(0..10, 4), vec![0..4, 4..8, 8..10]);
    }
}
