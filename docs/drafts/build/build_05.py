"""Build notebooks/05_contrastive_head.ipynb (kept outside the repo; run, then execute the notebook)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path("/work/main/notebooks/05_contrastive_head.ipynb")
TIME_LINE = (
    sys.argv[1]
    if len(sys.argv) > 1
    else "about 5 minutes when the baseline runs of notebook 02 exist, about 9 without them (measured on a 2-core CPU)"
)

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
# 05 · The contrastive head: does the explanation fit the emotion and the picture?

An explanation can read well and still be wrong in two different ways. It can describe *this* painting but
argue for another feeling ("the storm is thrilling" under *sadness*), or it can argue for the right feeling
about a *different* painting ("the bright flowers make me smile" under a dark seascape). SEVLM (Zhang,
Zheng, Wang & Guo, ECCV 2024, arXiv 2403.11150) names the two skills that catch these mistakes *emotional
perception* and *visual semantics*, and adds one component for them: a **contrastive head**. It is a small
network that looks at an (image, emotion, explanation) triple and gives it a score. During training the
true triple must score higher than two fakes, one for each kind of mistake. The head's loss flows back into
the decoder. The hope is that the decoder's hidden states then carry the emotion and the picture more
clearly, and that the generated explanations get better.

Notebooks 03 and 04 added VAD to the decoder's input and output. This notebook builds the third addition
piece by piece, checks each piece against the library, trains it with three seeds next to the baseline and
measures what it does. One of the things we find is a shortcut the head can take: section 11 tests it
directly.

**What you'll learn**
- how a two-annotation batch is laid out (`B` artworks, `2B` sequences, `pair_index`) and why SEVLM trains
  on artworks whose annotators disagreed;
- the three embeddings (mean of image patches, mean hidden state over the emotion words and over the
  explanation words), and why padding must be masked out of a mean (the reference implementation averaged
  it in; we measure how much that moves the embedding);
- the scorer MLP, the two negatives (the same artwork's other explanation; another artwork's explanation,
  chosen by a *derangement*), and the InfoNCE loss, each re-derived by hand and checked against the library;
- how to measure an auxiliary loss honestly: three seeds, paired differences with a standard error, the
  head's own ranking accuracy, and a control experiment for what the head actually reads;
- how the embeddings look in 2D, coloured by emotion, before and after training.

**What you'll need**
- notebook 02 (the baseline captioner). Its three baseline runs are loaded from `{{runs_dir}}`; if they are
  missing, this notebook trains them first with the same recipe;
- notebooks 03 and 04 help with the ideas but are not required.

**Time on a CPU**: {TIME_LINE}. Training the three `+contrastive` runs takes most of it.
"""
)

md(
    """
## 0. Setup

As in every notebook: read the settings, check the environment, seed everything. `SEEDS` are the course's
three shared seeds. A run trained by one notebook is reused by every later one, so the baseline runs here
are the same files notebook 02 wrote.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
import itertools
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from IPython.display import display

from sevlm_lib import experiments as ex
from sevlm_lib.course import check_environment
from sevlm_lib.data.datasets import PairBatches
from sevlm_lib.emotions import EMOTIONS
from sevlm_lib.metrics import format_mean_std, knn_accuracy, summarize_seeds
from sevlm_lib.models.heads import (
    ContrastiveScorer,
    contrastive_loss,
    derangement,
    masked_mean,
    ranking_accuracy,
)
from sevlm_lib.settings import get_settings, seed_everything
from sevlm_lib.viz import display_image, pca_project, plot_emotion_scatter, plot_loss_curves

settings = get_settings()
check_environment(settings)
seed_everything(settings.seed)
sns.set_theme(style="whitegrid", font_scale=0.85)
pd.set_option("display.width", 150)
pd.set_option("display.max_colwidth", 80)
NOTEBOOK = "05_contrastive_head"
SEEDS = ex.SEEDS
notebook_start = time.perf_counter()
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
data = ex.load_course_data(settings)
recipe = ex.recipe_for(settings.profile)
cfg_base = ex.model_config_for(settings.profile)
cfg_con = ex.model_config_for(settings.profile, contrastive=True)
print(f"{len(data.artworks)} artworks; two-annotation items: "
      + ", ".join(f"{s} {len(data.pair_items(s))}" for s in ("train", "val", "test")))
print("variants:", ex.run_name(cfg_base), "and", ex.run_name(cfg_con), "| recipe:", recipe)
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## 1. Two annotations per artwork

The contrastive head needs, for every artwork in a batch, **two annotations with different emotions**. On
ArtEmis this is common: about half the artworks have no majority emotion at all, and most were labelled
with at least two different ones. The SEVLM recipe therefore trains only on artworks with more than one
distinct emotion (`data.pair_items`). Every variant in this course trains on the same pair items,
including the baseline, so an ablation changes the model and nothing else.

Here is one training item: an artwork with all its annotations. Each epoch, `PairBatches` draws two of
them with different emotions (`sample_pair`): the first uniformly, the second uniformly among those with
another emotion.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
train_items = data.pair_items("train")
item = train_items[0]
print(f"{item.art_style}/{item.painting}: {len(item.emotions)} annotations")
display(pd.DataFrame({"emotion": item.emotions, "utterance": item.utterances}).head(6))
"""
)

md(
    """
A batch holds `B` artworks and `2B` sequences, in the order `[a0, a0', a1, a1', ...]`: the two annotations
of artwork 0, then the two of artwork 1, and so on. Two index vectors describe the layout:

- `image_index[n]`: which artwork row sequence `n` belongs to, `[0, 0, 1, 1, 2, 2, ...]`. The image is
  encoded once per artwork and shared by its two sequences.
- `pair_index[n]`: the position of sequence `n`'s partner, `[1, 0, 3, 2, 5, 4, ...]`. That is `n XOR 1`:
  flipping the last bit swaps 0 and 1, 2 and 3, and so on.

With the tiny recipe's 32 artworks per batch, one step therefore sees 64 sequences, as in the paper (32
images, 64 sequences).

Why must the two emotions differ? The partner sequence will become a *negative*: an explanation the head
must score below the real one. If both annotators had chosen *awe*, the partner's explanation might be a
near paraphrase ("the huge mountains make me feel small" next to "the scale of the peaks is
overwhelming"). Punishing the head for accepting it would teach it noise. Requiring different emotions
makes negative 1 a real mistake: it is an explanation of the same picture, but for another feeling.
"""
)

code(
    """
fresh = ex.build_model(data, cfg_con, seed=settings.seed)  # an untrained +contrastive model
fresh.eval()
source = ex.image_source_for(fresh, data)  # frozen tower: features computed once
batch = next(PairBatches(train_items, data.builder, source, batch_size=recipe.batch_size, seed=0).batches(0))
B, N = len(batch["image_index"]) // 2, len(batch["input_ids"])
print(f"{B} artworks -> {N} sequences")
print("image_index[:8] =", batch["image_index"][:8].tolist())
print("pair_index[:8]  =", batch["pair_index"][:8].tolist())
assert N == 2 * B and torch.equal(batch["pair_index"], torch.arange(N) ^ 1)
"""
)

