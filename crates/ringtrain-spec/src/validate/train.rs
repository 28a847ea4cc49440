//! `[train]`: optimizer, schedule, clipping, early stopping.

use super::{Checker, Kind};
use crate::raw::*;
use crate::types::*;

const METRICS: &[(&str, MonitorMetric)] = &[
    ("val_loss", MonitorMetric::ValLoss),
    ("val_accuracy", MonitorMetric::ValAccuracy),
    ("val_f1", MonitorMetric::ValF1),
    ("val_rmse", MonitorMetric::ValRmse),
    ("val_mae", MonitorMetric::ValMae),
    ("val_bleu", MonitorMetric::ValBleu),
];

fn optimizer(c: &mut Checker, o: &RawOptimizer) -> OptimizerSpec {
    const KINDS: &[(&str, u8)] = &[("sgd", 0), ("rmsprop", 1), ("adam", 2), ("adamw", 3)];
    let k = c.choice("train.optimizer.kind", o.kind.as_deref(), 2, KINDS);
    let pos = |x: f64| x > 0.0;
    let nonneg = |x: f64| x >= 0.0;
    let unit = |x: f64| (0.0..1.0).contains(&x);
    let default_lr = [0.01, 0.01, 0.001, 0.001][k as usize];
    let lr = c.float(
        "train.optimizer.lr",
        o.lr,
        default_lr,
        pos,
        "a finite number > 0",
    );
    let weight_decay = c.float(
        "train.optimizer.weight_decay",
        o.weight_decay,
        if k == 3 { 0.01 } else { 0.0 },
        nonneg,
        "a finite number >= 0",
    );
    let kind_name = KINDS[k as usize].0;
    let not_for = |c: &mut Checker, path: &str, v: &Option<f64>| {
        c.forbid(
            path,
            v,
            &format!("not a parameter of the {kind_name} optimizer"),
        );
    };
    match k {
        0 => {
            not_for(c, "train.optimizer.alpha", &o.alpha);
            not_for(c, "train.optimizer.eps", &o.eps);
            not_for(c, "train.optimizer.beta1", &o.beta1);
            not_for(c, "train.optimizer.beta2", &o.beta2);
            let momentum = c.float(
                "train.optimizer.momentum",
                o.momentum,
                0.0,
                unit,
                "in [0, 1)",
            );
            let nesterov = o.nesterov.unwrap_or(false);
            if nesterov && momentum == 0.0 {
                c.err(
                    "train.optimizer.nesterov",
                    true,
                    "requires train.optimizer.momentum > 0",
                );
            }
            OptimizerSpec::Sgd {
                lr,
                momentum,
                nesterov,
                weight_decay,
            }
        }
        1 => {
            not_for(c, "train.optimizer.beta1", &o.beta1);
            not_for(c, "train.optimizer.beta2", &o.beta2);
            c.forbid(
                "train.optimizer.nesterov",
                &o.nesterov,
                "only the sgd optimizer has Nesterov momentum",
            );
            OptimizerSpec::Rmsprop {
                lr,
                alpha: c.float(
                    "train.optimizer.alpha",
                    o.alpha,
                    0.99,
                    |x| x > 0.0 && x < 1.0,
                    "in (0, 1)",
                ),
                eps: c.float(
                    "train.optimizer.eps",
                    o.eps,
                    1e-8,
                    pos,
                    "a finite number > 0",
                ),
                momentum: c.float(
                    "train.optimizer.momentum",
                    o.momentum,
                    0.0,
                    unit,
                    "in [0, 1)",
                ),
                weight_decay,
            }
        }
        _ => {
            not_for(c, "train.optimizer.alpha", &o.alpha);
            not_for(c, "train.optimizer.momentum", &o.momentum);
            c.forbid(
                "train.optimizer.nesterov",
                &o.nesterov,
                "only the sgd optimizer has Nesterov momentum",
            );
            let beta1 = c.float("train.optimizer.beta1", o.beta1, 0.9, unit, "in [0, 1)");
            let beta2 = c.float("train.optimizer.beta2", o.beta2, 0.999, unit, "in [0, 1)");
            let eps = c.float(
                "train.optimizer.eps",
                o.eps,
                1e-8,
                pos,
                "a finite number > 0",
            );
            if k == 2 {
                OptimizerSpec::Adam {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                }
            } else {
                OptimizerSpec::Adamw {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                }
            }
        }
    }
}

