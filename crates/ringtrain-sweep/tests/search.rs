//! The sweep crate through its public API: spec fixtures for every kind of error (each naming
//! its path), trial specs, determinism of every algorithm, TPE against random search on a
//! synthetic objective, and the pruners' decisions against hand-computed cases.

use ringtrain_sweep::*;

const JOB: &str = r#"
[job]
seed = 3
[job.model]
cell = "gru"
hidden = 16
[job.task]
kind = "forecast"
horizon = 1
[job.data]
path = "data/seasonal.csv"
features = ["demand"]
targets = ["demand"]
window = 12
split = [0.7, 0.15, 0.15]
[job.train]
epochs = 9
batch_size = 16
optimizer = { kind = "adam", lr = 0.01 }
"#;

fn sweep(head: &str) -> String {
    format!("{head}\n{JOB}")
}

const GOOD: &str = r#"
name = "s"
seed = 7
algorithm = "tpe"
max_concurrent = 3
objective = { metric = "val_rmse" }
budget = { trials = 30 }
[[param]]
path = "train.optimizer.lr"
kind = "log_uniform"
low = 1e-4
high = 0.1
[[param]]
path = "model.hidden"
kind = "int"
low = 4
high = 32
[[param]]
path = "model.cell"
kind = "choice"
values = ["gru", "lstm", "rnn"]
[pruner]
kind = "asha"
grace_epochs = 1
reduction_factor = 3
"#;

fn parse(text: &str) -> Result<SweepSpec, SweepError> {
    parse_str(text, "<test>", "sweep")
}

/// Parses `head` + the base job and expects an error whose message contains every `want`.
fn check_err(head: &str, want: &[&str]) {
    let err = parse(&sweep(head))
        .expect_err("must be refused")
        .to_string();
    for w in want {
        assert!(err.contains(w), "expected {w:?} in:\n{err}");
    }
}

#[test]
fn a_good_sweep_reads_and_round_trips() {
    let s = parse(&sweep(GOOD)).unwrap();
    assert_eq!(s.name, "s");
    assert_eq!(s.algorithm, Algorithm::Tpe);
    assert_eq!(s.max_concurrent, 3);
    assert_eq!(s.objective.direction, Direction::Min);
    assert_eq!(s.params.len(), 3);
    assert_eq!(
        s.pruner,
        Some(Pruner::Asha {
            grace_epochs: 1,
            reduction_factor: 3,
            max_epochs: 9
        }),
        "max_epochs defaults to the base spec's train.epochs"
    );
    let again = parse(&to_toml(&s)).unwrap();
    assert_eq!(again, s);
}

#[test]
fn every_error_names_its_path() {
    check_err(
        &GOOD.replace("seed = 7", "seed = 7\nextra = 1"),
        &["<test>:", "unknown field `extra`"],
    );
    check_err(
        &GOOD.replace("algorithm = \"tpe\"", "algorithm = \"bayes\""),
        &["algorithm = \"bayes\"", "\"grid\" | \"random\" | \"tpe\""],
    );
    check_err(
        &GOOD.replace("max_concurrent = 3", "max_concurrent = 0"),
        &["max_concurrent = 0"],
    );
    check_err(
        &GOOD.replace("val_rmse", "val_accuracy"),
        &[
            "objective.metric = \"val_accuracy\"",
            "task.kind = \"forecast\"",
        ],
    );
    check_err(
        &GOOD.replace("low = 1e-4", "low = 0.0"),
        &["param[0].low = 0: must be positive"],
    );
    check_err(
        &GOOD.replace("low = 4", "low = 40"),
        &["param[1].high = 32: must be at least low (40)"],
    );
    check_err(
        &GOOD.replace("low = 4", "low = 4.5"),
        &["param[1].low = 4.5: must be an integer"],
    );
    check_err(
        &GOOD.replace("kind = \"choice\"", "kind = \"enum\""),
        &["param[2].kind = \"enum\""],
    );
    check_err(
        &GOOD.replace("values = [\"gru\", \"lstm\", \"rnn\"]", "values = []"),
        &["param[2].values = 0 values"],
    );
    check_err(
        &GOOD.replace("path = \"model.cell\"", "path = \"model..cell\""),
        &["param[2].path"],
    );
    check_err(
        &GOOD.replace("path = \"model.cell\"", "path = \"model.hidden\""),
        &["param[2].path", "earlier"],
    );
    check_err(
        &GOOD.replace("budget = { trials = 30 }", ""),
        &["budget = (missing)"],
    );
    check_err(
        &GOOD.replace("reduction_factor = 3", "reduction_factor = 1"),
        &["pruner.reduction_factor = 1"],
    );
    check_err(
        &GOOD.replace(
            "reduction_factor = 3",
            "reduction_factor = 3\nmax_epochs = 20",
        ),
        &["pruner.max_epochs = 20", "train.epochs (9)"],
    );
    check_err(
        &GOOD.replace("grace_epochs = 1", "warmup_epochs = 1"),
        &["pruner.warmup_epochs", "not a setting of kind = \"asha\""],
    );
    check_err(
        &GOOD.replace("algorithm = \"tpe\"", "algorithm = \"grid\""),
        &["param[0].kind", "grid search needs finite values"],
    );
}

