"""Build concepts/labels/vocabulary.txt, the default vocabulary of ``concepts label`` (see VOCABULARY.md there).

    python scripts/build_vocabulary.py   # needs timm (installed) and open-clip-torch (pip install open-clip-torch)

Candidates: the WordNet 3.0 lemmas of the ImageNet-12k synsets (timm's ``imagenet_synset_to_lemma.txt`` and
``imagenet12k_synsets.txt``: depictable noun categories with enough photos), one lowercase word of 3+ letters, common
English function words left out (scikit-learn's stop-word list). Ranked by how common they are in image captions:
the rank of the word's whole-word token among the merges of CLIP's byte-pair vocabulary (``bpe_simple_vocab_16e6``,
shipped by open_clip); words that are not one token are left out. A short hand-written list of colours, patterns,
textures, materials and parts follows (words alone are not copyrightable; the list is ours, Apache-2.0).
"""
from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "concepts" / "labels" / "vocabulary.txt"
# Stop words we keep: they name what a concept shows.
KEEP = {"fire", "top", "bottom", "front", "side", "back", "hand"}
EXTRA = """
red orange yellow green blue purple pink brown black white grey gray beige gold silver bronze turquoise
striped spotted dotted checkered plaid zigzag wavy curly spiral swirly grid mesh woven knitted braided
furry feathered scaly hairy fluffy shiny glossy matte metallic transparent translucent reflective rusty
wrinkled cracked bumpy smooth rough grainy porous fibrous marbled veined stained speckled blotchy
wooden metal plastic glass stone brick concrete leather fabric paper cardboard rubber ceramic
sand snow grass foliage sky cloud water wave ripple shadow sunlight reflection blur
eye eyes nose mouth ear ears teeth tongue beak claw paw hoof horn tail fin feather fur mane whisker
wheel window door roof handle button blade screen keyboard logo text letters label stripe spot
""".split()


def main() -> None:
    import open_clip
    import timm
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    info = Path(timm.__file__).parent / "data" / "_info"
    keep = set((info / "imagenet12k_synsets.txt").read_text().split())
    lemmas: list[str] = []
    for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines():
        wnid, _, names = line.partition("\t")
        if wnid in keep:
            lemmas += [n.strip() for n in names.split(",")]
    stop = set(ENGLISH_STOP_WORDS) - KEEP
    candidates = {w for w in lemmas if re.fullmatch(r"[a-z]{3,}", w) and w not in stop}
    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]  # as CLIP's tokenizer
    rank: dict[str, int] = {}
    for i, merge in enumerate(merges):
        token = merge.replace(" ", "")
        if token.endswith("</w>"):
            rank.setdefault(token[:-4], i)
    ranked = [w for _, w in sorted((rank[w], w) for w in candidates if w in rank)]
    words = list(dict.fromkeys(ranked + [w for w in EXTRA if w not in set(ranked)]))
    header = [f"# concepts' default vocabulary: {len(words)} words (see VOCABULARY.md: sources and licences).",
              "# Built by scripts/build_vocabulary.py from WordNet 3.0 (Copyright 2006 by Princeton University, "
              "WordNet licence), ranked by CLIP's BPE merges (MIT)."]
    OUT.write_text("\n".join(header + words) + "\n", encoding="utf-8")
    print(f"{len(words)} words -> {OUT} ({len(ranked)} ranked lemmas, {len(words) - len(ranked)} added)")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
