"""The words of ArtEmis-mini: feeling words, the explanation grammar and everyday colour names."""

from __future__ import annotations

from collections.abc import Mapping

from sevlm_lib.emotions import SOMETHING_ELSE

#: Common feeling/description words; only those the lexicon knows are used (their lexicon VAD decides when).
#: The eight emotion label words are deliberately absent.
_FEELING_WORDS_TEXT = """
abandoned abstract adventurous afraid aggressive alive amazing angry anxious awkward balanced beautiful
bitter bizarre bland bleak bold boring brave bright brutal busy calm careless charming chaotic cheerful
clean cold comfortable confusing cozy crazy creepy cruel curious dangerous dark dead delightful
depressing desolate dim dirty dismal distant disturbing dreadful dreamy dreary dull eerie elegant empty
energetic evil exhausted fierce filthy fragile free fresh friendly frightening funny furious gentle
ghastly gloomy glorious graceful grand grim gross happy harmonious harsh heavy helpless heroic hollow
homey hopeful hopeless horrible hostile humble humorous hungry innocent insignificant intense lively
lonely lonesome lost lovely magical magnificent majestic melancholy menacing merry messy mighty
miserable modest mournful mysterious nasty nervous nostalgic odd ominous oppressive ordinary painful
peaceful plain playful pleasant poor powerful powerless pretty proud puzzling quiet radiant random
relaxed relaxing repulsive restful restless rich romantic rotten rough rude sad safe scary serene
serious shy sick sickening silent silly simple sinister small smelly soft solemn soothing sorrowful
spectacular stern strange strong stunning sunny sweet tender tense terrifying threatening tired
tragic tranquil trapped ugly uncomfortable uneasy upset vast vibrant vile violent vulnerable warm
weak weary weird wild wise wonderful worried wretched young
"""
FEELING_WORDS: tuple[str, ...] = tuple(_FEELING_WORDS_TEXT.split())

#: Held-out feeling words for the rare-words condition (``make_artemis_mini(..., rare_words=True)``): words
#: the Warriner lexicon has as entries (no lemma needed) that appear nowhere else in the grammar, the feeling
#: words above or the colour, motif and shape names, so the training explanations never use them unless
#: ``rare_train_rate`` lets a few in. Only those the lexicon knows are used; their lexicon VAD decides when.
_HELD_OUT_FEELING_WORDS_TEXT = """
absurd adorable affectionate agonizing alarming ancient angelic anguished annoyed apprehensive ardent
ashamed astonishing awesome awful balmy barbaric barren belligerent benevolent blessed blissful breathtaking
brilliant carefree celestial colossal comical confident cordial cosmic cryptic cute dainty dazzling deadly
defiant delicate delighted demonic desperate despondent diabolical dingy dire diseased distressed divine
drab drowsy dynamic eccentric ecstatic edgy elated embarrassed enchanting enormous enraged eternal euphoric
excruciating exhilarating exquisite fabulous fantastic fatal fearful feeble ferocious fiery foggy foreboding
forlorn fortunate foul frail frantic freakish frightful ghostly gigantic glad glossy glum goofy gorgeous
gracious grandiose greasy grieving grievous grisly grotesque gruesome guilty harrowing hateful heartbroken
heavenly hideous hilarious homely horrid huge idyllic immaculate immense incredible infinite irate jittery
jolly joyful joyous lethal lifeless listless livid loathsome lucky luminous lush marvelous massive mellow
miraculous misty moldy monotonous monstrous monumental morbid mundane murderous murky mystical nauseating
nauseous neat noble overjoyed panicky passionate pathetic peculiar perilous petrified picturesque pitiful
placid poisonous precarious pristine putrid queasy quirky rancid rebellious regal repugnant resentful
revolting ridiculous robust rousing ruthless sacred savage scenic secure seedy shabby shadowy shiny sickly
sleepy slimy sluggish snug sordid sparkling spectral spirited spiteful splendid spooky stately sturdy
sublime sullen superb surreal tedious terrible terrific thrilling tidy timeless timid tiresome toxic
treacherous triumphant troubled turbulent uncanny vengeful vicious victorious vigorous vulgar wacky
whimsical wholesome wicked witty wondrous
"""
HELD_OUT_FEELING_WORDS: tuple[str, ...] = tuple(_HELD_OUT_FEELING_WORDS_TEXT.split())

