//! A plain text corpus for next-token language models, batchified like PyTorch's
//! `word_language_model` example.
//!
//! The file is read as one token stream (`char`: every character, newlines included; `word`:
//! the word tokenizer per line plus an end-of-line token [`EOL_TOKEN`] at each line end), cut
//! contiguously into train | val | test by the split fractions — never shuffled, the order is the
//! signal — and the vocabulary is built on the train part only. Each split is then cut into `S`
//! equally long contiguous *streams* (`S = train.batch_size` for train; for val/test at most that
//! many, fewer when the split is short, so each stream still spans a chunk; the tail that does not
//! fill a stream is dropped). Chunk `k` of a split holds tokens `[k·bptt, k·bptt + bptt)` of every
//! stream with the targets one token later; the last chunk is shorter when the stream length
//! minus one is not a multiple of `bptt`.
//!
//! Windows are numbered `k·S + s` (chunk `k`, stream `s`), so an unshuffled shard plan with a
//! global batch of `S` feeds chunk `k` of every stream at step `k`, and data-parallel rank `r` of
//! `D` gets streams `r·S/D .. (r+1)·S/D` — the streams whose carried state lives on that rank.

use crate::SplitName;
use crate::error::DataError;
use crate::order::{fraction, split_sizes};
use crate::source::Source;
use crate::vocab::{Tokenizer, Vocab};
use ringtrain_spec::{CorpusSpec, TokenizerKind};

/// The token a `word` corpus puts at the end of every line (a `char` corpus keeps `"\n"` as a
/// character anyway, so both spell it the same).
pub const EOL_TOKEN: &str = "\n";

/// One split cut into equal streams, stream-major (`ids[s·len + i]`).
#[derive(Debug, Clone, Default)]
struct Streams {
    ids: Vec<u32>,
    streams: usize,
    len: usize,
    /// Tokens of the split before the cut into streams.
    tokens: usize,
}

/// A batch of consecutive windows, one per stream: inputs and next-token targets.
#[derive(Debug, Clone, PartialEq)]
pub struct LmBatch {
    /// Input token ids `[batch, seq_len]`, row-major.
    pub ids: Vec<u32>,
    /// Target ids `[batch · seq_len]`: the token after each input token, in the same order.
    pub targets: Vec<u32>,
    /// Streams in the batch.
    pub batch: usize,
    /// Tokens per stream in this chunk.
    pub seq_len: usize,
}

/// A prepared language-model corpus.
#[derive(Debug, Clone)]
pub struct CorpusData {
    file: String,
    vocab: Vocab,
    bptt: usize,
    splits: [Streams; 3],
}

/// Tokenizes a corpus text into the stream a [`CorpusData`] is built from.
pub fn corpus_tokens(tokenizer: Tokenizer, text: &str) -> Vec<String> {
    match tokenizer.kind {
        TokenizerKind::Char => tokenizer.tokenize(text),
        TokenizerKind::Word => {
            let mut out = Vec::new();
            for line in text.split_inclusive('\n') {
                out.extend(tokenizer.tokenize(line));
                if line.ends_with('\n') {
                    out.push(EOL_TOKEN.to_string());
                }
            }
            out
        }
    }
}

/// Turns generated token strings back into text: characters are concatenated; words are
/// separated by spaces, with [`EOL_TOKEN`] ending a line.
pub fn join_tokens<S: AsRef<str>>(kind: TokenizerKind, tokens: &[S]) -> String {
    match kind {
        TokenizerKind::Char => tokens.iter().map(AsRef::as_ref).collect(),
        TokenizerKind::Word => {
            let mut out = String::new();
            for t in tokens {
                let t = t.as_ref();
                if t == EOL_TOKEN {
                    out.push('\n');
                    continue;
                }
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push(' ');
                }
                out.push_str(t);
            }
            out
        }
    }
}