md(
    """
The sequences are the usual training text, `<bos> the emotion is {emotion} because {explanation} <eos>`,
right-padded to the longest one in the batch. We read the two emotions of the first artwork back from the
tokens to check the promise: they differ.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
def emotion_of(batch, n):
    \"\"\"The emotion words of sequence n, read back from its tokens.\"\"\"
    return data.builder.tokenizer.decode(batch["input_ids"][n][batch["emotion_mask"][n]]).strip()


for n in range(4):
    print(n, "|", data.builder.decode(batch["input_ids"][n].tolist()))
pair_emotions = [(emotion_of(batch, 2 * i), emotion_of(batch, 2 * i + 1)) for i in range(B)]
assert all(a != b and a in EMOTIONS and b in EMOTIONS for a, b in pair_emotions)
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## 2. Three embeddings

The head does not read tokens. It reads three vectors per sequence, all of width `d` (the decoder's width:
64 in the tiny profile, 768 in the paper):

1. **image**: the mean of the image's patch features, the memory the decoder cross-attends to
   (`[B, P, d]` averaged over the `P` patches). Repeated for the two sequences of an artwork.
2. **emotion**: the mean of the decoder's last hidden states over the emotion words (`emotion_mask`: one
   token for *awe*, two for *something else*).
3. **explanation**: the mean of the decoder's last hidden states over the explanation words
   (`explanation_mask`: the words after ` because`, without `<eos>` and without padding).

The decoder is causal, so the emotion embedding sees the prompt, the emotion words and the image, but no
explanation word. The explanation embedding sees everything before it, *including the emotion words*. Keep
that in mind: it becomes important in section 11.

A masked mean is a sum over the marked positions divided by how many there are. We compute it by hand on
the batch above and compare with the library's `masked_mean`:
"""
)

code(
    """
with torch.no_grad():
    torch.manual_seed(0)  # the forward pass draws negative 2's derangement from torch's generator
    out = fresh(batch)
    memory = fresh.encode_images(batch)  # [B, P, d]
hidden = out.hidden_states  # [2B, T, d]


def by_hand_mean(x, mask):
    m = mask.float().unsqueeze(-1)  # [N, T, 1]: 1 where the position counts
    return (x * m).sum(1) / m.sum(1)


image_emb = memory.mean(1)[batch["image_index"]]  # [2B, d]
emotion_emb = by_hand_mean(hidden, batch["emotion_mask"])
explanation_emb = by_hand_mean(hidden, batch["explanation_mask"])
torch.testing.assert_close(emotion_emb, masked_mean(hidden, batch["emotion_mask"]))
torch.testing.assert_close(explanation_emb, masked_mean(hidden, batch["explanation_mask"]))
print("memory", tuple(memory.shape), "| hidden", tuple(hidden.shape))
print("image", tuple(image_emb.shape), "| emotion", tuple(emotion_emb.shape), "| explanation", tuple(explanation_emb.shape))
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## 3. Padding must not vote

The reference implementation (built on NLX-GPT) averages the explanation's hidden states over the whole
right-padded row, so the positions after `<eos>` are counted too. Those positions are not empty: the
decoder still computes a hidden state for each of them (the attention mask stops other tokens from looking
*at* padding, but a padding position itself looks back at the real tokens). Their vectors are averaged in as
if they were words.

Two things go wrong. The embedding of a short explanation is diluted by many padding vectors. And the same
explanation gets a *different* embedding depending on its batch-mates, because the longest sequence in the
batch decides how much padding there is. Below we model the reference's mean as every position from the
first explanation word to the end of the padded row (so `<eos>` and the padding count), and compare it
with the masked mean on the real batch above.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
T = hidden.shape[1]
first = batch["explanation_mask"].float().argmax(1)  # the first explanation position of each row
tail = torch.arange(T)[None, :] >= first[:, None]  # from there to the end of the padded row
padded_emb = by_hand_mean(hidden, tail)
n_pad = (batch["attention_mask"] == 0).sum(1)
rel_change = ((padded_emb - explanation_emb).norm(dim=1) / explanation_emb.norm(dim=1)).numpy()
cosine = F.cosine_similarity(padded_emb, explanation_emb, dim=1).numpy()
pad_frame = pd.DataFrame({"padding positions": n_pad.numpy(), "relative change": rel_change, "cosine": cosine})
print(pad_frame.groupby(pd.cut(pad_frame["padding positions"], [-1, 0, 4, 9, 30])).agg(
    sequences=("cosine", "size"), mean_relative_change=("relative change", "mean"), mean_cosine=("cosine", "mean")
).round(3))
corr = float(np.corrcoef(pad_frame["padding positions"], pad_frame["relative change"])[0, 1])
print(f"correlation of padding length and relative change: {corr:.2f}")
"""
)

md(
    """
The table groups the batch's sequences by how much padding they carry. Even with no padding the two means
differ a little, because the reference-style mean also counts `<eos>`. The more padding, the larger the
change. Now the batch-mate effect: we encode the most-padded sequence of the batch **alone** (no padding at
all) and compare both of its embeddings with the ones it got inside the batch.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
n = int(n_pad.argmax())  # the most padded sequence
length = int(batch["attention_mask"][n].sum())
alone = {k: v[[n], :length] for k, v in batch.items() if v.dim() == 2}  # its row, padding cut off
with torch.no_grad():
    words = fresh.embed(alone["input_ids"], alone["segment_ids"], alone["explanation_segment"])
    h1 = fresh.decode(words, memory[batch["image_index"][[n]]], alone["attention_mask"]).last_hidden_state
masked_shift = float((masked_mean(h1, alone["explanation_mask"])[0] - explanation_emb[n]).norm() / explanation_emb[n].norm())
padded_shift = float((h1[0, int(first[n]):].mean(0) - padded_emb[n]).norm() / padded_emb[n].norm())
print(f"sequence {n}: {int(n_pad[n])} padding positions in the batch, none alone")
print(f"masked mean, alone vs in the batch:      relative change {masked_shift:.2e}")
print(f"reference-style mean, alone vs in batch: relative change {padded_shift:.3f}")
"""
)

code(
    """
assert n_pad[n] > 0
assert masked_shift < 1e-4  # the masked mean does not care who else is in the batch
assert padded_shift > 100 * masked_shift  # the padded mean does
assert corr > 0  # more padding, larger change
"""
)

