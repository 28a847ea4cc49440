//! Seeded synthetic datasets for tests and examples. Both generators are pure functions of their
//! arguments (ChaCha8 plus fixed formulas), and [`example_files`] regenerates the copies committed
//! under `examples/data/` byte for byte, which a test checks so they never drift.
//!
//! - [`seasonal_series`]: trend + period-12 seasonality + AR(1) noise + white noise, with a second
//!   feature that leads the seasonal pattern by one step. The AR noise is predictable from recent
//!   values but invisible to the seasonal-naive baseline, so a model can beat that baseline.
//! - [`smooth_series`]: a clean daily cycle plus a small, slowly varying temperature effect
//!   (hourly rows), where the seasonal-naive error is a small fraction of the level's spread.
//! - [`sentiment_rows`]: a sentiment-like grammar. The label is a deterministic function of the
//!   sentence ([`sentiment_label`]): the adjective's polarity, flipped by a negation, while
//!   intensifiers and distractor clauses vary the wording and the length (4–30 words).

use crate::order::{below, chacha};
use rand::RngCore;
use ringtrain_spec::DataFormat;
use std::f64::consts::PI;
use std::fmt::Write as _;

/// Seed of the committed example files.
pub const EXAMPLE_SEED: u64 = 7;

fn uniform01(rng: &mut impl RngCore) -> f64 {
    // 53 random bits mapped to (0, 1]; never 0, so the logarithm below is finite.
    ((rng.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut impl RngCore) -> f64 {
    let (u, v) = (uniform01(rng), uniform01(rng));
    (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
}

fn pick<'a>(rng: &mut impl RngCore, items: &[&'a str]) -> &'a str {
    items[below(rng, items.len() as u64) as usize]
}

/// A generated two-column series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeasonalSeries {
    /// The target: `50 + 0.01 t + s(t) + a(t) + e(t)` with `s` the period-12 seasonality,
    /// `a` AR(1) noise (coefficient 0.9, innovation σ 0.8) and `e` white noise (σ 0.3). The
    /// persistent AR part is what a model can learn and the seasonal-naive forecast cannot: the
    /// best one-step MSE is ≈0.8 against ≈5 for seasonal-naive. The trend is kept small because a
    /// level-based RNN cannot extrapolate levels it never saw in the training split.
    pub demand: Vec<f64>,
    /// A correlated feature: `20 + 0.8 s(t+1) + N(0, 1)`, leading the season by one step.
    pub temperature: Vec<f64>,
}

fn season(t: f64) -> f64 {
    10.0 * (2.0 * PI * t / 12.0).sin() + 4.0 * (4.0 * PI * t / 12.0).cos()
}

/// Generates `rows` steps of the seasonal series from `seed`.
pub fn seasonal_series(rows: usize, seed: u64) -> SeasonalSeries {
    let mut rng = chacha(seed, 0);
    let mut ar = 0.0;
    let (mut demand, mut temperature) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    for i in 0..rows {
        let t = i as f64;
        ar = 0.9 * ar + 0.8 * normal(&mut rng);
        demand.push(50.0 + 0.01 * t + season(t) + ar + 0.3 * normal(&mut rng));
        temperature.push(20.0 + 0.8 * season(t + 1.0) + normal(&mut rng));
    }
    SeasonalSeries {
        demand,
        temperature,
    }
}

impl SeasonalSeries {
    /// The series as a file with columns `step`, `demand`, `temperature` (values rounded to 3
    /// decimals): CSV/TSV with a header row, or JSONL objects.
    pub fn to_text(&self, format: DataFormat) -> String {
        let mut out = String::new();
        let sep = if format == DataFormat::Tsv { '\t' } else { ',' };
        if format != DataFormat::Jsonl {
            let _ = writeln!(out, "step{sep}demand{sep}temperature");
        }
        for (i, (d, t)) in self.demand.iter().zip(&self.temperature).enumerate() {
            let _ = match format {
                DataFormat::Jsonl => writeln!(
                    out,
                    r#"{{"step":{i},"demand":{d:.3},"temperature":{t:.3}}}"#
                ),
                _ => writeln!(out, "{i}{sep}{d:.3}{sep}{t:.3}"),
            };
        }
        out
    }
}

