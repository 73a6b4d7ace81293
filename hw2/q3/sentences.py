"""Generated English sentences for the stand-in LJ Speech corpus, as (raw, normalized) transcript pairs.

Like LJ Speech's two text columns, the raw text has digits and abbreviations ("Dr. Hale paid $250 on
March 3, 1864.") and the normalized text spells them out ("Doctor Hale paid two hundred fifty dollars on
March third, eighteen sixty-four."); both keep the punctuation, including characters outside the
recogniser's vocabulary (apostrophes, quotes, ";", ":", "!"). Twenty-eight templates over several hundred
open-class words, names, places and spelled-out numbers make the word sequence hard to guess from the
grammar alone, so a decoder has to listen.

Each clip's text depends only on (seed, clip index): a small corpus is a prefix of a large one.
"""
from __future__ import annotations

import random
import re

Pair = tuple[str, str]  # (raw text, normalized text)

FIRST_NAMES = """
Alice Arthur Benjamin Bertha Charles Clara Daniel Dora Edward Edith Frederick Florence George Grace Henry
Harriet Isaac Ida James Jane Joseph Julia Lewis Lucy Martin Margaret Nathan Nora Oliver Olive Patrick
Philip Ruth Robert Rose Samuel Sarah Thomas Violet Walter Winifred
""".split()
SURNAMES = """
Abbott Barlow Bennett Carver Cobb Dawson Draper Ellis Fenwick Fletcher Garrow Gibbs Hale Harding Hopkins
Irving Jarvis Kemble Knox Lambert Lowell Marsh Mercer Norton Oswald Palmer Pearce Quinn Ramsay Russell
Sayer Shaw Thorne Tucker Upton Vance Warren Webb Whitaker Yates
""".split()
TITLES = (("Mr.", "Mister"), ("Mrs.", "Missus"), ("Dr.", "Doctor"), ("Capt.", "Captain"),
          ("Gen.", "General"), ("Gov.", "Governor"), ("Lt.", "Lieutenant"), ("Rev.", "Reverend"))
PLACES = """
London|Dallas|Newgate|Chicago|Boston|Liverpool|Manchester|New Orleans|the Old Bailey|Fort Worth|Baltimore|
the harbor|the county jail|the river bank|the railway station|the courthouse|the town hall|the market square|
the northern road|the chapel|the warehouse|the printing office|the police station|the library|the hospital|
the bridge|the coast|the mill|the hill farm|the lower deck|Bristol|Denver|Philadelphia|Edinburgh|Dublin|
Austin|the capital|the garden|the old church|the school house
""".replace("\n", "").split("|")
NOUNS = """
prisoner:prisoners witness:witnesses letter:letters officer:officers window:windows rifle:rifles
carriage:carriages judge:judges sheriff:sheriffs clerk:clerks doctor:doctors sailor:sailors soldier:soldiers
merchant:merchants printer:printers farmer:farmers servant:servants child:children woman:women man:men
horse:horses dog:dogs bell:bells book:books page:pages key:keys door:doors wall:walls gate:gates
cell:cells room:rooms building:buildings street:streets road:roads bridge:bridges ship:ships boat:boats
train:trains wagon:wagons lamp:lamps candle:candles coin:coins note:notes bill:bills debt:debts
coat:coats hat:hats boot:boots glove:gloves chair:chairs table:tables bed:beds box:boxes
bottle:bottles cup:cups knife:knives rope:ropes chain:chains lock:locks report:reports record:records
photograph:photographs map:maps clock:clocks watch:watches motorcade:motorcades crowd:crowds
crime:crimes trial:trials sentence:sentences verdict:verdicts jury:juries law:laws rule:rules
question:questions answer:answers reason:reasons method:methods system:systems machine:machines
engine:engines wheel:wheels stone:stones brick:bricks tower:towers yard:yards field:fields tree:trees
river:rivers lake:lakes island:islands village:villages city:cities nation:nations country:countries
paper:papers pen:pens ink:inks type:types press:presses copy:copies volume:volumes chapter:chapters
agent:agents guard:guards thief:thieves debtor:debtors visitor:visitors keeper:keepers chaplain:chaplains
""".split()
ADJECTIVES = """
old new large small heavy light dark bright narrow wide long short early late quiet loud cold warm
careful careless strange common rare simple difficult honest cruel gentle famous unknown public private
secret open closed empty crowded dirty clean broken sound wooden iron golden silver red black white green
grey brown ancient modern foreign local royal poor rich sudden slow rapid silent anxious eager proper
""".split()
ADVERBS = """
quickly slowly quietly carefully suddenly early later often seldom never always rarely clearly plainly
openly secretly gladly sadly firmly gently nearly barely again soon
""".split()
# (base, past, past participle)
VERBS = [tuple(v.split(":")) for v in """
see:saw:seen take:took:taken give:gave:given find:found:found keep:kept:kept hold:held:held
bring:brought:brought buy:bought:bought sell:sold:sold send:sent:sent leave:left:left lose:lost:lost
build:built:built break:broke:broken write:wrote:written read:read:read hide:hid:hidden
steal:stole:stolen carry:carried:carried open:opened:opened close:closed:closed move:moved:moved
watch:watched:watched follow:followed:followed examine:examined:examined describe:described:described
print:printed:printed sign:signed:signed seize:seized:seized guard:guarded:guarded
visit:visited:visited paint:painted:painted lift:lifted:lifted push:pushed:pushed pull:pulled:pulled
check:checked:checked order:ordered:ordered receive:received:received deliver:delivered:delivered
repair:repaired:repaired question:questioned:questioned search:searched:searched mark:marked:marked
count:counted:counted fix:fixed:fixed mend:mended:mended measure:measured:measured
""".split()]
INTRANSITIVE = """
arrived departed waited escaped returned fell rose stopped laughed spoke listened slept worked
hesitated trembled shouted whispered disappeared vanished recovered
""".split()
PREPOSITIONS = "in near behind beside under above across through toward outside inside beyond along".split()
MONTHS = "January February March April May June July August September October November December".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
CONNECTIVES = ("and", "but", "so", "while", "because", "although", "when", "before", "after")

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}