md(
    """
With the mask, an explanation's embedding is a property of the explanation (and its image and prompt). The
small leftover change is floating-point noise. Without the mask it also depends on batch composition,
which the head then has to learn to ignore. The library's `masked_mean` divides by the number of marked
positions (clamped at 1, so an empty mask gives zeros rather than `NaN`).

## 4. The scorer

The scorer is an MLP over the concatenated triple: `3d -> d -> d -> d -> d -> 1`, four hidden layers of
width `d` with ReLU between them and one scalar out. A higher score means "these three belong together".
"""
)

code(
    """
print(fresh.scorer)
n_scorer = sum(p.numel() for p in fresh.scorer.parameters())
print(f"{n_scorer:,} parameters ({n_scorer / fresh.count_parameters()['trainable']:.1%} of the trainable model)")
"""
)

md(
    """
By hand, a score is a loop over the linear layers with a ReLU after every layer but the last. We check it
against the positive scores the model's forward pass returned (`out.scores["pos"]`):
"""
)

code(
    """
def score_by_hand(scorer, image, emotion, explanation):
    x = torch.cat([image, emotion, explanation], dim=-1)
    linears = [m for m in scorer.mlp if isinstance(m, torch.nn.Linear)]
    for k, lin in enumerate(linears):
        x = x @ lin.weight.T + lin.bias
        if k < len(linears) - 1:
            x = torch.relu(x)
    return x.squeeze(-1)


with torch.no_grad():
    pos_by_hand = score_by_hand(fresh.scorer, image_emb, emotion_emb, explanation_emb)
torch.testing.assert_close(pos_by_hand, out.scores["pos"])
print("positive scores match:", tuple(pos_by_hand.shape))
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## 5. Two kinds of negatives

For each sequence `n` (artwork `i`, slot `s` in {0, 1}) the head scores three triples. All three share the
image and the emotion embedding; only the explanation changes:

| triple | explanation taken from | the mistake it stands for |
| --- | --- | --- |
| positive `s+` | sequence `n` itself | none |
| negative 1 `s1` | the same artwork's other sequence, `pair_index[n]` | **emotional perception**: right picture, explanation written for another emotion |
| negative 2 `s2` | the same slot of another artwork `σ(i)`: `2·σ(i) + s` | **visual semantics**: an explanation written for a different picture |

Negative 1 is why the batches hold two annotations with *different* emotions. Negative 2 needs a rule
`σ` that sends every artwork to *another* artwork of the batch. A random permutation is not enough: a
permutation of 32 items fixes at least one point with probability about 63% (1 - 1/e), and a fixed point
would make negative 2 equal to the positive. We need a **derangement**, a permutation with no fixed point.

The library draws one with **Sattolo's algorithm** (1986). It is Fisher-Yates with one change: the
position `i` swaps with a `j` drawn from `0..i-1`, never with itself. That small change makes the result a
single cycle through all `n` items, so nothing stays in place. Here it is by hand, compared with the library
under the same generator:
"""
)

code(
    """
def sattolo(n, generator):
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int(torch.randint(0, i, (1,), generator=generator))  # 0 <= j < i: never i itself
        perm[i], perm[j] = perm[j], perm[i]
    return torch.tensor(perm)


for n_items in (2, 3, 7, 32):
    mine = sattolo(n_items, torch.Generator().manual_seed(n_items))
    lib = derangement(n_items, torch.Generator().manual_seed(n_items))
    assert torch.equal(mine, lib)
print("sigma for 8 artworks:", derangement(8, torch.Generator().manual_seed(1)).tolist())
g = torch.Generator().manual_seed(0)
fixed_points = sum(int((derangement(n_items, g) == torch.arange(n_items)).sum()) for n_items in range(2, 65) for _ in range(50))
print("fixed points in 3,150 draws of sizes 2..64:", fixed_points)
assert fixed_points == 0
"""
)

md(
    """
Sattolo's algorithm draws uniformly among the `(n-1)!` permutations that form **one** cycle. That is not
the same as uniform over *all* derangements. For `n = 4` there are nine derangements: six 4-cycles and three
pairs of swaps, such as `(0 1)(2 3)`. Sattolo never returns a pair of swaps. A count over many draws shows
it:
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
g = torch.Generator().manual_seed(0)
counts = pd.Series([tuple(derangement(4, g).tolist()) for _ in range(6000)]).value_counts()
all_derangements = [p for p in itertools.permutations(range(4)) if all(a != b for a, b in enumerate(p))]
table = pd.DataFrame({"times drawn": [int(counts.get(p, 0)) for p in all_derangements]},
                     index=[str(p) for p in all_derangements])
print(table.T)
"""
)

code(
    """
never = [p for p in all_derangements if counts.get(p, 0) == 0]
assert len(all_derangements) == 9 and len(never) == 3  # the three pairs of swaps
assert all(p[p[0]] == 0 for p in never)  # each is its own inverse: two 2-cycles
assert counts.min() > 6000 / 6 * 0.85  # the six 4-cycles are about equally likely
"""
)

md(
    """
For negatives this bias does not matter: all we need is "never itself", and every other artwork is
equally likely to be picked for a given artwork. A model that draws one derangement per step, as SEVLM does
here, pairs each artwork with a fresh partner every step.

Now we rebuild negative 2 by hand. The forward pass drew `σ` from torch's global generator right after we
seeded it with 0; in eval mode nothing else draws random numbers first, so seeding again and calling
`derangement` gives the same `σ`:
"""
)

code(
    """
torch.manual_seed(0)
sigma = derangement(B)
slot = torch.arange(N) % 2
neg_visual_index = 2 * sigma[batch["image_index"]] + slot
with torch.no_grad():
    s1 = score_by_hand(fresh.scorer, image_emb, emotion_emb, explanation_emb[batch["pair_index"]])
    s2 = score_by_hand(fresh.scorer, image_emb, emotion_emb, explanation_emb[neg_visual_index])
torch.testing.assert_close(s1, out.scores["neg_emotion"])
torch.testing.assert_close(s2, out.scores["neg_visual"])
assert (neg_visual_index != torch.arange(N)).all() and (batch["pair_index"] != torch.arange(N)).all()
assert (batch["image_index"][neg_visual_index] != batch["image_index"]).all()  # always another artwork
print("negative-2 partners of the first 8 sequences:", neg_visual_index[:8].tolist())
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## 6. InfoNCE by hand

The three scores of a sequence are treated as logits of a three-way classification whose right answer is
always "the positive":

$$\\mathcal{L} = -\\frac{1}{2B}\\sum_{n} \\log \\frac{e^{s^+_n}}{e^{s^+_n} + e^{s^1_n} + e^{s^2_n}}$$

This is InfoNCE (van den Oord et al., 2018) with two negatives and temperature 1. The gradient with
respect to each score is simple: `p - 1` for the positive and `p` for each negative, where `p` is the softmax
probability. The head is pushed hardest on the negatives it currently confuses with the positive. The
total loss of the model is `XE + contrastive_loss_weight * L` (weight 1.0, as in the paper).

We compute `L` from the returned scores with exponentials and a logarithm and compare it with the library
(`contrastive_loss`, which calls `F.cross_entropy` on the stacked scores) and with the loss the forward
pass reported:
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
pos, n1, n2 = out.scores["pos"], out.scores["neg_emotion"], out.scores["neg_visual"]
loss_by_hand = -torch.log(torch.exp(pos) / (torch.exp(pos) + torch.exp(n1) + torch.exp(n2))).mean()
torch.testing.assert_close(loss_by_hand, contrastive_loss(pos, n1, n2))
torch.testing.assert_close(loss_by_hand, out.losses["contrastive"])
print(f"contrastive loss of the untrained model: {loss_by_hand.item():.5f}; log 3 = {math.log(3):.5f}")
print(f"spread of its scores: std {pos.std().item():.4f} around {pos.mean().item():.4f}")
"""
)

