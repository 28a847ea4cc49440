//! The data-parallel numerics contract (DESIGN.md): N replicas, each taking `batch / N` samples
//! of every step and averaging gradients with the collective library's all-reduce, end with
//! parameters within 1e-5 of one process training the same spec (global batch `batch`, the same
//! sample order), and the replicas are bit-identical to each other. Also: replicas agree on every
//! metric, a stop vote stops all of them after the same step, and a replica whose parameters
//! differ is caught by the checksum with its rank named.

// The measured difference is printed so a run shows the margin to the 1e-5 bound.
#![allow(clippy::print_stderr)]

mod common;

use burn::prelude::*;
use common::CommGroup;
use ringtrain_collective::{CommConfig, Communicator, InProcTransport};
use ringtrain_spec::{JobSpec, SpecFormat, parse_str};
use ringtrain_train::{
    Checkpoint, DistOptions, Silent, StopReason, TrainError, TrainOptions, TrainReport, train,
    train_distributed,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A small LSTM forecaster; `batch` is the global batch, `world` replicas split it.
fn spec(dir: &Path, batch: usize, world: usize, epochs: u32, max_steps: Option<u64>) -> JobSpec {
    let max_steps = max_steps.map_or(String::new(), |m| format!("max_steps = {m}\n"));
    let toml = format!(
        r#"
name = "dp"
seed = 11
[model]
cell = "lstm"
hidden = 12
layers = 2
[task]
kind = "forecast"
horizon = 1
season = 12
[data]
path = "data/seasonal.csv"
features = ["demand", "temperature"]
targets = ["demand"]
window = 12
split = [0.7, 0.15, 0.15]
[train]
epochs = {epochs}
batch_size = {batch}
{max_steps}optimizer = {{ kind = "adam", lr = 0.01 }}
[parallel]
data = {world}
[checkpoint]
dir = {:?}
"#,
        dir.display().to_string()
    );
    parse_str(&toml, SpecFormat::Toml, "<test>", "t").unwrap()
}

/// A small GRU sentiment classifier with a class-weighted loss; `batch` is the global batch,
/// `world` replicas split it. Each replica's share of the batch has its own weight sum, so the
/// replicas' losses must be combined by weight, not averaged.
fn weighted_classify_spec(dir: &Path, batch: usize, world: usize) -> JobSpec {
    let toml = format!(
        r#"
name = "dp-weighted"
seed = 5
[model]
cell = "gru"
hidden = 10
layers = 2
embedding_dim = 6
[task]
kind = "classify"
pooling = "mean"
class_weights = {{ pos = 2.5 }}
[data]
path = "data/sentiment-synth.csv"
tokenizer = "word"
split = [0.1, 0.1, 0.8]
[train]
epochs = 2
batch_size = {batch}
optimizer = {{ kind = "adam", lr = 0.01 }}
clip = {{ norm = 0.5 }}
[parallel]
data = {world}
[checkpoint]
dir = {:?}
"#,
        dir.display().to_string()
    );
    parse_str(&toml, SpecFormat::Toml, "<test>", "t").unwrap()
}

fn options(stop: Option<Arc<AtomicBool>>) -> TrainOptions {
    TrainOptions {
        base_dir: examples(),
        resume: None,
        halt_after_steps: None,
        stop,
        device: Device::flex(),
        run_id: None,
        commit: None,
        attempt: 1,
    }
}

/// Runs `world` replicas of `spec` on threads; `setup(rank)` gives each its options and
/// perturbation.
fn replicas(
    spec: &JobSpec,
    world: u32,
    checksum_every: u64,
    setup: impl Fn(usize) -> (TrainOptions, f32),
) -> Vec<Result<TrainReport, TrainError>> {
    let config = CommConfig {
        deadline: Duration::from_secs(120),
        ..CommConfig::default()
    };
    let handles: Vec<_> = InProcTransport::world(world)
        .into_iter()
        .enumerate()
        .map(|(rank, transport)| {
            let spec = spec.clone();
            let config = config.clone();
            let (opts, perturb) = setup(rank);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let comm = Communicator::new(Arc::new(transport), config);
                let mut group = CommGroup {
                    comm,
                    rt: Arc::new(rt),
                    perturb,
                };
                let dist = DistOptions { checksum_every };
                let report = train_distributed(&spec, &opts, &mut Silent, &mut group, &dist);
                // A healthy communicator is shut down cleanly also after a training error that
                // every rank saw (a checksum mismatch), so no rank sees another as lost.
                if !matches!(report, Err(TrainError::Collective { .. })) {
                    group.rt.block_on(group.comm.shutdown()).unwrap();
                }
                report
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check_contract(world: usize, per_rank: usize) {
    let single_dir = tempfile::tempdir().unwrap();
    let dist_dir = tempfile::tempdir().unwrap();
    let batch = world * per_rank;
    let single = train(
        &spec(single_dir.path(), batch, world, 2, None),
        &options(None),
        &mut Silent,
    )
    .unwrap();
    let dist_spec = spec(dist_dir.path(), batch, world, 2, None);
    let reports: Vec<TrainReport> = replicas(&dist_spec, world as u32, 3, |_| (options(None), 0.0))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(single.steps > 10, "{} steps", single.steps);
    for (rank, r) in reports.iter().enumerate() {
        assert_eq!(r.steps, single.steps, "rank {rank}");
        assert_eq!(r.stop, StopReason::Completed);
        // Replicas are bit-identical, and so are their metrics (the sums are all-reduced).
        assert_eq!(
            r.params.iter().map(|p| p.to_bits()).collect::<Vec<_>>(),
            reports[0]
                .params
                .iter()
                .map(|p| p.to_bits())
                .collect::<Vec<_>>(),
            "rank {rank} differs from rank 0"
        );
        assert_eq!(r.test, reports[0].test, "rank {rank} test metrics");
        assert_eq!(r.history, reports[0].history, "rank {rank} history");
    }
    let diff = max_abs_diff(&reports[0].params, &single.params);
    eprintln!(
        "{world} replicas x batch {per_rank}: {} steps, max abs diff to one process {diff:e}",
        single.steps
    );
    assert!(
        diff <= 1e-5,
        "{world} replicas x batch {per_rank} vs one process x batch {batch}: max abs diff {diff}"
    );
    // The whole split was evaluated once: same sample count and (nearly) the same loss.
    let (d, s) = (
        reports[0].test.as_ref().unwrap(),
        single.test.as_ref().unwrap(),
    );
    assert_eq!(d.samples, s.samples);
    assert!((d.loss - s.loss).abs() <= 1e-4 * s.loss.abs().max(1.0));
    // Only rank 0 wrote files; its metrics.json is the single process's report format.
    assert!(dist_dir.path().join("metrics.json").is_file());
    assert!(dist_dir.path().join("latest.ckpt").is_file());
}

#[test]
fn two_replicas_match_one_process_with_twice_the_batch() {
    check_contract(2, 4);
}

#[test]
fn three_replicas_match_one_process_with_three_times_the_batch() {
    check_contract(3, 3);
}

/// Class-weighted cross-entropy: the replicas' gradients and losses are combined by their
/// weight sums, so they match one process on the whole batch.
fn check_weighted_contract(world: usize, per_rank: usize) {
    let single_dir = tempfile::tempdir().unwrap();
    let dist_dir = tempfile::tempdir().unwrap();
    let batch = world * per_rank;
    let single = train(
        &weighted_classify_spec(single_dir.path(), batch, world),
        &options(None),
        &mut Silent,
    )
    .unwrap();
    let dist_spec = weighted_classify_spec(dist_dir.path(), batch, world);
    let reports: Vec<TrainReport> = replicas(&dist_spec, world as u32, 4, |_| (options(None), 0.0))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(single.steps > 10, "{} steps", single.steps);
    for (rank, r) in reports.iter().enumerate() {
        assert_eq!(r.steps, single.steps, "rank {rank}");
        assert_eq!(r.stop, StopReason::Completed, "rank {rank}");
        assert_eq!(r.test, reports[0].test, "rank {rank} test metrics");
        assert_eq!(r.history, reports[0].history, "rank {rank} history");
    }
    let diff = max_abs_diff(&reports[0].params, &single.params);
    // The reported training loss is the weighted mean of the whole batch too.
    let loss_diff = reports[0]
        .history
        .iter()
        .zip(&single.history)
        .map(|(d, s)| (d.train_loss - s.train_loss).abs() / s.train_loss.abs().max(1.0))
        .fold(0.0, f64::max);
    assert_eq!(reports[0].history.len(), single.history.len());
    eprintln!(
        "class-weighted, {world} replicas x batch {per_rank}: {} steps, max abs diff to one \
         process {diff:e}, train loss rel diff {loss_diff:e}",
        single.steps
    );
    assert!(
        loss_diff <= 1e-5,
        "class-weighted, {world} replicas: train loss differs by {loss_diff} (relative)"
    );
    // So is the evaluation loss, although the replicas score shards with other batch boundaries.
    for (d, s) in [
        (&reports[0].val, &single.val),
        (&reports[0].test, &single.test),
    ] {
        let (d, s) = (d.as_ref().unwrap(), s.as_ref().unwrap());
        assert_eq!(d.samples, s.samples);
        assert!(
            (d.loss - s.loss).abs() <= 1e-5 * s.loss.abs().max(1.0),
            "class-weighted, {world} replicas: {:?} loss {} vs {}",
            s.split,
            d.loss,
            s.loss
        );
    }
    assert!(
        diff <= 1e-5,
        "class-weighted, {world} replicas x batch {per_rank} vs one process x batch {batch}: max \
         abs diff {diff}"
    );
}

#[test]
fn two_replicas_match_one_process_with_class_weights() {
    check_weighted_contract(2, 8);
}

#[test]
fn three_replicas_match_one_process_with_class_weights() {
    check_weighted_contract(3, 4);
}

#[test]
fn a_stop_vote_stops_every_replica_after_the_same_step() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), 8, 2, 50, None);
    // Rank 1 asks to stop from the start: its vote travels with the first gradients.
    let reports = replicas(&spec, 2, 0, |rank| {
        (options(Some(Arc::new(AtomicBool::new(rank == 1)))), 0.0)
    });
    for r in reports {
        let r = r.unwrap();
        assert_eq!(r.stop, StopReason::Interrupted);
        assert_eq!(r.steps, 1);
    }
}

#[test]
fn diverged_replica_is_named_by_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), 9, 3, 1, Some(4));
    let results = replicas(&spec, 3, 2, |rank| {
        (options(None), if rank == 2 { 1e-3 } else { 0.0 })
    });
    for r in results {
        match r {
            Err(TrainError::ReplicasDiverged {
                step, differing, ..
            }) => {
                assert_eq!(step, 2);
                assert_eq!(differing, vec![2]);
            }
            other => panic!(
                "expected ReplicasDiverged, got {:?}",
                other.map(|r| r.steps)
            ),
        }
    }
}

