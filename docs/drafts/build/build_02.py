"""Build notebooks/02_baseline_captioner.ipynb (cells only; execute with nbconvert afterwards)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path("/work/main/notebooks/02_baseline_captioner.ipynb")
TIME_LINE = sys.argv[1] if len(sys.argv) > 1 else "TIME_PLACEHOLDER"

cells: list = []


def md(text: str) -> None:
    cells.append(new_markdown_cell(text.strip("\n")))


def code(text: str, solution: bool = False) -> None:
    cell = new_code_cell(text.strip("\n"))
    if solution:
        cell.metadata["tags"] = ["solution"]
    cells.append(cell)


# ------------------------------------------------------------------------------------------------ title
md(
    f"""
# 02 · The baseline captioner: image patches, a GPT-2 decoder and cross-attention

SEVLM (Zhang, Zheng, Wang & Guo, *Training A Small Emotional Vision Language Model for Visual Art
Comprehension*, ECCV 2024, arXiv 2403.11150) is a plain image-to-text model with three additions: VAD
fusion, a VAD head and a contrastive head. This notebook builds the plain model alone. It is the
**NLX-GPT-style baseline** the paper improves on. A vision transformer (CLIP's) turns the picture into a
small grid of patch vectors. A GPT-2 decoder writes *the emotion is X because Y* one token at a time, and
**cross-attention** layers inside the decoder let every text position read the patches. Notebooks 03 to 07
change this model one piece at a time, so it is worth building it slowly: each idea first by hand, then
checked against the course library `sevlm_lib`, then used from the library.

We then train the baseline on ArtEmis-mini with three seeds. We compare its emotion accuracy with two
simple baselines, read what it writes, and save the checkpoints that later notebooks load in seconds.

**What you'll learn**
- how one annotation becomes token ids, segment ids and labels; the byte-level BPE "space" gotcha; the
  exact emotion and explanation spans, and why the reference code's fixed offset of 6 tokens is wrong for
  "something else";
- how CLIP normalises pixels, and why the tiny profile keeps its (random) vision tower frozen;
- what cross-attention computes: one layer redone by hand from the decoder's own weights;
- the training loss by hand: shifted cross-entropy in which `-100` labels are ignored;
- how to train three seeds, read loss curves, and compare Emo-A with the majority class and with an
  image-only classifier;
- greedy decoding with a key/value cache, the model's probabilities over the nine emotions, and saving and
  loading checkpoints.

**What you'll need**
- notebook 01 (ArtEmis, the synthetic ArtEmis-mini, the two dominant-emotion rules, the image-only
  baseline). This notebook reads 01's metrics file when it exists and recomputes the one number it needs
  otherwise.
- nothing to download: the tiny profile runs offline on a CPU.

**Time on a CPU**: {TIME_LINE}
"""
)

# ------------------------------------------------------------------------------------------------ setup
md(
    """
## 0. Setup

The first cell reads the settings and checks the environment. The settings say where data, caches and
results live, which profile runs and which seed. The cell then seeds every random generator. All paths
in this notebook come from `settings`; nothing is hard-coded.
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
import copy
import html
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from IPython.display import HTML, display
from PIL import Image

from sevlm_lib import baselines, metrics
from sevlm_lib.course import check_environment
from sevlm_lib.data.datasets import PairBatches, feature_bank
from sevlm_lib.emotions import EMOTION_COLORS, EMOTIONS
from sevlm_lib.experiments import (
    SEEDS,
    build_model,
    generate_for_split,
    image_source_for,
    load_course_data,
    load_trained,
    majority_accuracy,
    model_config_for,
    read_metrics,
    recipe_for,
    run_name,
    train_and_evaluate,
    write_metrics,
)
from sevlm_lib.generation import emotion_distribution, generate
from sevlm_lib.models.vision import CLIP_MEAN, CLIP_STD
from sevlm_lib.settings import get_settings, seed_everything
from sevlm_lib.text import BOS_EOS, SequenceBuilder, parse_generation
from sevlm_lib.training import latest_checkpoint, load_checkpoint
from sevlm_lib.viz import (
    display_image,
    plot_artwork_gallery,
    plot_emotion_distribution,
    plot_seed_losses,
    text_gallery_html,
    unnormalize_images,
)

settings = get_settings()
check_environment(settings)
seed_everything(settings.seed)
sns.set_theme(style="whitegrid", font_scale=0.85)
pd.set_option("display.width", 150)
pd.set_option("display.max_colwidth", 80)
notebook_start = time.perf_counter()
"""
)

# ------------------------------------------------------------------------------------------------ data
md(
    """
## 1. The data the captioner learns from

`load_course_data` gathers everything the recipes need into one `CourseData` object:
- the annotations, each with its split;
- one row per artwork with its vote histogram and its dominant emotion under both rules of notebook 01;
- the tokenizer and the sequence builder;
- the VAD lexicon, which the baseline does not use;
- the images.

In the tiny profile the images are 64x64 pixels and sit in memory, already normalised. The first call
generates ArtEmis-mini and trains the tokenizer; later calls read both from the cache.
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
t0 = time.perf_counter()
data = load_course_data(settings)
sizes = pd.DataFrame(
    {
        "annotations": data.annotations.groupby("split").size(),
        "artworks": data.artworks.groupby("split").size(),
        "with a dominant emotion": data.artworks.groupby("split")["dominant"].count(),
    }
).T[["train", "val", "test", "rest"]]
display(sizes)
pairs = data.pair_items("train")
print(f"{len(pairs)} training artworks have two or more distinct emotions (the training items)")
print(f"tokenizer: {len(data.tokenizer)} tokens; images: {tuple(data.images.tensor.shape)}")
print(f"loaded in {time.perf_counter() - t0:.1f} s")
"""
)
code(
    """
assert {"train", "val", "test"} <= set(data.annotations["split"])
assert data.images.tensor.shape[1:] == (3, data.image_size, data.image_size)
assert len(pairs) > 0 and all(len(set(p.emotions)) >= 2 for p in pairs)
"""
)
md(
    """
The table has four splits. `train`, `val` and `test` are split by *artwork*, never by annotation, so no
test picture was seen in training under another annotator's words. `rest` holds the artworks with very
many annotations (41 or more), which ArtEmis's preprocessing keeps apart; the course does the same, and
the model never sees them. The last row counts the artworks that have a dominant emotion under ArtEmis's
rule. Emo-A is measured only on those, since an artwork whose annotators split their votes has no single
right answer.

One detail matters for every later comparison. The SEVLM recipe trains only on artworks whose annotators
chose at least two *different* emotions. Each training item is one artwork with two of its annotations,
and the two emotions differ. A batch of 32 artworks therefore holds 64 sequences. The baseline has no use
for the pairing, since it just learns from both sequences. It still trains on exactly these batches, so
that when notebooks 03 to 06 switch on an addition, the model is the only thing that changes.
"""
)

# ------------------------------------------------------------------------------------------------ tokens
md(
    """
## 2. One sentence, token by token

### 2.1 Byte-level BPE and the space gotcha

The full profile uses GPT-2's tokenizer. The tiny profile trains its own byte-level BPE with 1,200 tokens
on the ArtEmis-mini training explanations. Both add three special tokens: `<pad>`, `<emotion>` and
`<explanation>`. GPT-2's `<|endoftext|>` serves as both `<bos>` and `<eos>`.

In a *byte-level* BPE the space before a word is part of the word's token. GPT-2 writes it as `Ġ`, so
`" dark"` is the single token `Ġdark`. The same word at the very start of a text has no space and is a
different token (`the` versus `Ġthe`). This causes a classic bug when a special token is written into
the text after a space. The space cannot attach to `<|endoftext|>`, so it becomes a token of its own, a
lone `Ġ` that the model was never meant to see. The course's sequence builder avoids the problem: it
never writes special tokens into text. It encodes each piece separately and joins the lists of ids.
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
tok = data.tokenizer


def tokens(text: str) -> list[str]:
    return tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])