code(
    """
assert abs(loss_by_hand.item() - math.log(3)) < 0.01
"""
)

md(
    """
An untrained scorer gives nearly the same score to every triple (the spread printed above is tiny), so
each of the three options gets probability about 1/3 and the loss starts at `log 3 ≈ 1.0986`. That value is
a useful check: a contrastive loss that starts far from `log(1 + number of negatives)` means something is
wired wrong.

Why InfoNCE and not a margin (triplet) loss such as `max(0, 1 - s+ + s-)`? A margin loss stops caring once
a negative is beaten by the margin, and it treats each negative on its own. InfoNCE never quite stops: the
softmax always leaves some probability on the negatives. It also weighs them against each other, so a
negative that is nearly as good as the positive gets most of the gradient and an easy one gets almost
none. With only two negatives per sequence that difference is small. It matters more in image-text models
such as CLIP, which use every other item of a large batch as a negative. A side effect, used in
section 10: once trained, the head's scores can be read as a ranking, and its ranking accuracy on held-out
pairs is a direct measure of what it learned.

## 7. Before training: the head guesses

The head's own quality measure is its **ranking accuracy** on held-out pairs: how often `s+ > s1` (it
catches the emotion mistake), how often `s+ > s2` (it catches the picture mistake), and how often both
hold at once. A random scorer gets about 1/2, 1/2 and 1/3 (`ranking_accuracy` counts ties as failures).

`ex.pair_embeddings(model, data, split)` teacher-forces every two-annotation item of a split through a
model. It returns the three embeddings, a table of the sequences (artwork, emotion, utterance, the
artwork's dominant emotion) and, for models with a head, the three scores. Its derangements are seeded, so
the numbers repeat exactly. The validation and test splits are small (their item counts are printed in
section 0), so expect a few points of noise.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
fresh_emb = {split: ex.pair_embeddings(fresh, data, split, images=source) for split in ("val", "test")}
ranking_untrained = {split: ranking_accuracy(e.scores["pos"], e.scores["neg_emotion"], e.scores["neg_visual"])
                     for split, e in fresh_emb.items()}
print(pd.DataFrame(ranking_untrained).T.round(3))
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
These numbers are the floor. With about a hundred artworks per split, differences of a few points between
the columns, or between validation and test, are noise. What matters is how far training moves them.
"""
)

md(
    """
## 8. Training: baseline and +contrastive, three seeds each

Both variants use the course's tiny recipe unchanged (AdamW at 3e-3 with linear decay, gradient clipping at
1.0, 600 steps of 32 artworks), the same pair batches and the same three seeds. A seed fixes the initial
weights of the shared parts. The head's modules are created after them, so seed 0 of `+contrastive` starts
from exactly the decoder that seed 0 of the baseline starts from. The only difference is the extra loss
term.

`ex.train_and_evaluate` loads a finished run when one exists ("load if finished, else train") and caches
its test evaluation, so the baseline normally loads in seconds from notebook 02. The same cells run
unchanged on the full profile (`SEVLM_PROFILE=full`: CLIP ViT-B/16 features with 196 patches and distilgpt2,
both 768 wide, and the paper's recipe from `ex.recipe_for("full")`), but that needs a GPU and hours, not
minutes. The Emo-Align classifier (a text-only emotion classifier trained on the training split's human
explanations) is cached too.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
classifier = ex.train_emotion_classifier(data)
t0 = time.perf_counter()
rows_base = ex.train_and_evaluate(data, cfg_base, seeds=SEEDS, recipe=recipe, classifier=classifier)
minutes_base = (time.perf_counter() - t0) / 60
print(f"baseline, {len(SEEDS)} seeds (loaded or trained): {minutes_base:.1f} min")
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
t0 = time.perf_counter()
rows_con = ex.train_and_evaluate(data, cfg_con, seeds=SEEDS, recipe=recipe, classifier=classifier)
minutes_con = (time.perf_counter() - t0) / 60
print(f"+contrastive, {len(SEEDS)} seeds (loaded or trained): {minutes_con:.1f} min")
print("training seconds per run:", [round(r["train_seconds"]) for r in rows_con])
"""
)

code(
    """
assert [r["seed"] for r in rows_base] == [r["seed"] for r in rows_con] == list(SEEDS)
assert {r["variant"] for r in rows_base} == {"baseline"} and {r["variant"] for r in rows_con} == {"+contrastive"}
assert all(r["n_params"] - n_scorer == rows_base[0]["n_params"] for r in rows_con)  # only the scorer is new
"""
)

md(
    """
What does the head cost? In parameters, the numbers printed in section 4: the scorer is the only new
module, and the assert above checks that. In the paper's size (d = 768) the same MLP has
`2304·768 + 3·768·768 + 768` weights plus biases, about 3.5 million, next to a decoder of about 96 million.
In compute it is small too. The scorer runs three times over `2B` vectors per step, while the decoder runs
over `2B × T` token positions. The masked means reuse hidden states the language-model loss computed anyway.
At generation time the head is not used at all: it changes the decoder's weights during training, and
nothing else.

The training log holds both loss terms. The contrastive loss starts at `log 3` as computed in section 6;
how fast it falls shows how easy the two negatives are for the head.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
trained_con = {seed: ex.load_trained(data, cfg_con, seed, recipe) for seed in SEEDS}
trained_base = {seed: ex.load_trained(data, cfg_base, seed, recipe) for seed in SEEDS}
log0 = trained_con[SEEDS[0]].history.to_frame()
fig, ax = plt.subplots(figsize=(6.5, 3.2))
plot_loss_curves(trained_con[SEEDS[0]].history, components=["xe", "contrastive"], ax=ax)
ax.axhline(math.log(3), color="0.5", linestyle=":", linewidth=1)
ax.set_title(f"+contrastive, seed {SEEDS[0]}: the two loss terms (dotted: log 3)")
display(display_image(fig, dpi=72))
last = log0.tail(50)[["xe", "contrastive"]].mean()
print(f"mean of the last 50 steps: xe {last['xe']:.3f}, contrastive {last['contrastive']:.3f}")
"""
)