/// A generated smooth daily-cycle series (hourly rows).
#[derive(Debug, Clone, PartialEq)]
pub struct SmoothSeries {
    /// The target: `100 + 10 sin(2πt/24) + 3 cos(4πt/24) + 0.3 a(t) + e(t)` with `a` the
    /// temperature anomaly and `e` white noise (σ 0.05). The day-to-day change the
    /// seasonal-naive forecast misses is about 1/20 of the level's spread: a model that predicts
    /// corrections to seasonal-naive on the level's scale starts with head noise far larger
    /// than them (the case target scaling is for).
    pub load: Vec<f64>,
    /// A feature: `20 + 5 sin(2πt/24) + a(t)`, where the anomaly `a` is AR(1) (coefficient
    /// 0.97, innovation σ 0.3), slowly varying, so it tells how far today is from yesterday.
    pub temperature: Vec<f64>,
}

/// Generates `rows` hours of the smooth series from `seed`.
pub fn smooth_series(rows: usize, seed: u64) -> SmoothSeries {
    let mut rng = chacha(seed, 1);
    let mut anomaly = 0.0;
    let (mut load, mut temperature) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    for i in 0..rows {
        let t = i as f64;
        anomaly = 0.97 * anomaly + 0.3 * normal(&mut rng);
        let day = 2.0 * PI * t / 24.0;
        let cycle = 10.0 * day.sin() + 3.0 * (2.0 * day).cos();
        load.push(100.0 + cycle + 0.3 * anomaly + 0.05 * normal(&mut rng));
        temperature.push(20.0 + 5.0 * day.sin() + anomaly);
    }
    SmoothSeries { load, temperature }
}

impl SmoothSeries {
    /// The series as CSV with columns `step`, `load`, `temperature` (3 decimals).
    pub fn to_csv(&self) -> String {
        let mut out = String::from("step,load,temperature\n");
        for (i, (l, c)) in self.load.iter().zip(&self.temperature).enumerate() {
            let _ = writeln!(out, "{i},{l:.3},{c:.3}");
        }
        out
    }
}

