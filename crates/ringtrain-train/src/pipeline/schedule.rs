//! The pipeline schedules as pure functions: the order in which one stage runs the forward and
//! backward passes of a step's micro-batches. Every stage runs backwards in increasing
//! micro-batch order and forwards in increasing order, so what a stage sends its neighbour is
//! what the neighbour expects next on that link (point-to-point messages are FIFO per peer).
//! Sends never wait for the receiver, so neither schedule can deadlock.

use ringtrain_spec::PipelineSchedule;

/// One unit of a stage's work in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Forward of micro-batch `i`: receive the activation (unless stage 0), run the stage,
    /// send the output (unless last stage).
    Forward(usize),
    /// Backward of micro-batch `i`: receive the output gradient (unless last stage, which
    /// computes the loss), back-propagate, send the input gradient (unless stage 0).
    Backward(usize),
}

/// The operations of stage `stage` (of `stages`) for `microbatches` micro-batches.
///
/// - GPipe: all forwards, then all backwards; a stage holds the activations of all `M`
///   micro-batches at once.
/// - 1F1B: `min(P − 1 − s, M)` warm-up forwards, then alternately one forward and one backward,
///   then the remaining backwards; stage `s` holds at most `P − s` ≤ `P` micro-batches of
///   activations at once.
pub fn stage_ops(
    schedule: PipelineSchedule,
    stage: usize,
    stages: usize,
    microbatches: usize,
) -> Vec<Op> {
    let m = microbatches;
    let mut ops = Vec::with_capacity(2 * m);
    match schedule {
        PipelineSchedule::Gpipe => {
            ops.extend((0..m).map(Op::Forward));
            ops.extend((0..m).map(Op::Backward));
        }
        PipelineSchedule::OneFOneB => {
            let warmup = stages.saturating_sub(stage + 1).min(m);
            ops.extend((0..warmup).map(Op::Forward));
            for i in 0..m - warmup {
                ops.push(Op::Forward(warmup + i));
                ops.push(Op::Backward(i));
            }
            ops.extend((m - warmup..m).map(Op::Backward));
        }
    }
    ops
}

/// The largest number of micro-batches whose forward ran and backward did not yet, over `ops`.
pub fn max_in_flight(ops: &[Op]) -> usize {
    let mut now = 0usize;
    let mut max = 0usize;
    for op in ops {
        match op {
            Op::Forward(_) => {
                now += 1;
                max = max.max(now);
            }
            Op::Backward(_) => now = now.saturating_sub(1),
        }
    }
    max
}

/// The idle share of an ideal pipeline with equal stage times: `(P − 1) / (M + P − 1)`.
pub fn ideal_bubble(stages: usize, microbatches: usize) -> f64 {
    let p = stages as f64;
    let m = microbatches as f64;
    if p + m <= 1.0 {
        return 0.0;
    }
    (p - 1.0) / (m + p - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_microbatch_runs_forward_before_backward_once() {
        for schedule in [PipelineSchedule::Gpipe, PipelineSchedule::OneFOneB] {
            for p in 1..5 {
                for m in 1..9 {
                    for s in 0..p {
                        let ops = stage_ops(schedule, s, p, m);
                        assert_eq!(ops.len(), 2 * m);
                        for i in 0..m {
                            let f = ops.iter().position(|o| *o == Op::Forward(i)).unwrap();
                            let b = ops.iter().position(|o| *o == Op::Backward(i)).unwrap();
                            assert!(f < b, "{schedule:?} p={p} m={m} s={s}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn one_f_one_b_bounds_activations_and_gpipe_does_not() {
        for p in 1..5 {
            for m in 1..9 {
                for s in 0..p {
                    let one = max_in_flight(&stage_ops(PipelineSchedule::OneFOneB, s, p, m));
                    assert!(one <= p.min(m).max(1), "p={p} m={m} s={s}: {one}");
                    assert_eq!(one, (p - s).min(m));
                    let g = max_in_flight(&stage_ops(PipelineSchedule::Gpipe, s, p, m));
                    assert_eq!(g, m);
                }
            }
        }
    }

    #[test]
    fn one_f_one_b_steady_state_alternates() {
        use Op::*;
        assert_eq!(
            stage_ops(PipelineSchedule::OneFOneB, 0, 2, 3),
            vec![
                Forward(0),
                Forward(1),
                Backward(0),
                Forward(2),
                Backward(1),
                Backward(2)
            ]
        );
        assert_eq!(
            stage_ops(PipelineSchedule::OneFOneB, 1, 2, 2),
            vec![Forward(0), Backward(0), Forward(1), Backward(1)]
        );
    }

    #[test]
    fn ideal_bubble_matches_the_formula() {
        assert_eq!(ideal_bubble(1, 4), 0.0);
        assert!((ideal_bubble(2, 4) - 0.2).abs() < 1e-12);
        assert!((ideal_bubble(3, 1) - 2.0 / 3.0).abs() < 1e-12);
    }
}
