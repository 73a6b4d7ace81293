"""Short generated sentences (3-6 words) for the `quick` profile's stand-in LJ Speech corpus.

A 2-core CPU can train the skeleton's recogniser to listen in minutes only on short clips (about 1.5 s,
a few hundred frames instead of 2,754), so `quick` speaks these instead of LJ-Speech-like paragraphs. The
grammar has twelve templates over about 240 words, which gives millions of distinct sentences: a held-out
sentence is almost never one of the training sentences, so a decoder scores well on test only by listening,
not by recalling the training transcripts. Every sentence is lowercase-insensitive plain English whose
characters all lie in the recogniser's vocabulary (letters, space, ",", ".", "?"), so nothing becomes "#".

Each clip's text depends only on (seed, index, attempt): a small corpus is a prefix of a large one.
"""
from __future__ import annotations

import random
import re

NAMES = """
alice arthur bella carl clara daniel edith frank grace henry irene jack julia kevin laura martin nora oscar
peter rose simon tina victor walter
""".split()
# (singular, plural)
NOUNS = [tuple(pair.split(":")) for pair in """
apple:apples basket:baskets bottle:bottles bridge:bridges candle:candles carpet:carpets castle:castles
doctor:doctors engine:engines farmer:farmers garden:gardens hammer:hammers horse:horses island:islands
jacket:jackets kettle:kettles ladder:ladders lemon:lemons monkey:monkeys needle:needles orange:oranges
pencil:pencils pocket:pockets rabbit:rabbits river:rivers sailor:sailors tiger:tigers tunnel:tunnels
wagon:wagons window:windows letter:letters button:buttons cabin:cabins dragon:dragons feather:feathers
guitar:guitars jewel:jewels lantern:lanterns mirror:mirrors parrot:parrots rocket:rockets shovel:shovels
tractor:tractors violin:violins whistle:whistles
""".split()]
ADJECTIVES = """
angry brave bright broken busy clever cold dark dirty empty famous gentle golden green happy heavy hungry
little lucky narrow noisy old purple quiet rapid silver sleepy small strange tall tiny warm wet wooden yellow
""".split()
TRANSITIVE = """
painted carried opened dropped cleaned found lifted moved pushed pulled washed fixed counted watched
followed kicked bought sold borrowed visited stole hid built broke chased
""".split()
INTRANSITIVE = """
slept laughed danced waited shouted vanished jumped smiled travelled whistled trembled returned
""".split()
ADVERBS = "quickly slowly quietly loudly happily sadly gently suddenly again early later often".split()
PLACES = """
kitchen market station library harbor village forest meadow tower chapel cellar stable
""".split()
NUMBERS = "two three four five six seven eight nine ten eleven twelve twenty".split()

TEMPLATES = (
    "{name} {transitive} the {noun}.",
    "the {adjective} {noun} {intransitive}.",
    "{name} {intransitive} {adverb}.",
    "the {noun} {transitive} the {adjective} {noun}.",
    "{name} saw {number} {nouns}.",
    "is the {noun} {adjective}?",
    "{name} and {name} {intransitive}.",
    "the {nouns} were {adjective}.",
    "{adverb}, {name} {transitive} {number} {nouns}.",
    "did {name} see the {noun}?",
    "{name} {intransitive} in the {place}.",
    "the {adjective} {nouns} {intransitive} {adverb}.",
)

_FILLERS = {
    "name": lambda rng: rng.choice(NAMES),
    "noun": lambda rng: rng.choice(NOUNS)[0],
    "nouns": lambda rng: rng.choice(NOUNS)[1],
    "adjective": lambda rng: rng.choice(ADJECTIVES),
    "transitive": lambda rng: rng.choice(TRANSITIVE),
    "intransitive": lambda rng: rng.choice(INTRANSITIVE),
    "adverb": lambda rng: rng.choice(ADVERBS),
    "place": lambda rng: rng.choice(PLACES),
    "number": lambda rng: rng.choice(NUMBERS),
}
_SLOT = re.compile(r"\{(\w+)\}")


def vocabulary() -> set[str]:
    """Every word the grammar can produce."""
    words = set(NAMES) | set(ADJECTIVES) | set(TRANSITIVE) | set(INTRANSITIVE) | set(ADVERBS) | set(PLACES)
    words |= set(NUMBERS) | {w for pair in NOUNS for w in pair}
    for template in TEMPLATES:
        words |= set(_SLOT.sub("", template).replace(",", " ").replace(".", " ").replace("?", " ").split())
    return words


def sentence(rng: random.Random) -> str:
    """One sentence of a random template, capitalised."""
    text = _SLOT.sub(lambda m: _FILLERS[m.group(1)](rng), rng.choice(TEMPLATES))
    return text[0].upper() + text[1:]


def clip_text(seed: int, index: int, attempt: int = 0) -> tuple[str, str]:
    """The (raw, normalized) transcript of clip `index`; both columns are the same sentence, as nothing
    needs normalising. `attempt` draws another sentence for a clip whose audio came out too long."""
    text = sentence(random.Random(f"short-standin/{seed}/{index}/{attempt}"))
    return text, text
