//! Stage partitioning: which contiguous layers each pipeline stage runs, and which slice of the
//! flat parameter buffer those layers own.
//!
//! The flat buffer lays parameters out in `Module::visit` order, and a [`Model`] visits its layer
//! list in order, each layer's parameters together: layer `i` owns the contiguous range that
//! starts after the parameters of layers `0..i` (checked by a test against a per-layer visitor).
//! A stage's parameters are therefore one contiguous slice too, and the concatenation of the
//! stages' slices in stage order is the whole buffer.
//!
//! [`Model`]: ringtrain_models::Model

pub use crate::error::PlanError;
use ringtrain_models::{BoundaryShape, LayerInfo};
use std::ops::Range;

/// The stages of a pipeline over a model's layer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePlan {
    stages: Vec<Range<usize>>,
    layer_params: Vec<Range<usize>>,
    layers: Vec<LayerInfo>,
}

/// Contiguous split of `params` (per-layer counts) into `parts` non-empty ranges minimizing the
/// largest part's parameter count (ties: the earliest cut that achieves the optimum, so the plan
/// is deterministic).
fn balanced(params: &[usize], parts: usize) -> Vec<Range<usize>> {
    let n = params.len();
    let mut prefix = vec![0usize; n + 1];
    for (i, p) in params.iter().enumerate() {
        prefix[i + 1] = prefix[i] + p;
    }
    // best[k][i]: minimal max-part cost of splitting layers 0..i into k parts; cut[k][i] the
    // start of the k-th part in that split.
    let inf = usize::MAX;
    let mut best = vec![vec![inf; n + 1]; parts + 1];
    let mut cut = vec![vec![0usize; n + 1]; parts + 1];
    best[0][0] = 0;
    for k in 1..=parts {
        for i in k..=n {
            for j in (k - 1)..i {
                if best[k - 1][j] == inf {
                    continue;
                }
                let cost = best[k - 1][j].max(prefix[i] - prefix[j]);
                if cost < best[k][i] {
                    best[k][i] = cost;
                    cut[k][i] = j;
                }
            }
        }
    }
    let mut ranges = Vec::with_capacity(parts);
    let mut end = n;
    for k in (1..=parts).rev() {
        let start = cut[k][end];
        ranges.push(start..end);
        end = start;
    }
    ranges.reverse();
    ranges
}

impl StagePlan {
    /// Plans `pipeline` stages over `layers` (the model's [`LayerInfo`]s in order): the explicit
    /// `stages` when given (each a list of consecutive layer indices), else contiguous stages
    /// balanced by parameter count. Stage 0 therefore always holds the input block and the last
    /// stage the head (and so computes the loss).
    ///
    /// # Errors
    /// [`PlanError::StageCount`] for 0 or more stages than layers; [`PlanError::Explicit`] for
    /// explicit stages that are empty, out of order, gapped, too many or too few;
    /// [`PlanError::Boundary`] if consecutive stages disagree on the boundary shape.
    pub fn new(
        layers: &[LayerInfo],
        pipeline: usize,
        stages: Option<&[Vec<usize>]>,
    ) -> Result<StagePlan, PlanError> {
        let n = layers.len();
        if pipeline == 0 || pipeline > n {
            return Err(PlanError::StageCount {
                stages: pipeline,
                layers: n,
            });
        }
        let ranges = match stages {
            None => balanced(
                &layers.iter().map(|l| l.params).collect::<Vec<_>>(),
                pipeline,
            ),
            Some(explicit) => {
                let fail = |reason: String| PlanError::Explicit {
                    stages: explicit.to_vec(),
                    reason,
                };
                if explicit.len() != pipeline {
                    return Err(fail(format!(
                        "lists {} stages but parallel.pipeline = {pipeline}",
                        explicit.len()
                    )));
                }
                let mut next = 0usize;
                let mut ranges = Vec::with_capacity(pipeline);
                for (s, list) in explicit.iter().enumerate() {
                    if list.is_empty() {
                        return Err(fail(format!("stage {s} has no layer")));
                    }
                    for &l in list {
                        if l != next {
                            return Err(fail(format!(
                                "stage {s}: expected layer {next} next, found {l} (stages must \
                                 be contiguous and in order)"
                            )));
                        }
                        next += 1;
                    }
                    ranges.push(list[0]..next);
                }
                if next != n {
                    return Err(fail(format!(
                        "the stages cover layers 0..{next} but the model has {n} layers"
                    )));
                }
                ranges
            }
        };
        for (s, pair) in ranges.windows(2).enumerate() {
            let got = layers[pair[0].end - 1].output;
            let first = &layers[pair[1].start];
            if got != first.input {
                return Err(PlanError::Boundary {
                    stage: s + 1,
                    first: pair[1].start,
                    layer: first.index,
                    name: first.name.clone(),
                    expected: first.input,
                    got,
                });
            }
        }
        let mut offset = 0;
        let layer_params = layers
            .iter()
            .map(|l| {
                let r = offset..offset + l.params;
                offset += l.params;
                r
            })
            .collect();
        Ok(StagePlan {
            stages: ranges,
            layer_params,
            layers: layers.to_vec(),
        })
    }

    /// Number of stages.
    pub fn num_stages(&self) -> usize {
        self.stages.len()
    }

    /// The layer range of every stage, in order.
    pub fn stages(&self) -> &[Range<usize>] {
        &self.stages
    }