#[test]
fn a_batch_the_replicas_cannot_share_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Validation rejects it in a spec; a group of another size than parallel.data must too.
    let spec = spec(dir.path(), 8, 1, 1, Some(1));
    let results = replicas(&spec, 3, 0, |_| (options(None), 0.0));
    for r in results {
        assert!(
            matches!(r, Err(TrainError::BatchNotDivisible { batch: 8, world: 3 })),
            "{:?}",
            r.map(|r| r.steps)
        );
    }
}

/// A data-parallel language model halted mid-epoch checkpoints every rank's carried stream
/// state (gathered to the writer); resumed, each rank takes its streams' part back and the
/// replicas end with exactly the parameters of the uninterrupted run.
#[test]
fn a_data_parallel_language_model_resumes_its_streams_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, ringtrain_data::synth::keyed_lines(300, 5)).unwrap();
    let spec_for = |run: &str| {
        let toml = format!(
            "seed = 6\n[model]\ncell = \"gru\"\nhidden = 16\nembedding_dim = 8\n\
             [task]\nkind = \"language_model\"\nbptt = 10\n\
             [data]\npath = {corpus:?}\nsplit = [0.8, 0.1, 0.1]\n\
             [train]\nepochs = 2\nbatch_size = 8\noptimizer = {{ kind = \"adam\", lr = 0.01 }}\n\
             [parallel]\ndata = 2\n[checkpoint]\ndir = {ckpt:?}\n",
            corpus = corpus.display().to_string(),
            ckpt = dir.path().join(run).display().to_string()
        );
        parse_str(&toml, SpecFormat::Toml, "<test>", "lm").unwrap()
    };
    let with = |resume: Option<PathBuf>, halt: Option<u64>| TrainOptions {
        resume,
        halt_after_steps: halt,
        ..options(None)
    };
    let whole: Vec<TrainReport> = replicas(&spec_for("whole"), 2, 0, |_| (with(None, None), 0.0))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for r in replicas(&spec_for("split"), 2, 0, |_| (with(None, Some(6)), 0.0)) {
        assert_eq!(r.unwrap().steps, 6);
    }
    let ckpt = Checkpoint::load(&dir.path().join("split/latest.ckpt")).unwrap();
    assert!(ckpt.header.progress.batch_in_epoch > 0, "halted mid-epoch");
    // 2 ranks × 4 streams × 16 units (GRU: h only).
    assert_eq!(ckpt.carried.len(), 2 * 4 * 16);
    let resume = dir.path().join("split");
    let resumed: Vec<TrainReport> = replicas(&spec_for("split"), 2, 0, |_| {
        (with(Some(resume.clone()), None), 0.0)
    })
    .into_iter()
    .map(Result::unwrap)
    .collect();
    for (r, w) in resumed.iter().zip(&whole) {
        assert_eq!(r.steps, w.steps);
        assert_eq!(
            r.params, w.params,
            "rank resumed off the uninterrupted path"
        );
    }
}