def number_words(n: int) -> str:
    """0 <= n < 1,000,000 in words, as LJ Speech's normalisation writes it ("two hundred fifty")."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_words covers 0..999999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("-" + _ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + (" " + number_words(rest) if rest else "")
    thousands, rest = divmod(n, 1000)
    return number_words(thousands) + " thousand" + (" " + number_words(rest) if rest else "")


def ordinal_words(n: int) -> str:
    """1 -> first, 22 -> twenty-second, 30 -> thirtieth."""
    words = number_words(n)
    head, sep, last = words.rpartition("-") if "-" in words else ("", "", words)
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def year_words(year: int) -> str:
    """1864 -> eighteen sixty-four, 1900 -> nineteen hundred, 1805 -> eighteen oh five."""
    century, rest = divmod(year, 100)
    if rest == 0:
        return number_words(century) + " hundred"
    return number_words(century) + " " + ("oh " + _ONES[rest] if rest < 10 else number_words(rest))


def _ordinal_suffix(n: int) -> str:
    if n % 100 in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


# --- slot fillers: each returns a (raw, normalized) pair ---------------------------------------------------

def _same(word: str) -> Pair:
    return word, word


def _person(rng: random.Random) -> Pair:
    kind = rng.random()
    if kind < 0.4:
        return _same(f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}")
    if kind < 0.75:
        raw, spoken = rng.choice(TITLES)
        surname = rng.choice(SURNAMES)
        return f"{raw} {surname}", f"{spoken} {surname}"
    return _same(rng.choice(FIRST_NAMES if kind < 0.9 else SURNAMES))


def _count(rng: random.Random) -> Pair:
    n = rng.choice((rng.randint(2, 12), rng.randint(13, 99), rng.randint(100, 999), rng.randint(1000, 9999)))
    words = number_words(n)
    if rng.random() < 0.5:
        return (f"{n:,}" if n >= 1000 else str(n)), words
    return words, words


def _year(rng: random.Random) -> Pair:
    year = rng.randint(1750, 1965)
    return str(year), year_words(year)


def _date(rng: random.Random) -> Pair:
    month, day = rng.choice(MONTHS), rng.randint(1, 28)
    year_raw, year_spoken = _year(rng)
    style = rng.random()
    if style < 0.4:
        return f"{month} {day}, {year_raw}", f"{month} {ordinal_words(day)}, {year_spoken}"
    if style < 0.7:
        return f"the {day}{_ordinal_suffix(day)} of {month}", f"the {ordinal_words(day)} of {month}"
    return _same(f"{rng.choice(DAYS)}, the {ordinal_words(day)} of {month}")


def _money(rng: random.Random) -> Pair:
    n = rng.choice((rng.randint(1, 99), rng.randint(100, 999), rng.randint(1000, 50000)))
    unit = "dollar" if n == 1 else "dollars"
    return (f"${n:,}" if n >= 1000 else f"${n}"), f"{number_words(n)} {unit}"


def _clock(rng: random.Random) -> Pair:
    hour = rng.randint(1, 12)
    if rng.random() < 0.5:
        return f"{hour} o'clock", f"{number_words(hour)} o'clock"
    minute = rng.choice((15, 20, 30, 45, 5, 10, 50))
    tail = f"oh {number_words(minute)}" if minute < 10 else number_words(minute)
    return f"{hour}:{minute:02d}", f"{number_words(hour)} {tail}"


def _number_ref(rng: random.Random) -> Pair:
    n = rng.randint(1, 400)
    return f"No. {n}", f"number {number_words(n)}"


def _noun_phrase(rng: random.Random) -> Pair:
    singular, _ = rng.choice(NOUNS).split(":")
    adjective = rng.choice(ADJECTIVES) + " " if rng.random() < 0.6 else ""
    return _same(f"the {adjective}{singular}")


def _plural_phrase(rng: random.Random) -> Pair:
    _, plural = rng.choice(NOUNS).split(":")
    adjective = rng.choice(ADJECTIVES) + " " if rng.random() < 0.5 else ""
    return _same(f"{adjective}{plural}")


_FILLERS = {
    "person": _person,
    "count": _count,
    "year": _year,
    "date": _date,
    "money": _money,
    "clock": _clock,
    "numref": _number_ref,
    "np": _noun_phrase,
    "plural": _plural_phrase,
    "noun": lambda rng: _same(rng.choice(NOUNS).split(":")[0]),
    "adj": lambda rng: _same(rng.choice(ADJECTIVES)),
    "adv": lambda rng: _same(rng.choice(ADVERBS)),
    "base": lambda rng: _same(rng.choice(VERBS)[0]),
    "past": lambda rng: _same(rng.choice(VERBS)[1]),
    "pp": lambda rng: _same(rng.choice(VERBS)[2]),
    "intrans": lambda rng: _same(rng.choice(INTRANSITIVE)),
    "prep": lambda rng: _same(rng.choice(PREPOSITIONS)),
    "place": lambda rng: _same(rng.choice(PLACES)),
    "month": lambda rng: _same(rng.choice(MONTHS)),
    "conj": lambda rng: _same(rng.choice(CONNECTIVES)),
}

TEMPLATES = (
    "{person} {past} {np} {prep} {place}.",
    "On {date}, {person} {past} {count} {plural}.",
    "Did {person} {base} {np} {prep} {place}?",
    '{person} said, "{np} was {adj}, and {np} was {adj}."',
    "{person}'s {noun} was {adv} {pp} {prep} {np}; nobody {past} it.",
    "There were three things in {np}: {np}, {np}, and {np}.",
    "What a {adj} {noun} it was!",
    "{np} cost {money}, which {person} {past} {adv}.",
    "At {clock} {np} {intrans} {prep} {place}.",
    "{np}, which {person} had {pp}, was {adj} and {adj}.",
    "{np} was {pp} by {person} in {year}.",
    "In {month} {year}, {count} {plural} {intrans} {adv}.",
    "{person} and {person} {past} {np} for {count} days.",
    "{np} didn't {base} {np}, {conj} {person} {adv} {past} it.",
    "{np} -- {adj} and {adj} -- was {pp} {prep} {place}.",
    "The report, {numref}, {past} {count} {plural} {prep} {place}.",
    "Why was {np} {pp} {prep} {place} on {date}?",
    "{person} {intrans}; then {np} {intrans} {adv}.",
    "It is a well-known fact that {plural} {base} {adv} in {place}.",
    "{person} wrote: \"I have {pp} {np} {prep} {place}.\"",
    "{np} {prep} {place} was {adj}, {conj} {np} was not.",
    "Before {clock}, {person} had {pp} {count} {plural} and {np}.",
    "{count} {plural}, {count} {plural}, and {np}.",
    "Was it {person} who {past} {np} {prep} {place}?",
    "{person} {intrans} {adv}, {conj} {plural} {intrans} {prep} {place}.",
    "Look at {np}!",
    "{np} of {place} was {adv} {pp}.",
    "{person} asked {person} whether {np} was {adj}.",
)

_SLOT = re.compile(r"\{(\w+)\}")
MAX_NORMALIZED_CHARS = 145  # keeps espeak's slowest speaking rate here under ten seconds per clip


def sentence(rng: random.Random) -> Pair:
    """One sentence from a random template, as (raw, normalized)."""
    template = rng.choice(TEMPLATES)
    raw, normalized, end = [], [], 0
    for match in _SLOT.finditer(template):
        raw.append(template[end:match.start()])
        normalized.append(template[end:match.start()])
        r, n = _FILLERS[match.group(1)](rng)
        raw.append(r)
        normalized.append(n)
        end = match.end()
    raw.append(template[end:])
    normalized.append(template[end:])
    raw_text, normalized_text = "".join(raw), "".join(normalized)
    return raw_text[0].upper() + raw_text[1:], normalized_text[0].upper() + normalized_text[1:]


def clip_text(seed: int, index: int) -> Pair:
    """The transcript of clip `index` of the corpus with `seed`: one to three sentences, 145 characters at most."""
    rng = random.Random(f"ljspeech-standin/{seed}/{index}")
    target = rng.randint(20, MAX_NORMALIZED_CHARS)
    raw, normalized = sentence(rng)
    while len(normalized) > MAX_NORMALIZED_CHARS:
        raw, normalized = sentence(rng)
    while len(normalized) < target:
        more_raw, more_normalized = sentence(rng)
        if len(normalized) + 1 + len(more_normalized) > MAX_NORMALIZED_CHARS:
            break
        raw, normalized = raw + " " + more_raw, normalized + " " + more_normalized
    return raw, normalized
