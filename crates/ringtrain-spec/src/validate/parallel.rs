//! `[parallel]`, and the pipeline checks that need the model and the task.

use super::{Checker, layer_count};
use crate::error::FieldError;
use crate::raw::*;
use crate::types::*;

const PIPE_SCHEDULES: &[(&str, PipelineSchedule)] = &[
    ("gpipe", PipelineSchedule::Gpipe),
    ("1f1b", PipelineSchedule::OneFOneB),
];

pub(super) fn parallel(c: &mut Checker, p: &RawParallel, train: &TrainSpec) -> ParallelSpec {
    let pipeline = c.int("parallel.pipeline", p.pipeline, 1, 1, 4096);
    let elastic = p
        .elastic
        .as_ref()
        .map(|e| elastic(c, e, p, pipeline, train.batch_size));
    // An elastic job asks for its largest world by default.
    let data = c.int(
        "parallel.data",
        p.data,
        elastic.map_or(1, |e| e.max as i64),
        1,
        4096,
    );
    if let Some(e) = elastic
        && !(e.min..=e.max).contains(&data)
    {
        c.err(
            "parallel.data",
            data,
            format!(
                "must lie within parallel.elastic.min..=max = {}..={} (or be omitted)",
                e.min, e.max
            ),
        );
    }
    let microbatches = c.int("parallel.microbatches", p.microbatches, 1, 1, 1_000_000);
    let schedule = c.choice(
        "parallel.schedule",
        p.schedule.as_deref(),
        PipelineSchedule::Gpipe,
        PIPE_SCHEDULES,
    );
    let fusion_mb = c.float(
        "parallel.fusion_mb",
        p.fusion_mb,
        64.0,
        |x| (0.0..=4096.0).contains(&x),
        "in [0, 4096] MiB (0 disables fusion)",
    );
    if !train.batch_size.is_multiple_of(data) {
        c.err(
            "train.batch_size",
            train.batch_size,
            format!("must be divisible by parallel.data = {data} (it is the global batch)"),
        );
    } else if !(train.batch_size / data).is_multiple_of(microbatches) {
        c.err(
            "parallel.microbatches",
            microbatches,
            format!(
                "must divide the per-replica batch train.batch_size / parallel.data = {}",
                train.batch_size / data
            ),
        );
    }
    let stages = p.stages.as_ref().map(|stages| {
        if stages.len() != pipeline {
            c.err(
                "parallel.stages",
                format!("{stages:?}"),
                format!("must list exactly parallel.pipeline = {pipeline} stages"),
            );
        }
        let mut next = 0i64;
        for (s, layers) in stages.iter().enumerate() {
            if layers.is_empty() {
                c.err(
                    &format!("parallel.stages[{s}]"),
                    "[]",
                    "a stage needs at least one layer",
                );
            }
            for &l in layers {
                if l != next {
                    c.err(
                        &format!("parallel.stages[{s}]"),
                        format!("{layers:?}"),
                        format!("stages must be contiguous and in order: expected layer {next} next, found {l}"),
                    );
                    break;
                }
                next += 1;
            }
        }
        stages
            .iter()
            .map(|s| s.iter().map(|&l| l.max(0) as usize).collect())
            .collect()
    });
    ParallelSpec {
        data,
        pipeline,
        microbatches,
        schedule,
        stages,
        fusion_bytes: (fusion_mb * 1024.0 * 1024.0) as u64,
        elastic,
    }
}

/// `[parallel.elastic]`: bounds that are whole numbers of workers dividing the global batch,
/// data parallelism only.
fn elastic(
    c: &mut Checker,
    e: &RawElastic,
    p: &RawParallel,
    pipeline: usize,
    batch: usize,
) -> ElasticSpec {
    let min = c.int("parallel.elastic.min", e.min, 1, 1, 4096);
    let max = c.int(
        "parallel.elastic.max",
        e.max,
        p.data.unwrap_or(min as i64).max(min as i64),
        1,
        4096,
    );
    if max < min {
        c.err(
            "parallel.elastic.max",
            max,
            format!("must be at least parallel.elastic.min = {min}"),
        );
    }
    for (path, w) in [("parallel.elastic.min", min), ("parallel.elastic.max", max)] {
        if !batch.is_multiple_of(w) {
            c.err(
                path,
                w,
                format!(
                    "must divide train.batch_size = {batch} (the global batch is split evenly \
                     over the workers)"
                ),
            );
        }
    }
    if pipeline != 1 {
        c.err(
            "parallel.elastic",
            format!("{{ min = {min}, max = {max} }}"),
            format!(
                "is for data parallelism only: parallel.pipeline = {pipeline} must be 1 (a \
                 stage cannot be re-formed from the other stages' state)"
            ),
        );
    }
    let commit_every = c.int(
        "parallel.elastic.commit_every",
        e.commit_every,
        10,
        1,
        i64::MAX,
    ) as u64;
    ElasticSpec {
        min,
        max: max.max(min),
        commit_every,
    }
}

/// Checks that need both the model and the task: the pipeline depth and explicit stages against
/// the exact layer count.
pub(super) fn check_pipeline(spec: &JobSpec) -> Vec<FieldError> {
    let n = layer_count(&spec.model, &spec.task);
    let mut errors = Vec::new();
    if let Some(why) = spec.task.kind().pipeline_refusal()
        && spec.parallel.pipeline != 1
    {
        errors.push(FieldError {
            path: "parallel.pipeline".into(),
            value: spec.parallel.pipeline.to_string(),
            message: why.into(),
        });
        return errors;
    }
    if spec.parallel.pipeline > n {
        errors.push(FieldError {
            path: "parallel.pipeline".into(),
            value: spec.parallel.pipeline.to_string(),
            message: format!("must be at most the number of model layers ({n})"),
        });
    }
    if let Some(stages) = &spec.parallel.stages {
        let covered: usize = stages.iter().map(Vec::len).sum();
        if covered != n {
            errors.push(FieldError {
                path: "parallel.stages".into(),
                value: format!("{stages:?}"),
                message: format!(
                    "must cover every layer 0..{n} exactly once (the model has {n} layers)"
                ),
            });
        }
    }
    errors
}
