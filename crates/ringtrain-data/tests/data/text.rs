//! Text classification data: deterministic shuffling by seed, vocabulary and labels from the train
//! split only, truncation, padding, formats and the committed example file.

use super::{classify, write};
use ringtrain_data::synth::{sentiment_rows, sentiment_text};
use ringtrain_data::{Fitted, PAD, Prepared, SplitName, TextData, Tokenizer, UNK, load, load_with};
use ringtrain_spec::{DataFormat, TokenizerKind};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tempfile::TempDir;

fn text(p: Prepared) -> TextData {
    match p {
        Prepared::Text(t) => t,
        other => panic!("expected text, got {other:?}"),
    }
}

const SPLIT: &str = "split = { train = 0.6, val = 0.2, test = 0.2 }";

fn sentiment_dir(n: usize) -> (TempDir, Vec<(String, &'static str)>) {
    let dir = TempDir::new().unwrap();
    let rows = sentiment_rows(n, 21);
    for (format, name) in [
        (DataFormat::Csv, "s.csv"),
        (DataFormat::Tsv, "s.tsv"),
        (DataFormat::Jsonl, "s.jsonl"),
    ] {
        write(dir.path(), name, sentiment_text(&rows, format));
    }
    (dir, rows)
}

/// The split contents as (0-based data row, class, ids), to compare loads.
fn contents(d: &TextData) -> Vec<Vec<(u64, u32, Vec<u32>)>> {
    // Data rows start on line 2 below a CSV/TSV header, on line 1 in JSONL.
    let first_line = if d.file().ends_with(".jsonl") { 1 } else { 2 };
    SplitName::ALL
        .iter()
        .map(|&s| {
            (0..d.len(s))
                .map(|i| {
                    (
                        d.line(s, i) - first_line,
                        d.class_ids(s)[i],
                        d.ids(s, i).to_vec(),
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn shuffle_and_split_are_deterministic_by_seed() {
    let (dir, _) = sentiment_dir(300);
    let load_seed = |seed: u64| {
        let mut spec = classify("s.csv", SPLIT);
        spec.seed = seed;
        text(load(&spec, dir.path()).unwrap())
    };
    let (a, b, c) = (load_seed(1), load_seed(1), load_seed(2));
    assert_eq!(contents(&a), contents(&b));
    assert_ne!(contents(&a), contents(&c));
    assert_eq!(
        [
            a.len(SplitName::Train),
            a.len(SplitName::Val),
            a.len(SplitName::Test)
        ],
        [180, 60, 60]
    );
    // Every row lands in exactly one split.
    let mut lines: Vec<u64> = contents(&a).concat().iter().map(|r| r.0).collect();
    lines.sort_unstable();
    assert_eq!(lines, (0..300).collect::<Vec<u64>>());
    // Shuffled: the train split is not the first 180 rows of the file.
    assert!(
        (0..180).any(|i| a.line(SplitName::Train, i) > 181),
        "train is not the first 180 rows"
    );
}

#[test]
fn vocabulary_comes_from_the_train_split_only() {
    let (dir, rows) = sentiment_dir(300);
    let d = text(load(&classify("s.csv", SPLIT), dir.path()).unwrap());
    let tok = Tokenizer {
        kind: TokenizerKind::Word,
        lowercase: true,
    };
    let train_tokens: HashSet<String> = (0..d.len(SplitName::Train))
        .flat_map(|i| tok.tokenize(&rows[d.line(SplitName::Train, i) as usize - 2].0))
        .collect();
    let vocab = d.vocab();
    assert_eq!(&vocab.tokens()[..2], ["<pad>", "<unk>"]);
    assert_eq!(vocab.len(), train_tokens.len() + 2);
    for t in &vocab.tokens()[2..] {
        assert!(train_tokens.contains(t), "{t} not in train");
    }
    // Descending frequency, ties lexicographic.
    let mut freq: HashMap<String, usize> = HashMap::new();
    for i in 0..d.len(SplitName::Train) {
        for t in tok.tokenize(&rows[d.line(SplitName::Train, i) as usize - 2].0) {
            *freq.entry(t).or_default() += 1;
        }
    }
    for w in vocab.tokens()[2..].windows(2) {
        let (fa, fb) = (freq[&w[0]], freq[&w[1]]);
        assert!(fa > fb || (fa == fb && w[0] < w[1]), "{w:?} {fa} {fb}");
    }
    // Val/test tokens unseen in train are <unk>; predict-time encode matches the training ids.
    for split in [SplitName::Val, SplitName::Test] {
        for i in 0..d.len(split) {
            let sentence = &rows[d.line(split, i) as usize - 2].0;
            let ids = d.ids(split, i);
            assert_eq!(vocab.encode(sentence), ids);
            for (t, &id) in tok.tokenize(sentence).iter().zip(ids) {
                assert_eq!(id == UNK, !train_tokens.contains(t), "{t}");
            }
        }
    }
}

#[test]
fn min_freq_max_vocab_max_len_and_char_tokens() {
    let (dir, _) = sentiment_dir(200);
    let d = text(
        load(
            &classify("s.csv", &format!("{SPLIT}\nmax_vocab = 10\nmax_len = 5")),
            dir.path(),
        )
        .unwrap(),
    );
    assert_eq!(d.vocab().len(), 10);
    for s in SplitName::ALL {
        assert!((0..d.len(s)).all(|i| d.ids(s, i).len() <= 5));
    }
    let full = text(load(&classify("s.csv", SPLIT), dir.path()).unwrap());
    let rare = text(
        load(
            &classify("s.csv", &format!("{SPLIT}\nmin_freq = 5")),
            dir.path(),
        )
        .unwrap(),
    );
    assert!(rare.vocab().len() < full.vocab().len());
    let chars = text(
        load(
            &classify(
                "s.csv",
                &format!("{SPLIT}\ntokenizer = \"char\"\nlowercase = false"),
            ),
            dir.path(),
        )
        .unwrap(),
    );
    assert!(chars.vocab().id("T").is_some() && chars.vocab().id(" ").is_some());
    assert!(chars.vocab().len() < 60);
}

#[test]
fn labels_sorted_from_train_or_explicit_order() {
    let (dir, _) = sentiment_dir(100);
    let d = text(load(&classify("s.jsonl", SPLIT), dir.path()).unwrap());
    assert_eq!(d.labels().names(), ["neg", "pos"]);
    let e = text(
        load(
            &classify("s.jsonl", &format!("{SPLIT}\nlabels = [\"pos\", \"neg\"]")),
            dir.path(),
        )
        .unwrap(),
    );
    assert_eq!(e.labels().names(), ["pos", "neg"]);
    // Same rows, flipped class ids.
    for s in SplitName::ALL {
        let flipped: Vec<u32> = d.class_ids(s).iter().map(|c| 1 - c).collect();
        assert_eq!(e.class_ids(s), flipped);
    }
}

#[test]
fn integer_json_labels_and_trimmed_csv_labels() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "i.jsonl",
        "{\"text\":\"a b\",\"label\":1}\n{\"text\":\"c\",\"label\":0}\n{\"text\":\"d\",\"label\":10}\n",
    );
    let d = text(
        load(
            &classify("i.jsonl", "split = { train = 1.0, val = 0.0, test = 0.0 }"),
            dir.path(),
        )
        .unwrap(),
    );
    assert_eq!(d.labels().names(), ["0", "1", "10"]);
    write(dir.path(), "t.csv", "text,label\n\"x, y\", pos\nz,pos \n");
    let d = text(
        load(
            &classify("t.csv", "split = { train = 1.0, val = 0.0, test = 0.0 }"),
            dir.path(),
        )
        .unwrap(),
    );
    assert_eq!(d.labels().names(), ["pos"]);
    assert!(
        d.vocab().id(",").is_some(),
        "quoted comma kept inside the text"
    );
}

#[test]
fn csv_tsv_and_jsonl_load_identically() {
    let (dir, _) = sentiment_dir(250);
    let all: Vec<TextData> = ["s.csv", "s.tsv", "s.jsonl"]
        .iter()
        .map(|f| text(load(&classify(f, SPLIT), dir.path()).unwrap()))
        .collect();
    for d in &all[1..] {
        assert_eq!(d.vocab(), all[0].vocab());
        assert_eq!(d.labels(), all[0].labels());
        assert_eq!(contents(d), contents(&all[0]));
    }
}

#[test]
fn batches_pad_with_zero_and_mask_valid_steps() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "t.csv",
        "text,label\nhello world again,a\n!!!,b\n\"\",a\nhello,b\n",
    );
    let d = text(
        load(
            &classify(
                "t.csv",
                "split = { train = 1.0, val = 0.0, test = 0.0 }\nmin_freq = 1",
            ),
            dir.path(),
        )
        .unwrap(),
    );
    let idx: Vec<usize> = (0..4).collect();
    let b = d.batch(SplitName::Train, &idx);
    assert_eq!((b.batch, b.seq_len), (4, 3));
    for i in 0..4 {
        let ids = d.ids(SplitName::Train, i);
        let row = &b.ids[i * 3..(i + 1) * 3];
        let mask = &b.mask[i * 3..(i + 1) * 3];
        if ids.is_empty() {
            assert_eq!(row, [UNK, PAD, PAD], "empty text gets one <unk>");
            assert_eq!(b.lengths[i], 1);
        } else {
            assert_eq!(&row[..ids.len()], ids);
            assert!(row[ids.len()..].iter().all(|&t| t == PAD));
            assert_eq!(b.lengths[i], ids.len());
        }
        let valid: f32 = mask.iter().sum();
        assert_eq!(valid as usize, b.lengths[i]);
        assert_eq!(b.labels[i], d.class_ids(SplitName::Train)[i]);
    }
}

#[test]
fn fitted_vocab_and_labels_round_trip_and_are_reused() {
    let (dir, _) = sentiment_dir(200);
    let spec = classify("s.csv", SPLIT);
    let p = load(&spec, dir.path()).unwrap();
    let json = serde_json::to_string(&p.fitted()).unwrap();
    let fitted: Fitted = serde_json::from_str(&json).unwrap();
    assert_eq!(fitted, p.fitted());
    // A different file evaluated with the stored state keeps ids and labels.
    write(
        dir.path(),
        "o.csv",
        sentiment_text(&sentiment_rows(50, 99), DataFormat::Csv),
    );
    let o = text(load_with(&classify("o.csv", SPLIT), dir.path(), Some(&fitted)).unwrap());
    let Fitted::Text { vocab, labels } = &fitted else {
        unreachable!()
    };
    assert_eq!(o.vocab(), vocab);
    assert_eq!(o.labels(), labels);
}

#[test]
fn committed_sentiment_example_loads_balanced() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let d = text(
        load(
            &classify(
                "data/sentiment-synth.csv",
                "split = { train = 0.8, val = 0.1, test = 0.1 }",
            ),
            &examples,
        )
        .unwrap(),
    );
    assert_eq!(
        d.len(SplitName::Train) + d.len(SplitName::Val) + d.len(SplitName::Test),
        2000
    );
    let pos = d
        .class_ids(SplitName::Train)
        .iter()
        .filter(|&&c| c == 1)
        .count();
    assert!((700..=900).contains(&pos), "{pos} positives of 1600");
}

#[test]
fn a_word_seen_only_outside_train_encodes_as_unk() {
    let dir = TempDir::new().unwrap();
    let mut csv = String::from("text,label\n");
    for i in 0..11 {
        csv.push_str(&format!("common words here,{}\n", ["a", "b"][i % 2]));
    }
    csv.push_str("common rareword,a\n");
    write(dir.path(), "t.csv", csv);
    for seed in 0..64 {
        let mut spec = classify("t.csv", "split = { train = 0.5, val = 0.25, test = 0.25 }");
        spec.seed = seed;
        let d = text(load(&spec, dir.path()).unwrap());
        for split in [SplitName::Val, SplitName::Test] {
            if let Some(i) = (0..d.len(split)).find(|&i| d.line(split, i) == 13) {
                assert_eq!(d.vocab().id("rareword"), None);
                assert_eq!(d.ids(split, i)[1], UNK);
                assert_eq!(d.ids(split, i)[0], d.vocab().id("common").unwrap());
                return;
            }
        }
    }
    panic!("no seed put line 13 outside train");
}
