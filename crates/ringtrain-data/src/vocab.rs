//! Tokenizers, the token vocabulary and the label set of text classification. Both the
//! [`Vocab`] and the [`LabelSet`] are built on the training split only, serialize with serde into
//! the checkpoint, and encode text and labels identically at predict time.

use crate::error::{DataError, LabelOrigin};
use ringtrain_spec::TokenizerKind;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Id of the padding token; padded positions carry it and mask 0.
pub const PAD: u32 = 0;
/// Id of the unknown token: out-of-vocabulary tokens map to it.
pub const UNK: u32 = 1;
/// Spelling of the padding token in the vocabulary.
pub const PAD_TOKEN: &str = "<pad>";
/// Spelling of the unknown token in the vocabulary.
pub const UNK_TOKEN: &str = "<unk>";

/// Splits text into tokens.
///
/// - `char`: one token per Unicode scalar value, spaces included;
/// - `word`: maximal runs of alphanumerics and apostrophes (`'` and `’`) form words; every other
///   non-whitespace character (punctuation, symbols) is a token of its own; whitespace separates.
///
/// With `lowercase`, text is lowercased (Unicode-aware) before splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokenizer {
    /// Character or word tokens.
    pub kind: TokenizerKind,
    /// Lowercase before tokenizing.
    pub lowercase: bool,
}

impl Tokenizer {
    /// The tokens of `text`, in order.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        let lowered;
        let text = if self.lowercase {
            lowered = text.to_lowercase();
            lowered.as_str()
        } else {
            text
        };
        match self.kind {
            TokenizerKind::Char => text.chars().map(String::from).collect(),
            TokenizerKind::Word => {
                let mut out = Vec::new();
                let mut word = String::new();
                for c in text.chars() {
                    if c.is_alphanumeric() || c == '\'' || c == '\u{2019}' {
                        word.push(c);
                        continue;
                    }
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    if !c.is_whitespace() {
                        out.push(c.to_string());
                    }
                }
                if !word.is_empty() {
                    out.push(word);
                }
                out
            }
        }
    }
}

/// Token ↔ id map: `0 = <pad>`, `1 = <unk>`, then training tokens by descending frequency, ties
/// broken by the token's lexicographic (byte) order so the ids are deterministic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "VocabRepr", into = "VocabRepr")]
pub struct Vocab {
    tokenizer: Tokenizer,
    max_len: usize,
    tokens: Vec<String>,
    index: HashMap<String, u32>,
}

#[derive(Serialize, Deserialize)]
struct VocabRepr {
    tokenizer: Tokenizer,
    max_len: usize,
    tokens: Vec<String>,
}

impl From<VocabRepr> for Vocab {
    fn from(r: VocabRepr) -> Vocab {
        Vocab::from_tokens(r.tokenizer, r.max_len, r.tokens)
    }
}

impl From<Vocab> for VocabRepr {
    fn from(v: Vocab) -> VocabRepr {
        VocabRepr {
            tokenizer: v.tokenizer,
            max_len: v.max_len,
            tokens: v.tokens,
        }
    }
}

impl Vocab {
    /// Builds the vocabulary from the token lists of the training texts: tokens seen at least
    /// `min_freq` times, most frequent first, at most `max_vocab` entries including `<pad>` and
    /// `<unk>`. `max_len` is the truncation length [`Vocab::encode`] applies.
    pub fn build<'a>(
        tokenizer: Tokenizer,
        max_len: usize,
        train_tokens: impl IntoIterator<Item = &'a [String]>,
        min_freq: usize,
        max_vocab: usize,
    ) -> Vocab {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for seq in train_tokens {
            for tok in seq {
                *counts.entry(tok.as_str()).or_default() += 1;
            }
        }
        let mut ranked: Vec<(&str, usize)> = counts
            .into_iter()
            .filter(|&(t, n)| n >= min_freq && t != PAD_TOKEN && t != UNK_TOKEN)
            .collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut tokens = vec![PAD_TOKEN.to_string(), UNK_TOKEN.to_string()];
        tokens.extend(
            ranked
                .into_iter()
                .take(max_vocab.saturating_sub(2))
                .map(|(t, _)| t.to_string()),
        );
        Vocab::from_tokens(tokenizer, max_len, tokens)
    }

    pub(crate) fn from_tokens(tokenizer: Tokenizer, max_len: usize, tokens: Vec<String>) -> Vocab {
        let index = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Vocab {
            tokenizer,
            max_len,
            tokens,
            index,
        }
    }

    /// The same tokens and ids with another truncation length (a pretrained vocabulary
    /// adopted by a task that truncates its sequences differently).
    pub fn with_max_len(mut self, max_len: usize) -> Vocab {
        self.max_len = max_len;
        self
    }

    /// The tokenizer the vocabulary was built with.
    pub fn tokenizer(&self) -> Tokenizer {
        self.tokenizer
    }

    /// Longest sequence [`Vocab::encode`] returns.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Number of ids, including `<pad>` and `<unk>` (the embedding table's row count).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always false: `<pad>` and `<unk>` are always present.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of a token, if it is in the vocabulary.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied()
    }

    /// The token of an id, if in range.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// All tokens in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Maps already-tokenized text to ids (`<unk>` for unknown tokens), truncated to `max_len`
    /// (keeping the start).
    pub fn encode_tokens(&self, tokens: &[String]) -> Vec<u32> {
        tokens
            .iter()
            .take(self.max_len)
            .map(|t| self.id(t).unwrap_or(UNK))
            .collect()
    }

    /// Tokenizes `text` with the vocabulary's tokenizer and maps it to ids, truncated to
    /// `max_len`. The result may be empty; batching turns an empty sequence into one `<unk>`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_tokens(&self.tokenizer.tokenize(text))
    }
}