code(
    """
assert abs(log0["contrastive"].iloc[0] - math.log(3)) < 0.05  # starts at chance
assert last["contrastive"] < log0["contrastive"].iloc[0]  # the head learns something
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## 9. Does the head help the captioner?

The four numbers from the course's evaluation suite that matter here, on the test split, mean ± std over
three seeds:

- **Emo-A**: the generated emotion word against the artwork's dominant emotion (ArtEmis rule), over
  artworks that have one;
- **BLEU-4**: the generated explanation against all human explanations of the artwork;
- **VAD error**: the distance between the mean VAD of the generated explanation's words and that of the
  human explanations (lower is better);
- **Emo-Align**: how often a text-only emotion classifier, reading only the generated explanation, names
  the artwork's dominant emotion. This is the number closest to the head's purpose: does the explanation
  argue for the emotion?
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
METRICS = ["emo_acc", "bleu4", "vad_err", "emo_align"]
HIGHER_IS_BETTER = {"emo_acc": True, "bleu4": True, "vad_err": False, "emo_align": True}
summary = summarize_seeds(rows_base + rows_con, by=["variant"], metrics=METRICS + ["cider", "div_distinct"])
display(format_mean_std(summary))
majority = ex.majority_accuracy(data, "test")
print(f"majority-class Emo-A on test: {majority:.3f}")
"""
)

md(
    """
Three seeds give a rough estimate of noise, not a precise one. Because seed `k` of both variants starts
from the same decoder and sees the same batches, we compare **paired** differences: for each seed,
`+contrastive − baseline`, then the mean of the three differences and its standard error
(`std / √3`). We call an effect clear only when the mean difference is more than twice its standard error.
This is a loose rule of thumb, not a significance test. The sentences below are printed from the numbers:
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
def paired_difference(new, old, higher_is_better=True):
    \"\"\"Mean and standard error of per-seed differences new - old, and a verdict by the 2-SE rule.\"\"\"
    d = np.asarray(new, dtype=float) - np.asarray(old, dtype=float)
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    better = "clearly better" if (mean > 0) == higher_is_better else "clearly worse"
    return {"diff_mean": mean, "diff_se": se, "diffs": d.tolist(), "verdict": better if abs(mean) > 2 * se else "no clear difference"}


effects = {m: paired_difference([r[m] for r in rows_con], [r[m] for r in rows_base], HIGHER_IS_BETTER[m]) for m in METRICS}
for m, e in effects.items():
    print(f"{m:>9}: +contrastive - baseline = {e['diff_mean']:+.4f} ± {e['diff_se']:.4f} (paired SE) -> {e['verdict']}")
n_clear = sum(e["verdict"] != "no clear difference" for e in effects.values())
print(f"The contrastive head {'changes' if n_clear else 'does not clearly change'} "
      f"{n_clear if n_clear else 'any'} of the {len(METRICS)} captioning metrics on ArtEmis-mini.")
"""
)

code(
    """
for r in rows_base + rows_con:
    assert r["emo_acc"] > majority  # both variants learned the task beyond the majority class
    assert 0 <= r["emo_align"] <= 1 and r["vad_err"] >= 0
assert set(effects) == set(METRICS)
"""
)

md(
    """
Read the verdicts above before reading on: they are the result. If they say "no clear difference", that
is a finding about this setting, not a failed experiment, and there are good reasons to expect it here:

- **The language-model loss already ties explanation to emotion.** Every explanation token is predicted
  after the emotion word, so the decoder already learns to explain the emotion it stated. The head's
  gradient reaches the decoder only through three mean-pooled vectors, with weight 1 next to the XE loss,
  which is spread over every token.
- **Small data, short training.** About a thousand training artworks, 600 steps, a 64-wide decoder. The
  paper trains a 768-wide distilgpt2 for many epochs on ArtEmis's 80,000 artworks.
- **Noise.** The test split has a few hundred artworks, and three seeds give a rough standard error. An
  effect of one or two points of Emo-A or Emo-Align can hide below it.
- **The head may solve its task without the decoder changing how it writes** (section 11).

Section 10 looks at what the head itself learned, and section 11 at *how* it solves its task.

## 10. What the head learned: ranking accuracy after training

We now repeat section 7 with the three trained `+contrastive` models on the validation and test pairs.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
sources = {("+contrastive", s): ex.image_source_for(t.model, data) for s, t in trained_con.items()}
sources.update({("baseline", s): ex.image_source_for(t.model, data) for s, t in trained_base.items()})
con_emb = {(seed, split): ex.pair_embeddings(t.model, data, split, images=sources[("+contrastive", seed)])
           for seed, t in trained_con.items() for split in ("val", "test")}
rank_rows = [{"model": "untrained", "seed": settings.seed, "split": split, **acc}
             for split, acc in ranking_untrained.items()]
for (seed, split), e in con_emb.items():
    rank_rows.append({"model": "+contrastive", "seed": seed, "split": split,
                      **ranking_accuracy(e.scores["pos"], e.scores["neg_emotion"], e.scores["neg_visual"])})
ranking = pd.DataFrame(rank_rows)
display(ranking.groupby(["model", "split"])[["emotion", "visual", "both"]].agg(["mean", "std"]).round(3))
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
trained_test = ranking[(ranking.model == "+contrastive") & (ranking.split == "test")]
acc_emotion, acc_visual = trained_test["emotion"].mean(), trained_test["visual"].mean()
easier = "the emotion negative (1)" if acc_emotion > acc_visual else "the picture negative (2)"
print(f"Trained head on test pairs: it beats negative 1 in {acc_emotion:.1%} and negative 2 in {acc_visual:.1%} "
      f"of the sequences (chance: 50%); {easier} is the easier one for it.")
"""
)

code(
    """
assert (trained_test["both"] > ranking_untrained["test"]["both"]).all()  # every trained seed beats its start
assert trained_test["both"].mean() > 0.5  # well above the 1/3 of chance
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
Ranking accuracy measures the head, not the captioner. A head that ranks almost perfectly can still leave
the decoder's writing unchanged. It only needs to find its answer in features that the decoder computes
anyway for the language-model loss. Whether that happens is the question of the next section.
"""
)