/// Positive adjectives of the sentiment grammar.
pub const POSITIVE: &[&str] = &[
    "good",
    "great",
    "excellent",
    "wonderful",
    "superb",
    "delightful",
    "charming",
    "brilliant",
    "pleasant",
    "fantastic",
    "lovely",
    "enjoyable",
];
/// Negative adjectives of the sentiment grammar.
pub const NEGATIVE: &[&str] = &[
    "bad",
    "awful",
    "terrible",
    "boring",
    "dull",
    "horrible",
    "poor",
    "disappointing",
    "mediocre",
    "bland",
    "annoying",
    "unpleasant",
];
/// Negations; one before the adjective flips the sentence's label.
pub const NEGATIONS: &[&str] = &["not", "never", "hardly"];
const INTENSIFIERS: &[&str] = &["very", "really", "truly", "quite", "extremely", "so"];
const SUBJECTS: &[&str] = &[
    "the food",
    "the movie",
    "the service",
    "this phone",
    "the acting",
    "the battery",
    "our waiter",
    "the soundtrack",
    "the ending",
    "the room",
    "the staff",
    "the screen",
    "the plot twist",
    "the music",
    "the headset",
];
const VERBS: &[&str] = &["was", "is", "seemed", "felt", "looked", "sounded"];
// Distractors carry no sentiment word and no negation, so they never change the label.
const PREFIXES: &[&str] = &[
    "the plot was long but",
    "after a long wait",
    "to be honest",
    "as i expected",
    "although the seats were red",
    "when we arrived at noon",
    "my sister told me that",
    "in the second half",
    "from what i remember",
    "once again",
    "overall",
    "honestly",
    "well",
];
const SUFFIXES: &[&str] = &[
    "and the parking was far away",
    "even though it rained all day",
    "according to my brother",
    "on a tuesday night",
    "with the lights on",
    "for the price we paid",
    "in my opinion",
    "this time",
    "today",
    "again",
    "at the end",
    "if you ask me",
    "somehow",
];

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Generates `n` labelled sentences (`pos`/`neg`, exactly balanced: even rows `pos`, odd rows
/// `neg`) from `seed`.
pub fn sentiment_rows(n: usize, seed: u64) -> Vec<(String, &'static str)> {
    let mut rng = chacha(seed, 1);
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let positive = i % 2 == 0;
        let negated = below(&mut rng, 2) == 1;
        let adjective = pick(
            &mut rng,
            if positive != negated {
                POSITIVE
            } else {
                NEGATIVE
            },
        );
        let mut core = vec![pick(&mut rng, SUBJECTS), pick(&mut rng, VERBS)];
        if negated {
            core.push(pick(&mut rng, NEGATIONS));
        }
        if below(&mut rng, 3) == 0 {
            core.push(pick(&mut rng, INTENSIFIERS));
        }
        core.push(adjective);
        let core = core.join(" ");
        let target = (4 + below(&mut rng, 27) as usize).max(words(&core));
        let (mut prefix, mut suffix) = (Vec::new(), Vec::new());
        let mut len = words(&core);
        while len < target {
            let before = below(&mut rng, 2) == 0;
            let pool = if before { PREFIXES } else { SUFFIXES };
            let room = target - len;
            let used = |p: &&str| prefix.contains(p) || suffix.contains(p);
            // Prefer pieces not used yet, so sentences read less repetitively; both pools hold
            // one-word pieces, so the fallback is never empty.
            let mut fits: Vec<&str> = pool
                .iter()
                .filter(|p| words(p) <= room && !used(p))
                .copied()
                .collect();
            if fits.is_empty() {
                fits = pool.iter().filter(|p| words(p) <= room).copied().collect();
            }
            let piece = pick(&mut rng, &fits);
            len += words(piece);
            if before { &mut prefix } else { &mut suffix }.push(piece);
        }
        let mut sentence = prefix
            .into_iter()
            .chain([core.as_str()])
            .chain(suffix)
            .collect::<Vec<_>>()
            .join(" ");
        match below(&mut rng, 4) {
            0 => sentence.push('.'),
            1 => sentence.push_str(" !"),
            _ => {}
        }
        if below(&mut rng, 2) == 0 {
            sentence = capitalize(&sentence);
        }
        rows.push((sentence, if positive { "pos" } else { "neg" }));
    }
    rows
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The label the grammar assigns to `sentence`: `pos` when its adjective is positive and not
/// negated or negative and negated, else `neg`. `None` for a sentence without exactly one
/// adjective of the grammar.
pub fn sentiment_label(sentence: &str) -> Option<&'static str> {
    let lower = sentence.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|t| !t.is_empty())
        .collect();
    let mut polarity = None;
    for t in &tokens {
        let p = if POSITIVE.contains(t) {
            true
        } else if NEGATIVE.contains(t) {
            false
        } else {
            continue;
        };
        if polarity.replace(p).is_some() {
            return None;
        }
    }
    let negated = tokens.iter().any(|t| NEGATIONS.contains(t));
    Some(if polarity? != negated { "pos" } else { "neg" })
}

/// Labelled sentences as a file with columns `text` and `label`: CSV (quoted where needed) and
/// TSV with a header row, or JSONL objects `{"text": .., "label": ..}`.
pub fn sentiment_text(rows: &[(String, &str)], format: DataFormat) -> String {
    let mut out = String::new();
    match format {
        // Plain text has no label column: the sentences alone, one per line.
        DataFormat::Text => {
            for (text, _) in rows {
                let _ = writeln!(out, "{text}");
            }
        }
        DataFormat::Jsonl => {
            for (text, label) in rows {
                let obj = serde_json::json!({ "text": text, "label": label });
                let _ = writeln!(out, "{obj}");
            }
        }
        DataFormat::Csv | DataFormat::Tsv => {
            let sep = if format == DataFormat::Csv { "," } else { "\t" };
            let _ = writeln!(out, "text{sep}label");
            for (text, label) in rows {
                let quoted = format == DataFormat::Csv && text.contains([',', '"', '\n', '\r']);
                if quoted {
                    let _ = writeln!(out, "\"{}\",{label}", text.replace('"', "\"\""));
                } else {
                    let _ = writeln!(out, "{text}{sep}{label}");
                }
            }
        }
    }
    out
}

/// Filler words of [`keyed_lines`]: common letters, so that knowing the key is what is left to
/// learn at a line's end.
const FILLER: &[&str] = &[
    "the", "rain", "in", "spain", "falls", "mainly", "on", "plain", "a", "quick", "brown", "fox",
    "jumps", "over", "lazy", "dogs", "and", "then", "sleeps",
];

