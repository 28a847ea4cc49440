//! Parameter groups of the flat buffer that train differently from the rest: the layers a run
//! took from another model (`init_from`), frozen for the first epochs and then trained with a
//! scaled learning rate (discriminative fine-tuning). A group's learning rate is the schedule's
//! times its scale, exactly as if the optimizer ran on that slice alone; a frozen group is
//! skipped by the optimizer, so neither its parameters nor its optimizer state change.

use std::ops::Range;

/// One contiguous range of the flat parameters with its own training rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroup {
    /// Positions in the flat buffer.
    pub range: Range<usize>,
    /// Learning-rate multiplier once the group trains.
    pub lr_scale: f32,
    /// Epochs (0-based epochs `0..frozen_epochs`) during which the group does not train.
    pub frozen_epochs: u32,
}

/// Disjoint parameter groups in increasing order; parameters outside every group train with
/// scale 1 from the start. Empty for a run without `init_from`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamGroups {
    groups: Vec<ParamGroup>,
}

impl ParamGroups {
    /// Groups from `groups`, sorted by start; empty ranges are dropped.
    ///
    /// # Panics
    /// If two ranges overlap (the caller builds them from distinct layers).
    pub fn new(mut groups: Vec<ParamGroup>) -> ParamGroups {
        groups.retain(|g| !g.range.is_empty());
        groups.sort_by_key(|g| g.range.start);
        for pair in groups.windows(2) {
            assert!(
                pair[0].range.end <= pair[1].range.start,
                "parameter groups overlap: {:?} and {:?}",
                pair[0].range,
                pair[1].range
            );
        }
        ParamGroups { groups }
    }

    /// Whether every parameter trains normally.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The groups, in order.
    pub fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    /// The groups seen from the slice `range` of the flat buffer (a pipeline stage's), with
    /// positions relative to its start.
    pub fn restrict(&self, range: &Range<usize>) -> ParamGroups {
        let groups = self
            .groups
            .iter()
            .filter_map(|g| {
                let start = g.range.start.max(range.start);
                let end = g.range.end.min(range.end);
                (start < end).then(|| ParamGroup {
                    range: start - range.start..end - range.start,
                    ..g.clone()
                })
            })
            .collect();
        ParamGroups { groups }
    }

    /// The learning-rate multiplier of every position of a buffer of `n` parameters in
    /// `epoch`, as contiguous segments covering `0..n` in order (0 = frozen).
    pub fn segments(&self, n: usize, epoch: u32) -> Vec<(Range<usize>, f32)> {
        let mut out = Vec::with_capacity(2 * self.groups.len() + 1);
        let mut at = 0;
        for g in &self.groups {
            let (start, end) = (g.range.start.min(n), g.range.end.min(n));
            if at < start {
                out.push((at..start, 1.0));
            }
            if start < end {
                let scale = if epoch < g.frozen_epochs {
                    0.0
                } else {
                    g.lr_scale
                };
                out.push((start..end, scale));
            }
            at = at.max(end);
        }
        if at < n {
            out.push((at..n, 1.0));
        }
        out
    }

    /// Zeroes the gradients of the groups frozen in `epoch`, so that clipping measures only
    /// what trains.
    pub fn zero_frozen(&self, grads: &mut [f32], epoch: u32) {
        for g in &self.groups {
            if epoch < g.frozen_epochs {
                let end = g.range.end.min(grads.len());
                let start = g.range.start.min(end);
                grads[start..end].fill(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> ParamGroups {
        ParamGroups::new(vec![
            ParamGroup {
                range: 10..20,
                lr_scale: 0.5,
                frozen_epochs: 0,
            },
            ParamGroup {
                range: 0..4,
                lr_scale: 0.25,
                frozen_epochs: 2,
            },
        ])
    }

    #[test]
    fn segments_cover_the_buffer_in_order_with_each_groups_scale() {
        let g = groups();
        assert_eq!(
            g.segments(30, 0),
            vec![(0..4, 0.0), (4..10, 1.0), (10..20, 0.5), (20..30, 1.0)]
        );
        assert_eq!(
            g.segments(30, 2),
            vec![(0..4, 0.25), (4..10, 1.0), (10..20, 0.5), (20..30, 1.0)]
        );
        assert_eq!(ParamGroups::default().segments(7, 0), vec![(0..7, 1.0)]);
    }

    #[test]
    fn a_stage_sees_its_slice_of_the_groups() {
        let g = groups().restrict(&(2..15));
        assert_eq!(
            g.segments(13, 0),
            vec![(0..2, 0.0), (2..8, 1.0), (8..13, 0.5)]
        );
        let mut grads = vec![1.0; 13];
        g.zero_frozen(&mut grads, 1);
        assert_eq!(&grads[..3], &[0.0, 0.0, 1.0]);
        g.zero_frozen(&mut grads, 2);
        assert_eq!(grads.iter().filter(|&&x| x == 0.0).count(), 2);
    }
}
