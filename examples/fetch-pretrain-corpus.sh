#!/usr/bin/env bash
# Builds the language-model corpus of examples/sentiment-pretrain-lm.toml:
#
#   examples/data/fetched/sentiment-pretrain-corpus.txt
#
# = the first 1,000,000 bytes of Shakespeare's plays (whole lines; ~180 k words of outside
#   English text, from fetch-shakespeare.sh)
# + the text of the 2,700 UCI pool sentences (uci-sentiment-pool.txt, from fetch-sentiment.sh),
#   last, so that the language model's validation split (its last 5 %) is review text.
#
# The 300 held-out test sentences (uci-sentiment-test.jsonl) are not in it: the classifier that
# starts from this language model is scored on sentences it never saw in any form.
# Runs the two fetch scripts when their outputs are missing. Usage:
# examples/fetch-pretrain-corpus.sh [OUTPUT_DIR]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/data/fetched}"
[ -f "$out/shakespeare.txt" ] || bash "$here/fetch-shakespeare.sh" "$out"
[ -f "$out/uci-sentiment-pool.txt" ] || bash "$here/fetch-sentiment.sh" "$out"

# `head -c` may cut the last line: drop it, so the corpus holds whole lines only.
{ head -c 1000000 "$out/shakespeare.txt" | sed '$d'; cat "$out/uci-sentiment-pool.txt"; } \
    >"$out/sentiment-pretrain-corpus.txt.tmp"
mv "$out/sentiment-pretrain-corpus.txt.tmp" "$out/sentiment-pretrain-corpus.txt"
echo "wrote $(wc -w <"$out/sentiment-pretrain-corpus.txt") words to $out/sentiment-pretrain-corpus.txt"