for text in ["the dark cliffs", " the dark cliffs", f"the dark cliffs {BOS_EOS}"]:
    print(f"{text!r:36} -> {tokens(text)}")
"""
)
code(
    """
assert tokens("the dark cliffs")[0] != tokens(" the dark cliffs")[0]  # 'the' vs 'Ġthe'
gotcha = tokens(f"the dark cliffs {BOS_EOS}")
assert gotcha[-1] == BOS_EOS and gotcha[-2] == "Ġ", gotcha  # the lone-space token
assert len(tokens(" because")) == 1  # one token, so decoding can switch segment right after it
"""
)

md(
    """
### 2.2 The training sequence, built by hand

Every annotation becomes one sequence:

`<bos> the emotion is {emotion} because {explanation} <eos>`

Three lists of the same length go with it:

- **input ids**: the tokens;
- **segment ids**, in the style of NLX-GPT: the id of `<emotion>` for `<bos> the emotion is X`, and the id
  of `<explanation>` from ` because` to `<eos>` (padding too). The model adds the *embedding* of the
  segment token to each word embedding, so every position knows which part of the answer it is in;
- **labels**: what the loss scores. Position *t* is trained to predict token *t+1*, so labels are the
  input ids themselves, with `-100` wherever nothing should be scored. `-100` is PyTorch's
  `ignore_index`. Like the reference, the library scores every token after `<bos>`.

Here is the whole recipe in a dozen lines. The explanation is cut so that `<eos>` always fits in
`max_len` (30 tokens, as in the paper).
"""
)
code(
    """
def encode_by_hand(emotion: str, explanation: str, max_len: int = 30) -> dict:
    def enc(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    bos = eos = tok.convert_tokens_to_ids(BOS_EOS)
    emo_seg, expl_seg = tok.convert_tokens_to_ids(["<emotion>", "<explanation>"])
    prompt = [bos] + enc("the emotion is")  # no space before the first word
    emo, because = enc(" " + emotion), enc(" because")  # a space before every later word
    budget = max_len - len(prompt) - len(emo) - len(because) - 1  # room left, <eos> included
    expl = enc(" " + explanation)[:budget]
    ids = prompt + emo + because + expl + [eos]
    k = len(prompt) + len(emo)  # where " because" sits
    return {
        "input_ids": ids,
        "segment_ids": [emo_seg] * k + [expl_seg] * (len(ids) - k),
        "labels": [-100] + ids[1:],  # <bos> is never a target
        "emotion_span": (len(prompt), k),
        "explanation_span": (k + len(because), len(ids) - 1),
    }


example = ("something else", "the dark cliffs tower over a tiny lonely figure")
mine = encode_by_hand(*example)
table = pd.DataFrame(
    {
        "token": tok.convert_ids_to_tokens(mine["input_ids"]),
        "id": mine["input_ids"],
        "segment": tok.convert_ids_to_tokens(mine["segment_ids"]),
        "label": mine["labels"],
    }
)
table.index.name = "position"
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
display(table.T)
"""
)
md(
    """
The emotion segment ends just before ` because`. Position 0 (`<bos>`) has label `-100`, but nothing
would predict it anyway, since the last position of the shift is dropped and the first target is
position 1. Now the library's `SequenceBuilder.encode` must give exactly the same lists and spans:
"""
)
code(
    """
builder = data.builder
lib = builder.encode(*example)
assert list(lib.input_ids) == mine["input_ids"]
assert list(lib.segment_ids) == mine["segment_ids"]
assert list(lib.labels) == mine["labels"]
assert lib.emotion_span == mine["emotion_span"] and lib.explanation_span == mine["explanation_span"]
for emotion in EMOTIONS:  # and for every emotion, on a real training explanation
    utterance = data.split("train")["utterance"].iloc[EMOTIONS.index(emotion)]
    a, b = encode_by_hand(emotion, utterance), builder.encode(emotion, utterance)
    assert a["input_ids"] == list(b.input_ids) and a["explanation_span"] == b.explanation_span
print("hand-built sequences == SequenceBuilder.encode for all nine emotions")
"""
)

md(
    """
Why give the model segment ids at all, when the word ` because` already marks the boundary? Because the
segment is available at *every* position, not only at the boundary. A position deep in the explanation
does not have to look back through self-attention to find ` because`: its input already says "you are
explaining now". At decoding time the library does the same: the segment is `<emotion>` until the model
has written ` because`, and `<explanation>` afterwards. Training and decoding therefore see the same
inputs.

### 2.3 Where the emotion ends: "something else" and the fixed offset of 6

Eight of the nine emotions are single words. The ninth, **something else**, is two words and at least
two tokens. The SEVLM reference code separates the emotion part from the explanation part at a fixed
position, 6 tokens into the sequence. For a one-token emotion that cut is correct: `<bos> the emotion is X
because` is 6 tokens, so position 6 holds the first explanation word. For "something else" the same cut
falls *on* ` because`. The explanation then starts one token early, and anything computed over "the
explanation" (the VAD fusion of notebook 03, the explanation summary of the contrastive head in notebook
05) includes a token that is not part of it. The library records the real boundaries instead:
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
rows = []
for emotion in ["awe", "something else"]:
    seq = builder.encode(emotion, "the dark cliffs tower over a tiny lonely figure")
    toks = tok.convert_ids_to_tokens(list(seq.input_ids))
    s, e = seq.explanation_span
    rows.append(
        {
            "emotion": emotion,
            "emotion tokens": len(builder.emotion_ids[emotion]),
            "true explanation starts with": toks[s],
            "offset 6 starts with": toks[6],
            "true span": seq.explanation_span,
        }
    )
display(pd.DataFrame(rows))
print({e: len(ids) for e, ids in builder.emotion_ids.items()})
"""
)
code(
    """
awe, other = builder.encode("awe", "a calm sea"), builder.encode("something else", "a calm sea")
assert len(builder.emotion_ids["something else"]) >= 2
assert awe.explanation_span[0] == 6  # the fixed offset is right for a one-token emotion ...
assert other.explanation_span[0] == 6 + len(builder.emotion_ids["something else"]) - 1  # ... not here
assert other.input_ids[6] == builder.because_ids[0]  # offset 6 lands on " because"
"""
)

md(
    """
### 2.4 Which tokens count in the loss

The reference scores every token after `<bos>`, prompt words included. `the`, ` emotion` and ` is` are the
same in every sequence, so the model learns them within a few steps, and from then on they add three
near-zero terms to every sequence's average. They do not hurt learning much, but they **dilute** the
reported cross-entropy. A prompt-scored XE looks lower than the XE on the words that matter. Keep this
in mind when you compare loss values across papers or code bases. `SequenceBuilder(..., loss_on_prompt=False)`
scores from the emotion word onwards (exercise 1 trains both ways).
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
no_prompt = SequenceBuilder(tok, max_len=30, loss_on_prompt=False)
a, b = builder.encode(*example), no_prompt.encode(*example)
display(
    pd.DataFrame(
        {"token": tok.convert_ids_to_tokens(list(a.input_ids)), "labels (reference)": a.labels,
         "labels (loss_on_prompt=False)": b.labels}
    ).T
)
"""
)
code(
    """
scored = lambda s: sum(x != -100 for x in s.labels)  # noqa: E731
assert scored(a) - scored(b) == len(builder.prompt_ids) - 1  # exactly the three prompt words
assert a.input_ids == b.input_ids and a.segment_ids == b.segment_ids  # only the labels differ
"""
)

md(
    """
### 2.5 Truncation and batches

