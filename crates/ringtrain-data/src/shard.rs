//! The per-epoch sample order of data-parallel training (DESIGN.md, "Data parallelism").
//!
//! For epoch `e` the plan is a permutation of `0..n` drawn from ChaCha8 keyed by the job seed on
//! stream `e`, padded by repeating from its start to a multiple of `world × per_rank_batch`. Global
//! step `s` takes positions `s·G .. (s+1)·G` of the padded order (`G = world × per_rank_batch`),
//! and rank `r` takes the `r`-th block of `per_rank_batch` positions inside it. Hence:
//!
//! - every rank runs exactly [`ShardPlan::steps_per_epoch`] steps (an uneven split is the classic
//!   cause of end-of-epoch hangs in data-parallel training);
//! - concatenating step `s` of ranks `0..world` gives step `s` of the single-process plan with
//!   batch `world × per_rank_batch` — the numerics contract "N workers × batch b == one process
//!   with batch N·b over the same order";
//! - the order is a pure function of `(n, seed, epoch, world × per_rank_batch)`, identical on every
//!   platform, so every rank computes it locally and a resumed job continues the same order.

use crate::error::DataError;
use crate::order::{chacha, permutation};
use ringtrain_core::{Epoch, Rank};
use std::ops::Range;

/// One epoch's sample order, split into equal steps and equal rank slices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    samples: usize,
    world: usize,
    per_rank_batch: usize,
    order: Vec<usize>,
}

impl ShardPlan {
    /// Plans epoch `epoch` over `samples` samples for `world` ranks taking `per_rank_batch`
    /// samples each per step. With `shuffle = false` the order is `0..samples` (then padded),
    /// which evaluation uses; the seed and epoch are then irrelevant.
    ///
    /// # Errors
    /// [`DataError::EmptyPlan`] when `samples` is 0; [`DataError::InvalidPlan`] when `world` or
    /// `per_rank_batch` is 0.
    pub fn new(
        samples: usize,
        seed: u64,
        epoch: Epoch,
        world: usize,
        per_rank_batch: usize,
        shuffle: bool,
    ) -> Result<ShardPlan, DataError> {
        if world == 0 || per_rank_batch == 0 {
            return Err(DataError::InvalidPlan {
                world,
                per_rank_batch,
            });
        }
        if samples == 0 {
            return Err(DataError::EmptyPlan);
        }
        let mut order = if shuffle {
            permutation(samples, &mut chacha(seed, u64::from(epoch.0)))
        } else {
            (0..samples).collect()
        };
        let global = world * per_rank_batch;
        let padded = samples.div_ceil(global) * global;
        // Padding repeats the order from its start (cyclically when samples < one global batch).
        for i in samples..padded {
            order.push(order[i % samples]);
        }
        Ok(ShardPlan {
            samples,
            world,
            per_rank_batch,
            order,
        })
    }

    /// Number of real (unpadded) samples.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Number of data-parallel ranks.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Samples per rank per step.
    pub fn per_rank_batch(&self) -> usize {
        self.per_rank_batch
    }

    /// Samples per step summed over ranks (`world × per_rank_batch`).
    pub fn global_batch(&self) -> usize {
        self.world * self.per_rank_batch
    }

    /// Steps every rank runs in this epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.order.len() / self.global_batch()
    }

    /// Number of padding positions (repeats) appended to reach a whole number of steps.
    pub fn padding(&self) -> usize {
        self.order.len() - self.samples
    }

    /// The whole padded order: the single-process plan with batch `world × per_rank_batch`.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// The sample indices of global step `step` (all ranks, in rank order).
    ///
    /// # Panics
    /// If `step >= steps_per_epoch()`.
    pub fn global_step(&self, step: usize) -> &[usize] {
        let g = self.global_batch();
        &self.order[step * g..(step + 1) * g]
    }

    fn positions(&self, rank: Rank, step: usize) -> Range<usize> {
        let start = step * self.global_batch() + rank.index() * self.per_rank_batch;
        start..start + self.per_rank_batch
    }

    /// The sample indices rank `rank` uses at step `step` (`per_rank_batch` of them).
    ///
    /// # Panics
    /// If `rank >= world` or `step >= steps_per_epoch()`.
    pub fn step_indices(&self, rank: Rank, step: usize) -> &[usize] {
        assert!(
            rank.index() < self.world,
            "{rank} outside world {}",
            self.world
        );
        &self.order[self.positions(rank, step)]
    }

    /// Rank `rank`'s whole slice for the epoch: step `s` is
    /// `rank_indices(rank)[s·per_rank_batch .. (s+1)·per_rank_batch]`.
    ///
    /// # Panics
    /// If `rank >= world`.
    pub fn rank_indices(&self, rank: Rank) -> Vec<usize> {
        (0..self.steps_per_epoch())
            .flat_map(|s| self.step_indices(rank, s).iter().copied())
            .collect()
    }

    /// Parallel to [`ShardPlan::rank_indices`]: `true` where the position is padding (a repeat),
    /// so distributed evaluation can exclude repeats from its metrics.
    ///
    /// # Panics
    /// If `rank >= world`.
    pub fn rank_padding_mask(&self, rank: Rank) -> Vec<bool> {
        assert!(
            rank.index() < self.world,
            "{rank} outside world {}",
            self.world
        );
        (0..self.steps_per_epoch())
            .flat_map(|s| self.positions(rank, s).map(|p| p >= self.samples))
            .collect()
    }
}

/// Consecutive index ranges covering `0..samples` in batches of `batch` (the last one shorter),
/// with no padding: the order single-process evaluation uses so every sample counts once.
/// A `batch` of 0 is treated as 1.
pub fn sequential_batches(samples: usize, batch: usize) -> impl Iterator<Item = Range<usize>> {
    let batch = batch.max(1);
    (0..samples.div_ceil(batch)).map(move |i| i * batch..((i + 1) * batch).min(samples))
}