#[test]
fn the_base_spec_is_validated_with_its_paths_under_job() {
    let bad = sweep(GOOD).replace("cell = \"gru\"", "cell = \"xlstm\"");
    let err = parse(&bad).unwrap_err().to_string();
    assert!(err.contains("job.model.cell"), "{err}");
    let bad = sweep(GOOD).replace("window = 12", "window = 12\nwhat = 1");
    let err = parse(&bad).unwrap_err().to_string();
    assert!(err.contains("job.data") && err.contains("what"), "{err}");
    let err = parse(GOOD).unwrap_err().to_string();
    assert!(err.contains("base = (missing)"), "{err}");
}

#[test]
fn a_corner_that_gives_an_invalid_job_spec_is_refused_at_submission() {
    // hidden = 0 is out of the job spec's range: the error names the parameter and the value.
    let err = parse(&sweep(&GOOD.replace("low = 4", "low = 0")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("param[1] = model.hidden = 0"), "{err}");
    assert!(err.contains("model.hidden"), "{err}");
    // A choice the job spec does not know.
    let err = parse(&sweep(&GOOD.replace("\"rnn\"", "\"xrnn\"")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("param[2] = model.cell = \"xrnn\""), "{err}");
    // A path through a value that is not a table.
    let err = parse(&sweep(
        &GOOD.replace("path = \"model.cell\"", "path = \"train.epochs.x\""),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("param[2]") && err.contains("not a table"),
        "{err}"
    );
}

#[test]
fn load_reads_a_base_file_relative_to_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let job: String = JOB.replace("[job]\n", "").replace("[job.", "[");
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::write(dir.path().join("jobs/base.toml"), job).unwrap();
    std::fs::write(
        dir.path().join("search.toml"),
        format!(
            "base = \"jobs/base.toml\"\n{}",
            GOOD.replace("name = \"s\"", "")
        ),
    )
    .unwrap();
    let s = load(&dir.path().join("search.toml")).unwrap();
    assert_eq!(s.name, "search");
    assert_eq!(
        s.base_dir.as_deref(),
        Some(dir.path().join("jobs").as_path())
    );
    // Missing base file: the error names it.
    std::fs::write(
        dir.path().join("bad.toml"),
        format!("base = \"nope.toml\"\n{}", GOOD),
    )
    .unwrap();
    let err = load(&dir.path().join("bad.toml")).unwrap_err().to_string();
    assert!(
        err.contains("base job spec") && err.contains("nope.toml"),
        "{err}"
    );
}

#[test]
fn a_trial_spec_carries_the_point_and_the_trial_name() {
    let s = parse(&sweep(GOOD)).unwrap();
    let point = Point(vec![
        ParamValue::Float(0.003),
        ParamValue::Int(24),
        ParamValue::Choice(1),
    ]);
    let (text, spec) = trial_spec(&s, 5, &point).unwrap();
    assert_eq!(spec.name, "s-t5");
    assert_eq!(spec.model.hidden, 24);
    assert_eq!(spec.model.cell, ringtrain_spec::CellKind::Lstm);
    assert!((spec.train.optimizer.lr() - 0.003).abs() < 1e-15);
    assert!(text.contains("name = \"s-t5\""), "{text}");
}

fn history_free(s: &SweepSpec, index: u64) -> Point {
    suggest(
        s,
        index,
        History {
            finished: &[],
            pending: &[],
        },
    )
    .unwrap()
}

#[test]
fn random_search_depends_only_on_seed_and_index() {
    let s = parse(&sweep(&GOOD.replace("\"tpe\"", "\"random\""))).unwrap();
    let a: Vec<Point> = (0..20).map(|i| history_free(&s, i)).collect();
    // Any history, any order of asking: the same points.
    let finished = vec![Finished {
        index: 0,
        point: a[0].clone(),
        outcome: Outcome::Complete(1.0),
    }];
    for i in (0..20).rev() {
        let p = suggest(
            &s,
            i,
            History {
                finished: &finished,
                pending: &[],
            },
        )
        .unwrap();
        assert_eq!(p, a[i as usize]);
    }
    assert!(
        a.windows(2).all(|w| w[0] != w[1]),
        "indices draw different points"
    );
    let mut other = s.clone();
    other.seed = 8;
    assert_ne!(history_free(&other, 0), a[0]);
    // Every value lies in its range.
    for p in &a {
        let ParamValue::Float(lr) = p.0[0] else {
            panic!("{p:?}")
        };
        let ParamValue::Int(h) = p.0[1] else {
            panic!("{p:?}")
        };
        assert!((1e-4..=0.1).contains(&lr) && (4..=32).contains(&h), "{p:?}");
    }
}

#[test]
fn grid_search_enumerates_every_combination_once() {
    let text = sweep(
        &GOOD
            .replace("\"tpe\"", "\"grid\"")
            .replace(
                "kind = \"log_uniform\"\nlow = 1e-4\nhigh = 0.1",
                "kind = \"grid\"\nvalues = [0.1, 0.01]",
            )
            .replace("high = 32", "high = 6")
            .replace("budget = { trials = 30 }", ""),
    );
    let s = parse(&text).unwrap();
    assert_eq!(grid_size(&s), Some(2 * 3 * 3));
    assert_eq!(
        s.budget.trials,
        Some(18),
        "the grid's size is the default budget"
    );
    let points: Vec<Point> = (0..18).map(|i| history_free(&s, i)).collect();
    for (i, p) in points.iter().enumerate() {
        assert!(!points[..i].contains(p), "{p:?} twice");
    }
    assert_eq!(
        points[0],
        Point(vec![
            ParamValue::Choice(0),
            ParamValue::Int(4),
            ParamValue::Choice(0)
        ])
    );
    assert_eq!(
        points[1],
        Point(vec![
            ParamValue::Choice(0),
            ParamValue::Int(4),
            ParamValue::Choice(1)
        ])
    );
    assert!(
        suggest(
            &s,
            18,
            History {
                finished: &[],
                pending: &[]
            }
        )
        .is_none()
    );
    let over = text.replace(
        "max_concurrent = 3",
        "max_concurrent = 3\nbudget = { trials = 19 }",
    );
    let err = parse(&over).unwrap_err().to_string();
    assert!(
        err.contains("budget.trials = 19: the grid has 18 points"),
        "{err}"
    );
}

/// A synthetic objective with a known optimum: lr = 0.01 (log scale), hidden = 20, cell lstm.
fn objective(p: &Point) -> f64 {
    let ParamValue::Float(lr) = p.0[0] else {
        return f64::NAN;
    };
    let ParamValue::Int(h) = p.0[1] else {
        return f64::NAN;
    };
    let ParamValue::Choice(c) = p.0[2] else {
        return f64::NAN;
    };
    (lr.log10() + 2.0).powi(2) + ((h - 20) as f64 / 10.0).powi(2) + if c == 1 { 0.0 } else { 0.3 }
}

fn run(s: &SweepSpec, trials: u64) -> Vec<Finished> {
    let mut finished = vec![];
    for i in 0..trials {
        let p = suggest(
            s,
            i,
            History {
                finished: &finished,
                pending: &[],
            },
        )
        .unwrap();
        finished.push(Finished {
            index: i,
            outcome: Outcome::Complete(objective(&p)),
            point: p,
        });
    }
    finished
}

fn best(f: &[Finished]) -> f64 {
    f.iter()
        .map(|t| match t.outcome {
            Outcome::Complete(v) => v,
            _ => f64::INFINITY,
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn tpe_is_deterministic_and_beats_random_search() {
    let tpe = parse(&sweep(GOOD)).unwrap();
    let mut random = tpe.clone();
    random.algorithm = Algorithm::Random;
    let a = run(&tpe, 40);
    assert_eq!(a, run(&tpe, 40), "same seed, same trial table");
    let r = run(&random, 40);
    assert_eq!(
        a[..10],
        r[..10],
        "TPE's start-up trials are random search's"
    );
    let (mut t_best, mut r_best) = (vec![], vec![]);
    for seed in 0..5 {
        let (mut t, mut r) = (tpe.clone(), random.clone());
        t.seed = seed;
        r.seed = seed;
        t_best.push(best(&run(&t, 40)));
        r_best.push(best(&run(&r, 40)));
    }
    t_best.sort_by(f64::total_cmp);
    r_best.sort_by(f64::total_cmp);
    assert!(
        t_best[2] < r_best[2],
        "median best: TPE {t_best:?} vs random {r_best:?}"
    );
}

#[test]
fn pending_trials_change_tpe_s_suggestion() {
    let s = parse(&sweep(GOOD)).unwrap();
    let finished = run(&s, 15);
    let alone = suggest(
        &s,
        15,
        History {
            finished: &finished,
            pending: &[],
        },
    )
    .unwrap();
    let pending = vec![Pending {
        index: 15,
        point: alone.clone(),
    }];
    let with_liar = suggest(
        &s,
        16,
        History {
            finished: &finished,
            pending: &pending,
        },
    )
    .unwrap();
    let without = suggest(
        &s,
        16,
        History {
            finished: &finished,
            pending: &[],
        },
    )
    .unwrap();
    assert_ne!(
        with_liar, without,
        "a running trial enters the estimator as the worst"
    );
    assert_eq!(
        with_liar,
        suggest(
            &s,
            16,
            History {
                finished: &finished,
                pending: &pending
            }
        )
        .unwrap()
    );
}

#[test]
fn asha_rungs_and_decisions() {
    assert_eq!(asha_rungs(1, 3, 27), vec![1, 3, 9]);
    assert_eq!(asha_rungs(2, 2, 9), vec![2, 4, 8]);
    assert_eq!(asha_rungs(4, 3, 4), Vec::<u32>::new());
    let asha = Pruner::Asha {
        grace_epochs: 1,
        reduction_factor: 3,
        max_epochs: 9,
    };
    let c = |v: &'static [f64]| Curve {
        values: v,
        complete: false,
    };
    // Not at a rung: always continue.
    assert_eq!(
        decide(&asha, Direction::Min, &[9.0, 9.0], &[c(&[0.1, 0.1])]),
        Verdict::Continue
    );
    // First to reach the rung: continue. Fewer than rf: only the best continues.
    assert_eq!(
        decide(&asha, Direction::Min, &[1.0], &[]),
        Verdict::Continue
    );
    assert_eq!(
        decide(&asha, Direction::Min, &[1.0], &[c(&[0.5])]),
        Verdict::Prune
    );
    assert_eq!(
        decide(&asha, Direction::Min, &[0.4], &[c(&[0.5])]),
        Verdict::Continue
    );
    // Six values at rung 1 (epoch 1): the best 6 / 3 = 2 continue.
    let others = [c(&[0.1]), c(&[0.2]), c(&[0.3]), c(&[0.4]), c(&[0.5])];
    assert_eq!(
        decide(&asha, Direction::Min, &[0.15], &others),
        Verdict::Continue
    );
    assert_eq!(
        decide(&asha, Direction::Min, &[0.25], &others),
        Verdict::Prune
    );
    // Maximized metric: the direction turns the ranking.
    assert_eq!(
        decide(&asha, Direction::Max, &[0.45], &others),
        Verdict::Continue
    );
    // A diverged trial is pruned at a rung.
    assert_eq!(
        decide(&asha, Direction::Min, &[f64::NAN], &[]),
        Verdict::Prune
    );
}

#[test]
fn median_rule() {
    let median = Pruner::Median {
        startup_trials: 2,
        warmup_epochs: 1,
    };
    let done = |v: &'static [f64]| Curve {
        values: v,
        complete: true,
    };
    let others = [
        done(&[1.0, 0.5]),
        done(&[1.0, 0.7]),
        Curve {
            values: &[0.0, 0.0],
            complete: false,
        },
    ];
    // Warm-up epoch: never pruned.
    assert_eq!(
        decide(&median, Direction::Min, &[9.0], &others),
        Verdict::Continue
    );
    // Median of the completed trials at epoch 2 is 0.6 (the running one does not count).
    assert_eq!(
        decide(&median, Direction::Min, &[2.0, 0.65], &others),
        Verdict::Prune
    );
    assert_eq!(
        decide(&median, Direction::Min, &[2.0, 0.55], &others),
        Verdict::Continue
    );
    // Too few completed trials: continue.
    assert_eq!(
        decide(&median, Direction::Min, &[2.0, 5.0], &others[..1]),
        Verdict::Continue
    );
}

#[test]
fn the_example_sweep_validates() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sweep-seasonal.toml");
    let s = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.params.len(), 4);
    assert_eq!(
        s.pruner,
        Some(Pruner::Asha {
            grace_epochs: 3,
            reduction_factor: 3,
            max_epochs: 30
        })
    );
}