The longest ArtEmis utterances are 30 *words*, which can be more than 30 *tokens*. The builder cuts the
explanation, never the `<eos>`: a model that never sees `<eos>` after a long sentence never learns to
stop. Sequences of different lengths are then **right-padded** into one batch. Padding gets the pad id,
an attention mask of 0, the label `-100`, and (by convention) the `<explanation>` segment.
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
long = builder.encode("awe", " ".join(["the huge mountain rises into the sky"] * 8))
assert len(long) == builder.max_len and long.input_ids[-1] == builder.eos_id and long.truncated
batch_text = builder.collate([builder.encode(*example), builder.encode("awe", "a calm sea")])
pad = batch_text["attention_mask"] == 0
assert (batch_text["labels"][pad] == -100).all() and (batch_text["input_ids"][pad] == builder.pad_id).all()
assert (batch_text["segment_ids"][pad] == builder.explanation_segment_id).all()
for name, tensor in batch_text.items():
    print(f"{name:20} {tuple(tensor.shape)} {tensor.dtype}")
"""
)
md(
    """
The two masks `emotion_mask` and `explanation_mask` mark the exact spans from section 2.3. The baseline
does not use them; the heads of notebooks 04 and 05 do. `explanation_segment` marks the positions whose
segment is `<explanation>` and that are real tokens.
"""
)

# ------------------------------------------------------------------------------------------------ images
md(
    """
## 3. Pictures in

### 3.1 CLIP's normalisation

The image side is CLIP's vision transformer (`CLIPVisionModel`). It cuts the picture into 16x16-pixel
patches, embeds each one, runs a transformer over them, and returns one vector per patch. We drop the
extra CLS vector and keep the patch grid, after CLIP's final layer norm. The full profile uses the
pretrained `openai/clip-vit-base-patch16`: 224 pixels, 14x14 = 196 patches, 768 wide. The tiny profile
uses a small tower built from a config: 64 pixels, 4x4 = 16 patches, 64 wide.

Before the tower, each colour channel is standardised, `x' = (x - mean) / std`, with the mean and standard
deviation **CLIP was trained with**. The SEVLM reference code uses ImageNet's statistics instead, so its
frozen CLIP sees slightly shifted inputs compared with its training. The course uses CLIP's own:
"""
)
code(
    """
stats = pd.DataFrame(
    {"CLIP mean": CLIP_MEAN, "CLIP std": CLIP_STD, "ImageNet mean": (0.485, 0.456, 0.406),
     "ImageNet std": (0.229, 0.224, 0.225)},
    index=["R", "G", "B"],
).round(4)
print(stats.T)
"""
)
md(
    """
To look at what the model sees, we undo the normalisation, `x = x' * std + mean`, clip to 0..1 and
scale to bytes. This is the inverse of the transform that built `data.images`, so we write it once by
hand and check it against the library's `unnormalize_images`:
"""
)
code(
    """