impl CorpusData {
    /// Reads and prepares a corpus: `batch` is `train.batch_size` (the number of train
    /// streams), `bptt` the chunk length. With `fitted = Some(vocab)` that vocabulary is reused
    /// (evaluating a trained model) instead of being built on the train split.
    ///
    /// # Errors
    /// [`DataError::Io`] / [`DataError::InvalidUtf8`] for an unreadable file;
    /// [`DataError::NotATable`] for a `builtin:` source; [`DataError::CorpusTooShort`] when the
    /// train split (or a val/test split with a positive fraction) cannot give each stream two
    /// tokens; [`DataError::FittedMismatch`] when `fitted` uses another tokenizer.
    pub fn load(
        source: &Source,
        split: &ringtrain_spec::Split,
        spec: &CorpusSpec,
        batch: usize,
        bptt: usize,
        fitted: Option<&Vocab>,
    ) -> Result<CorpusData, DataError> {
        let file = source.display_name();
        let path = match source {
            Source::File(p) => p,
            Source::Builtin(_) => return Err(DataError::NotATable { file }),
        };
        let bytes = crate::table::read_regular(&file, path, u64::MAX)?;
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            DataError::InvalidUtf8 {
                file: file.clone(),
                line,
                column: None,
            }
        })?;
        let tokenizer = Tokenizer {
            kind: spec.tokenizer,
            lowercase: spec.lowercase,
        };
        let tokens = corpus_tokens(tokenizer, text);
        let sizes = split_sizes(tokens.len(), split);
        let bounds = [0, sizes[0], sizes[0] + sizes[1], tokens.len()];
        let part = |name: SplitName| &tokens[bounds[name.index()]..bounds[name.index() + 1]];
        let vocab = match fitted {
            Some(v) => {
                if v.tokenizer() != tokenizer {
                    return Err(DataError::FittedMismatch {
                        reason: format!(
                            "the vocabulary uses {:?} but the spec asks {:?}",
                            v.tokenizer(),
                            tokenizer
                        ),
                    });
                }
                v.clone()
            }
            None => Vocab::build(
                tokenizer,
                usize::MAX,
                [part(SplitName::Train)],
                spec.min_freq,
                spec.max_vocab,
            ),
        };
        let batch = batch.max(1);
        let bptt = bptt.max(1);
        let mut splits: [Streams; 3] = Default::default();
        for name in SplitName::ALL {
            let toks = part(name);
            let n = toks.len();
            let wanted = name == SplitName::Train || fraction(split, name) > 0.0;
            let streams = match name {
                SplitName::Train => batch,
                // At most the train batch, fewer when the split is short, so that a stream
                // still spans a whole chunk and its target.
                _ => (n / (bptt + 1)).clamp(1, batch),
            };
            let len = n / streams;
            if len < 2 {
                if wanted {
                    return Err(DataError::CorpusTooShort {
                        file,
                        split: name,
                        tokens: n,
                        streams,
                        hint: match name {
                            SplitName::Train => {
                                "lower train.batch_size, raise data.split.train or add text"
                            }
                            _ => "raise its fraction in data.split, set it to 0, or add text",
                        },
                    });
                }
                continue;
            }
            let ids = toks[..streams * len]
                .iter()
                .map(|t| vocab.id(t).unwrap_or(crate::UNK))
                .collect();
            splits[name.index()] = Streams {
                ids,
                streams,
                len,
                tokens: n,
            };
        }
        Ok(CorpusData {
            file,
            vocab,
            bptt,
            splits,
        })
    }

    /// Name of the source file.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The vocabulary (built on the train split; store it in the checkpoint).
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Tokens per chunk (`task.bptt`).
    pub fn bptt(&self) -> usize {
        self.bptt
    }

    /// Tokens of a split before it was cut into streams.
    pub fn tokens(&self, split: SplitName) -> usize {
        self.splits[split.index()].tokens
    }

    /// Number of streams of a split (0 when the split is empty).
    pub fn streams(&self, split: SplitName) -> usize {
        self.splits[split.index()].streams
    }

    /// Tokens per stream of a split.
    pub fn stream_len(&self, split: SplitName) -> usize {
        self.splits[split.index()].len
    }

    /// Chunks per stream: `ceil((stream_len − 1) / bptt)`.
    pub fn chunks(&self, split: SplitName) -> usize {
        let s = &self.splits[split.index()];
        s.len.saturating_sub(1).div_ceil(self.bptt)
    }

    /// Number of windows (`chunks × streams`); window `k·S + s` is chunk `k` of stream `s`.
    pub fn len(&self, split: SplitName) -> usize {
        self.chunks(split) * self.streams(split)
    }

    /// Whether a split has no window.
    pub fn is_empty(&self, split: SplitName) -> bool {
        self.len(split) == 0
    }

    /// Next-token targets scored in a split (`streams × (stream_len − 1)`).
    pub fn targets(&self, split: SplitName) -> usize {
        let s = &self.splits[split.index()];
        s.streams * s.len.saturating_sub(1)
    }

    /// The batch of windows `indices` of `split`, which must all belong to one chunk (one step
    /// of a shard plan with the split's stream count as global batch does).
    ///
    /// # Panics
    /// If an index is out of range or the indices span several chunks (a caller bug).
    pub fn batch(&self, split: SplitName, indices: &[usize]) -> LmBatch {
        let s = &self.splits[split.index()];
        let streams: Vec<usize> = indices.iter().map(|&i| i % s.streams).collect();
        let chunk = indices.first().map_or(0, |&i| i / s.streams);
        assert!(
            indices
                .iter()
                .all(|&i| i / s.streams == chunk && i < self.len(split)),
            "windows {indices:?} are not all in chunk {chunk} of the {split} split"
        );
        self.chunk(split, chunk, &streams)
    }

    /// Chunk `chunk` of the given streams of `split`.
    ///
    /// # Panics
    /// If the chunk or a stream is out of range.
    pub fn chunk(&self, split: SplitName, chunk: usize, streams: &[usize]) -> LmBatch {
        let s = &self.splits[split.index()];
        let start = chunk * self.bptt;
        let seq_len = self.bptt.min(s.len - 1 - start);
        let mut ids = Vec::with_capacity(streams.len() * seq_len);
        let mut targets = Vec::with_capacity(streams.len() * seq_len);
        for &stream in streams {
            assert!(stream < s.streams, "stream {stream} of {}", s.streams);
            let row = &s.ids[stream * s.len..][..s.len];
            ids.extend_from_slice(&row[start..start + seq_len]);
            targets.extend_from_slice(&row[start + 1..start + 1 + seq_len]);
        }
        LmBatch {
            ids,
            targets,
            batch: streams.len(),
            seq_len,
        }
    }

    /// The train split's token frequencies `[vocab]` (for the unigram baseline).
    pub fn train_counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.vocab.len()];
        for &id in &self.splits[SplitName::Train.index()].ids {
            counts[id as usize] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringtrain_spec::Split;

    fn corpus(text: &str, batch: usize, bptt: usize, kind: TokenizerKind) -> CorpusData {
        let dir = std::env::temp_dir().join(format!(
            "ringtrain-corpus-{}-{batch}-{bptt}-{kind:?}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.txt");
        std::fs::write(&path, text).unwrap();
        let spec = CorpusSpec {
            tokenizer: kind,
            lowercase: false,
            min_freq: 1,
            max_vocab: 1000,
        };
        let split = Split {
            train: 1.0,
            val: 0.0,
            test: 0.0,
        };
        let c = CorpusData::load(&Source::File(path), &split, &spec, batch, bptt, None).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        c
    }

    #[test]
    fn streams_chunks_and_targets_follow_the_batchify_layout() {
        // 26 letters, 3 streams of 8 (the last 2 letters dropped), chunks of 3: 3 + 3 + 1 steps.
        let c = corpus("abcdefghijklmnopqrstuvwxyz", 3, 3, TokenizerKind::Char);
        assert_eq!(
            (c.streams(SplitName::Train), c.stream_len(SplitName::Train)),
            (3, 8)
        );
        assert_eq!(c.chunks(SplitName::Train), 3);
        assert_eq!(c.targets(SplitName::Train), 21);
        let text = |ids: &[u32]| -> String {
            ids.iter()
                .map(|&i| c.vocab().token(i).unwrap_or("?"))
                .collect()
        };
        let b = c.batch(SplitName::Train, &[3, 4, 5]); // chunk 1, streams 0..3
        assert_eq!((b.batch, b.seq_len), (3, 3));
        assert_eq!(text(&b.ids), "deflmntuv");
        assert_eq!(text(&b.targets), "efgmnouvw");
        let last = c.batch(SplitName::Train, &[7]); // chunk 2 of stream 1: one step
        assert_eq!(
            (text(&last.ids), text(&last.targets)),
            ("o".into(), "p".into())
        );
    }

    #[test]
    fn word_corpus_ends_lines_and_detokenizes() {
        let c = corpus("the cat\nthe dog .\n", 1, 4, TokenizerKind::Word);
        let b = c.chunk(SplitName::Train, 0, &[0]);
        let toks: Vec<&str> = b
            .ids
            .iter()
            .map(|&i| c.vocab().token(i).unwrap_or("?"))
            .collect();
        assert_eq!(toks, ["the", "cat", "\n", "the"]);
        assert_eq!(
            join_tokens(TokenizerKind::Word, &["the", "cat", "\n", "a", "."]),
            "the cat\na ."
        );
    }

    #[test]
    fn a_short_train_split_names_the_split_and_the_fix() {
        let dir =
            std::env::temp_dir().join(format!("ringtrain-corpus-short-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.txt");
        std::fs::write(&path, "abc").unwrap();
        let spec = CorpusSpec {
            tokenizer: TokenizerKind::Char,
            lowercase: false,
            min_freq: 1,
            max_vocab: 10,
        };
        let split = Split {
            train: 1.0,
            val: 0.0,
            test: 0.0,
        };
        let err = CorpusData::load(&Source::File(path), &split, &spec, 4, 2, None)
            .unwrap_err()
            .to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("train split has 3 tokens"), "{err}");
        assert!(err.contains("train.batch_size"), "{err}");
    }
}
