//! A corpus of malformed inputs through the real `ringtrain` binary: job specs (`check`),
//! datasets (`train`), checkpoints (`eval`) and command-line arguments. Every entry must end
//! with a non-zero exit status (not a signal), an error naming the field / file:line / flag,
//! no "panicked" and a bounded message (no echo of a whole file). Large inputs are generated
//! here at test time; nothing big is committed.

mod common;

use common::{examples, ringtrain};
use std::path::{Path, PathBuf};

/// What one entry ran into, for the failure list.
fn check(what: &str, args: &[&str], expect: &[&str]) -> Result<(), String> {
    let out = ringtrain()
        .args(args)
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    let mut problems = Vec::new();
    match out.status.code() {
        None => problems.push("killed by a signal".to_string()),
        Some(0) => problems.push("exited 0 (accepted)".to_string()),
        Some(_) => {}
    }
    if err.contains("panicked") {
        problems.push("panicked".into());
    }
    for want in expect {
        if !err.contains(want) {
            problems.push(format!("stderr lacks {want:?}"));
        }
    }
    if err.len() > 6000 {
        problems.push(format!("stderr is {} bytes (unbounded echo?)", err.len()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let shown: String = err.chars().take(600).collect();
        Err(format!(
            "{what}: {}\n    stderr: {shown}",
            problems.join("; ")
        ))
    }
}

fn finish(kind: &str, results: Vec<Result<(), String>>, at_least: usize) {
    let n = results.len();
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(n >= at_least, "{kind} corpus shrank to {n}");
    assert!(
        failures.is_empty(),
        "{} of {n} {kind} entries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A valid forecast spec over the bundled series; entries replace or append lines.
fn base_spec(ckpt: &Path) -> String {
    format!(
        "name = \"base\"\nseed = 3\n[model]\ncell = \"gru\"\nhidden = 4\n[task]\nkind = \
         \"forecast\"\nhorizon = 1\n[data]\npath = \"{}\"\nfeatures = [\"demand\"]\nwindow = 4\n\
         split = [0.7, 0.15, 0.15]\n[train]\nepochs = 2\nbatch_size = 8\nmax_steps = 4\n\
         [checkpoint]\ndir = \"{}\"\n",
        examples().join("data/seasonal.csv").display(),
        ckpt.display()
    )
}

#[test]
fn malformed_specs_are_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = base_spec(&dir.path().join("runs"));
    let replace = |from: &str, to: &str| {
        assert!(base.contains(from), "{from}");
        base.replacen(from, to, 1)
    };
    let big_name = format!("name = \"{}\"", "n".repeat(300));
    let huge_string = format!("name = \"{}\"", "x".repeat(3 << 20));
    // (file name, contents, expected substrings)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("empty.toml", String::new(), vec!["task.kind = (missing)"]),
        ("garbage.toml", "\u{0}\u{1}\u{2}".into(), vec!["garbage.toml:1"]),
        ("unclosed.toml", "[model\ncell = 1".into(), vec!["unclosed.toml:1"]),
        ("dup_key.toml", format!("{base}seed = 4\n"), vec!["dup_key.toml"]),
        ("unknown_top.toml", format!("bogus = 1\n{base}"), vec!["unknown field `bogus`"]),
        ("unknown_section.toml", format!("{base}[extra]\nx = 1\n"), vec!["unknown field `extra`"]),
        ("name_long.toml", replace("name = \"base\"", &big_name), vec!["name = 300 characters", "at most 128"]),
        ("name_escape.toml", replace("name = \"base\"", "name = \"\\u001b[2J\""), vec!["name = \"\\u{1b}[2J\""]),
        ("name_slash.toml", replace("name = \"base\"", "name = \"a/b\""), vec!["name = \"a/b\""]),
        ("name_dots.toml", replace("name = \"base\"", "name = \"..\""), vec!["name = \"..\""]),
        ("name_empty.toml", replace("name = \"base\"", "name = \"\""), vec!["name = \"\""]),
        ("name_number.toml", replace("name = \"base\"", "name = 5"), vec!["name"]),
        ("seed_negative.toml", replace("seed = 3", "seed = -1"), vec!["seed"]),
        ("seed_string.toml", replace("seed = 3", "seed = \"x\""), vec!["seed"]),
        ("cell_bad.toml", replace("cell = \"gru\"", "cell = \"transformer\""), vec!["model.cell = \"transformer\""]),
        ("hidden_zero.toml", replace("hidden = 4", "hidden = 0"), vec!["model.hidden = 0"]),
        ("hidden_neg.toml", replace("hidden = 4", "hidden = -4"), vec!["model.hidden = -4"]),
        ("hidden_float.toml", replace("hidden = 4", "hidden = 4.5"), vec!["model.hidden"]),
        ("hidden_huge.toml", replace("hidden = 4", "hidden = 99999999999"), vec!["model.hidden = 99999999999"]),
        ("hidden_overflow.toml", replace("hidden = 4", "hidden = 99999999999999999999999"), vec!["hidden_overflow.toml"]),
        ("budget_hidden.toml", replace("hidden = 4", "hidden = 65536"), vec!["limits.max_parameters = estimate", "above the limit"]),
        ("budget_deep.toml", replace("hidden = 4", "hidden = 65536\nlayers = 64\nbidirectional = true"), vec!["limits.max_parameters", "limits.max_memory_mb"]),
        ("budget_conv.toml", replace("hidden = 4", "hidden = 4\nconv = [{ channels = 65536, kernel = 4096 }]"), vec!["limits.max_parameters = estimate 269.3 M"]),
        ("budget_batch.toml", replace("batch_size = 8", "batch_size = 1000000").replace("window = 4", "window = 1000000"), vec!["limits.max_memory_mb", "batch 1000000 × sequence 1000000"]),
        ("budget_lowered.toml", format!("{base}[limits]\nmax_parameters = 10\n"), vec!["limits.max_parameters = estimate", "above the limit of 10;"]),
        ("limits_zero.toml", format!("{base}[limits]\nmax_parameters = 0\n"), vec!["limits.max_parameters = 0"]),
        ("limits_string.toml", format!("{base}[limits]\nmax_vocab = \"lots\"\n"), vec!["limits.max_vocab"]),
        ("limits_unknown.toml", format!("{base}[limits]\nmax_cpus = 1\n"), vec!["unknown field `max_cpus`"]),
        ("layers_zero.toml", replace("hidden = 4", "hidden = 4\nlayers = 0"), vec!["model.layers = 0"]),
        ("layers_65.toml", replace("hidden = 4", "hidden = 4\nlayers = 65"), vec!["model.layers = 65"]),
        ("dropout_one.toml", replace("hidden = 4", "hidden = 4\ndropout = 1.0"), vec!["model.dropout = 1"]),
        ("dropout_nan.toml", replace("hidden = 4", "hidden = 4\ndropout = nan"), vec!["model.dropout = NaN"]),
        ("conv_zero_kernel.toml", replace("hidden = 4", "hidden = 4\nconv = [{ channels = 2, kernel = 0 }]"), vec!["model.conv[0].kernel = 0"]),
        ("attention_heads.toml", replace("hidden = 4", "hidden = 4\nattention = { kind = \"self\", heads = 3 }"), vec!["model.attention.heads = 3"]),
        ("kind_missing.toml", replace("kind = \"forecast\"", ""), vec!["task.kind = (missing)"]),
        ("kind_bad.toml", replace("kind = \"forecast\"", "kind = \"regress\""), vec!["task.kind = \"regress\""]),
        ("horizon_zero.toml", replace("horizon = 1", "horizon = 0"), vec!["task.horizon = 0"]),
        ("data_missing.toml", replace("path = ", "pth = "), vec!["unknown field `pth`"]),
        ("data_path_empty.toml", base.replace(&format!("path = \"{}\"", examples().join("data/seasonal.csv").display()), "path = \"\""), vec!["data.path = \"\""]),
        ("window_zero.toml", replace("window = 4", "window = 0"), vec!["data.window = 0"]),
        ("split_sum.toml", replace("split = [0.7, 0.15, 0.15]", "split = [0.7, 0.7, 0.15]"), vec!["data.split", "sum to 1"]),
        ("split_neg.toml", replace("split = [0.7, 0.15, 0.15]", "split = [1.2, -0.1, -0.1]"), vec!["data.split.train = 1.2"]),
        ("split_two.toml", replace("split = [0.7, 0.15, 0.15]", "split = [0.5, 0.5]"), vec!["data.split"]),
        ("features_empty.toml", replace("features = [\"demand\"]", "features = []"), vec!["data.features = []"]),
        ("epochs_zero.toml", replace("epochs = 2", "epochs = 0"), vec!["train.epochs = 0"]),
        ("batch_zero.toml", replace("batch_size = 8", "batch_size = 0"), vec!["train.batch_size = 0"]),
        ("max_steps_zero.toml", replace("max_steps = 4", "max_steps = 0"), vec!["train.max_steps = 0"]),
        ("lr_negative.toml", replace("max_steps = 4", "max_steps = 4\noptimizer = { kind = \"adam\", lr = -1 }"), vec!["train.optimizer.lr = -1"]),
        ("threads_huge.toml", replace("max_steps = 4", "max_steps = 4\nthreads = 100000"), vec!["train.threads = 100000"]),
        ("ckpt_root.toml", replace(&format!("dir = \"{}\"", dir.path().join("runs").display()), "dir = \"/\""), vec!["checkpoint.dir = \"/\"", "below the file-system root"]),
        ("ckpt_dotdot_root.toml", replace(&format!("dir = \"{}\"", dir.path().join("runs").display()), "dir = \"/../..\""), vec!["checkpoint.dir = \"/../..\""]),
        ("ckpt_dot.toml", replace(&format!("dir = \"{}\"", dir.path().join("runs").display()), "dir = \".\""), vec!["checkpoint.dir = \".\""]),
        ("ckpt_empty.toml", replace(&format!("dir = \"{}\"", dir.path().join("runs").display()), "dir = \"\""), vec!["checkpoint.dir = \"\""]),
        ("restarts_many.toml", replace("[checkpoint]", "[checkpoint]\nmax_restarts = 1000"), vec!["checkpoint.max_restarts = 1000"]),
        ("parallel_zero.toml", format!("{base}[parallel]\ndata = 0\n"), vec!["parallel.data = 0"]),
        ("huge_file.toml", huge_string, vec!["huge_file.toml", "at most 1048576 bytes"]),
        ("trailing.json", "{\"model\":{\"cell\":\"gru\"},\"task\":{\"kind\":\"forecast\"},\"data\":{\"path\":\"s.csv\",\"features\":[\"a\"],\"window\":2}} garbage".into(), vec!["trailing.json:1:", "trailing characters after the spec object"]),
        ("two_docs.json", "{\"seed\":1}{\"seed\":2}".into(), vec!["two_docs.json:1:"]),
        ("array.json", "[1,2,3]".into(), vec!["array.json:1:"]),
        ("not_json.json", "name = \"x\"".into(), vec!["not_json.json:1:"]),
        ("json_unknown.json", "{\"modle\":{}}".into(), vec!["unknown field `modle`"]),
    ];
    let mut results = Vec::new();
    for (file, text, expect) in &cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        results.push(check(file, &["check", path.to_str().unwrap()], expect));
    }
    // Not regular files and missing ones.
    results.push(check(
        "dev_zero",
        &["check", "/dev/zero"],
        &["/dev/zero", "not a regular file"],
    ));
    results.push(check("directory", &["check", "/"], &["not a regular file"]));
    results.push(check(
        "missing",
        &["check", "/nonexistent/job.toml"],
        &["/nonexistent/job.toml"],
    ));
    finish("spec", results, 60);
}

#[test]
fn malformed_datasets_are_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec_for = |data: &Path| -> String {
        format!(
            "name = \"d\"\n[model]\ncell = \"gru\"\nhidden = 4\n[task]\nkind = \"forecast\"\n\
             [data]\npath = \"{}\"\nformat = \"csv\"\nfeatures = [\"demand\"]\nwindow = 2\n\
             split = [0.6, 0.2, 0.2]\n[train]\nepochs = 1\nbatch_size = 2\n\
             [checkpoint]\ndir = \"{}\"\n",
            data.display(),
            dir.path().join("runs").display()
        )
    };
    let classify_for = |data: &Path| -> String {
        format!(
            "name = \"c\"\n[model]\ncell = \"gru\"\nhidden = 4\n[task]\nkind = \"classify\"\n\
             [data]\npath = \"{}\"\nformat = \"csv\"\nsplit = [0.6, 0.2, 0.2]\n[train]\n\
             epochs = 1\nbatch_size = 2\n[checkpoint]\ndir = \"{}\"\n",
            data.display(),
            dir.path().join("runs").display()
        )
    };
    let rows = |bad: &str| {
        let mut s = String::from("step,demand\n");
        for i in 0..12 {
            if i == 5 {
                s.push_str(&format!("{i},{bad}\n"));
            } else {
                s.push_str(&format!("{i},{}\n", 10 + i));
            }
        }
        s
    };
    let huge = "9".repeat(20 << 20) + "x";
    let mut labels = String::from("text,label\n");
    for i in 0..400 {
        labels.push_str(&format!("word{i},secret-{i}\n"));
    }
    let empty_texts = "text,label\n,a\n,b\n,a\n,b\n,a\n,b\n".to_string();
    // (file, contents, forecast or classify, expected substrings)
    let cases: Vec<(&str, Vec<u8>, bool, Vec<&str>)> = vec![
        (
            "nan.csv",
            rows("NaN").into_bytes(),
            true,
            vec!["nan.csv:7:", "not a finite number"],
        ),
        (
            "word.csv",
            rows("many").into_bytes(),
            true,
            vec!["word.csv:7:", "`many` is not a number"],
        ),
        (
            "huge_cell.csv",
            rows(&huge).into_bytes(),
            true,
            vec!["huge_cell.csv:7:", "characters in all)"],
        ),
        (
            "escape.csv",
            rows("\u{1b}[2J").into_bytes(),
            true,
            vec!["escape.csv:7:", "\\u{1b}[2J"],
        ),
        (
            "ragged.csv",
            b"step,demand\n1,2\n3\n".to_vec(),
            true,
            vec!["ragged.csv:3:", "ragged row"],
        ),
        (
            "no_column.csv",
            b"step,load\n1,2\n".to_vec(),
            true,
            vec!["no_column.csv:1:", "no column `demand`"],
        ),
        (
            "long_header.csv",
            format!("{},x\n1,2\n", "h".repeat(50_000)).into_bytes(),
            true,
            vec!["long_header.csv:1:", "characters in all)"],
        ),
        (
            "empty.csv",
            Vec::new(),
            true,
            vec!["empty.csv", "empty file"],
        ),
        (
            "header.csv",
            b"step,demand\n".to_vec(),
            true,
            vec!["header.csv:1:", "no data rows"],
        ),
        (
            "utf8.csv",
            b"step,demand\n1,\xff\n".to_vec(),
            true,
            vec!["utf8.csv:2:", "invalid UTF-8"],
        ),
        (
            "short.csv",
            b"step,demand\n1,2\n2,3\n".to_vec(),
            true,
            vec!["short.csv", "split has"],
        ),
        (
            "labels.csv",
            labels.into_bytes(),
            false,
            vec!["labels.csv:", "unknown label", "in all)"],
        ),
        (
            "empty_texts.csv",
            empty_texts.into_bytes(),
            false,
            vec!["empty_texts.csv", "all 6 texts are empty"],
        ),
    ];
    let mut results = Vec::new();
    for (file, contents, forecast, expect) in &cases {
        let data = dir.path().join(file);
        std::fs::write(&data, contents).unwrap();
        let spec = dir.path().join(format!("{file}.toml"));
        let text = if *forecast {
            spec_for(&data)
        } else {
            classify_for(&data)
        };
        std::fs::write(&spec, text).unwrap();
        results.push(check(
            file,
            &["train", spec.to_str().unwrap(), "--quiet", "--overwrite"],
            expect,
        ));
    }
    // Devices, directories and files over the byte limit: refused before reading.
    let big = dir.path().join("big.csv");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(3 << 20)
        .unwrap();
    let specials: Vec<(&str, PathBuf, &str, Vec<&str>)> = vec![
        (
            "dev_zero",
            PathBuf::from("/dev/zero"),
            "",
            vec!["/dev/zero", "not a regular file"],
        ),
        (
            "dev_urandom",
            PathBuf::from("/dev/urandom"),
            "",
            vec!["/dev/urandom", "not a regular file"],
        ),
        (
            "directory",
            dir.path().to_path_buf(),
            "",
            vec!["not a regular file"],
        ),
        (
            "missing",
            dir.path().join("nope.csv"),
            "",
            vec!["nope.csv", "cannot read"],
        ),
        (
            "over_limit",
            big.clone(),
            "[limits]\nmax_data_mb = 2\n",
            vec![
                "big.csv",
                "3145728 bytes, above the dataset limit of 2097152 bytes",
            ],
        ),
    ];
    for (what, data, extra, expect) in &specials {
        let spec = dir.path().join(format!("{what}.toml"));
        let text = spec_for(data);
        // [limits] must come after [train]; put it at the end.
        std::fs::write(&spec, format!("{text}{extra}")).unwrap();
        results.push(check(
            what,
            &["train", spec.to_str().unwrap(), "--quiet", "--overwrite"],
            expect,
        ));
    }
    finish("dataset", results, 18);
}