md(
    """
## 11. Reading the words, or reading the prompt?

Section 2 noted that the explanation embedding is a mean of hidden states that attended to everything
before them, **including the emotion words of their own prompt**. Negative 1 is the other annotation's
explanation, and it was teacher-forced after *the other emotion*. So the head has two ways to reject it:

- **the intended way**: read the explanation's words and notice that they argue for another emotion;
- **a shortcut**: notice that the explanation's hidden states "remember" a different emotion word than the
  one in the emotion embedding. That can be done without understanding a single explanation word.

A control experiment separates the two. We build two new negatives and score them with the trained head,
keeping the image and emotion embedding of the positive:

| new negative | explanation words | prompt it was encoded after | catches |
| --- | --- | --- | --- |
| **words swapped** | the partner's | the positive's own emotion | only a head that reads words |
| **prompt swapped** | the sequence's own | the partner's emotion | only a head that reads the prompt |

A head that reads words rejects the first and accepts the second. A head that uses the shortcut does the
opposite.
"""
)

code(
    """
def shortcut_test(model, emb, images):
    \"\"\"How often the trained head ranks the positive above negative 1 and the two control negatives.\"\"\"
    t = emb.table
    keys = list(zip(t["art_style"], t["painting"], strict=True))
    partner = np.arange(len(t)) ^ 1
    words_swapped = [(t["emotion"][i], t["utterance"][partner[i]], keys[i]) for i in range(len(t))]
    prompt_swapped = [(t["emotion"][partner[i]], t["utterance"][i], keys[i]) for i in range(len(t))]
    result = {"negative 1": float((emb.scores["pos"] > emb.scores["neg_emotion"]).float().mean())}
    for name, rows in (("words swapped", words_swapped), ("prompt swapped", prompt_swapped)):
        x = ex.sequence_embeddings(model, data, rows, images=images)["explanation"]
        with torch.no_grad():
            result[name] = float((emb.scores["pos"] > model.scorer(emb.image, emb.emotion, x)).float().mean())
    return result
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
shortcut_rows = [{"seed": seed, **shortcut_test(t.model, con_emb[(seed, "test")], sources[("+contrastive", seed)])}
                 for seed, t in trained_con.items()]
shortcut = pd.DataFrame(shortcut_rows).set_index("seed")
display(shortcut.round(3))
words, prompt = shortcut["words swapped"].mean(), shortcut["prompt swapped"].mean()
reads = ("mostly the prompt (the shortcut)" if prompt > words + 0.1 else
         "mostly the words" if words > prompt + 0.1 else "both about equally")
print(f"Rejection rate, mean of {len(shortcut)} seeds: words swapped {words:.1%}, prompt swapped {prompt:.1%} "
      f"(50% = cannot tell). To reject negative 1 the head reads {reads}.")
"""
)

code(
    """
assert shortcut.shape == (len(SEEDS), 3) and ((shortcut >= 0) & (shortcut <= 1)).all().all()
"""
)

md(
    """
Compare the two right-hand columns with the first. Whatever the head relies on, one design fact stands:
with a causal decoder and the explanation read *after* the emotion words, negative 1 can be solved by
comparing two copies of the same emotion word (one in the emotion embedding, one remembered by the
explanation's hidden states). That gives the decoder little reason to make its explanation *words* more
emotional, which is what the head was meant to teach. If the printed sentence says the head reads the
prompt, this is the likely reason the head adds little to Emo-Align in section 9.

Two fixes are worth trying (see the exercises): encode negative 1 under the *positive's* prompt, which is
the "words swapped" negative above, so that only the words differ; or build the explanation embedding from
a pass that cannot see the prompt.

## 12. The embeddings in 2D

Finally, a picture. We project each of the three embeddings of the test sequences to two dimensions with
PCA (principal component analysis: the two directions of largest variance) and colour every point by its
emotion. The image panel is coloured by the artwork's dominant emotion and shows one point per artwork
(artworks without a dominant emotion are left out). The other two panels use the annotation's emotion.

First, PCA by hand: centre the rows, take the SVD, project on the first two right singular vectors. We
compare with the library's `pca_project`, which also fixes the signs so the pictures do not flip between
runs.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
x = fresh_emb["test"].explanation.double().numpy()
centred = x - x.mean(0)
_u, s_vals, vt = np.linalg.svd(centred, full_matrices=False)
coords_by_hand = centred @ vt[:2].T
coords_lib, explained = pca_project(x)
assert np.allclose(np.abs(coords_by_hand), np.abs(coords_lib))  # equal up to the sign of each axis
np.testing.assert_allclose(explained, s_vals[:2] ** 2 / (s_vals**2).sum())
print(f"first two components carry {explained.sum():.1%} of the variance of the untrained explanation embeddings")
"""
)

md(
    """
Three rows: the untrained model, a trained baseline and a trained `+contrastive` model (seed 0 for both).
The image embedding is the mean of *frozen* features, so it is the same in every row of the same seed.
In the tiny profile there is no projection between tower and decoder (both are 64 wide), so nothing
trainable touches it.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
s0 = SEEDS[0]
base_emb_test = {seed: ex.pair_embeddings(t.model, data, "test", images=sources[("baseline", seed)])
                 for seed, t in trained_base.items()}
panels = {"untrained": fresh_emb["test"], f"baseline (seed {s0})": base_emb_test[s0],
          f"+contrastive (seed {s0})": con_emb[(s0, "test")]}
fig, axes = plt.subplots(3, 3, figsize=(8.4, 8.4))
for row, (name, e) in zip(axes, panels.items(), strict=True):
    img_rows = ((e.table["slot"] == 0) & e.table["dominant"].notna()).to_numpy()
    views = {"image": (e.image[img_rows], list(e.table["dominant"][img_rows])),
             "emotion": (e.emotion, list(e.table["emotion"])),
             "explanation": (e.explanation, list(e.table["emotion"]))}
    for ax, (view, (vectors, labels)) in zip(row, views.items(), strict=True):
        xy, var = pca_project(vectors.numpy())
        plot_emotion_scatter(xy, labels, ax=ax, size=9, title=f"{name}\\n{view} ({var.sum():.0%} of variance)")
axes[0, 2].legend(*axes[1, 1].get_legend_handles_labels(), fontsize=7, frameon=False, loc="center left",
                  bbox_to_anchor=(1.0, 0.5))
fig.tight_layout()
display(display_image(fig, dpi=72))
"""
)