test_arts = data.artworks[(data.artworks["split"] == "test") & data.artworks["dominant"].notna()]
show_keys = list(zip(test_arts["art_style"], test_arts["painting"], strict=True))[:8]
pixels = data.images.rows(show_keys)  # [8, 3, 64, 64], normalised
mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
by_hand = ((pixels * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
assert np.array_equal(by_hand, unnormalize_images(pixels))
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
gold_of = data.gold("test")
fig = plot_artwork_gallery(
    unnormalize_images(pixels), titles=[gold_of[k] for k in show_keys],
    title_colors=[EMOTION_COLORS[gold_of[k]] for k in show_keys], ncols=8, panel_size=1.2,
)
display_image(fig)
"""
)
md(
    """
These eight test artworks are shown at the model's 64-pixel resolution, titled with their dominant
emotion. ArtEmis-mini pictures are simple on purpose: a palette, a motif and a family of shapes, each of
which moves the simulated annotators' feelings (notebook 01).

### 3.2 Why the tiny profile keeps its vision tower frozen

In SEVLM, CLIP is **pretrained and frozen**. Its features are already good, the decoder only has to learn
to read them, and training 86M more parameters on ArtEmis would be slow and could wear away what CLIP
knows. The tiny profile runs offline and has no pretrained tower, so its CLIP weights are *random*. We
could train the tower together with the decoder, or freeze it like SEVLM does. Is a frozen random network
of any use?

A frozen random network is a fixed random function of the pixels. Random features of this kind keep much
of the information in their input (the idea behind random projections and Rahimi & Recht's random
features). A quick way to check is a **linear probe**: fit a logistic regression from the frozen features
to the emotion votes, and test it on the dominant emotion of the test artworks. For comparison we fit the
same regression on colour histograms, the features of notebook 01's image-only baseline. Both are
computed from the same 64-pixel images. The tower gives 16 patches x 64 numbers = 1,024 numbers per
picture. We first compress them to their 64 principal components, computed on the training artworks only.
This keeps the regression small and fast and, with about 1,300 training pictures, less prone to overfit.
The colour histograms have 52 numbers and are used as they are.
"""
)
code(
    """
probe_model = build_model(data, model_config_for(settings.profile), seed=settings.seed)
bank = feature_bank(probe_model.vision, data.images)  # frozen tower, run once: [artworks, 16, 64]
arts = data.artworks
assert bank.keys == list(zip(arts["art_style"], arts["painting"], strict=True))  # rows line up with the artworks
votes = arts[list(EMOTIONS)].to_numpy(dtype=float)
train_rows = (arts["split"] == "train").to_numpy()
test_rows = ((arts["split"] == "test") & arts["dominant"].notna()).to_numpy()
y_test = np.array([EMOTIONS.index(e) for e in arts.loc[test_rows, "dominant"]])


def top_components(features: np.ndarray, k: int = 64) -> np.ndarray:
    torch.manual_seed(settings.seed)  # pca_lowrank starts from a random projection
    x = torch.tensor(features, dtype=torch.float64)
    centre = x[train_rows].mean(0)
    _, _, v = torch.pca_lowrank(x[train_rows] - centre, q=k, center=False)
    return ((x - centre) @ v).numpy()


def probe(features: np.ndarray) -> float:
    # soft targets = each artwork's vote shares, weighted by its number of votes (= one row per annotation)
    fit = baselines.fit_logistic_regression(
        features[train_rows], votes[train_rows] / votes[train_rows].sum(1, keepdims=True), len(EMOTIONS),
        sample_weight=votes[train_rows].sum(1), seed=settings.seed,
    )
    return float((baselines.predict(fit, features[test_rows]) == y_test).mean())


t0 = time.perf_counter()
probe_acc = {
    "frozen random CLIP patches": probe(top_components(bank.tensor.flatten(1).numpy())),
    "colour histograms": probe(baselines.color_histogram_features(unnormalize_images(data.images.tensor))),
    "majority class": majority_accuracy(data, "test"),
}
probe_seconds = time.perf_counter() - t0
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
print(pd.Series(probe_acc, name="test accuracy (dominant emotion)").round(3).to_string())
gap = probe_acc["frozen random CLIP patches"] - probe_acc["colour histograms"]
print(
    f"\\nThe frozen random tower's features are {'as useful as' if abs(gap) < 0.05 else ('more useful than' if gap > 0 else 'less useful than')} "
    f"colour histograms for a linear classifier (difference {gap:+.3f}), and "
    f"{'clearly better' if probe_acc['frozen random CLIP patches'] > probe_acc['majority class'] + 0.1 else 'not clearly better'} "
    f"than always answering the majority class. ({probe_seconds:.0f} s for both probes)"
)
"""
)
code(
    """
assert probe_acc["frozen random CLIP patches"] > probe_acc["majority class"]
"""
)
md(
    """
Both feature sets are far above the majority class: a linear classifier finds the emotional signal in
either. The printed sentence above says how the two compare on this run. Keep in mind what the colour
histograms are: hand-made features that match how ArtEmis-mini was generated (palette brightness and
saturation drive the simulated feelings). The random tower knows nothing about that; it only keeps the
pixels' information in a scrambled form.

The frozen random patches therefore carry enough picture information for a linear classifier, which is
all the decoder needs: it learns to read the features, and cross-attention can pick patches. Training the tiny
tower as well was measured while the course was built. On ArtEmis-mini it gave about the same Emo-A
(0.54 against 0.52) and cost about 10% more time per step. So the tiny profile keeps the tower frozen,
like SEVLM. This has a second benefit: a frozen tower gives the same features every epoch, so
`image_source_for` runs it **once** over all images and training reads cached features. On the full
profile the same cache (`sevlm_lib.features`) saves running a 86M-parameter ViT at every step.
"""
)

# ------------------------------------------------------------------------------------------------ model
md(
    """
## 4. The model

### 4.1 Building the baseline

`model_config_for(profile)` gives the architecture with all three SEVLM switches **off**, which is the
baseline. The switches are real booleans. The reference code used `argparse type=bool`, so passing
"False" still switched a module on; here, a switched-off module is not even built. `build_model` seeds
torch, sizes the decoder's vocabulary to the tokenizer, and installs the token VAD table, which the
baseline ignores.
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
baseline_cfg = model_config_for(settings.profile)
model = build_model(data, baseline_cfg, seed=settings.seed)
print(f"variant: {baseline_cfg.variant}, run name: {run_name(baseline_cfg)}")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


dec = model.decoder.transformer
parts = {
    "vision tower (frozen)": n_params(model.vision),
    "token + position embeddings": n_params(dec.wte) + n_params(dec.wpe),
    "self-attention + MLP + norms": sum(n_params(b) - n_params(b.crossattention) - n_params(b.ln_cross_attn)
                                       for b in dec.h) + n_params(dec.ln_f),
    "cross-attention (new in a captioner)": sum(n_params(b.crossattention) + n_params(b.ln_cross_attn)
                                                for b in dec.h),
}
display(pd.Series(parts, name="parameters").to_frame())
print(model.count_parameters())
"""
)
code(
    """
counts = model.count_parameters()
assert baseline_cfg.variant == "baseline" and run_name(baseline_cfg) == "baseline"
assert not any(hasattr(model, m) for m in ("vad_encoder", "fusion", "vad_head", "scorer"))
assert counts["frozen"] == parts["vision tower (frozen)"]
# the LM head is tied to the token embeddings, so these parts are all the trainable parameters
assert counts["trainable"] == sum(v for k, v in parts.items() if "frozen" not in k)
"""
)
md(
    """
The model is small: a few hundred thousand parameters, against about 100M trainable in the paper's
distilgpt2 version. GPT-2 **ties** its output layer to the token embedding matrix, so one 1,200 x 64 table
both reads and writes words. The vision tower and the decoder are both 64 wide here, so the projection
between them is the identity. In the full profile, CLIP and distilgpt2 are both 768 wide; a `Linear`
would be inserted if they differed.

### 4.2 What the decoder reads: word + position + segment

At each position, GPT-2's input is its word embedding plus a learned position embedding. NLX-GPT adds a
third term, the embedding of the position's *segment token*. This reuses the same embedding table, since
`<emotion>` and `<explanation>` are ordinary rows of it. `SEVLM.embed` returns word + segment, and GPT-2
adds the positions inside. One line by hand:
"""
)
code(
    """
ids = torch.tensor([lib.input_ids])
seg = torch.tensor([lib.segment_ids])
expl_seg = torch.zeros_like(ids, dtype=torch.bool)
expl_seg[0, lib.because_pos :] = True
with torch.no_grad():
    by_hand = dec.wte(ids) + dec.wte(seg)
    torch.testing.assert_close(by_hand, model.embed(ids, seg, expl_seg))
print("word + segment embeddings by hand == SEVLM.embed")
"""
)

md(
    """
### 4.3 Cross-attention, by hand

A GPT-2 block built with `add_cross_attention=True` has three sub-layers, each wrapped in a residual
connection: causal **self-attention** over the text so far, then **cross-attention**, then an MLP.
Cross-attention is where the picture enters. Only the queries come from the text: each text position
asks "which patches matter for me now?". The keys and values come from the image memory, the projected
patch features.

With text states $x \\in \\mathbb{R}^{T\\times d}$ (after `ln_cross_attn`) and the memory
$m \\in \\mathbb{R}^{P\\times d}$, for each head $h$ of width $d_h = d / H$:

$$q = x W_q,\\quad [k, v] = m W_{kv},\\qquad
\\text{attn}_h = \\operatorname{softmax}\\!\\Big(\\frac{q_h k_h^\\top}{\\sqrt{d_h}}\\Big) \\in \\mathbb{R}^{T\\times P},\\qquad
\\text{out} = [\\text{attn}_1 v_1, \\dots, \\text{attn}_H v_H]\\, W_o .$$

Each of the $H$ heads has its own slice of the projections, so one head can follow colour while
another follows shape; the heads' outputs are concatenated and mixed by $W_o$. The division by
$\sqrt{d_h}$ keeps the dot products from growing with the width, which would push the softmax towards
one-hot weights at initialisation. There is no causal mask: the patches are all there from the start,
and any text position may read any patch. The attention matrix is $T \\times P$, text by patches, not $T \\times T$. We capture the input of
the first block's cross-attention with a forward hook, recompute it by hand from that block's weights,
and compare. GPT-2 stores its linear layers as `Conv1D`, which is a `Linear` with transposed weights.
"""
)
code(
    """
batches = PairBatches(pairs, builder, image_source_for(model, data), batch_size=8, seed=settings.seed)
batch = next(iter(batches.batches(0)))
model.eval()  # dropout off, so the two computations must agree
captured = {}


def grab(module, args, kwargs, output):
    captured.update(x=args[0], memory=kwargs["encoder_hidden_states"], out=output[0])


cross = dec.h[0].crossattention
handle = cross.register_forward_hook(grab, with_kwargs=True)
with torch.no_grad():
    out = model(batch)
handle.remove()

x, memory = captured["x"], captured["memory"]
H, dh = cross.num_heads, cross.head_dim
with torch.no_grad():
    q = cross.q_attn(x)
    k, v = cross.c_attn(memory).split(cross.embed_dim, dim=2)
    heads = lambda t: t.view(t.shape[0], t.shape[1], H, dh).transpose(1, 2)  # noqa: E731 [N, H, len, dh]
    attn = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(dh), dim=-1)  # [N, H, T, P]
    mixed = (attn @ heads(v)).transpose(1, 2).reshape(x.shape)
    by_hand = cross.c_proj(mixed)
torch.testing.assert_close(by_hand, captured["out"])
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
print(f"text states x      {tuple(x.shape)}   (sequences N, tokens T, width d)")
print(f"image memory m     {tuple(memory.shape)}   (one copy per sequence: N, patches P, d)")
print(f"attention weights  {tuple(attn.shape)}   (N, heads H, T queries, P keys)")
print(f"output             {tuple(by_hand.shape)}   (same shape as x: added back by the residual)")
"""
)
code(
    """
n_seq, t_len = batch["input_ids"].shape
n_patches = model.config.vision.num_patches
assert x.shape == (n_seq, t_len, model.d_model) and memory.shape == (n_seq, n_patches, model.d_model)
assert attn.shape == (n_seq, H, t_len, n_patches)
torch.testing.assert_close(attn.sum(-1), torch.ones(n_seq, H, t_len))  # each query's weights sum to 1
# the memory of a sequence is its own artwork's patches (image_index maps sequences to artworks)
torch.testing.assert_close(memory, model.encode_images(batch)[batch["image_index"]])
"""
)
md(
    """
The batch holds 8 artworks but 16 sequences. `image_index` tells the model which artwork each sequence
belongs to, and the memory is *gathered* per sequence, so both annotations of an artwork read the same
patches. The image is encoded once per artwork, not once per sentence.

## 5. The loss, by hand

The model returns logits of shape `[N, T, V]`. Position *t* predicts token *t+1*, so we drop the last
logit and the first label, flatten, and take the cross-entropy while ignoring every `-100`. This is the
whole training objective of the baseline: `losses["xe"]` (and `loss`, since nothing is added).

This is **teacher forcing**: at every position the model reads the *human* words so far, never its own,
and all positions of all sequences are scored in one forward pass. That is why training is fast. It
also has a known cost, called exposure bias. At generation time the model reads its *own* earlier words,
and one odd word can lead it somewhere it never saw in training. Section 8 shows what it writes when it
is on its own.
"""
)
code(
    """
logits, labels = out.logits, batch["labels"]
xe_by_hand = F.cross_entropy(
    logits[:, :-1].reshape(-1, logits.shape[-1]),  # predictions at positions 0 .. T-2
    labels[:, 1:].reshape(-1),  # targets: the tokens at positions 1 .. T-1
    ignore_index=-100,
)
torch.testing.assert_close(xe_by_hand, out.losses["xe"])
torch.testing.assert_close(out.loss, out.losses["xe"])  # the baseline's total loss is just XE
vocab = len(tok)
n_scored = int((labels[:, 1:] != -100).sum())
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
print(f"XE by hand {xe_by_hand.item():.4f} == model {out.losses['xe'].item():.4f}; "
      f"ln(V) = ln({vocab}) = {math.log(vocab):.4f}; {n_scored} tokens scored")
"""
)
md(
    """
A freshly initialised language model spreads its probability almost evenly over the vocabulary, so its
first loss should be close to $\\ln V$. That is a useful sanity check: a first loss far above $\\ln V$
means a bug in the shift or the masking. A first loss far below it means the labels leak into the
inputs. One optimiser step on this batch, on a copy of the model, should already lower the loss on the
same batch:
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
assert abs(xe_by_hand.item() - math.log(vocab)) < 0.3
scratch = copy.deepcopy(model).train()
optimizer = torch.optim.AdamW([p for p in scratch.parameters() if p.requires_grad], lr=3e-3)
loss = scratch(batch).loss
loss.backward()
torch.nn.utils.clip_grad_norm_(scratch.parameters(), 1.0)
optimizer.step()
scratch.eval()
with torch.no_grad():
    after = scratch(batch).losses["xe"].item()
assert after < xe_by_hand.item()
print(f"one AdamW step: XE on this batch {xe_by_hand.item():.3f} -> {after:.3f}")
"""
)

# ------------------------------------------------------------------------------------------------ train
md(
    """
## 6. Training the baseline, three seeds

The training engine (`sevlm_lib.training`) is the same loop for every notebook and for the command line.
It uses `accelerate` (CPU, one GPU or several), AdamW with parameter groups, a linear learning-rate
decay, gradient clipping at 1.0, and atomic checkpoints that resume exactly. The tiny recipe trains from
scratch, so its learning rate (3e-3) is much higher than the paper's fine-tuning rate (2e-5). Every
variant in the course uses the same recipe, so that their numbers can be compared:
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
recipe = recipe_for(settings.profile)
print(recipe)
per_epoch = len(PairBatches(pairs, builder, image_source_for(model, data), batch_size=recipe.batch_size))
print(f"{per_epoch} steps per pass over the {len(pairs)} training artworks: "
      f"{recipe.max_steps} steps = {recipe.max_steps / per_epoch:.1f} epochs")
"""
)
md(
    """
A batch holds 32 artworks, so 64 sequences, and the steps make many passes (epochs) over the training
artworks, as printed above. Each pass draws a new pair of annotations for every artwork, so over the epochs the model sees many of the
explanations of each picture, not just two. The learning rate decays linearly from 3e-3 to zero at the
last step, with no warm-up. Weight decay is 0, as in the reference.

`train_and_evaluate` does, for each seed:
1. **train or load**: if a finished checkpoint with the same data, model and recipe exists under
   `{checkpoint_dir}/baseline/seed-{s}`, it is loaded; otherwise the model is trained and saved;
2. **evaluate** on the test split: greedy generation for every test artwork, then Emo-A under both rules,
   BLEU/ROUGE-L/CIDEr on the explanation only, Emo-Align (a text classifier's verdict on the generated
   explanation) and diversity. The result is cached under `{runs_dir}/eval/baseline/`.

The first run of this cell trains three models, and its timing is in the header of this notebook. When
notebooks 03 to 07 ask for the baseline, they load these checkpoints in seconds.
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
t0 = time.perf_counter()
rows = train_and_evaluate(data, baseline_cfg, seeds=SEEDS)
wall_seconds = time.perf_counter() - t0
print(f"train_and_evaluate, {len(SEEDS)} seeds: {wall_seconds:.0f} s in this session")
print("training time of each seed (when it was trained): "
      + ", ".join(f"{r['train_seconds']:.0f} s" for r in rows))
"""
)
code(
    """
assert [r["seed"] for r in rows] == list(SEEDS) and all(r["variant"] == "baseline" for r in rows)
trained = {seed: load_trained(data, baseline_cfg, seed) for seed in SEEDS}  # loads: seconds
histories = {f"seed {s}": t.history for s, t in trained.items()}
for t in trained.values():
    steps = t.history.to_frame()
    assert len(steps) == recipe.max_steps and np.isfinite(steps["loss"]).all()
    assert steps["loss"].tail(50).mean() < 0.5 * steps["loss"].head(10).mean()  # it learned something
"""
)
md(
    """
The loss curves of the three seeds are below (left, smoothed, raw values faint). On the right is the
gradient norm of seed 0 *before* clipping, with the clipping threshold dashed. Early steps hit the
threshold, so clipping is what keeps the high learning rate stable at the start.
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
plot_seed_losses(histories, column="loss", smooth=0.9, ax=axes[0])
axes[0].set_title("training loss (XE) of the baseline")
steps0 = trained[SEEDS[0]].history.to_frame()
axes[1].plot(steps0["step"], steps0["grad_norm"], linewidth=0.8, color="0.3")
axes[1].axhline(recipe.max_grad_norm, color="crimson", linestyle="--", linewidth=1)
axes[1].set(xlabel="step", ylabel="gradient norm", title="gradient norm (seed 0) and the clip")
fig.tight_layout()
display_image(fig)
"""
)

md(
    """
What to notice in these curves:
- the loss starts near $\ln V \approx 7.1$ and falls steeply in the first hundred steps, as the model
  learns the prompt words, the emotion words and the grammar of the explanations;
- it then flattens well above zero. This is expected, not a failure: the same picture has several
  different explanations (and often several emotions), so no model can predict the next word with
  certainty. The floor of the loss is the uncertainty of the annotators, not of the model;
- the three seeds lie close together. They differ in the random initialisation (tower included) and in
  the order of the batches, so their spread shows how much of any later difference is just chance.
"""
)

# ------------------------------------------------------------------------------------------------ results
md(
    """
## 7. How good is it?

**Emo-A** is the share of test artworks whose dominant emotion equals the emotion the model writes,
counted over artworks that have a dominant emotion. Notebook 01 showed the two rules:
- ArtEmis's rule: at least half the votes and no tie;
- the stricter rule of the SEVLM reference: more than half.

`emo_acc_dist` takes the emotion with the highest probability at the emotion slot instead of the greedy
text (section 8). The caption metrics compare the generated explanation with all human explanations of
the artwork.

Two yardsticks tell us whether the model learned anything from the picture:
- the **majority class**: always answer the most common dominant emotion of the training artworks;
- notebook 01's **image-only classifier**: colour histograms and a logistic regression, with no language
  at all.
"""
)
code(
    """
summary = metrics.summarize_seeds(rows, by=["variant"])
shown = ["emo_acc", "emo_acc_strict", "emo_acc_dist", "bleu4", "rouge_l", "cider", "emo_align",
         "div_distinct", "div_novelty", "train_seconds"]
m01 = read_metrics(settings, "01_data_and_vad_lexicon") or {}
if "image_only_acc" in m01:
    image_only_acc, image_only_source = float(m01["image_only_acc"]), "notebook 01's metrics"
else:  # notebook 01 has not run in this runs folder: compute its number the same way
    from sevlm_lib.data.artemis import load_artemis
    from sevlm_lib.data.mini import ensure_artemis_mini, mini_image_root

    result = baselines.image_only_accuracy(load_artemis(ensure_artemis_mini(settings)), mini_image_root(settings),
                                           seed=settings.seed)
    image_only_acc, image_only_source = result["image_only_acc"], "recomputed here"
majority = {"artemis": majority_accuracy(data, "test", "artemis"), "strict": majority_accuracy(data, "test", "strict")}
per_seed = pd.DataFrame(rows).set_index("seed")[shown]
n_test = int(data.artworks.loc[data.artworks["split"] == "test", "dominant"].notna().sum())
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
display(per_seed.round(3))
display(metrics.format_mean_std(summary[[c for c in summary.columns if c[0] in shown]]))
print(f"majority class: {majority['artemis']:.3f} (ArtEmis rule), {majority['strict']:.3f} (strict rule); "
      f"image-only classifier: {image_only_acc:.3f} ({image_only_source}); {n_test} test artworks")
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(6.5, 3.2))
bars = {"majority class": majority["artemis"], "image-only (colour)": image_only_acc,
        "baseline Emo-A": per_seed["emo_acc"].mean(), "baseline Emo-A (dist.)": per_seed["emo_acc_dist"].mean()}