/// Splits a format-2 checkpoint into (header JSON, arrays) and builds files from parts.
struct Ckpt {
    header: serde_json::Value,
    payload: Vec<u8>,
}

impl Ckpt {
    fn read(path: &Path) -> Ckpt {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..8], b"RTCKPT02");
        let n = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
        let header = serde_json::from_slice(&bytes[16..16 + n]).unwrap();
        let payload = bytes[16 + n..bytes.len() - 4].to_vec();
        Ckpt { header, payload }
    }

    /// A format-2 file with a correct trailer, so only the checks after the CRC can refuse it.
    fn v2(&self, header: &serde_json::Value) -> Vec<u8> {
        let json = serde_json::to_vec(header).unwrap();
        let mut out = b"RTCKPT02".to_vec();
        out.extend((json.len() as u64).to_le_bytes());
        out.extend(&json);
        out.extend(&self.payload);
        let crc = crc32(&out);
        out.extend(crc.to_le_bytes());
        out
    }

    /// A format-1 file (no trailer; the header's crc32 covers the arrays only).
    fn v1(&self, header: &serde_json::Value) -> Vec<u8> {
        let mut h = header.clone();
        h["format_version"] = 1.into();
        let json = serde_json::to_vec(&h).unwrap();
        let mut out = b"RTCKPT01".to_vec();
        out.extend((json.len() as u64).to_le_bytes());
        out.extend(&json);
        out.extend(&self.payload);
        out
    }
}