/// The classes of a classifier, in output order. Two sets are equal when their names are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelSet {
    names: Vec<String>,
    /// Why these labels (for error messages): the spec's list or the training split.
    #[serde(skip, default = "default_origin")]
    origin: LabelOrigin,
}

impl PartialEq for LabelSet {
    fn eq(&self, other: &LabelSet) -> bool {
        self.names == other.names
    }
}

impl Eq for LabelSet {}

fn default_origin() -> LabelOrigin {
    LabelOrigin::Checkpoint
}

impl LabelSet {
    /// Labels in the given order (the spec's explicit `labels` list).
    pub fn explicit(names: Vec<String>) -> LabelSet {
        LabelSet {
            names,
            origin: LabelOrigin::Spec,
        }
    }

    /// The sorted set of labels seen in the training split.
    pub fn from_train<'a>(seen: impl IntoIterator<Item = &'a str>) -> LabelSet {
        let mut names: Vec<String> = seen.into_iter().map(str::to_string).collect();
        names.sort_unstable();
        names.dedup();
        LabelSet {
            names,
            origin: LabelOrigin::TrainSplit,
        }
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Class names in output order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The name of class `id`.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(String::as_str)
    }

    /// The id of a label, if known.
    pub fn id(&self, label: &str) -> Option<u32> {
        self.names.iter().position(|n| n == label).map(|i| i as u32)
    }

    /// The id of the label found at `file:line`, or [`DataError::UnknownLabel`] naming it.
    pub(crate) fn id_at(
        &self,
        label: &str,
        file: &str,
        line: u64,
        column: &crate::ColumnRef,
    ) -> Result<u32, DataError> {
        self.id(label).ok_or_else(|| DataError::UnknownLabel {
            file: file.to_string(),
            line,
            column: column.clone(),
            label: label.to_string(),
            known: self.names.clone(),
            origin: self.origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str, lowercase: bool) -> Vec<String> {
        Tokenizer {
            kind: TokenizerKind::Word,
            lowercase,
        }
        .tokenize(s)
    }

    #[test]
    fn word_tokenizer_splits_punctuation_and_keeps_apostrophes() {
        assert_eq!(
            words("It wasn't GOOD, at all!!  (really)", true),
            [
                "it", "wasn't", "good", ",", "at", "all", "!", "!", "(", "really", ")"
            ]
        );
        assert_eq!(words("Café 42x", false), ["Café", "42x"]);
        assert!(words("   ", false).is_empty());
    }

    #[test]
    fn char_tokenizer_keeps_spaces() {
        let t = Tokenizer {
            kind: TokenizerKind::Char,
            lowercase: true,
        };
        assert_eq!(t.tokenize("Ab c"), ["a", "b", " ", "c"]);
    }

    #[test]
    fn vocab_orders_by_frequency_then_lexicographically_and_caps_size() {
        let t = Tokenizer {
            kind: TokenizerKind::Word,
            lowercase: false,
        };
        let train = [words("b a c b a d", false), words("e", false)];
        let v = Vocab::build(t, 3, train.iter().map(Vec::as_slice), 1, 5);
        assert_eq!(v.tokens(), ["<pad>", "<unk>", "a", "b", "c"]);
        let v2 = Vocab::build(t, 3, train.iter().map(Vec::as_slice), 2, 100);
        assert_eq!(v2.tokens(), ["<pad>", "<unk>", "a", "b"]);
        assert_eq!(v2.encode("a z b a"), [2, UNK, 3]);
        let json = serde_json::to_string(&v2).unwrap();
        let back: Vocab = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v2);
        assert_eq!(back.id("b"), Some(3));
    }
}
