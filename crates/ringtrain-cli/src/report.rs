//! Human-readable result tables: final metrics next to the baselines, per-class scores and the
//! confusion matrix for classifiers, error metrics for forecasts.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use ringtrain_train::metrics::{
    ClassificationReport, ForecastMetrics, ForecastReport, LanguageModelReport,
};
use ringtrain_train::{EvalReport, TaskMetrics, TrainReport};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().copied());
    t
}

/// Prints the outcome of a training run.
pub(crate) fn print_train(r: &TrainReport) {
    println!(
        "job {}: {:?} after {} steps ({:.0} samples/s); checkpoints in {}",
        r.name,
        r.stop,
        r.steps,
        r.samples_per_sec,
        r.checkpoint_dir.display()
    );
    if let Some(epoch) = r.evaluated_epoch {
        println!("final metrics use the parameters of epoch {}", epoch + 1);
    }
    for eval in [&r.val, &r.test].into_iter().flatten() {
        print_eval(eval);
    }
}

/// Prints one split's evaluation.
pub(crate) fn print_eval(e: &EvalReport) {
    println!(
        "\n{} split: {} samples, loss {:.5}",
        e.split, e.samples, e.loss
    );
    match &e.metrics {
        TaskMetrics::Forecast(f) => print_forecast(f),
        TaskMetrics::Classification(c) => print_classification(c),
        TaskMetrics::Translation(t) => print_translation(t),
        TaskMetrics::LanguageModel(l) => print_language_model(l),
    }
}

fn print_language_model(l: &LanguageModelReport) {
    let bits = if l.unit == "character" {
        "bits/char"
    } else {
        "bits/token"
    };
    let mut t = table(&["model", "loss (nats/token)", "perplexity", bits, "accuracy"]);
    t.add_row(vec![
        "language model".to_string(),
        format!("{:.4}", l.loss),
        format!("{:.3}", l.perplexity),
        format!("{:.4}", l.bits_per_token),
        format!("{:.4}", l.accuracy),
    ]);
    t.add_row(vec![
        "unigram baseline".to_string(),
        format!("{:.4}", l.unigram_loss),
        format!("{:.3}", l.unigram_perplexity),
        format!("{:.4}", l.unigram_bits_per_token),
        "-".to_string(),
    ]);
    println!("{t}");
    println!("{} next-{} predictions scored", l.tokens, l.unit);
}

fn print_forecast(f: &ForecastReport) {
    let mut t = table(&["forecaster", "MSE", "RMSE", "MAE", "MAPE %", "MSE vs model"]);
    let row = |name: &str, m: &ForecastMetrics, model_mse: f64| {
        vec![
            name.to_string(),
            format!("{:.4}", m.mse),
            format!("{:.4}", m.rmse),
            format!("{:.4}", m.mae),
            m.mape_percent.map_or("-".into(), |p| format!("{p:.2}")),
            if m.mse > 0.0 {
                format!("{:.2}x", m.mse / model_mse.max(f64::MIN_POSITIVE))
            } else {
                "-".into()
            },
        ]
    };
    t.add_row(row("model", &f.model, f.model.mse));
    t.add_row(row("naive (last value)", &f.naive, f.model.mse));
    if let Some(s) = &f.seasonal_naive {
        t.add_row(row("seasonal naive", s, f.model.mse));
    }
    for b in &f.statistical {
        let name = if b.forms.is_empty() {
            b.name.clone()
        } else {
            format!("{} ({})", b.name, b.forms.join("/"))
        };
        match &b.metrics {
            Some(m) => t.add_row(row(&name, m, f.model.mse)),
            None => t.add_row(vec![name, "unavailable".to_string()]),
        };
    }
    println!("{t}");
    for b in &f.statistical {
        if let Some(why) = &b.unavailable {
            println!("{} unavailable: {why}", b.name);
        }
    }
    if f.model.mape_skipped_zero_targets > 0 {
        println!(
            "MAPE skips {} zero targets (undefined there)",
            f.model.mape_skipped_zero_targets
        );
    }
}

fn print_classification(c: &ClassificationReport) {
    let mut t = table(&["metric", "value"]);
    t.add_row(vec!["accuracy".to_string(), format!("{:.4}", c.accuracy)]);
    t.add_row(vec![
        "macro precision".to_string(),
        format!("{:.4}", c.macro_avg.precision),
    ]);
    t.add_row(vec![
        "macro recall".to_string(),
        format!("{:.4}", c.macro_avg.recall),
    ]);
    t.add_row(vec![
        "macro F1".to_string(),
        format!("{:.4}", c.macro_avg.f1),
    ]);
    t.add_row(vec![
        "weighted F1".to_string(),
        format!("{:.4}", c.weighted_avg.f1),
    ]);
    t.add_row(vec![
        format!("majority baseline ({})", c.majority_baseline.label),
        format!("{:.4}", c.majority_baseline.accuracy),
    ]);
    println!("{t}");
    let mut per = table(&["class", "precision", "recall", "F1", "support"]);
    for m in &c.per_class {
        per.add_row(vec![
            m.label.clone(),
            format!("{:.4}", m.precision),
            format!("{:.4}", m.recall),
            format!("{:.4}", m.f1),
            m.support.to_string(),
        ]);
    }
    println!("{per}");
    let mut header = vec!["true \\ predicted".to_string()];
    header.extend(c.labels.iter().cloned());
    let mut cm = Table::new();
    cm.load_preset(UTF8_FULL_CONDENSED);
    cm.set_header(header);
    for (label, row) in c.labels.iter().zip(&c.confusion) {
        let mut cells = vec![label.clone()];
        cells.extend(row.iter().map(u64::to_string));
        cm.add_row(cells);
    }
    println!("{cm}");
}

fn print_translation(r: &ringtrain_train::metrics::TranslationReport) {
    let mut t = table(&["metric", "value"]);
    t.add_row(vec![
        format!("BLEU-4 ({})", r.decoder),
        format!("{:.2}", 100.0 * r.bleu),
    ]);
    if let Some(g) = &r.greedy {
        t.add_row(vec![
            "BLEU-4 (greedy)".to_string(),
            format!("{:.2}", 100.0 * g.bleu),
        ]);
    }
    t.add_row(vec![
        "BLEU-4 of copying the source (baseline)".to_string(),
        format!("{:.2}", 100.0 * r.copy_source_bleu),
    ]);
    t.add_row(vec![
        format!("n-gram precisions ({})", r.decoder),
        r.precisions
            .iter()
            .map(|p| format!("{:.1}", 100.0 * p))
            .collect::<Vec<_>>()
            .join(" / "),
    ]);
    t.add_row(vec![
        "brevity penalty".to_string(),
        format!(
            "{:.4} (hyp {} / ref {} tokens)",
            r.brevity_penalty, r.hyp_len, r.ref_len
        ),
    ]);
    t.add_row(vec![
        format!("exact match ({})", r.decoder),
        format!("{:.4}", r.exact_match),
    ]);
    if let Some(g) = &r.greedy {
        t.add_row(vec![
            "exact match (greedy)".to_string(),
            format!("{:.4}", g.exact_match),
        ]);
    }
    t.add_row(vec![
        "token accuracy (teacher-forced)".to_string(),
        format!("{:.4}", r.token_accuracy),
    ]);
    println!("{t}");
}