ax.bar(list(bars), list(bars.values()), color=["0.75", "0.55", "#4a78b5", "#7cc47c"])
for j, col in ((2, "emo_acc"), (3, "emo_acc_dist")):
    ax.scatter([j] * len(per_seed), per_seed[col], color="black", s=12, zorder=3, label="seeds" if j == 2 else None)
ax.set_ylabel("accuracy on the dominant emotion (test)")
ax.legend(frameon=False)
ax.set_title("Emo-A of the baseline vs two yardsticks (ArtEmis rule)")
display_image(fig)
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
emo = per_seed["emo_acc"]
se_binomial = math.sqrt(majority["artemis"] * (1 - majority["artemis"]) / n_test)
print(
    f"Emo-A is {emo.mean():.3f} ± {emo.std():.3f} over {len(emo)} seeds, {emo.mean() - majority['artemis']:+.3f} "
    f"above the majority class (the binomial standard error of an accuracy on {n_test} artworks is about "
    f"{se_binomial:.3f}), so the model {'clearly' if emo.min() - majority['artemis'] > 2 * se_binomial else 'does not clearly'} "
    "beats always answering the most common emotion."
)
diff = emo.mean() - image_only_acc
print(
    f"Against the image-only colour classifier ({image_only_acc:.3f}) the captioner is "
    + ("clearly better" if diff > 2 * se_binomial else "clearly worse" if diff < -2 * se_binomial else "about level")
    + f" ({diff:+.3f}): " + (
        "writing a sentence did not cost it the emotion signal a dedicated classifier finds."
        if diff > -2 * se_binomial else
        "the captioner spends its capacity on the sentence, and a dedicated classifier reads the colours better."
    )
)
"""
)
code(
    """
