//! Source/target pairs for seq2seq: vocabularies per side from the train split only (target
//! with `<bos>`/`<eos>` at fixed ids), truncation, formats, reuse of fitted vocabularies, and
//! errors naming the file, line and column.

use super::{spec, write};
use ringtrain_data::{
    BOS, BOS_TOKEN, EOS, EOS_TOKEN, Fitted, PairData, Prepared, SplitName, UNK, load, load_with,
};
use tempfile::TempDir;

fn pairs(p: Prepared) -> PairData {
    match p {
        Prepared::Pairs(p) => p,
        _ => panic!("expected pairs"),
    }
}

fn seq2seq(path: &str, data: &str) -> ringtrain_spec::JobSpec {
    spec(&format!(
        "seed = 3\n[model]\ncell = \"gru\"\n[task]\nkind = \"seq2seq\"\n[data]\npath = {path:?}\n{data}\n"
    ))
}

const ROWS: &[(&str, &str)] = &[
    ("the cat sleeps", "el gato duerme"),
    ("the dog sleeps", "el perro duerme"),
    ("a cat eats", "un gato come"),
    ("the dog eats fish", "el perro come pescado"),
    ("a bird sings", "un pájaro canta"),
    ("the bird eats", "el pájaro come"),
    ("a dog sings loudly", "un perro canta fuerte"),
    ("the cat eats fish", "el gato come pescado"),
    ("a cat sings", "un gato canta"),
    ("the dog sleeps well", "el perro duerme bien"),
];

fn files(dir: &TempDir) {
    let mut tsv = String::from("en\tes\n");
    let mut csv = String::from("en,es\n");
    let mut jsonl = String::new();
    for (en, es) in ROWS {
        tsv.push_str(&format!("{en}\t{es}\n"));
        csv.push_str(&format!("{en},{es}\n"));
        jsonl.push_str(&format!(
            "{}\n",
            serde_json::json!({"en": en, "es": es, "id": 1})
        ));
    }
    write(dir.path(), "p.tsv", tsv);
    write(dir.path(), "p.csv", csv);
    write(dir.path(), "p.jsonl", jsonl);
}

const COLUMNS: &str = "source_column = \"en\"\ntarget_column = \"es\"\nsplit = [0.6, 0.2, 0.2]";

#[test]
fn vocabularies_come_from_the_train_split_and_formats_agree() {
    let dir = TempDir::new().unwrap();
    files(&dir);
    let p = pairs(load(&seq2seq("p.tsv", COLUMNS), dir.path()).unwrap());
    assert_eq!(
        (
            p.len(SplitName::Train),
            p.len(SplitName::Val),
            p.len(SplitName::Test)
        ),
        (6, 2, 2)
    );
    let t = p.target_vocab();
    assert_eq!(t.token(BOS), Some(BOS_TOKEN));
    assert_eq!(t.token(EOS), Some(EOS_TOKEN));
    assert_eq!(&t.tokens()[..2], ["<pad>", "<unk>"]);
    // Every target token of the train split is in the target vocabulary, no source token is.
    for i in 0..p.len(SplitName::Train) {
        assert!(!p.target(SplitName::Train, i).contains(&UNK));
        assert!(!p.source(SplitName::Train, i).contains(&UNK));
    }
    assert!(p.source_vocab().id("el").is_none());
    assert!(t.id("the").is_none());
    // A token seen only outside the train split is unknown there.
    let train_words: std::collections::HashSet<&str> =
        t.tokens().iter().map(String::as_str).collect();
    let unseen = ROWS
        .iter()
        .flat_map(|(_, es)| es.split(' '))
        .filter(|w| !train_words.contains(w))
        .count();
    let unk_in_eval: usize = [SplitName::Val, SplitName::Test]
        .iter()
        .flat_map(|&s| (0..p.len(s)).map(move |i| (s, i)))
        .map(|(s, i)| p.target(s, i).iter().filter(|&&id| id == UNK).count())
        .sum();
    assert_eq!(unk_in_eval, unseen);
    for name in ["p.csv", "p.jsonl"] {
        let q = pairs(load(&seq2seq(name, COLUMNS), dir.path()).unwrap());
        for s in SplitName::ALL {
            for i in 0..p.len(s) {
                assert_eq!(p.source(s, i), q.source(s, i), "{name}");
                assert_eq!(p.target(s, i), q.target(s, i), "{name}");
            }
        }
    }
}

#[test]
fn truncation_and_fitted_vocabularies() {
    let dir = TempDir::new().unwrap();
    files(&dir);
    let cut = format!("{COLUMNS}\nmax_source_len = 2\nmax_target_len = 3");
    let spec = seq2seq("p.tsv", &cut);
    let p = pairs(load(&spec, dir.path()).unwrap());
    for s in SplitName::ALL {
        for i in 0..p.len(s) {
            assert!(p.source(s, i).len() <= 2 && p.target(s, i).len() <= 3);
        }
    }
    let batch = p.batch(SplitName::Train, &[0, 1]);
    assert_eq!(batch.decoder_input[0], BOS);
    assert!(batch.decoder_target.contains(&EOS));
    let fitted = Prepared::Pairs(p.clone()).fitted();
    let again = pairs(load_with(&spec, dir.path(), Some(&fitted)).unwrap());
    assert_eq!(again.target_vocab(), p.target_vocab());
    // A vocabulary fitted with another maximum length does not fit this spec.
    let other = seq2seq("p.tsv", COLUMNS);
    let err = load_with(&other, dir.path(), Some(&fitted)).unwrap_err();
    assert!(err.to_string().contains("max length"), "{err}");
    let Fitted::Pairs { source, .. } = &fitted else {
        panic!("pairs state expected")
    };
    assert_eq!(source, p.source_vocab());
}

#[test]
fn bad_files_name_the_file_line_and_column() {
    let dir = TempDir::new().unwrap();
    files(&dir);
    let err = load(&seq2seq("p.tsv", "split = [0.6, 0.2, 0.2]"), dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("p.tsv:1: no column `source`; available: en, es"),
        "{msg}"
    );
    write(
        dir.path(),
        "bad.jsonl",
        "{\"en\": \"a b\", \"es\": \"c\"}\n{\"en\": \"d\", \"es\": 5}\n",
    );
    let err = load(&seq2seq("bad.jsonl", COLUMNS), dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("bad.jsonl:2") && msg.contains("es"), "{msg}");
    write(dir.path(), "empty.tsv", "");
    let err = load(&seq2seq("empty.tsv", COLUMNS), dir.path()).unwrap_err();
    assert!(err.to_string().contains("empty file"), "{err}");
}