#: Clause templates. Slots: {motif} (noun phrase), {a_motif} (with article), {shape} (plural noun phrase),
#: {color} (main colour), {colors} ("x and y"), {backdrop} ("sky" or "wall"), {f1} {f2} {f3} (feeling
#: words), {label} (emotion word).
#: Group ``any`` serves every annotation; ``positive``/``negative``/``something else`` only that group;
#: ``label`` templates name the emotion word and are used at ``MiniCalibration.label_word_rate``.
TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "any": (
        "the {motif} makes me feel {f1}",
        "the {colors} colors make the {motif} look {f1} and {f2}",
        "i feel {f1} looking at the {motif} and the {shape}",
        "the {shape} and the {color} tones give the painting a {f1} mood",
        "there is something {f1} about the {motif} and the {colors} colors",
        "the way the {shape} surround the {motif} feels {f1} and a little {f2}",
        "the {color} background and the {motif} make the whole scene seem {f1}",
        "this {motif} painted in {colors} feels {f1}, {f2} and {f3} to me",
        "the artist used {colors} with {shape} so the {motif} looks {f1}",
        "the {motif} seems {f1} against the {color} background",
        "so much {color} makes this {motif} feel {f1}",
        "the {shape} look {f1} next to the {motif}",
        "{a_motif} among {shape} in {colors}, it all feels {f1} and {f2}",
        "looking at the {motif} i feel {f1} because of the {color} light and the {shape}",
        "the {motif} looks {f1}",
        "{f1} and {f2}, that is how the {motif} in {color} feels",
        "the {color} {backdrop} behind the {motif} is {f1}",
    ),
    "positive": (
        "i would love to spend time near the {motif}, it looks so {f1}",
        "the {colors} colors are {f1} and the {motif} makes me smile",
        "what a {f1} scene, the {motif} and the {shape} feel {f2}",
    ),
    "negative": (
        "i would not want to be near the {motif}, it feels {f1} and {f2}",
        "the {motif} looks {f1} and i want to look away",
        "the {shape} make the {motif} feel {f1} and {f2}, almost {f3}",
    ),
    SOMETHING_ELSE: (
        "i am not sure what to make of the {motif} and the {shape}",
        "the {shape} remind me of something {f1} but i cannot say what",
        "the {motif} in {colors} feels {f1} but i do not know why",
        "it is hard to tell what the {shape} around the {motif} are meant to be",
    ),
    "label": (
        "the {motif} fills me with {label}",
        "i feel {label} when i see the {motif} in {colors}",
        "the {colors} colors and the {shape} give me a sense of {label}",
    ),
}
UTTERANCE_WORDS = (6, 25)  # explanations are redrawn until their word count is in this range

_HUE_NAMES: tuple[tuple[float, str], ...] = (
    (15, "red"),
    (40, "orange"),
    (68, "yellow"),
    (160, "green"),
    (195, "teal"),
    (255, "blue"),
    (290, "purple"),
    (340, "pink"),
    (361, "red"),
)


def color_name(hue: float, saturation: float, value: float) -> str:
    """An everyday name for an HSV colour (all 0..1): ``dark blue``, ``pale yellow``, ``grey``, ``brown``..."""
    if value < 0.18:
        return "black"
    if saturation < 0.15:
        if value > 0.85:
            return "white"
        return "dark grey" if value < 0.45 else "grey"
    degrees = (hue % 1.0) * 360.0
    base = next(name for limit, name in _HUE_NAMES if degrees < limit)
    if base in ("orange", "red", "yellow") and value < 0.55 and saturation > 0.35:
        return "brown"
    if value < 0.42:
        return f"dark {base}"
    if saturation < 0.35:
        return f"pale {base}" if value > 0.7 else f"muted {base}"
    if saturation > 0.72 and value > 0.72:
        return f"bright {base}"
    return base