/// `spec` made elastic (2..=3 workers, a commit every 5 steps) on `world` ranks, recording
/// every rank's sample ids.
fn elastic_spec(dir: &Path, world: usize) -> JobSpec {
    let mut s = spec(dir, 12, world, 2, None);
    s.parallel.data = world;
    s.parallel.elastic = Some(ringtrain_spec::ElasticSpec {
        min: 2,
        max: 3,
        commit_every: 5,
    });
    s.checkpoint.record_samples = true;
    s
}

/// Elastic data parallelism (issue 16) in process: 3 ranks commit every 5 steps and one is
/// lost at step 12; 2 survivors continue from their in-memory commit of step 10, are joined at
/// step 23 by a fresh rank holding nothing, and all 3 continue from the survivors' commit of
/// step 20, which rank 0 broadcasts. The result is bit-identical to the same membership
/// schedule replayed through checkpoint files (the commit is exactly a checkpoint and the
/// schedule is deterministic), within the numerics contract of one process, and every epoch
/// trained exactly the shard plan's samples: each sample once (plus the plan's padding).
#[test]
fn an_elastic_run_continues_from_in_memory_commits_across_world_changes() {
    let dir = tempfile::tempdir().unwrap();
    let elastic = dir.path().join("elastic");
    let slots: Vec<Arc<ringtrain_train::CommitSlot>> = (0..4)
        .map(|_| Arc::new(ringtrain_train::CommitSlot::new()))
        .collect();
    let with = |slot: usize, attempt: u32, halt: Option<u64>| TrainOptions {
        halt_after_steps: halt,
        run_id: Some("job-e".into()),
        commit: Some(slots[slot].clone()),
        attempt,
        ..options(None)
    };
    // Attempt 1: workers 0, 1, 2; "worker 1 is lost" after step 12 (commits at 5, 10).
    for r in replicas(&elastic_spec(&elastic, 3), 3, 1, |rank| {
        (with(rank, 1, Some(12)), 0.0)
    }) {
        assert_eq!(r.unwrap().steps, 12);
    }
    // Attempt 2: the survivors (workers 0 and 2) continue from step 10; stopped at 23.
    let survivors = [0, 2];
    for r in replicas(&elastic_spec(&elastic, 2), 2, 1, |rank| {
        (with(survivors[rank], 2, Some(23)), 0.0)
    }) {
        assert_eq!(r.unwrap().steps, 23);
    }
    assert_eq!(slots[0].step_of(Some("job-e")), Some(20));
    assert_eq!(slots[1].step_of(Some("job-e")), Some(10));
    // Attempt 3: the survivors and worker 3, which holds no commit, to the end.
    let members = [0, 2, 3];
    let done: Vec<TrainReport> = replicas(&elastic_spec(&elastic, 3), 3, 1, |rank| {
        (with(members[rank], 3, None), 0.0)
    })
    .into_iter()
    .map(Result::unwrap)
    .collect();
    for r in &done {
        assert_eq!(r.params, done[0].params, "replicas differ");
    }

    // The same schedule through checkpoint files: halted at the commits, resumed elsewhere.
    let replay = dir.path().join("replay");
    let from = |halt: Option<u64>, resume: bool| TrainOptions {
        halt_after_steps: halt,
        resume: resume.then(|| replay.clone()),
        ..options(None)
    };
    for (world, halt, resume) in [(3, Some(10), false), (2, Some(20), true), (3, None, true)] {
        let reports: Vec<TrainReport> =
            replicas(&spec(&replay, 12, world, 2, None), world as u32, 1, |_| {
                (from(halt, resume), 0.0)
            })
            .into_iter()
            .map(Result::unwrap)
            .collect();
        if halt.is_none() {
            assert_eq!(reports[0].steps, done[0].steps);
            assert_eq!(
                reports[0]
                    .params
                    .iter()
                    .map(|p| p.to_bits())
                    .collect::<Vec<_>>(),
                done[0]
                    .params
                    .iter()
                    .map(|p| p.to_bits())
                    .collect::<Vec<_>>(),
                "elastic run vs the same schedule replayed from checkpoint files"
            );
        }
    }
    let single_dir = tempfile::tempdir().unwrap();
    let single = train(
        &spec(single_dir.path(), 12, 1, 2, None),
        &options(None),
        &mut Silent,
    )
    .unwrap();
    let diff = max_abs_diff(&done[0].params, &single.params);
    eprintln!("elastic 3 -> 2 -> 3 ranks: max abs diff to one process {diff:e}");
    assert!(diff <= 1e-5, "max abs diff {diff}");

    // Every epoch trained exactly its shard plan: each sample once, plus the plan's padding.
    let epochs = ringtrain_train::trainer::samples::trained_by_epoch(&elastic).unwrap();
    assert_eq!(epochs.len(), 2);
    let n = single.steps as usize / 2 * 12;
    for (epoch, ids) in epochs {
        let plan = ringtrain_data::ShardPlan::new(
            ids.iter().copied().max().unwrap() + 1,
            11,
            ringtrain_core::Epoch(epoch),
            1,
            12,
            true,
        )
        .unwrap();
        assert_eq!(ids.len(), n, "epoch {epoch}");
        assert_eq!(
            ids,
            plan.order(),
            "epoch {epoch}: trained samples vs the plan"
        );
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            plan.samples(),
            "epoch {epoch}: a sample never trained"
        );
        assert_eq!(ids.len() - distinct.len(), plan.padding(), "epoch {epoch}");
    }
}