/// A corpus with long-range structure for language models: `lines` lines, each
/// `KEY: w1 w2 ... wn = KEY`, where `KEY` is three letters from `a..h` drawn at random and the
/// filler is 6–9 random words from a small list. Repeating the key at the end of a line needs a
/// memory of about 40–70 characters — more than a short BPTT chunk, so a model only learns it
/// when the hidden state is carried across chunks. Seeded (ChaCha8, stream 2).
pub fn keyed_lines(lines: usize, seed: u64) -> String {
    let mut rng = chacha(seed, 2);
    let mut out = String::new();
    for _ in 0..lines {
        let key: String = (0..3)
            .map(|_| char::from(b'a' + below(&mut rng, 8) as u8))
            .collect();
        let words = 6 + below(&mut rng, 4) as usize;
        let filler: Vec<&str> = (0..words).map(|_| pick(&mut rng, FILLER)).collect();
        let _ = writeln!(out, "{key}: {} = {key}", filler.join(" "));
    }
    out
}

/// The generated files committed under `examples/data/`: `(file name, contents)`.
pub fn example_files() -> Vec<(&'static str, String)> {
    vec![
        (
            "seasonal.csv",
            seasonal_series(400, EXAMPLE_SEED).to_text(DataFormat::Csv),
        ),
        (
            "sentiment-synth.csv",
            sentiment_text(&sentiment_rows(2000, EXAMPLE_SEED), DataFormat::Csv),
        ),
        (
            "reverse-digits.tsv",
            crate::synth_pairs::pairs_tsv(&crate::synth_pairs::digit_pairs(
                crate::synth_pairs::DigitTask::Reverse,
                3000,
                3,
                12,
                EXAMPLE_SEED,
            )),
        ),
        ("keyed-lines.txt", keyed_lines(1500, EXAMPLE_SEED)),
        (
            "smooth-daily.csv",
            smooth_series(1200, EXAMPLE_SEED).to_csv(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn sentiment_labels_are_a_function_of_the_sentence_and_balanced() {
        let rows = sentiment_rows(3000, 11);
        let mut pos = 0;
        for (text, label) in &rows {
            assert_eq!(sentiment_label(text), Some(*label), "{text}");
            let n = text.split_whitespace().filter(|w| *w != "!").count();
            assert!((4..=30).contains(&n), "{n} words: {text}");
            pos += usize::from(*label == "pos");
        }
        assert_eq!(pos, 1500);
        let lengths: std::collections::BTreeSet<usize> = rows
            .iter()
            .map(|(t, _)| t.split_whitespace().count())
            .collect();
        assert!(lengths.len() > 20, "lengths vary: {lengths:?}");
        assert!(rows.iter().any(|(t, _)| t.contains(" not ")));
        assert!(
            rows.iter()
                .any(|(t, _)| t.contains("the plot was long but"))
        );
    }

    #[test]
    fn generators_are_deterministic_by_seed() {
        assert_eq!(sentiment_rows(50, 3), sentiment_rows(50, 3));
        assert_ne!(sentiment_rows(50, 3), sentiment_rows(50, 4));
        assert_eq!(seasonal_series(50, 3), seasonal_series(50, 3));
        assert_ne!(seasonal_series(50, 3), seasonal_series(50, 4));
    }

    #[test]
    fn seasonal_feature_correlates_with_demand() {
        let s = seasonal_series(600, 1);
        let n = s.demand.len() as f64;
        // Correlate temperature(t) with demand(t+1): the feature leads by one step.
        let (a, b) = (&s.temperature[..599], &s.demand[1..]);
        let (ma, mb) = (
            a.iter().sum::<f64>() / (n - 1.0),
            b.iter().sum::<f64>() / (n - 1.0),
        );
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        let r = cov / (va * vb).sqrt();
        assert!(r > 0.6, "correlation {r}");
    }

    /// The committed example files are exactly what the generator produces. Set
    /// `RINGTRAIN_BLESS=1` to rewrite them after an intentional generator change.
    #[test]
    fn committed_example_files_match_the_generator() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/data");
        for (name, contents) in example_files() {
            let path = dir.join(name);
            if std::env::var_os("RINGTRAIN_BLESS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &contents).unwrap();
            }
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (run with RINGTRAIN_BLESS=1)", path.display()));
            assert!(
                committed == contents,
                "{} differs from the generator",
                path.display()
            );
        }
    }
}