assert (per_seed["emo_acc"] > majority["artemis"] + 2 * se_binomial).all()  # every seed, clearly
assert (per_seed["emo_acc_strict"] > majority["strict"]).all()
assert per_seed["bleu4"].between(0, 1).all() and (per_seed["bleu4"] > 0).all()
"""
)
md(
    """
The other columns:
- `emo_align` runs a small text classifier (trained on the human explanations) on each *generated*
  explanation and checks whether it reads the dominant emotion in it. It asks whether the explanation
  actually supports an emotion, whatever emotion word the model wrote before ` because`.
- `div_distinct` is the share of distinct explanations among all test generations. Greedy decoding
  writes the single most likely sentence, so similar pictures get the same sentence, and this share is
  often low.
- `div_novelty` is the share of generated explanations that appear nowhere in the training set, as
  opposed to copied ones.

Read these numbers for what they are. ArtEmis-mini's explanations come from a small grammar, so BLEU and
CIDEr are far higher than anything on real ArtEmis. The paper's baselines score BLEU-4 of about 0.08 on
the real test set. Only the *relative* numbers between the variants of notebooks 03 to 07 mean anything
here. The spread between seeds (the ± above) is the noise floor: any difference between two variants
smaller than it is not evidence.

## 8. Reading what it writes

Generation starts from `<bos> the emotion is` and picks the most likely next token again and again
(**greedy decoding**) until `<eos>` or 25 new tokens. The segment switches to `<explanation>` after the
model writes ` because`, as in training. `parse_generation` splits the text into (emotion, explanation).
If the model writes a word outside the nine emotions, the emotion is reported as unknown, never guessed.
Below are a few test artworks with their dominant emotion, the model's sentence (seed 0), and one human
explanation.
"""
)
code(
    """
base = trained[SEEDS[0]].model
preds = generate_for_split(base, data, "test").set_index(["art_style", "painting"])
refs = data.references("test")
gallery_keys = show_keys[:6]
lines = []
for key in gallery_keys:
    row = preds.loc[key]
    lines.append({
        "dominant": f"{gold_of[key]}",
        "model": f"<b>{html.escape(row['emotion'] or 'unknown: ' + row['text'])}</b> because "
                 f"{html.escape(row['explanation'])}",
        "human": html.escape(refs[key][0]),
    })
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
big = [Image.fromarray(a).resize((96, 96), Image.NEAREST) for a in unnormalize_images(data.images.rows(gallery_keys))]
display(HTML(text_gallery_html(big, lines, size=96, title="test artworks: the baseline (seed 0) vs a person")))
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
assert len(preds) == len(data.artwork_keys("test"))
valid = preds["emotion"].notna().mean()
assert valid > 0.9, f"only {valid:.0%} of generations start with one of the nine emotions"
assert preds["has_because"].mean() > 0.9
print(f"{valid:.0%} of test generations name one of the nine emotions; "
      f"{preds['has_because'].mean():.0%} contain 'because'")
"""
)
md(
    """
When you read the gallery, look at three things. Does the emotion match the dominant one, and if not, is
it a neighbour (another positive emotion for a positive picture)? Does the explanation name what is
visibly in the picture (its colours, its motif, its shapes), as the human one does? And how many
sentences look alike? Greedy decoding picks the most likely continuation at every step, and the most
likely sentence is often a generic one. Exercise 2 shows what sampling changes.

### The nine-emotion distribution

Greedy decoding commits to one emotion. The model also holds a whole **distribution** over the nine at the
emotion slot, and `emotion_distribution` reads it exactly. Each emotion's full phrase (two tokens for
"something else") followed by ` because` is scored as a sequence probability, and the nine are
renormalised. The demo and the evaluation (`emo_acc_dist`) use it. Here it is for the first gallery
artwork, with its dominant emotion outlined:
"""
)
code(
    """
