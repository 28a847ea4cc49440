//! A corpus of malformed dataset files, each with the substrings its error must contain. Every
//! entry is loaded through the public `load` with a real file on disk; the check asserts an
//! error (never a panic or a silent success), that the message names the file, and that the
//! message stays short (no echo of a whole line, cell or label list). Large inputs are generated
//! here, never committed.

use super::spec;
use ringtrain_data::load;
use tempfile::TempDir;

/// Which spec reads the file.
#[derive(Clone, Copy)]
enum Kind {
    /// forecast over `demand` (window 2)
    Series,
    /// classify over `text` / `label`
    Text,
    /// seq2seq over `src` / `tgt`
    Pairs,
    /// language model over a plain text corpus
    Corpus,
}

fn spec_for(kind: Kind, file: &str, extra: &str) -> ringtrain_spec::JobSpec {
    let body = match kind {
        Kind::Series => format!(
            "[model]\ncell = \"lstm\"\n[task]\nkind = \"forecast\"\n[data]\npath = {file:?}\n\
             features = [\"demand\"]\nwindow = 2\nsplit = [0.6, 0.2, 0.2]\n"
        ),
        Kind::Text => format!(
            "[model]\ncell = \"gru\"\n[task]\nkind = \"classify\"\n[data]\npath = {file:?}\n\
             split = [0.6, 0.2, 0.2]\n"
        ),
        Kind::Pairs => format!(
            "[model]\ncell = \"gru\"\n[task]\nkind = \"seq2seq\"\n[data]\npath = {file:?}\n\
             source_column = \"src\"\ntarget_column = \"tgt\"\nsplit = [0.6, 0.2, 0.2]\n"
        ),
        Kind::Corpus => format!(
            "[model]\ncell = \"gru\"\n[task]\nkind = \"language_model\"\nbptt = 4\n[data]\n\
             path = {file:?}\nformat = \"text\"\n[train]\nbatch_size = 2\n"
        ),
    };
    spec(&format!("{body}{extra}"))
}

/// Loads `contents` as `file` with `kind` and checks the error.
fn check(
    kind: Kind,
    file: &str,
    contents: &[u8],
    extra: &str,
    expect: &[&str],
) -> Result<(), String> {
    let dir = TempDir::new().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join(file), contents).map_err(|e| e.to_string())?;
    let spec = spec_for(kind, file, extra);
    let got = std::panic::catch_unwind(|| {
        load(&spec, dir.path())
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let msg = match got {
        Err(_) => return Err(format!("{file}: panicked")),
        Ok(Ok(_)) => return Err(format!("{file}: loaded without error")),
        Ok(Err(e)) => e,
    };
    let mut problems = Vec::new();
    if !msg.contains(file) {
        problems.push("does not name the file".to_string());
    }
    for want in expect {
        if !msg.contains(want) {
            problems.push(format!("lacks {want:?}"));
        }
    }
    if msg.len() > 1200 {
        problems.push(format!("is {} bytes long", msg.len()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{file}: message {:?} {}",
            &msg[..msg.len().min(300)],
            problems.join(", ")
        ))
    }
}

/// (reader, file name, contents, spec extras, expected substrings)
type Case<'a> = (Kind, &'a str, Vec<u8>, &'a str, Vec<&'a str>);

fn series(rows: &[&str]) -> Vec<u8> {
    let mut s = String::from("step,demand\n");
    for (i, r) in rows.iter().enumerate() {
        s.push_str(&format!("{i},{r}\n"));
    }
    s.into_bytes()
}

fn texts(rows: &[(&str, &str)]) -> Vec<u8> {
    let mut s = String::from("text,label\n");
    for (t, l) in rows {
        s.push_str(&format!("{t},{l}\n"));
    }
    s.into_bytes()
}