md(
    """
What to look for: in a panel where points of one colour gather in one region, the two largest directions
of variation already separate that emotion. Compare the explanation column down the three rows. The
untrained decoder's hidden states mix everything; training pulls explanations of the same emotion
together. Whether the head pulls them *further* apart than the baseline does is hard to judge by eye.

A picture can mislead: two dimensions keep only a fraction of the variance (printed in each title). So we
also measure how well the emotion can be **read** from each embedding in all `d` dimensions. The measure is
the leave-one-out accuracy of a 5-nearest-neighbour vote (cosine similarity, `sevlm_lib.metrics.knn_accuracy`).
A sequence is never allowed to use its own artwork's other sequence as a neighbour, so an image cannot
vote for itself. Chance is about the share of the most common label, printed as `majority`.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
def separability(e):
    t = e.table
    groups = list(zip(t["art_style"], t["painting"], strict=True))
    img = ((t["slot"] == 0) & t["dominant"].notna()).to_numpy()  # one point per artwork with a dominant emotion
    return {"image": knn_accuracy(e.image[img], list(t["dominant"][img]), k=5),
            "emotion": knn_accuracy(e.emotion, list(t["emotion"]), k=5, groups=groups),
            "explanation": knn_accuracy(e.explanation, list(t["emotion"]), k=5, groups=groups)}


sep = pd.DataFrame([{"model": "untrained", "seed": settings.seed, **separability(fresh_emb["test"])}]
                   + [{"model": "baseline", "seed": s, **separability(e)} for s, e in base_emb_test.items()]
                   + [{"model": "+contrastive", "seed": s, **separability(con_emb[(s, "test")])} for s in SEEDS])
display(sep.groupby("model", sort=False)[["image", "emotion", "explanation"]].agg(["mean", "std"]).round(3))
t = fresh_emb["test"].table
majority_share = {"image": float(t["dominant"][t["slot"] == 0].value_counts(normalize=True).iloc[0]),
                  "emotion": float(t["emotion"].value_counts(normalize=True).iloc[0])}
print("majority:", {k: round(v, 3) for k, v in majority_share.items()})
sep_effect = paired_difference(sep.explanation[sep.model == "+contrastive"], sep.explanation[sep.model == "baseline"])
print(f"emotion read from the explanation embeddings by 5-NN, +contrastive - baseline: {sep_effect['diff_mean']:+.3f} "
      f"± {sep_effect['diff_se']:.3f} (paired SE) -> {sep_effect['verdict']}")
"""
)

code(
    """
assert (sep["emotion"] > majority_share["emotion"]).all()  # the emotion words are always readable
assert sep.loc[sep.model != "untrained", "explanation"].min() > majority_share["emotion"]
"""
)

md(
    """
How to read the table. The **emotion** embedding is close to perfectly separable for every model, trained
or not. It is the hidden state of the emotion word itself, and a word's embedding is a fixed vector, so
this says nothing about learning. The **image** embedding does not change with training (frozen features).
Its score above the majority line is the signal the random tower's features carry about the artwork's
dominant emotion, the same signal notebook 01's image-only classifier found. The **explanation** row is the
interesting one. Training makes the explanation's hidden states carry the emotion much more clearly than
at initialisation, with or without the head. The last printed line says whether the head adds to that
beyond seed noise.

## 13. Saving the numbers

Everything a later notebook or the README may quote goes to `{runs_dir}/05_contrastive_head/metrics.json`:
per variant, one row per seed (three seeds), the paired differences, the head's ranking accuracy before and
after training, the shortcut test and the separability table.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
KEEP = ["seed", *METRICS, "emo_acc_strict", "emo_acc_dist", "bleu1", "rouge_l", "cider", "div_distinct",
        "train_seconds", "n_params"]
values = {
    "seeds": list(SEEDS),
    "recipe": recipe.to_dict(),
    "contrastive_loss_weight": cfg_con.contrastive_loss_weight,
    "per_seed": {name: [{k: r[k] for k in KEEP if k in r} for r in rows]
                 for name, rows in (("baseline", rows_base), ("+contrastive", rows_con))},
    "mean": {name: {m: float(np.mean([r[m] for r in rows])) for m in METRICS}
             for name, rows in (("baseline", rows_base), ("+contrastive", rows_con))},
    "effects": effects,
    "majority_acc": majority,
    "initial_contrastive_loss": float(loss_by_hand),
    "ranking": rank_rows,
    "shortcut": shortcut_rows,
    "separability": sep.to_dict("records"),
    "separability_effect": sep_effect,
    "majority_share": majority_share,
    "padding": {"mean_relative_change": float(pad_frame["relative change"].mean()), "alone_vs_batch_masked": masked_shift,
                "alone_vs_batch_padded": padded_shift},
}
path = ex.write_metrics(settings, NOTEBOOK, values)
saved = ex.read_metrics(settings, NOTEBOOK)
assert all(len(saved["per_seed"][name]) >= 3 for name in ("baseline", "+contrastive"))
print("wrote", path.relative_to(settings.runs_dir))
print(f"this notebook ran for {(time.perf_counter() - notebook_start) / 60:.1f} minutes")
"""
)

# ---------------------------------------------------------------------------------------------------------
md(
    """
## Summary

- SEVLM's contrastive head scores (image, emotion, explanation) triples with a 4-hidden-layer MLP over
  three mean-pooled vectors: the image's patch features, the decoder's hidden states over the emotion words
  and over the explanation words.
- Means must be **masked**. Averaging padding in, as the reference did, changes an explanation's embedding
  with its batch-mates. We measured the size of that change above.
- Each sequence meets two negatives: its artwork's other explanation, which has a different emotion
  (emotional perception), and the same slot of another artwork picked by a **derangement** (visual
  semantics). Sattolo's algorithm guarantees no fixed point; it samples single cycles only, which is fine
  for negatives.
- The loss is three-way InfoNCE. An untrained head gives nearly equal scores, so it starts at `log 3`.
  We re-derived the embeddings, scores, negatives and loss by hand and matched the library exactly.
- On ArtEmis-mini, with three seeds and paired differences, section 9 printed whether the head changes
  Emo-A, BLEU-4, VAD error and Emo-Align. The head's own ranking accuracy rises far above chance (section
  10). The control experiment in section 11 showed what it reads to reject negative 1. With a causal
  decoder, the explanation's hidden states remember their own emotion word, which opens a shortcut.
- The 2D pictures and the 5-NN separability table show that the emotion can be read from the explanation
  embeddings after training, with or without the head.

## Exercises

Solutions follow each exercise. They use small, fast experiments: a fresh scorer trained for a few hundred
steps on **frozen** embeddings of a trained baseline (seed 0), rather than full training runs. The next
cell prepares those embeddings for the training and test pairs and defines a small trainer that works with
any set of negatives.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
frozen_model = trained_base[SEEDS[0]].model
frozen = {"train": ex.pair_embeddings(frozen_model, data, "train", images=sources[("baseline", SEEDS[0])]),
          "test": base_emb_test[SEEDS[0]]}


def negatives(scorer, e, kinds, g):
    \"\"\"Scores of negatives: 'emotion' = the pair partner's explanation, 'visual' = a deranged artwork's.\"\"\"
    n, scores = torch.arange(len(e.table)), []
    for kind in kinds:
        index = n ^ 1 if kind == "emotion" else 2 * derangement(len(n) // 2, g)[n // 2] + n % 2
        scores.append(scorer(e.image, e.emotion, e.explanation[index]))
    return scores


def fit_scorer(e, kinds=("emotion", "visual"), extra=None, steps=150, seed=0):
    \"\"\"A fresh ContrastiveScorer trained with InfoNCE on frozen embeddings; `extra` adds more negatives.\"\"\"
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    scorer = ContrastiveScorer(e.image.shape[1])
    opt = torch.optim.AdamW(scorer.parameters(), lr=3e-3)
    for _ in range(steps):
        logits = [scorer(e.image, e.emotion, e.explanation), *negatives(scorer, e, kinds, g)]
        logits += extra(scorer, e) if extra else []
        loss = F.cross_entropy(torch.stack(logits, -1), torch.zeros(len(e.table), dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return scorer.eval()


@torch.no_grad()
def test_ranking(scorer, e=frozen["test"]):
    pos = scorer(e.image, e.emotion, e.explanation)
    return ranking_accuracy(pos, *negatives(scorer, e, ("emotion", "visual"), torch.Generator().manual_seed(0)))


print({k: tuple(v.explanation.shape) for k, v in frozen.items()})
"""
)

