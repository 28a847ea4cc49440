//! Synthetic benchmark of the search algorithms and of ASHA, through the library alone (no
//! cluster): `bench/sweep.sh` runs it and BENCHMARKS.md records its output.
//!
//! The objective has a known optimum between grid points: over lr (log scale, best 0.0042),
//! hidden (best 37), layers (best 2) and cell (best lstm), a sum of squared distances plus a cell
//! penalty. Its learning curve for ASHA is `final + (start − final) · exp(−epoch / τ)` with τ
//! growing as lr falls (small learning rates learn slowly), so early epochs rank trials roughly
//! as their ends do — the premise of successive halving.
// A benchmark report printed to stdout (the one place this crate prints).
#![allow(clippy::print_stdout)]

use ringtrain_sweep::{
    Curve, Finished, History, Outcome, ParamValue, Point, SweepSpec, Verdict, decide, suggest,
};

const JOB: &str = r#"
[job]
[job.model]
cell = "gru"
hidden = 16
[job.task]
kind = "forecast"
horizon = 1
[job.data]
path = "x.csv"
features = ["y"]
targets = ["y"]
window = 12
split = [0.7, 0.15, 0.15]
[job.train]
epochs = 27
batch_size = 16
optimizer = { kind = "adam", lr = 0.01 }
"#;

fn spec(algorithm: &str, seed: u64, grid: bool) -> SweepSpec {
    let space = if grid {
        r#"
[[param]]
path = "train.optimizer.lr"
kind = "grid"
values = [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03]
[[param]]
path = "model.hidden"
kind = "grid"
values = [8, 16, 32, 64, 128]
[[param]]
path = "model.layers"
kind = "int"
low = 1
high = 3
[[param]]
path = "model.cell"
kind = "choice"
values = ["gru", "lstm"]
"#
    } else {
        r#"
[[param]]
path = "train.optimizer.lr"
kind = "log_uniform"
low = 0.0001
high = 0.03
[[param]]
path = "model.hidden"
kind = "int"
low = 8
high = 128
[[param]]
path = "model.layers"
kind = "int"
low = 1
high = 3
[[param]]
path = "model.cell"
kind = "choice"
values = ["gru", "lstm"]
"#
    };
    let budget = if grid {
        ""
    } else {
        "budget = { trials = 1000 }"
    };
    let text = format!(
        "name = \"bench\"\nalgorithm = \"{algorithm}\"\nseed = {seed}\nobjective = {{ metric = \"val_rmse\" }}\n{budget}\n{space}\n{JOB}"
    );
    ringtrain_sweep::parse_str(&text, "<bench>", "bench").expect("benchmark sweep is valid")
}

fn num(v: &ParamValue) -> f64 {
    match *v {
        ParamValue::Float(x) => x,
        ParamValue::Int(n) => n as f64,
        ParamValue::Choice(i) => i as f64,
    }
}

/// The final objective of a point (grid points index lr and hidden into their value lists).
fn objective(spec: &SweepSpec, p: &Point) -> f64 {
    let value = |i: usize| -> f64 {
        match (&spec.params[i].dist, &p.0[i]) {
            (ringtrain_sweep::Distribution::Choice(values), ParamValue::Choice(c)) if i < 2 => {
                values[*c]
                    .as_float()
                    .or_else(|| values[*c].as_integer().map(|n| n as f64))
                    .unwrap_or(0.0)
            }
            (_, v) => num(v),
        }
    };
    let (lr, hidden, layers, cell) = (value(0), value(1), value(2), value(3));
    let d_lr = (lr.log10() - 0.0042f64.log10()) / 0.5;
    let d_h = (hidden.log2() - 37f64.log2()) / 0.7;
    let d_l = layers - 2.0;
    0.1 + d_lr * d_lr + 0.5 * d_h * d_h + 0.3 * d_l * d_l + if cell == 1.0 { 0.0 } else { 0.2 }
}

fn curve(spec: &SweepSpec, p: &Point, epoch: u32) -> f64 {
    let end = objective(spec, p);
    let lr = match p.0[0] {
        ParamValue::Float(x) => x,
        _ => 0.001,
    };
    let tau = 1.0 + 2.0 * (0.03f64.log10() - lr.log10());
    end + 3.0 * (-(epoch as f64) / tau).exp()
}