fn schedule(c: &mut Checker, s: &RawSchedule, lr: f64) -> ScheduleSpec {
    const KINDS: &[(&str, u8)] = &[("constant", 0), ("step", 1), ("cosine", 2)];
    let k = c.choice("train.schedule.kind", s.kind.as_deref(), 0, KINDS);
    let warmup_steps = c.int(
        "train.schedule.warmup_steps",
        s.warmup_steps,
        0,
        0,
        i64::MAX,
    ) as u64;
    let kind = match k {
        1 => {
            c.forbid(
                "train.schedule.min_lr",
                &s.min_lr,
                "only for kind = \"cosine\"",
            );
            if s.step_size.is_none() {
                c.err(
                    "train.schedule.step_size",
                    "(missing)",
                    "required for kind = \"step\": steps between decays",
                );
            }
            ScheduleKind::Step {
                step_size: c.int("train.schedule.step_size", s.step_size, 1, 1, i64::MAX) as u64,
                gamma: c.float(
                    "train.schedule.gamma",
                    s.gamma,
                    0.1,
                    |x| x > 0.0 && x <= 1.0,
                    "in (0, 1]",
                ),
            }
        }
        2 => {
            let why = "only for kind = \"step\"";
            c.forbid("train.schedule.step_size", &s.step_size, why);
            c.forbid("train.schedule.gamma", &s.gamma, why);
            ScheduleKind::Cosine {
                min_lr: c.float(
                    "train.schedule.min_lr",
                    s.min_lr,
                    0.0,
                    |x| x >= 0.0 && x <= lr,
                    &format!("in [0, train.optimizer.lr = {lr}]"),
                ),
            }
        }
        _ => {
            let why = "not a parameter of the constant schedule";
            c.forbid("train.schedule.step_size", &s.step_size, why);
            c.forbid("train.schedule.gamma", &s.gamma, why);
            c.forbid("train.schedule.min_lr", &s.min_lr, why);
            ScheduleKind::Constant
        }
    };
    ScheduleSpec { kind, warmup_steps }
}

pub(super) fn train(
    c: &mut Checker,
    t: &RawTrain,
    kind: Option<Kind>,
    data: &Option<DataSpec>,
) -> TrainSpec {
    let optimizer = optimizer(c, &t.optimizer);
    let schedule = schedule(c, &t.schedule, optimizer.lr());
    let pos = |x: f64| x > 0.0;
    let clip = ClipSpec {
        norm: t
            .clip
            .norm
            .map(|v| c.float("train.clip.norm", Some(v), 1.0, pos, "a finite number > 0")),
        value: t
            .clip
            .value
            .map(|v| c.float("train.clip.value", Some(v), 1.0, pos, "a finite number > 0")),
    };
    let early_stopping = t.early_stopping.as_ref().map(|e| {
        let metric = c.choice(
            "train.early_stopping.metric",
            e.metric.as_deref(),
            MonitorMetric::ValLoss,
            METRICS,
        );
        if let Some(kind) = kind
            && !kind.monitored_metrics().contains(&metric)
        {
            let allowed: Vec<&str> = METRICS
                .iter()
                .filter(|(_, m)| kind.monitored_metrics().contains(m))
                .map(|(name, _)| *name)
                .collect();
            c.err(
                "train.early_stopping.metric",
                format!("{:?}", e.metric.as_deref().unwrap_or("")),
                format!(
                    "is not reported by a {} task (it reports {})",
                    kind.name(),
                    allowed.join(", ")
                ),
            );
        }
        if data.as_ref().is_some_and(|d| d.split.val == 0.0) {
            c.err(
                "train.early_stopping",
                "(set)",
                "needs a validation split: data.split.val must be > 0",
            );
        }
        EarlyStopping {
            metric,
            patience: c.int("train.early_stopping.patience", e.patience, 5, 1, 1_000_000) as u32,
            min_delta: c.float(
                "train.early_stopping.min_delta",
                e.min_delta,
                0.0,
                |x| x >= 0.0,
                "a finite number >= 0",
            ),
        }
    });
    TrainSpec {
        epochs: c.int("train.epochs", t.epochs, 10, 1, 1_000_000) as u32,
        batch_size: c.int("train.batch_size", t.batch_size, 32, 1, 1_000_000),
        max_steps: t
            .max_steps
            .map(|s| c.int("train.max_steps", Some(s), 1, 1, i64::MAX) as u64),
        optimizer,
        schedule,
        clip,
        early_stopping,
        threads: c.int("train.threads", t.threads, 1, 1, 1024),
    }
}
