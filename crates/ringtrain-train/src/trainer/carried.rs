//! A language model's carried recurrent state across ranks and checkpoints: each rank holds its
//! block of the streams; a checkpoint holds them in the layout of one process holding all of
//! them, so a resumed run continues every stream whatever the number of ranks that wrote it.

use super::collective;
use crate::checkpoint::Progress;
use crate::error::TrainError;
use crate::group::Group;

/// A language model's carried state for a checkpoint: every rank's streams in the layout one
/// process holding all of them has ([`ringtrain_models::RecurrentState::to_flat`] of the whole
/// batch; rank r's streams are rows block r), so a run resumed with another number of workers
/// continues every stream; empty at an epoch boundary (the next epoch starts from zeros) and for
/// other tasks. With several ranks it is a collective call, made by every rank at the same step
/// (their progress is the same).
///
/// # Errors
/// [`TrainError::Collective`] when the gather fails.
pub(super) fn carried_for_checkpoint(
    group: &mut dyn Group,
    state: Option<&ringtrain_models::RecurrentState>,
    progress: &Progress,
) -> Result<Vec<f32>, TrainError> {
    let Some(state) = state.filter(|_| progress.batch_in_epoch > 0) else {
        return Ok(Vec::new());
    };
    let flat = state.to_flat();
    if group.world() == 1 {
        return Ok(flat);
    }
    let wide: Vec<f64> = flat.iter().map(|&x| f64::from(x)).collect();
    let all = group.all_gather_f64(&wide).map_err(collective(format!(
        "gathering the carried language-model state at step {}",
        progress.step
    )))?;
    // Every value came in as an f32: the round trip is exact.
    let all: Vec<f32> = all.into_iter().map(|x| x as f32).collect();
    Ok(ranks_to_streams(
        &all,
        &state_segments(state),
        group.world(),
    ))
}

/// Lengths of the segments of a state's flat layout: `h`, then `c` (LSTM), per recurrent layer
/// and direction, each `[B, H]` row-major with one row per stream.
pub(super) fn state_segments(state: &ringtrain_models::RecurrentState) -> Vec<usize> {
    let mut out = Vec::new();
    for cell in state.layers.iter().flatten() {
        out.push(cell.h.len());
        if let Some(c) = &cell.c {
            out.push(c.len());
        }
    }
    out
}

/// Every rank's flat state, gathered rank-major (`segments` per rank), in the layout of one
/// process holding all the streams: per segment, the ranks' rows in rank order.
fn ranks_to_streams(all: &[f32], segments: &[usize], world: usize) -> Vec<f32> {
    let per_rank: usize = segments.iter().sum();
    let mut out = Vec::with_capacity(all.len());
    let mut offset = 0;
    for &len in segments {
        for r in 0..world {
            let at = r * per_rank + offset;
            out.extend_from_slice(&all[at..at + len]);
        }
        offset += len;
    }
    out
}

/// Rank `rank`'s part (its block of streams, `segments` being its own state's) of a state in the
/// layout of [`ranks_to_streams`]; `None` when `flat` is not `world` ranks' worth.
pub(super) fn streams_to_rank(
    flat: &[f32],
    segments: &[usize],
    world: usize,
    rank: usize,
) -> Option<Vec<f32>> {
    if flat.len() != world * segments.iter().sum::<usize>() {
        return None;
    }
    let mut out = Vec::with_capacity(flat.len() / world.max(1));
    let mut offset = 0;
    for &len in segments {
        let at = offset + rank * len;
        out.extend_from_slice(&flat[at..at + len]);
        offset += world * len;
    }
    Some(out)
}

#[cfg(test)]
mod carried_layout_tests {
    use super::{ranks_to_streams, streams_to_rank};

    /// Two ranks of 2 streams each, state segments `h` (2 streams × 3) and `c` (2 × 3): the
    /// checkpoint layout is one process's 4 streams; any world size takes its rows back.
    #[test]
    fn the_checkpoint_layout_is_one_process_layout() {
        let segments = [6, 6];
        // Rank r, segment s, value v: 100 r + 10 s + v.
        let rank = |r: usize| -> Vec<f32> {
            (0..2)
                .flat_map(|s| (0..6).map(move |v| (100 * r + 10 * s + v) as f32))
                .collect()
        };
        let gathered = [rank(0), rank(1)].concat();
        let flat = ranks_to_streams(&gathered, &segments, 2);
        let h: Vec<f32> = [&rank(0)[..6], &rank(1)[..6]].concat();
        let c: Vec<f32> = [&rank(0)[6..], &rank(1)[6..]].concat();
        assert_eq!(flat, [h.clone(), c.clone()].concat());
        assert_eq!(streams_to_rank(&flat, &segments, 2, 1), Some(rank(1)));
        // One process takes all 4 streams as they are; four ranks take one stream each.
        assert_eq!(streams_to_rank(&flat, &[12, 12], 1, 0), Some(flat.clone()));
        assert_eq!(
            streams_to_rank(&flat, &[3, 3], 4, 2),
            Some([&h[6..9], &c[6..9]].concat())
        );
        assert_eq!(ranks_to_streams(&flat, &[12, 12], 1), flat);
        assert_eq!(streams_to_rank(&flat, &[6, 6], 3, 0), None);
    }
}