/// CRC-32 (IEEE), as the checkpoint writer computes it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn train_tiny(dir: &Path, epochs: u32) -> PathBuf {
    let runs = dir.join("runs");
    let spec = dir.join("tiny.toml");
    std::fs::write(
        &spec,
        base_spec(&runs)
            .replace("epochs = 2", &format!("epochs = {epochs}"))
            .replace("max_steps = 4", ""),
    )
    .unwrap();
    let out = ringtrain()
        .args(["train", spec.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    runs
}

#[test]
fn malformed_checkpoints_are_refused_before_use() {
    let dir = tempfile::tempdir().unwrap();
    let runs = train_tiny(dir.path(), 1);
    let good = Ckpt::read(&runs.join("latest.ckpt"));
    let valid = std::fs::read(runs.join("latest.ckpt")).unwrap();
    let h = &good.header;
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut h = h.clone();
        f(&mut h);
        h
    };
    let n_params = h["arrays"][0][1].as_u64().unwrap();
    let mut flipped_header = valid.clone();
    // A digit inside the JSON header (the normalizer, the history, ...): only format 2's trailer
    // covers it.
    let pos = 16 + valid[16..].iter().position(|b| b.is_ascii_digit()).unwrap();
    flipped_header[pos] = if flipped_header[pos] == b'9' {
        b'1'
    } else {
        flipped_header[pos] + 1
    };
    let mut flipped_payload = valid.clone();
    let last_array_byte = valid.len() - 5;
    flipped_payload[last_array_byte] ^= 0x40;
    let mut flipped_trailer = valid.clone();
    let end = valid.len() - 1;
    flipped_trailer[end] ^= 1;
    let mut huge_len = valid.clone();
    huge_len[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32(&huge_len[..huge_len.len() - 4]);
    let l = huge_len.len();
    huge_len[l - 4..].copy_from_slice(&crc.to_le_bytes());
    let mut garbage_header = good.v2(h);
    let hl = serde_json::to_vec(h).unwrap().len();
    for b in &mut garbage_header[16..16 + hl] {
        *b = b'#';
    }
    let l = garbage_header.len();
    let crc = crc32(&garbage_header[..l - 4]);
    garbage_header[l - 4..].copy_from_slice(&crc.to_le_bytes());
    // (name, bytes, expected substrings)
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "empty",
            Vec::new(),
            vec!["empty.ckpt", "shorter than its prefix"],
        ),
        (
            "ten_bytes",
            valid[..10].to_vec(),
            vec!["shorter than its prefix"],
        ),
        (
            "bad_magic",
            [b"NOTACKPT".as_slice(), &valid[8..]].concat(),
            vec!["bad magic bytes"],
        ),
        (
            "toml",
            b"name = \"x\"\n[model]\ncell = \"gru\"\n".to_vec(),
            vec!["bad magic bytes"],
        ),
        (
            "truncated_1",
            valid[..valid.len() - 1].to_vec(),
            vec!["checksum mismatch"],
        ),
        (
            "truncated_half",
            valid[..valid.len() / 2].to_vec(),
            vec!["checksum mismatch"],
        ),
        (
            "prefix_only",
            valid[..16].to_vec(),
            vec!["no room for the checksum trailer"],
        ),
        (
            "padded",
            [valid.as_slice(), &[0u8; 8]].concat(),
            vec!["checksum mismatch"],
        ),
        (
            "flipped_header",
            flipped_header,
            vec!["checksum mismatch over header and arrays"],
        ),
        (
            "flipped_payload",
            flipped_payload,
            vec!["checksum mismatch"],
        ),
        (
            "flipped_trailer",
            flipped_trailer,
            vec!["checksum mismatch"],
        ),
        (
            "huge_header_len",
            huge_len,
            vec!["header length 18446744073709551615 exceeds"],
        ),
        ("garbage_header", garbage_header, vec!["unreadable header"]),
        (
            "array_len_overflow",
            good.v2(&with(&|h| h["arrays"][0][1] = (u64::MAX / 2).into())),
            vec!["overflows"],
        ),
        (
            "array_len_off",
            good.v2(&with(&|h| h["arrays"][0][1] = (n_params + 1).into())),
            vec!["truncated or padded"],
        ),
        (
            "array_missing",
            good.v2(&with(&|h| h["arrays"][0][0] = "paramz".into())),
            vec!["array \"params\" missing"],
        ),
        (
            "array_twice",
            good.v2(&with(&|h| h["arrays"][1][0] = "params".into())),
            vec!["listed twice"],
        ),
        (
            "array_negative",
            good.v2(&with(&|h| h["arrays"][0][1] = (-5).into())),
            vec!["unreadable header"],
        ),
        (
            "crc_field",
            good.v2(&with(&|h| h["crc32"] = 7.into())),
            vec!["checksum mismatch (header 00000007"],
        ),
        (
            "version_7",
            good.v2(&with(&|h| h["format_version"] = 7.into())),
            vec!["format version 7"],
        ),
        (
            "spec_hidden",
            good.v2(&with(&|h| {
                h["spec"]["model"]["hidden"] = 1_000_000_000.into()
            })),
            vec![
                "holds a spec that fails validation",
                "model.hidden = 1000000000",
            ],
        ),
        (
            "spec_layers",
            good.v2(&with(&|h| h["spec"]["model"]["layers"] = 0.into())),
            vec!["model.layers = 0"],
        ),
        (
            "spec_name",
            good.v2(&with(&|h| h["spec"]["name"] = "../../etc".into())),
            vec!["fails validation", "name"],
        ),
        (
            "spec_ckpt_root",
            good.v2(&with(&|h| h["spec"]["checkpoint"]["dir"] = "/".into())),
            vec!["checkpoint.dir"],
        ),
        (
            "spec_budget",
            good.v2(&with(&|h| {
                h["spec"]["limits"] = serde_json::json!({"max_parameters": 1})
            })),
            vec!["limits.max_parameters = estimate"],
        ),
        (
            "spec_window",
            good.v2(&with(&|h| {
                h["spec"]["data"]["kind"]["Series"]["window"] = 0.into()
            })),
            vec!["data.window = 0"],
        ),
        (
            "spec_missing",
            good.v2(&with(&|h| {
                h.as_object_mut().unwrap().remove("spec");
            })),
            vec!["unreadable header", "spec"],
        ),
        (
            "v1_overflow",
            good.v1(&with(&|h| h["arrays"][0][1] = (u64::MAX / 2).into())),
            vec!["overflows"],
        ),
        (
            "v1_spec_hidden",
            good.v1(&with(&|h| h["spec"]["model"]["hidden"] = 70_000.into())),
            vec!["model.hidden = 70000"],
        ),
        (
            "v1_truncated",
            {
                let v = good.v1(h);
                v[..v.len() - 3].to_vec()
            },
            vec!["truncated or padded"],
        ),
    ];
    let mut results = Vec::new();
    for (name, bytes, expect) in &cases {
        let path = dir.path().join(format!("{name}.ckpt"));
        std::fs::write(&path, bytes).unwrap();
        results.push(check(
            name,
            &["eval", "--checkpoint", path.to_str().unwrap()],
            expect,
        ));
        results.push(check(
            name,
            &["predict", "--checkpoint", path.to_str().unwrap()],
            expect,
        ));
    }
    let empty_dir = dir.path().join("no-ckpt");
    std::fs::create_dir_all(&empty_dir).unwrap();
    results.push(check(
        "empty_dir",
        &["eval", "--checkpoint", empty_dir.to_str().unwrap()],
        &["no checkpoint in"],
    ));
    results.push(check(
        "dev_zero",
        &["eval", "--checkpoint", "/dev/zero"],
        &["/dev/zero"],
    ));
    finish("checkpoint", results, 60);

    // Format 1 files still load (their header is unprotected, as before).
    let v1 = dir.path().join("v1.ckpt");
    std::fs::write(&v1, good.v1(h)).unwrap();
    let out = ringtrain()
        .args(["eval", "--checkpoint", v1.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_corrupt_latest_falls_back_to_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let runs = train_tiny(dir.path(), 3);
    let latest = runs.join("latest.ckpt");
    let previous = runs.join("previous.ckpt");
    assert!(previous.is_file(), "no previous.ckpt after three epochs");
    let mut bytes = std::fs::read(&latest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&latest, bytes).unwrap();
    let spec = dir.path().join("tiny.toml");
    let out = ringtrain()
        .args([
            "train",
            spec.to_str().unwrap(),
            "--quiet",
            "--resume",
            runs.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("latest.ckpt fails its check") && err.contains("previous.ckpt"),
        "{err}"
    );
}

#[test]
fn malformed_command_lines_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let runs = train_tiny(dir.path(), 1);
    let ckpt = runs.to_str().unwrap();
    let spec = dir.path().join("tiny.toml");
    let spec = spec.to_str().unwrap();
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        ("no_command", vec![], vec!["Usage"]),
        ("unknown_command", vec!["frobnicate"], vec!["frobnicate"]),
        (
            "unknown_flag",
            vec!["train", spec, "--bogus"],
            vec!["--bogus"],
        ),
        ("train_no_spec", vec!["train"], vec!["<SPEC>"]),
        (
            "train_missing_spec",
            vec!["train", "/nonexistent.toml"],
            vec!["/nonexistent.toml"],
        ),
        (
            "train_dev_zero",
            vec!["train", "/dev/zero"],
            vec!["not a regular file"],
        ),
        (
            "train_existing_run",
            vec!["train", spec, "--quiet"],
            vec!["already holds a run", "--resume", "--overwrite"],
        ),
        (
            "train_resume_and_overwrite",
            vec!["train", spec, "--resume", ckpt, "--overwrite"],
            vec!["--overwrite"],
        ),
        (
            "train_threads_text",
            vec!["train", spec, "--threads", "many"],
            vec!["--threads"],
        ),
        (
            "train_threads_negative",
            vec!["train", spec, "--threads", "-1"],
            vec!["'-1'"],
        ),
        (
            "train_halt_text",
            vec!["train", spec, "--halt-after-steps", "x"],
            vec!["--halt-after-steps"],
        ),
        (
            "train_resume_missing",
            vec!["train", spec, "--resume", "/nonexistent-dir"],
            vec!["/nonexistent-dir"],
        ),
        (
            "eval_missing",
            vec!["eval", "--checkpoint", "/nonexistent"],
            vec!["/nonexistent"],
        ),
        ("eval_no_ckpt", vec!["eval"], vec!["--checkpoint"]),
        (
            "eval_batch_zero",
            vec!["eval", "--checkpoint", ckpt, "--batch-size", "0"],
            vec!["--batch-size 0 is out of range"],
        ),
        (
            "eval_batch_text",
            vec!["eval", "--checkpoint", ckpt, "--batch-size", "lots"],
            vec!["--batch-size"],
        ),
        (
            "eval_split_bad",
            vec!["eval", "--checkpoint", ckpt, "--split", "everything"],
            vec!["--split"],
        ),
        (
            "eval_data_missing",
            vec!["eval", "--checkpoint", ckpt, "--data", "/nonexistent.csv"],
            vec!["/nonexistent.csv"],
        ),
        (
            "eval_data_dev_zero",
            vec!["eval", "--checkpoint", ckpt, "--data", "/dev/zero"],
            vec!["not a regular file"],
        ),
        (
            "predict_input_missing",
            vec![
                "predict",
                "--checkpoint",
                ckpt,
                "--input",
                "/nonexistent.csv",
            ],
            vec!["/nonexistent.csv"],
        ),
        (
            "predict_input_dev_zero",
            vec!["predict", "--checkpoint", ckpt, "--input", "/dev/zero"],
            vec!["not a regular file"],
        ),
        (
            "predict_beam_zero",
            vec!["predict", "--checkpoint", ckpt, "--beam", "0"],
            vec!["--beam"],
        ),
        (
            "generate_tokens_huge",
            vec![
                "generate",
                "--checkpoint",
                ckpt,
                "--prompt",
                "a",
                "--tokens",
                "4000000000",
            ],
            vec!["--tokens 4000000000 is out of range"],
        ),
        (
            "generate_tokens_overflow",
            vec![
                "generate",
                "--checkpoint",
                ckpt,
                "--prompt",
                "a",
                "--tokens",
                "99999999999999999999999",
            ],
            vec!["--tokens"],
        ),
        (
            "generate_tokens_zero",
            vec![
                "generate",
                "--checkpoint",
                ckpt,
                "--prompt",
                "a",
                "--tokens",
                "0",
            ],
            vec!["--tokens 0 is out of range"],
        ),
        (
            "generate_temperature_negative",
            vec![
                "generate",
                "--checkpoint",
                ckpt,
                "--prompt",
                "a",
                "--temperature",
                "-1",
            ],
            vec!["--temperature -1 is out of range"],
        ),
        (
            "generate_temperature_nan",
            vec![
                "generate",
                "--checkpoint",
                ckpt,
                "--prompt",
                "a",
                "--temperature",
                "NaN",
            ],
            vec!["--temperature NaN is out of range"],
        ),
        (
            "generate_temperature_inf",
            vec![
                "generate",
                "--checkpoint",
                ckpt,
                "--prompt",
                "a",
                "--temperature",
                "inf",
            ],
            vec!["out of range"],
        ),
        (
            "generate_top_k_zero",
            vec![
                "generate",
                "--checkpoint",
                ckpt,
                "--prompt",
                "a",
                "--top-k",
                "0",
            ],
            vec!["--top-k 0 is out of range"],
        ),
        (
            "generate_not_lm",
            vec!["generate", "--checkpoint", ckpt, "--prompt", "a"],
            vec!["not a language model"],
        ),
        (
            "check_two_specs",
            vec!["check", spec, spec],
            vec!["unexpected argument"],
        ),
        (
            "status_bad_url",
            vec!["status", "--coordinator", "http://127.0.0.1:1"],
            vec!["127.0.0.1:1"],
        ),
        (
            "worker_bad_listen",
            vec!["worker", "--listen", "not-an-address"],
            vec!["--listen"],
        ),
        (
            "coordinator_bad_listen",
            vec!["coordinator", "--listen", "999.1.1.1:70"],
            vec!["--listen"],
        ),
        (
            "coordinator_lease_text",
            vec!["coordinator", "--lease-ms", "soon"],
            vec!["--lease-ms"],
        ),
    ];
    let mut results = Vec::new();
    for (what, args, expect) in &cases {
        results.push(check(what, args, expect));
    }
    finish("command-line", results, 30);
}

#[test]
fn printing_into_a_closed_pipe_exits_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    // `ringtrain check SPEC | head`, with the reader gone before anything is printed: the print
    // meets EPIPE, which must end the process quietly (no panic message, no signal).
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("s.toml");
    std::fs::write(&spec, base_spec(&dir.path().join("runs"))).unwrap();
    for _ in 0..3 {
        let mut child = ringtrain()
            .args(["check", spec.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(!err.contains("panicked"), "{err}");
        assert!(status.success(), "{status:?}: {err}");
    }
}