md(
    """
**Exercise 1 (temperature).** InfoNCE is often written with a temperature `τ`: `softmax(s / τ)`. Take the
trained head of `+contrastive` seed 0 and its scores on the test pairs. Compute the loss for
τ ∈ {0.1, 0.5, 1, 2, 10} and the share of the gradient that goes to the *hardest* negative of each
sequence. What does a small τ do? Why does SEVLM's τ = 1 not matter much for a scorer whose last layer can
scale its own output?
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
e = con_emb[(SEEDS[0], "test")]
logits = torch.stack([e.scores["pos"], e.scores["neg_emotion"], e.scores["neg_visual"]], -1)
rows = []
for tau in (0.1, 0.5, 1.0, 2.0, 10.0):
    p = (logits / tau).softmax(-1)  # d loss / d s_neg = p_neg / tau
    hardest_share = (p[:, 1:].max(-1).values / p[:, 1:].sum(-1).clamp_min(1e-12)).mean()
    rows.append({"tau": tau, "loss": float(F.cross_entropy(logits / tau, torch.zeros(len(logits), dtype=torch.long))),
                 "share of negative gradient on the hardest negative": float(hardest_share)})
print(pd.DataFrame(rows).round(3).to_string(index=False))
# A small tau sharpens the softmax: the gradient concentrates on the hardest negative and the loss punishes
# every near miss. Because the scorer's last Linear layer can multiply its scores by any factor, a fixed tau is
# absorbed by training: tau only changes where optimisation starts and how fast it moves.
""",
    tags=["solution"],
)

md(
    """
**Exercise 2 (drop negative 1).** Train a scorer on the frozen baseline embeddings with only the visual
negative, and one with both. Measure both scorers' ranking accuracy on the test pairs against *both*
kinds of negative. Does a head that was never shown an emotion negative still catch emotion mistakes?
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
both = test_ranking(fit_scorer(frozen["train"], kinds=("emotion", "visual")))
visual_only = test_ranking(fit_scorer(frozen["train"], kinds=("visual",)))
print(pd.DataFrame({"both negatives": both, "negative 2 only": visual_only}).T.round(3))
# Without negative 1 the scorer is never asked to tell two explanations of the same painting apart, so its
# accuracy on emotion negatives usually falls towards chance, while the visual column stays high.
""",
    tags=["solution"],
)

md(
    """
**Exercise 3 (a third negative).** Add a negative on the *emotion* side: keep the sequence's own
explanation but pair it with the partner's emotion embedding, `(image, emotion[pair], explanation)`.
Train a scorer with all three negatives, using four-way InfoNCE, and compare its test ranking with the
two-negative scorer. Then measure how often it rejects the new kind of negative.
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
def swapped_emotion(scorer, e):
    return [scorer(e.image, e.emotion[torch.arange(len(e.table)) ^ 1], e.explanation)]


two, three = fit_scorer(frozen["train"]), fit_scorer(frozen["train"], extra=swapped_emotion)
print(pd.DataFrame({"two negatives": test_ranking(two), "three negatives": test_ranking(three)}).T.round(3))
with torch.no_grad():
    t = frozen["test"]
    reject = {name: float((sc(t.image, t.emotion, t.explanation) > swapped_emotion(sc, t)[0]).float().mean())
              for name, sc in (("two negatives", two), ("three negatives", three))}
print("rejects a swapped emotion embedding:", {k: round(v, 3) for k, v in reject.items()})
""",
    tags=["solution"],
)

md(
    """
**Exercise 4 (close the shortcut).** Section 11 showed that negative 1 differs from the positive in two
ways: its words, and the prompt it was encoded after. Build a "words only" negative 1 on the frozen
baseline: re-encode each partner's explanation after the positive's own emotion (the "words swapped"
negative of section 11), train a scorer with it instead of the usual negative 1, and evaluate both scorers
against both versions of negative 1 on the test pairs. Which scorer has learned to read the words?
"""
)

code(
    """
# NBVAL_IGNORE_OUTPUT
def words_swapped(e):
    \"\"\"Each sequence's partner's words, encoded after the sequence's own emotion (frozen baseline).\"\"\"
    t = e.table
    partner = np.arange(len(t)) ^ 1
    rows = [(t["emotion"][i], t["utterance"][partner[i]], (t["art_style"][i], t["painting"][i])) for i in range(len(t))]
    return ex.sequence_embeddings(frozen_model, data, rows, images=sources[("baseline", SEEDS[0])])["explanation"]


ws = {split: words_swapped(frozen[split]) for split in ("train", "test")}
usual = fit_scorer(frozen["train"])
words_only = fit_scorer(frozen["train"], kinds=("visual",), extra=lambda sc, e: [sc(e.image, e.emotion, ws["train"])])
t = frozen["test"]
result = {}
with torch.no_grad():
    for name, sc in (("usual negative 1", usual), ("words-only negative 1", words_only)):
        pos = sc(t.image, t.emotion, t.explanation)
        result[name] = {"rejects usual negative 1": float((pos > sc(t.image, t.emotion, t.explanation[torch.arange(len(pos)) ^ 1])).float().mean()),
                        "rejects words-swapped": float((pos > sc(t.image, t.emotion, ws["test"])).float().mean())}
print(pd.DataFrame(result).T.round(3))
# Only the scorer trained on words-only negatives had no prompt difference to lean on, so its
# "rejects words-swapped" column is the one that can rise above chance. How far it rises says how much emotion
# the explanation WORDS carry in the baseline's hidden states.
""",
    tags=["solution"],
)

nb = new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
nb.metadata["language_info"] = {"name": "python"}
nbformat.write(nb, OUT)
md_chars = sum(len(c.source) for c in cells if c.cell_type == "markdown")
code_chars = sum(len(c.source) for c in cells if c.cell_type == "code")
print(f"wrote {OUT}: {len(cells)} cells, markdown {md_chars} chars, code {code_chars} chars")