key = gallery_keys[0]
one = {k: v for k, v in image_source_for(base, data).batch([key]).items()}
probs = emotion_distribution(base, builder, one)[0]
torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
assert EMOTIONS[int(probs.argmax())] == preds.loc[key, "p_max_emotion"]
np.testing.assert_allclose(probs.numpy(), preds.loc[key, [f"p_{e}" for e in EMOTIONS]].to_numpy(float), atol=1e-5)
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
counts_row = data.artworks.set_index(["art_style", "painting"]).loc[key, list(EMOTIONS)]
fig, axes = plt.subplots(1, 2, figsize=(9, 2.6), gridspec_kw={"width_ratios": [1, 3]})
axes[0].imshow(unnormalize_images(data.images.rows([key]))[0])
axes[0].axis("off")
plot_emotion_distribution(probs, ax=axes[1], gold=gold_of[key],
                          title="model's probabilities; votes: " + ", ".join(f"{e} {n}" for e, n in counts_row.items() if n))
fig.tight_layout()
display_image(fig)
"""
)

md(
    """
Compare the bars with the annotators' votes in the title. A model that has learned the task well spreads
its probability roughly as the annotators spread their votes. This is the sense in which the
distribution is more informative than the single greedy answer, and why notebook 07 uses it for
calibration. On an artwork where the votes split, a confident single bar is a warning sign.
"""
)

# ------------------------------------------------------------------------------------------------ kv cache
md(
    """
## 9. The key/value cache

Without a cache, step *k* of greedy decoding feeds the whole sequence so far (prompt + *k* tokens) through
the decoder again and recomputes every position's keys and values, though only the newest position
changed. With a **KV cache**, each layer keeps the keys and values it has already computed. Each step then
feeds only the new token, which attends to the cached keys. The cross-attention keys and values of the
image are computed once, at the first step. Both ways must produce **the same tokens**. We check that, and
count how many positions the decoder processes, with a hook on the GPT-2 trunk.
"""
)
code(
    """
kv_batch = image_source_for(base, data).batch(show_keys)
calls = []
hook = base.decoder.transformer.register_forward_pre_hook(
    lambda module, args, kwargs: calls.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True
)
timing = {}
try:
    for use_cache in (True, False):
        calls.clear()
        t0 = time.perf_counter()
        gen = generate(base, builder, kv_batch, use_cache=use_cache)
        timing[use_cache] = (gen, list(calls), time.perf_counter() - t0)
finally:
    hook.remove()
(cached, cached_calls, cached_s), (uncached, uncached_calls, uncached_s) = timing[True], timing[False]
assert cached.token_ids == uncached.token_ids  # token for token
n_steps, prompt_len = len(cached_calls), len(builder.prompt_ids)
assert cached_calls == [prompt_len] + [1] * (n_steps - 1)
assert uncached_calls == [prompt_len + k for k in range(n_steps)]
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
print(f"{len(show_keys)} artworks, {n_steps} decoding steps: same tokens with and without the cache")
print(f"positions run through the decoder per sequence: cached {sum(cached_calls)}, "
      f"uncached {sum(uncached_calls)} ({sum(uncached_calls) / sum(cached_calls):.1f}x)")
print(f"time: cached {cached_s * 1000:.0f} ms, uncached {uncached_s * 1000:.0f} ms")
"""
)
md(
    """
The cached decoder processes about $P + n$ positions for $n$ steps after a prompt of $P$ tokens; the
uncached one processes $\\sum_{k<n}(P+k) \\approx nP + n^2/2$. For 25 steps that is a difference of about
an order of magnitude, and the gap grows with the length. On a model this small the wall-clock gain is
smaller than the position count suggests, because fixed per-step costs dominate. For distilgpt2 on long
outputs, the cache matters.
This is also why notebook 03 insists on a *causal* VAD encoder. The reference's non-causal one lets
every position see the VAD of later words, so nothing computed earlier stays valid and decoding must
recompute everything at every step.

## 10. Saving and loading

Each run's checkpoint folder holds the weights (`model.safetensors`), the optimiser and scheduler state,
the random generators, the step and config, the training history and the tokenizer. Loading never
unpickles arbitrary objects: weights are safetensors, config and state are JSON, and the few torch states
are read with `torch.load(weights_only=True)`. A checkpoint downloaded from the internet therefore cannot
run code. Here is the checkpoint of seed 0:
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
ckpt_dir = trained[SEEDS[0]].checkpoint_dir
latest = latest_checkpoint(ckpt_dir)
print("checkpoint dir:", ckpt_dir.relative_to(settings.runs_dir))
print("latest        :", latest.name)
print("files         :", sorted(p.name for p in latest.iterdir()))
"""
)
md(
    """
`train_or_load` only reuses a checkpoint whose **fingerprint** matches. The fingerprint is a hash of
the training config, the parameter groups, the model config, the data (annotations, splits, tokenizer
size, image size) and the recipe. If you change any of them, for instance the learning rate, the old
checkpoint is not silently loaded for the new recipe: training starts again and says why. Checkpoints
are written to a temporary folder and renamed into place, so a run killed in the middle of a save
leaves the previous checkpoint intact.

To check that loading works, we build a **fresh** model with different random weights. Its generations
should differ from the trained model's. After `load_checkpoint`, it must produce the trained model's
sentences token for token.
"""
)
code(
    """
t0 = time.perf_counter()
fresh = build_model(data, baseline_cfg, seed=12345)
before = generate(fresh, builder, image_source_for(fresh, data).batch(show_keys)).token_ids
state = load_checkpoint(latest, fresh)
# the frozen tower's weights are in the checkpoint too, so the features are recomputed after loading
after = generate(fresh, builder, image_source_for(fresh, data).batch(show_keys)).token_ids
load_seconds = time.perf_counter() - t0
assert before != cached.token_ids  # random weights write something else ...
assert after == cached.token_ids  # ... and the loaded weights write exactly what the trained model wrote
assert state["step"] == recipe.max_steps
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
print(f"built, loaded and decoded in {load_seconds:.1f} s (step {state['step']})")
"""
)

# ------------------------------------------------------------------------------------------------ metrics
md(
    """
## 11. The notebook's numbers

Every notebook writes its key numbers to `{runs_dir}/NN_name/metrics.json`, and the comparison notebook
07 and the course README read them from there. The values are means over the three seeds, plus one row
per seed. All are computed above; none is typed in.
"""
)
code(
    """
mean = per_seed.mean()
values = {
    "emo_acc": mean["emo_acc"],
    "emo_acc_strict": mean["emo_acc_strict"],
    "emo_acc_dist": mean["emo_acc_dist"],
    "emo_acc_std": per_seed["emo_acc"].std(),
    "majority_acc": majority["artemis"],
    "majority_acc_strict": majority["strict"],
    "image_only_acc": image_only_acc,
    "bleu4": mean["bleu4"],
    "cider": mean["cider"],
    "emo_align": mean["emo_align"],
    "train_seconds": mean["train_seconds"],
    "n_params": int(rows[0]["n_params"]),
    "n_frozen_params": int(counts["frozen"]),
    "probe_acc_frozen_features": probe_acc["frozen random CLIP patches"],
    "probe_acc_colour_histograms": probe_acc["colour histograms"],
    "n_test_artworks": n_test,
    "seeds": list(SEEDS),
    "per_seed": rows,
}
path = write_metrics(settings, "02_baseline_captioner", values)
saved = read_metrics(settings, "02_baseline_captioner")
assert {"emo_acc", "emo_acc_strict", "majority_acc", "bleu4", "train_seconds", "n_params"} <= set(saved)
assert saved["n_params"] == model.count_parameters()["trainable"]
print("wrote", path.relative_to(settings.runs_dir))
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
print(f"this notebook ran for {(time.perf_counter() - notebook_start) / 60:.1f} minutes")
"""
)

# ------------------------------------------------------------------------------------------------ summary
md(
    """
## Summary

