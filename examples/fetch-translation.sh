#!/usr/bin/env bash
# Fetches a verse-aligned English–Spanish parallel text for ringtrain's translation examples:
# the King James Version (1769 text, public domain) and the Reina-Valera 1909 (public domain),
# as SWORD zText modules from Debian's packages sword-text-kjv and sword-text-sparv. Both use the
# KJV versification, so the verse at index i of one is the verse at index i of the other.
#
#   examples/data/fetched/kjv-rv1909.tsv      columns `en` and `es` (header row); the verse
#                                             pairs with at most MAX_WORDS words on each side
#   examples/data/fetched/kjv-rv1909-all.tsv  every verse pair
#   examples/data/fetched/TRANSLATION-LICENSE.md  attribution
#
# OSIS markup (Strong's numbers, footnotes, headings, paragraph marks) is removed.
# The directory is git-ignored: the project does not commit third-party text.
# Needs apt-get (Debian/Ubuntu, package lists present: run `apt-get update` once if the download
# fails), dpkg-deb and python3. Usage: examples/fetch-translation.sh [OUTPUT_DIR] [MAX_WORDS=15]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/data/fetched}"
max_words="${2:-15}"
for tool in apt-get dpkg-deb python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download sword-text-kjv sword-text-sparv >/dev/null 2>&1); then
    echo "error: apt-get download sword-text-kjv sword-text-sparv failed;" \
        "run 'apt-get update' (as root) once and retry" >&2
    exit 1
fi
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done

mkdir -p "$out"
python3 - "$work/root/usr/share/sword/modules/texts/ztext" "$out" "$max_words" <<'PY'
import re
import struct
import sys
import zlib

root, out, max_words = sys.argv[1], sys.argv[2], int(sys.argv[3])


def verses(module, testament):
    """Every index entry of a zText module, decoded (empty string for an empty entry).

    `.bzv` holds one 10-byte record per verse index (block u32, offset u32, length u16, little
    endian) into zlib blocks that the 12-byte `.bzs` records (offset, length, uncompressed
    length) locate in `.bzz`.
    """
    base = f"{root}/{module}/{testament}"
    bzs, bzv, bzz = (open(f"{base}.{ext}", "rb").read() for ext in ("bzs", "bzv", "bzz"))
    blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs), 12)]
    cache = {}
    result = []
    for i in range(0, len(bzv), 10):
        block, start, length = struct.unpack_from("<IIH", bzv, i)
        if length == 0:
            result.append("")
            continue
        if block not in cache:
            offset, size, _ = blocks[block]
            cache[block] = zlib.decompress(bzz[offset:offset + size])
        result.append(cache[block][start:start + length].decode("utf-8"))
    return result


dropped_elements = re.compile(r"<(note|title)\b[^>]*>.*?</\1>", re.S)
tag = re.compile(r"<[^>]*>")


def plain(osis):
    # Adjacent word elements (`</w><w ...>`) are separate words; any other tag sits next to
    # the spacing it needs.
    osis = re.sub(r"</w>\s*<w\b", "</w> <w", dropped_elements.sub("", osis))
    text = tag.sub("", osis).replace("¶", " ")
    return re.sub(r"\s+", " ", text).strip()


pairs = []
for testament in ("ot", "nt"):
    en = verses("engKJV2006eb", testament)
    es = verses("spaRV1909eb", testament)
    if len(en) != len(es):
        sys.exit(f"error: {testament}: {len(en)} English and {len(es)} Spanish index entries")
    for e, s in zip(en, es):
        e, s = plain(e), plain(s)
        # Book and chapter headings are index entries with markup only.
        if e and s:
            if "\t" in e + s:
                sys.exit(f"error: a verse contains a tab: {e!r} / {s!r}")
            pairs.append((e, s))
short = [p for p in pairs if len(p[0].split()) <= max_words and len(p[1].split()) <= max_words]
for name, rows in (("kjv-rv1909-all.tsv", pairs), ("kjv-rv1909.tsv", short)):
    with open(f"{out}/{name}.tmp", "w", encoding="utf-8") as f:
        f.write("en\tes\n")
        for e, s in rows:
            f.write(f"{e}\t{s}\n")
print(f"{len(pairs)} verse pairs; {len(short)} with at most {max_words} words per side")
PY
mv "$out/kjv-rv1909-all.tsv.tmp" "$out/kjv-rv1909-all.tsv"
mv "$out/kjv-rv1909.tsv.tmp" "$out/kjv-rv1909.tsv"

cat >"$out/TRANSLATION-LICENSE.md" <<'LIC'
# kjv-rv1909.tsv, kjv-rv1909-all.tsv — attribution

English: King James Version (1769 standardized text), public domain, SWORD module
engKJV2006eb 14.3 from the Debian package sword-text-kjv (CrossWire Bible Society, eBible.org).
Spanish: Reina-Valera 1909, public domain, SWORD module spaRV1909eb from the Debian package
sword-text-sparv (CrossWire Bible Society, eBible.org).

Obtained by examples/fetch-translation.sh. Changes: OSIS markup (Strong's numbers, footnotes,
headings, paragraph marks) removed, verses aligned by their common KJV versification index,
book and chapter heading entries dropped.
LIC

echo "wrote $out/kjv-rv1909.tsv and $out/kjv-rv1909-all.tsv"