#[test]
fn malformed_dataset_corpus() {
    let ten = |bad: &str, at: usize| {
        let mut r: Vec<String> = (0..10).map(|i| (10 + i).to_string()).collect();
        r[at] = bad.to_string();
        series(&r.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let huge_cell = "x".repeat(20 << 20);
    let many_labels: Vec<(String, String)> = (0..500)
        .map(|i| (format!("w{i}"), format!("secret-label-{i}")))
        .collect();
    let mut unknown_label = String::from("text,label\n");
    for (t, l) in &many_labels {
        unknown_label.push_str(&format!("{t},{l}\n"));
    }
    // The one unseen label lands in val/test only if the split puts it there; with labels all
    // distinct, any val/test row has a label the train split never saw.
    let long_header = format!("{},other\n1,2\n", "c".repeat(100_000));
    let cases: Vec<Case> = vec![
        (
            Kind::Series,
            "empty.csv",
            b"".to_vec(),
            "",
            vec!["empty file"],
        ),
        (
            Kind::Series,
            "header_only.csv",
            b"step,demand\n".to_vec(),
            "",
            vec![":1: header found but no data rows"],
        ),
        (
            Kind::Series,
            "no_col.csv",
            b"step,load\n1,2\n".to_vec(),
            "",
            vec![":1: no column `demand`", "available: step, load"],
        ),
        (
            Kind::Series,
            "wide_header.csv",
            long_header.into_bytes(),
            "",
            vec!["characters in all"],
        ),
        (
            Kind::Series,
            "nan.csv",
            ten("NaN", 3),
            "",
            vec![":5:", "`NaN` is not a finite number"],
        ),
        (
            Kind::Series,
            "inf.csv",
            ten("inf", 0),
            "",
            vec![":2:", "not a finite number"],
        ),
        (
            Kind::Series,
            "f32_overflow.csv",
            ten("1e39", 9),
            "",
            vec![":11:", "beyond f32 range"],
        ),
        (
            Kind::Series,
            "word.csv",
            ten("abc", 4),
            "",
            vec![":6:", "`abc` is not a number"],
        ),
        (
            Kind::Series,
            "empty_cell.csv",
            ten("", 4),
            "",
            vec![":6:", "is not a number"],
        ),
        (
            Kind::Series,
            "huge_cell.csv",
            ten(&huge_cell, 2),
            "",
            vec![":4:", "characters in all)` is not a number"],
        ),
        (
            Kind::Series,
            "escape_cell.csv",
            ten("\u{1b}[31mred", 2),
            "",
            vec![":4:", "\\u{1b}[31mred"],
        ),
        (
            Kind::Series,
            "neg_inf.csv",
            ten("-inf", 1),
            "",
            vec![":3:", "not a finite number"],
        ),
        (
            Kind::Series,
            "e400.csv",
            ten("1e400", 5),
            "",
            vec![":7:", "not a finite number"],
        ),
        (
            Kind::Series,
            "hex.csv",
            ten("0x10", 6),
            "",
            vec![":8:", "`0x10` is not a number"],
        ),
        (
            Kind::Series,
            "spaces.csv",
            ten("   ", 7),
            "",
            vec![":9:", "is not a number"],
        ),
        (
            Kind::Series,
            "quote.csv",
            b"step,demand\n1,\"2\n".to_vec(),
            "",
            vec![],
        ),
        (
            Kind::Series,
            "tab_in.tsv",
            b"step\tdemand\n1\tx\n".to_vec(),
            "",
            vec![":2:", "`x` is not a number"],
        ),
        (
            Kind::Series,
            "bool.jsonl",
            b"{\"demand\": true}\n".to_vec(),
            "",
            vec![":1:", "`true` is not a number"],
        ),
        (
            Kind::Series,
            "bom_only.csv",
            b"\xEF\xBB\xBF".to_vec(),
            "",
            vec!["empty file"],
        ),
        (
            Kind::Series,
            "ragged.csv",
            b"step,demand\n1,2\n3\n".to_vec(),
            "",
            vec![":3: ragged row: expected 2 fields"],
        ),
        (
            Kind::Series,
            "ragged_more.csv",
            b"step,demand\n1,2,3\n".to_vec(),
            "",
            vec![":2: ragged row", "found 3"],
        ),
        (
            Kind::Series,
            "dup.csv",
            b"demand,demand\n1,2\n".to_vec(),
            "",
            vec!["appears more than once"],
        ),
        (
            Kind::Series,
            "bad_utf8.csv",
            b"step,demand\n1,\xff\xfe\n".to_vec(),
            "",
            vec![":2: invalid UTF-8"],
        ),
        (
            Kind::Series,
            "bad_utf8_header.csv",
            b"st\xffep,demand\n1,2\n".to_vec(),
            "",
            vec![":1: invalid UTF-8"],
        ),
        (
            Kind::Series,
            "short.csv",
            series(&["1", "2", "3"]),
            "",
            vec!["split has"],
        ),
        (
            Kind::Series,
            "rows.jsonl",
            b"{\"demand\": 1}\nnot json\n".to_vec(),
            "",
            vec![":2: invalid JSON"],
        ),
        (
            Kind::Series,
            "array.jsonl",
            b"[1,2,3]\n".to_vec(),
            "",
            vec![":1: invalid JSON: expected an object"],
        ),
        (
            Kind::Series,
            "missing_key.jsonl",
            b"{\"demand\": 1}\n{\"x\": 2}\n".to_vec(),
            "",
            vec![":2: no column `demand`"],
        ),
        (
            Kind::Series,
            "string_num.jsonl",
            b"{\"demand\": \"abc\"}\n".to_vec(),
            "",
            vec![":1:", "`abc` is not a number"],
        ),
        (
            Kind::Series,
            "null.jsonl",
            b"{\"demand\": null}\n".to_vec(),
            "",
            vec![":1:", "`null` is not a number"],
        ),
        (
            Kind::Series,
            "blank.jsonl",
            b"\n\n\n".to_vec(),
            "",
            vec!["empty file"],
        ),
        (
            Kind::Series,
            "huge_json.jsonl",
            format!("{{\"demand\": \"{huge_cell}\"}}\n").into_bytes(),
            "",
            vec!["characters in all"],
        ),
        (
            Kind::Series,
            "many_keys.jsonl",
            format!(
                "{{{}}}\n",
                (0..300)
                    .map(|i| format!("\"k{i}\": 1"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
            .into_bytes(),
            "",
            vec!["(300 in all)"],
        ),
        (
            Kind::Text,
            "t_empty_texts.csv",
            texts(&[("", "a"), ("", "b"), ("", "a"), ("", "b"), ("", "a")]),
            "",
            vec!["all 5 texts are empty"],
        ),
        (
            Kind::Text,
            "t_space_texts.csv",
            texts(&[(" ", "a"), ("  ", "b"), (" ", "a"), (" ", "b"), (" ", "a")]),
            "",
            vec!["texts are empty"],
        ),
        (
            Kind::Text,
            "t_unknown.csv",
            unknown_label.into_bytes(),
            "",
            vec!["unknown label", "(300 in all)"],
        ),
        (
            Kind::Text,
            "t_no_label.csv",
            b"text,lbl\nhi,a\n".to_vec(),
            "",
            vec!["no column `label`"],
        ),
        (
            Kind::Text,
            "t_label_array.jsonl",
            b"{\"text\": \"hi\", \"label\": [1]}\n".to_vec(),
            "",
            vec![":1:", "expected a string or an integer"],
        ),
        (
            Kind::Text,
            "t_text_number.jsonl",
            b"{\"text\": 5, \"label\": \"a\"}\n".to_vec(),
            "",
            vec!["expected a string"],
        ),
        (
            Kind::Text,
            "t_ragged.tsv",
            b"text\tlabel\nhi\n".to_vec(),
            "",
            vec![":2: ragged row"],
        ),
        (
            Kind::Pairs,
            "p_empty_src.csv",
            b"src,tgt\n,a\n,b\n,c\n,d\n,e\n".to_vec(),
            "",
            vec!["column `src`", "texts are empty"],
        ),
        (
            Kind::Pairs,
            "p_empty_tgt.csv",
            b"src,tgt\na,\nb,\nc,\nd,\ne,\n".to_vec(),
            "",
            vec!["column `tgt`", "texts are empty"],
        ),
        (
            Kind::Pairs,
            "p_missing.csv",
            b"src,dst\na,b\n".to_vec(),
            "",
            vec!["no column `tgt`"],
        ),
        (Kind::Corpus, "c_empty.txt", b"".to_vec(), "", vec![]),
        (
            Kind::Corpus,
            "c_tiny.txt",
            b"ab".to_vec(),
            "",
            vec!["tokens"],
        ),
        (
            Kind::Corpus,
            "c_utf8.txt",
            b"abc\n\xff\xfe def".to_vec(),
            "",
            vec![":2: invalid UTF-8"],
        ),
    ];
    let n = cases.len();
    let mut failures = Vec::new();
    for (kind, file, contents, extra, expect) in cases {
        if let Err(e) = check(kind, file, &contents, extra, &expect) {
            failures.push(e);
        }
    }
    assert!(n >= 40, "corpus shrank: {n}");
    assert!(
        failures.is_empty(),
        "{} of {n} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn devices_directories_and_oversized_files_are_refused_before_reading() {
    let dir = TempDir::new().unwrap();
    let cases = [
        ("/dev/zero", "not a regular file"),
        ("/dev/null", "not a regular file"),
        ("/", "not a regular file"),
        ("/nonexistent/x.csv", "cannot read"),
    ];
    for (path, want) in cases {
        let s = spec_for(Kind::Series, path, "format = \"csv\"\n");
        let e = load(&s, dir.path()).unwrap_err().to_string();
        assert!(e.contains(path) && e.contains(want), "{path}: {e}");
    }
    let big = dir.path().join("big.csv");
    let f = std::fs::File::create(&big).unwrap();
    // Sparse: 2 MiB of size without writing it.
    f.set_len(2 << 20).unwrap();
    let s = spec_for(Kind::Series, "big.csv", "[limits]\nmax_data_mb = 1\n");
    let e = load(&s, dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("2097152 bytes, above the dataset limit of 1048576 bytes"),
        "{e}"
    );
}