- One annotation becomes `<bos> the emotion is X because Y <eos>`, with NLX-GPT segment ids
  (`<emotion>` up to the emotion word, `<explanation>` from ` because`) and labels that are the inputs
  with `-100` where nothing is scored. Like the reference, we score the prompt words too, which dilutes
  the reported XE.
- Build sequences from id lists, never by writing special tokens into text: a byte-level BPE turns the
  space before `<|endoftext|>` into a stray `Ġ` token. "something else" is two tokens, so spans must come
  from the real boundary, not from the reference's fixed offset of 6.
- Pixels are normalised with CLIP's own mean and std (the reference used ImageNet's). The tiny profile's
  random CLIP tower stays frozen, like SEVLM's pretrained one. A linear probe shows its features carry
  picture information, and freezing lets the features be computed once.
- Cross-attention is ordinary attention whose queries come from the text and whose keys and values come
  from the image patches: a $T \\times P$ weight matrix per head, with no causal mask. We recomputed it by
  hand from the first block's weights, and the training loss is the shifted cross-entropy that ignores
  `-100`.
- Trained with three seeds, the baseline's Emo-A is clearly above the majority class (section 7 prints
  the margin and the comparison with the image-only classifier). Greedy decoding with a KV cache gives
  the same tokens as without it, for a fraction of the decoder positions. Checkpoints reload exactly.

## Exercises

**1. Scoring the prompt, or not.** Train two copies of the baseline for 40 steps on small batches from the
same seed: one with the reference labels, one with `loss_on_prompt=False`. Compare the XE *on the
emotion and explanation tokens only* on the same held-out batch. Does scoring the three constant prompt
words help, hurt, or change nothing this early? Why is comparing the two models' training XE unfair?
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
def quick_train(seq_builder: SequenceBuilder, steps: int = 40, seed: int = 0) -> torch.nn.Module:
    m = build_model(data, baseline_cfg, seed=seed).train()
    source = image_source_for(m, data)
    stream = PairBatches(pairs, seq_builder, source, batch_size=8, seed=seed).batches(0)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(steps):
        loss = m(next(stream)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


val_pairs = data.pair_items("val")
held_out = next(iter(PairBatches(val_pairs, no_prompt, image_source_for(model, data), batch_size=32, seed=0).batches(0)))
for name, b in (("reference (prompt scored)", builder), ("loss_on_prompt=False", no_prompt)):
    quick = quick_train(b)
    with torch.no_grad():
        xe = quick(held_out).losses["xe"].item()  # held_out's labels skip the prompt
    print(f"{name:28} XE on emotion + explanation tokens of a val batch: {xe:.3f}")
""",
    solution=True,
)
md(
    """
**2. Greedy versus top-p sampling.** Greedy decoding always writes the most likely sentence, so two
similar pictures get the same words. Generate for the test artworks with `strategy="sample", top_p=0.9`
(seeded `torch.Generator`), and compare the share of distinct explanations (`metrics.diversity`) and Emo-A
with greedy decoding. What do you gain, and what does it cost?
Hint: sampling draws each token from the smallest set of tokens whose probabilities add up to 0.9, so
the first token (the emotion word) is sampled too. Look at what that does to Emo-A. One fix used in
practice is to decode the emotion greedily and sample only the explanation.
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
test_keys = data.artwork_keys("test")
test_batch = image_source_for(base, data).batch(test_keys)
gold_list = [gold_of[k] for k in test_keys]
train_utts = data.split("train")["utterance"]
for name, kwargs in (("greedy", {}),
                     ("top-p 0.9", {"strategy": "sample", "top_p": 0.9,
                                    "generator": torch.Generator().manual_seed(0)})):
    g = generate(base, builder, test_batch, **kwargs)
    div = metrics.diversity(g.explanations, train_utts)
    acc = metrics.emotion_accuracy(g.emotions, gold_list)
    print(f"{name:10} Emo-A {acc:.3f}  distinct {div['distinct']:.2f}  novel {div['novelty']:.2f}")
""",
    solution=True,
)
md(
    """
**3. Another dominant-emotion rule.** Emo-A depends on which artworks have a dominant emotion. Compute
the accuracy of seed 0's predictions under the ArtEmis rule, the strict rule, and a *plurality* rule (the
most voted emotion, ties dropped). How many test artworks does each rule keep, and how does Emo-A move?
Why might the model look better on artworks where annotators agree more?
Hint: the strict rule keeps only artworks where more than half of the annotators agree. Those pictures
are, almost by definition, the least ambiguous ones.
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
test_rows_df = data.artworks[data.artworks["split"] == "test"].set_index(["art_style", "painting"])
vote_counts = test_rows_df[list(EMOTIONS)].to_numpy()
top = vote_counts.max(1, keepdims=True)
unique_top = (vote_counts == top).sum(1) == 1
plurality = pd.Series([EMOTIONS[i] if ok else None for i, ok in zip(vote_counts.argmax(1), unique_top, strict=True)],
                      index=test_rows_df.index)
rules = {"artemis": test_rows_df["dominant"], "strict": test_rows_df["dominant_strict"], "plurality": plurality}
pred_emotions = preds.loc[test_rows_df.index, "emotion"]
for rule, gold in rules.items():
    kept = gold.notna()
    acc = metrics.emotion_accuracy(list(pred_emotions), list(gold))
    print(f"{rule:10} keeps {int(kept.sum()):4d} of {len(gold)} test artworks, Emo-A {acc:.3f}")
""",
    solution=True,
)
md(
    """
**4. Where does it look?** Redo section 4.3 on the *trained* model (seed 0), for the last decoder block
and one gallery artwork. Teacher-force the model's own sentence and average the cross-attention weights
over heads. Draw the weights of the emotion word over the 4x4 patch grid with `viz.plot_attention_overlay`.
Does the emotion word attend to the picture evenly?
Remember the shift: the emotion word is *predicted* at the position just before it (the word ` is`), so
that is the row of the attention matrix to look at. (On 16 patches of a random frozen tower, expect
weak structure, and say so if you find none.)
"""
)
code(
    """
# NBVAL_IGNORE_OUTPUT
from sevlm_lib.viz import plot_attention_overlay

row = preds.loc[key]
seq = builder.encode(row["emotion"] or "something else", row["explanation"] or "nothing")
layer, seen = base.decoder.transformer.h[-1].crossattention, {}
hook = layer.register_forward_hook(lambda m, a, kw, o: seen.update(x=a[0], mem=kw["encoder_hidden_states"]),
                                   with_kwargs=True)
with torch.no_grad():
    base({**builder.collate([seq]), **image_source_for(base, data).batch([key])})
    hook.remove()
    split = lambda t: t.view(1, -1, layer.num_heads, layer.head_dim).transpose(1, 2)  # noqa: E731
    k_img = layer.c_attn(seen["mem"]).split(layer.embed_dim, 2)[0]
    w = torch.softmax(split(layer.q_attn(seen["x"])) @ split(k_img).transpose(-1, -2) / math.sqrt(layer.head_dim), -1)
w_emo = w.mean(1)[0, seq.emotion_span[0] - 1]  # the position that *predicts* the emotion word, heads averaged
ax = plot_attention_overlay(unnormalize_images(data.images.rows([key]))[0], w_emo, title=f"writing '{row['emotion']}'")
display_image(ax.figure)
print(f"patch weights from {w_emo.min():.3f} to {w_emo.max():.3f} (uniform: {1 / len(w_emo):.3f})")
""",
    solution=True,
)

nb = new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
nb.metadata["language_info"] = {"name": "python"}
nbformat.write(nb, OUT)
prose = sum(len(c.source) for c in cells if c.cell_type == "markdown")
code_chars = sum(len(c.source) for c in cells if c.cell_type == "code")
print(f"wrote {OUT}: {len(cells)} cells, prose {prose} chars, code {code_chars} chars")