/// A language model's elastic commit carries its streams' recurrent state: 2 ranks commit every
/// 3 steps and one is lost after step 7; the survivor continues alone from the commit of step 6
/// (every stream's state, re-cut for one rank) and ends bit-identical to the same schedule
/// replayed through a checkpoint file.
#[test]
fn an_elastic_language_model_carries_its_streams_through_a_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, ringtrain_data::synth::keyed_lines(300, 5)).unwrap();
    let spec_for = |run: &str, world: usize| {
        let toml = format!(
            "seed = 6\n[model]\ncell = \"lstm\"\nhidden = 16\nembedding_dim = 8\n\
             [task]\nkind = \"language_model\"\nbptt = 10\n\
             [data]\npath = {corpus:?}\nsplit = [0.8, 0.1, 0.1]\n\
             [train]\nepochs = 2\nbatch_size = 8\noptimizer = {{ kind = \"adam\", lr = 0.01 }}\n\
             [parallel]\ndata = {world}\nelastic = {{ min = 1, max = 2, commit_every = 3 }}\n\
             [checkpoint]\ndir = {ckpt:?}\n",
            corpus = corpus.display().to_string(),
            ckpt = dir.path().join(run).display().to_string()
        );
        parse_str(&toml, SpecFormat::Toml, "<test>", "lm").unwrap()
    };
    let slots: Vec<Arc<ringtrain_train::CommitSlot>> = (0..2)
        .map(|_| Arc::new(ringtrain_train::CommitSlot::new()))
        .collect();
    let elastic = |slot: usize, attempt: u32, halt: Option<u64>| TrainOptions {
        halt_after_steps: halt,
        run_id: Some("job-lm".into()),
        commit: Some(slots[slot].clone()),
        attempt,
        ..options(None)
    };
    for r in replicas(&spec_for("elastic", 2), 2, 1, |rank| {
        (elastic(rank, 1, Some(7)), 0.0)
    }) {
        assert_eq!(r.unwrap().steps, 7);
    }
    let alone = replicas(&spec_for("elastic", 1), 1, 1, |_| {
        (elastic(1, 2, None), 0.0)
    })
    .pop()
    .unwrap()
    .unwrap();
    let replay = dir.path().join("replay");
    let from = |halt: Option<u64>, resume: bool| TrainOptions {
        halt_after_steps: halt,
        resume: resume.then(|| replay.clone()),
        ..options(None)
    };
    let plain = |world: usize| {
        let mut s = spec_for("replay", world);
        s.parallel.elastic = None;
        s
    };
    for r in replicas(&plain(2), 2, 1, |_| (from(Some(6), false), 0.0)) {
        assert_eq!(r.unwrap().steps, 6);
    }
    let ckpt = Checkpoint::load(&replay.join("latest.ckpt")).unwrap();
    assert!(
        !ckpt.carried.is_empty(),
        "halted mid-epoch with carried state"
    );
    let replayed = replicas(&plain(1), 1, 1, |_| (from(None, true), 0.0))
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(alone.steps, replayed.steps);
    assert_eq!(
        alone.params.iter().map(|p| p.to_bits()).collect::<Vec<_>>(),
        replayed
            .params
            .iter()
            .map(|p| p.to_bits())
            .collect::<Vec<_>>(),
        "elastic language model vs the same schedule through a checkpoint file"
    );
}