fn run(spec: &SweepSpec, trials: u64) -> Vec<f64> {
    let mut finished = vec![];
    let mut best = f64::INFINITY;
    let mut bests = vec![];
    for i in 0..trials {
        let Some(p) = suggest(
            spec,
            i,
            History {
                finished: &finished,
                pending: &[],
            },
        ) else {
            break;
        };
        let v = objective(spec, &p);
        best = best.min(v);
        bests.push(best);
        finished.push(Finished {
            index: i,
            point: p,
            outcome: Outcome::Complete(v),
        });
    }
    bests
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// One sequential sweep with ASHA (or none): returns (epochs run in all, best final value
/// among completed trials).
fn run_asha(spec: &SweepSpec, trials: u64, max_epochs: u32, asha: bool) -> (u64, f64) {
    let pruner = ringtrain_sweep::Pruner::Asha {
        grace_epochs: 1,
        reduction_factor: 3,
        max_epochs,
    };
    let mut finished: Vec<Finished> = vec![];
    let mut curves: Vec<(Vec<f64>, bool)> = vec![];
    let mut epochs_run = 0;
    let mut best = f64::INFINITY;
    for i in 0..trials {
        let p = suggest(
            spec,
            i,
            History {
                finished: &finished,
                pending: &[],
            },
        )
        .expect("point");
        let mut values = vec![];
        let mut pruned = false;
        for e in 1..=max_epochs {
            values.push(curve(spec, &p, e));
            epochs_run += 1;
            let others: Vec<Curve<'_>> = curves
                .iter()
                .map(|(v, c)| Curve {
                    values: v,
                    complete: *c,
                })
                .collect();
            if asha
                && e < max_epochs
                && decide(&pruner, spec.objective.direction, &values, &others) == Verdict::Prune
            {
                pruned = true;
                break;
            }
        }
        let last = *values.last().unwrap_or(&f64::NAN);
        let outcome = if pruned {
            Outcome::Pruned {
                epochs: values.len() as u32,
                value: last,
            }
        } else {
            best = best.min(last);
            Outcome::Complete(last)
        };
        finished.push(Finished {
            index: i,
            point: p,
            outcome,
        });
        curves.push((values, !pruned));
    }
    (epochs_run, best)
}

fn main() {
    let seeds: Vec<u64> = (0..9).collect();
    let grid = spec("grid", 0, true);
    let grid_trials = ringtrain_sweep::grid_size(&grid).unwrap_or(0);
    let grid_best = *run(&grid, grid_trials).last().unwrap_or(&f64::NAN);
    println!("grid: {grid_trials} points, best {grid_best:.4}");
    println!();
    println!("| trials | random (median best) | TPE (median best) |");
    println!("|---:|---:|---:|");
    let n_max = 60;
    let runs: Vec<(Vec<f64>, Vec<f64>)> = seeds
        .iter()
        .map(|&s| {
            (
                run(&spec("random", s, false), n_max),
                run(&spec("tpe", s, false), n_max),
            )
        })
        .collect();
    for n in [10, 20, 30, 40, 60] {
        let r = median(runs.iter().map(|x| x.0[n - 1]).collect());
        let t = median(runs.iter().map(|x| x.1[n - 1]).collect());
        println!("| {n} | {r:.4} | {t:.4} |");
    }
    let reach: Vec<f64> = runs
        .iter()
        .map(|x| {
            x.1.iter()
                .position(|b| *b <= grid_best)
                .map_or(f64::INFINITY, |i| (i + 1) as f64)
        })
        .collect();
    println!();
    println!(
        "TPE trials to reach grid search's best ({grid_best:.4}, {grid_trials} trials): per seed {:?}, median {}",
        reach,
        median(reach.clone())
    );
    println!();
    println!(
        "| seed | epochs, full budget | epochs, ASHA | ratio | best, full | best, ASHA | gap |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let (mut ratios, mut gaps) = (vec![], vec![]);
    for &s in &seeds {
        let sp = spec("random", s, false);
        let (full_e, full_b) = run_asha(&sp, 40, 27, false);
        let (asha_e, asha_b) = run_asha(&sp, 40, 27, true);
        let ratio = asha_e as f64 / full_e as f64;
        let gap = (asha_b - full_b) / full_b;
        ratios.push(ratio);
        gaps.push(gap);
        println!(
            "| {s} | {full_e} | {asha_e} | {ratio:.2} | {full_b:.4} | {asha_b:.4} | {:.2} % |",
            gap * 100.0
        );
    }
    println!();
    println!(
        "median ratio {:.2}, median gap {:.2} %",
        median(ratios),
        median(gaps) * 100.0
    );
}
