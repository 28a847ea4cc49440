//! A fifth task kind written against the `Task` trait alone: sequence labelling, one class per
//! step (here: the class of each token is its id modulo 3, a rule the model must learn from the
//! embedding). It reuses the per-step logits head of the language model and the classification
//! report, trains with the ordinary `Learner` and is scored by the ordinary `evaluate`, which
//! shows what a new kind needs from this crate: this one file (plus, to be reachable from a
//! spec, the files ARCHITECTURE.md's "How to add a task kind" lists).

use burn::prelude::*;
use burn::tensor::TensorData;
use ringtrain_data::SplitName;
use ringtrain_models::{Batch, ForwardCtx, HeadKind, InputKind, Inputs, Model, flat, loss};
use ringtrain_spec::{SpecFormat, TaskKind, parse_str};
use ringtrain_train::metrics::ClassificationAccumulator;
use ringtrain_train::optim::Optimizer;
use ringtrain_train::report::shard_range;
use ringtrain_train::task::{EvalSums, Task};
use ringtrain_train::tensors::{argmax, plain_loss, to_vec};
use ringtrain_train::{
    EvalReport, Learner, NoHook, Targets, TaskData, TaskMetrics, TrainError, evaluate,
};

const VOCAB: usize = 12;
const CLASSES: usize = 3;
const STEPS: usize = 8;

/// Token sequences and their per-step classes, split 80/10/10.
#[derive(Debug)]
struct SequenceLabelling {
    /// `(tokens, classes)` per sequence.
    train: Vec<(Vec<u32>, Vec<u32>)>,
    val: Vec<(Vec<u32>, Vec<u32>)>,
    test: Vec<(Vec<u32>, Vec<u32>)>,
}

impl SequenceLabelling {
    fn new(n: usize) -> SequenceLabelling {
        // A fixed LCG: deterministic data without a random-number dependency.
        let mut x: u64 = 12345;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1 + ((x >> 33) % (VOCAB as u64 - 1)) as u32
        };
        let all: Vec<(Vec<u32>, Vec<u32>)> = (0..n)
            .map(|_| {
                let tokens: Vec<u32> = (0..STEPS).map(|_| next()).collect();
                let classes = tokens.iter().map(|t| t % CLASSES as u32).collect();
                (tokens, classes)
            })
            .collect();
        let (a, b) = (n * 8 / 10, n * 9 / 10);
        SequenceLabelling {
            train: all[..a].to_vec(),
            val: all[a..b].to_vec(),
            test: all[b..].to_vec(),
        }
    }

    fn split(&self, split: SplitName) -> &[(Vec<u32>, Vec<u32>)] {
        match split {
            SplitName::Train => &self.train,
            SplitName::Val => &self.val,
            SplitName::Test => &self.test,
        }
    }
}

impl Task for SequenceLabelling {
    fn kind(&self) -> TaskKind {
        // Not a spec kind: it reports and may be monitored like a classifier.
        TaskKind::Classify
    }

    fn len(&self, split: SplitName) -> usize {
        self.split(split).len()
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Tokens { vocab: VOCAB }
    }

    fn head_kind(&self) -> HeadKind {
        // Logits at every step, `[B·T, classes]`.
        HeadKind::NextToken { vocab: CLASSES }
    }

    fn batch(&self, split: SplitName, indices: &[usize], device: &Device) -> (Batch, Targets) {
        let rows = self.split(split);
        let ids: Vec<i64> = indices
            .iter()
            .flat_map(|&i| rows[i].0.iter().map(|&t| i64::from(t)))
            .collect();
        let classes: Vec<i64> = indices
            .iter()
            .flat_map(|&i| rows[i].1.iter().map(|&c| i64::from(c)))
            .collect();
        let b = indices.len();
        let batch = Batch {
            inputs: Inputs::Tokens(Tensor::from_data(TensorData::new(ids, [b, STEPS]), device)),
            mask: Tensor::ones([b, STEPS], device),
        };
        let n = classes.len();
        let y = Tensor::from_data(TensorData::new(classes, [n]), device);
        (batch, Targets::Classes(y))
    }

    fn loss(&self, output: Tensor<2>, targets: Targets) -> Tensor<1> {
        match targets {
            Targets::Classes(y) => loss::cross_entropy(output, y, None),
            other @ (Targets::Regression(_) | Targets::Tokens { .. }) => plain_loss(output, other),
        }
    }

