//! Shard-plan properties: padding by repetition, equal steps on every rank, the data-parallel
//! concatenation contract, determinism by (seed, epoch), and the unshuffled evaluation order.

use ringtrain_core::{Epoch, Rank};
use ringtrain_data::{ShardPlan, sequential_batches};

fn plan(n: usize, seed: u64, epoch: u32, world: usize, b: usize) -> ShardPlan {
    ShardPlan::new(n, seed, Epoch(epoch), world, b, true).unwrap()
}

#[test]
fn padding_repeats_from_the_start_to_a_multiple_of_the_global_batch() {
    let p = plan(10, 1, 0, 3, 2);
    assert_eq!(
        (p.order().len(), p.padding(), p.steps_per_epoch()),
        (12, 2, 2)
    );
    assert_eq!(p.order()[10..], p.order()[..2]);
    let mut first: Vec<usize> = p.order()[..10].to_vec();
    first.sort_unstable();
    assert_eq!(
        first,
        (0..10).collect::<Vec<_>>(),
        "each sample once before padding"
    );
    // Fewer samples than one global batch: the order repeats cyclically.
    let q = plan(3, 1, 0, 2, 4);
    assert_eq!(q.order().len(), 8);
    for i in 3..8 {
        assert_eq!(q.order()[i], q.order()[i % 3]);
    }
    // An exact multiple needs no padding.
    assert_eq!(plan(12, 1, 0, 3, 2).padding(), 0);
}

#[test]
fn every_rank_runs_the_same_number_of_steps() {
    for n in [1, 7, 64, 101] {
        for world in 1..=4 {
            let p = plan(n, 3, 1, world, 5);
            for r in 0..world {
                let idx = p.rank_indices(Rank(r as u32));
                assert_eq!(
                    idx.len(),
                    p.steps_per_epoch() * 5,
                    "n {n} world {world} rank {r}"
                );
                assert!(idx.iter().all(|&i| i < n));
                assert_eq!(p.rank_padding_mask(Rank(r as u32)).len(), idx.len());
            }
            let pads: usize = (0..world)
                .map(|r| {
                    p.rank_padding_mask(Rank(r as u32))
                        .iter()
                        .filter(|&&m| m)
                        .count()
                })
                .sum();
            assert_eq!(pads, p.padding());
        }
    }
}

#[test]
fn concatenated_rank_steps_equal_the_single_process_plan() {
    for n in [5, 37, 100, 257] {
        for world in 1..=4 {
            for b in [1, 3, 8] {
                let multi = plan(n, 42, 2, world, b);
                let single = plan(n, 42, 2, 1, world * b);
                assert_eq!(multi.steps_per_epoch(), single.steps_per_epoch());
                let slices: Vec<Vec<usize>> = (0..world)
                    .map(|r| multi.rank_indices(Rank(r as u32)))
                    .collect();
                for s in 0..multi.steps_per_epoch() {
                    let concat: Vec<usize> = slices
                        .iter()
                        .flat_map(|sl| sl[s * b..(s + 1) * b].iter().copied())
                        .collect();
                    assert_eq!(concat, single.order()[s * world * b..(s + 1) * world * b]);
                    assert_eq!(concat, multi.global_step(s));
                    assert_eq!(
                        multi.step_indices(Rank(0), s),
                        &slices[0][s * b..(s + 1) * b]
                    );
                }
            }
        }
    }
}

#[test]
fn order_is_deterministic_by_seed_and_epoch() {
    assert_eq!(plan(50, 7, 3, 2, 4), plan(50, 7, 3, 2, 4));
    assert_ne!(plan(50, 7, 3, 2, 4).order(), plan(50, 7, 4, 2, 4).order());
    assert_ne!(plan(50, 7, 3, 2, 4).order(), plan(50, 8, 3, 2, 4).order());
    // Pinned: a change here silently changes every resumed job's sample order.
    assert_eq!(plan(8, 42, 0, 1, 8).order(), [4, 7, 0, 1, 3, 2, 6, 5]);
}

#[test]
fn unshuffled_plan_is_the_identity_and_sequential_batches_cover_once() {
    let p = ShardPlan::new(7, 9, Epoch(5), 2, 2, false).unwrap();
    assert_eq!(p.order(), [0, 1, 2, 3, 4, 5, 6, 0]);
    assert_eq!(p.rank_indices(Rank(1)), [2, 3, 6, 0]);
    assert_eq!(p.rank_padding_mask(Rank(1)), [false, false, false, true]);
    let b: Vec<_> = sequential_batches(7, 3).collect();
    assert_eq!(b, [0..3, 3..6, 6..7]);
    assert_eq!(sequential_batches(0, 3).count(), 0);
}