    /// Layers of stage `stage`.
    ///
    /// # Panics
    /// If `stage >= num_stages()`.
    pub fn layers(&self, stage: usize) -> Range<usize> {
        self.stages[stage].clone()
    }

    /// The model's layer descriptions.
    pub fn layer_infos(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// Flat-buffer range of layer `layer`'s parameters.
    ///
    /// # Panics
    /// If `layer` is out of range.
    pub fn layer_param_range(&self, layer: usize) -> Range<usize> {
        self.layer_params[layer].clone()
    }

    /// Flat-buffer range of stage `stage`'s parameters (its layers' ranges, which are adjacent).
    ///
    /// # Panics
    /// If `stage >= num_stages()`.
    pub fn param_range(&self, stage: usize) -> Range<usize> {
        let layers = &self.stages[stage];
        self.layer_params[layers.start].start..self.layer_params[layers.end - 1].end
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        self.layer_params.last().map_or(0, |r| r.end)
    }

    /// What stage `stage` receives: the input of its first layer.
    ///
    /// # Panics
    /// If `stage >= num_stages()`.
    pub fn stage_input(&self, stage: usize) -> BoundaryShape {
        self.layers[self.stages[stage].start].input
    }

    /// What stage `stage` gives: the output of its last layer.
    ///
    /// # Panics
    /// If `stage >= num_stages()`.
    pub fn stage_output(&self, stage: usize) -> BoundaryShape {
        self.layers[self.stages[stage].end - 1].output
    }

    /// One line per stage, e.g. `stage 0: layers 0..2 (projection, lstm0), 1234 params`.
    pub fn describe(&self) -> Vec<String> {
        (0..self.num_stages())
            .map(|s| {
                let r = self.layers(s);
                let names: Vec<&str> = self.layers[r.clone()]
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect();
                format!(
                    "stage {s}: layers {}..{} ({}), {} params",
                    r.start,
                    r.end,
                    names.join(", "),
                    self.param_range(s).len()
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(index: usize, params: usize) -> LayerInfo {
        LayerInfo {
            index,
            name: format!("l{index}"),
            params,
            input: BoundaryShape::Seq { features: 4 },
            output: BoundaryShape::Seq { features: 4 },
        }
    }

    fn layers(params: &[usize]) -> Vec<LayerInfo> {
        params
            .iter()
            .enumerate()
            .map(|(i, &p)| info(i, p))
            .collect()
    }

    #[test]
    fn balanced_minimizes_the_largest_stage() {
        let plan = StagePlan::new(&layers(&[10, 100, 100, 5]), 2, None).unwrap();
        assert_eq!(plan.stages(), &[0..2, 2..4]);
        let plan = StagePlan::new(&layers(&[10, 100, 100, 100, 5]), 3, None).unwrap();
        assert_eq!(plan.stages(), &[0..2, 2..3, 3..5]);
        let plan = StagePlan::new(&layers(&[1, 1, 1]), 3, None).unwrap();
        assert_eq!(plan.stages(), &[0..1, 1..2, 2..3]);
    }

    #[test]
    fn param_ranges_are_adjacent_and_cover_the_buffer() {
        let plan = StagePlan::new(&layers(&[3, 7, 11, 2]), 3, None).unwrap();
        let mut next = 0;
        for s in 0..plan.num_stages() {
            let r = plan.param_range(s);
            assert_eq!(r.start, next);
            next = r.end;
        }
        assert_eq!(next, 23);
        assert_eq!(plan.num_params(), 23);
        assert_eq!(plan.layer_param_range(2), 10..21);
    }

    #[test]
    fn explicit_stages_are_checked() {
        let l = layers(&[1, 2, 3, 4]);
        let ok = StagePlan::new(&l, 2, Some(&[vec![0], vec![1, 2, 3]])).unwrap();
        assert_eq!(ok.stages(), &[0..1, 1..4]);
        let gap = StagePlan::new(&l, 2, Some(&[vec![0], vec![2, 3]])).unwrap_err();
        assert!(
            gap.to_string().contains("expected layer 1 next, found 2"),
            "{gap}"
        );
        let short = StagePlan::new(&l, 2, Some(&[vec![0], vec![1, 2]])).unwrap_err();
        assert!(short.to_string().contains("model has 4 layers"), "{short}");
        let count = StagePlan::new(&l, 3, Some(&[vec![0], vec![1, 2, 3]])).unwrap_err();
        assert!(count.to_string().contains("lists 2 stages"), "{count}");
        let empty = StagePlan::new(&l, 2, Some(&[vec![], vec![0, 1, 2, 3]])).unwrap_err();
        assert!(
            empty.to_string().contains("stage 0 has no layer"),
            "{empty}"
        );
        let many = StagePlan::new(&l, 5, None).unwrap_err();
        assert!(matches!(
            many,
            PlanError::StageCount {
                stages: 5,
                layers: 4
            }
        ));
    }

    #[test]
    fn boundary_mismatch_names_the_layer() {
        let mut l = layers(&[1, 2, 3]);
        l[2].input = BoundaryShape::Seq { features: 9 };
        let e = StagePlan::new(&l, 3, None).unwrap_err();
        assert!(
            matches!(
                e,
                PlanError::Boundary {
                    stage: 2,
                    layer: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("l2"), "{e}");
    }
}