    /// `[Σ batch loss × steps, steps, confusion matrix…]`.
    fn eval_shard(
        &self,
        model: &Model,
        split: SplitName,
        rank: usize,
        world: usize,
        batch_size: usize,
        device: &Device,
    ) -> Result<EvalSums, TrainError> {
        let range = shard_range(self.len(split), rank, world);
        let idx: Vec<usize> = range.collect();
        let mut acc = ClassificationAccumulator::new(CLASSES);
        let (mut loss_sum, mut steps) = (0.0f64, 0.0f64);
        for chunk in idx.chunks(batch_size.max(1)) {
            let (batch, targets) = self.batch(split, chunk, device);
            let Targets::Classes(y) = &targets else {
                unreachable!("this task's batches hold classes")
            };
            let truth: Vec<usize> = y
                .to_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c as usize)
                .collect();
            let out = model.forward(batch, &ForwardCtx::eval());
            let predicted: Vec<usize> = to_vec(out.clone())
                .chunks_exact(CLASSES)
                .map(argmax)
                .collect();
            let n = truth.len() as f64;
            loss_sum += f64::from(self.loss(out, targets).into_scalar::<f32>()) * n;
            steps += n;
            acc.add_batch(&predicted, &truth)?;
        }
        let mut flat = vec![loss_sum, steps];
        flat.extend(acc.to_flat());
        Ok(EvalSums {
            flat,
            forecasts: None,
        })
    }

    fn report(&self, split: SplitName, sums: EvalSums) -> Result<EvalReport, TrainError> {
        let acc = ClassificationAccumulator::from_flat(CLASSES, &sums.flat[2..])?;
        let mut train_counts = vec![0u64; CLASSES];
        for (_, classes) in &self.train {
            for &c in classes {
                train_counts[c as usize] += 1;
            }
        }
        let names: Vec<String> = (0..CLASSES).map(|c| format!("c{c}")).collect();
        Ok(EvalReport {
            split,
            samples: sums.flat[1] as usize,
            loss: sums.flat[0] / sums.flat[1].max(1.0),
            metrics: TaskMetrics::Classification(acc.report(&names, &train_counts)?),
            forecasts: None,
        })
    }
}

#[test]
fn a_sequence_labelling_kind_trains_and_evaluates_through_the_task_trait() {
    // The spec supplies the model and optimizer settings; its task and data are not used.
    let spec = parse_str(
        r#"
seed = 7
[model]
cell = "gru"
hidden = 24
embedding_dim = 8
[task]
kind = "language_model"
[data]
path = "unused.txt"
[train]
epochs = 1
batch_size = 16
optimizer = { kind = "adam", lr = 0.02 }
"#,
        SpecFormat::Toml,
        "<test>",
        "label",
    )
    .unwrap();
    let task = TaskData::from_task(Box::new(SequenceLabelling::new(400)));
    let device = Device::flex();
    let train_device = device.clone().autodiff();
    let build = |device: &Device| {
        Model::new(
            &spec.model,
            task.input_kind(),
            task.head_kind(),
            spec.seed,
            device,
        )
        .unwrap()
    };
    let model = build(&train_device);
    let n_params = flat::param_count(&model);
    let optimizer = Optimizer::new(&spec.train.optimizer, n_params);
    let mut learner = Learner::new(model, optimizer, spec.train.clip).unwrap();

    let before = flat::load_params(build(&device), learner.params()).unwrap();
    let before = evaluate(&before, &task, SplitName::Test, 16, &device).unwrap();
    let n = task.len(SplitName::Train);
    let mut step = 0u64;
    for epoch in 0..6u32 {
        for start in (0..n).step_by(16) {
            let idx: Vec<usize> = (start..(start + 16).min(n)).collect();
            let (batch, targets) = task.batch(SplitName::Train, &idx, &train_device);
            step += 1;
            let ctx = ForwardCtx {
                train: true,
                dropout_seed: step,
            };
            learner
                .step(
                    &task,
                    batch,
                    targets,
                    &ctx,
                    0.02,
                    &mut NoHook,
                    (step, epoch),
                )
                .unwrap();
        }
    }
    let trained = flat::load_params(build(&device), learner.params()).unwrap();
    let after = evaluate(&trained, &task, SplitName::Test, 16, &device).unwrap();
    let (TaskMetrics::Classification(b), TaskMetrics::Classification(a)) =
        (&before.metrics, &after.metrics)
    else {
        panic!("classification reports expected");
    };
    assert_eq!(after.samples, task.len(SplitName::Test) * STEPS);
    assert!(
        after.loss < before.loss,
        "{} !< {}",
        after.loss,
        before.loss
    );
    assert!(
        a.accuracy > 0.9 && a.accuracy > a.majority_baseline.accuracy + 0.3,
        "accuracy {} (before {}, majority {})",
        a.accuracy,
        b.accuracy,
        a.majority_baseline.accuracy
    );
    // The scalar metrics by name come from the shared table, like any kind's.
    assert!(after.scalars().iter().any(|(name, _)| *name == "accuracy"));
}
