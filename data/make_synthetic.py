"""Write the synthetic sample: a small template-generated corpus per source, in each hub dataset's own schema.

    python data/make_synthetic.py            # rewrites data/synthetic/*.jsonl, deterministically

The tests read it (`data.origin=synthetic`: small, fast, committed); `data/build_sample.py` falls back to it, per
source, where the real text cannot be had. It is not real text: every chrono signal on it is trivial or empty.

All text is written by this project from templates and a small table of public facts. The four sources are
kept distinct in style (explanatory web prose; WikiText articles with ` = Title = ` headings; worked word
problems; lower-cased, tokenised narrative sentences), because the source-purity metric depends on it.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from chrono_membench.data.sources import write_jsonl

OUT = Path(__file__).resolve().parent / "synthetic"

# name, symbol, atomic number, group/category, year isolated or named, state at room temperature
ELEMENTS = [
    ("Hydrogen", "H", 1, "nonmetal", 1766, "gas"), ("Helium", "He", 2, "noble gas", 1895, "gas"),
    ("Lithium", "Li", 3, "alkali metal", 1817, "solid"), ("Carbon", "C", 6, "nonmetal", None, "solid"),
    ("Nitrogen", "N", 7, "nonmetal", 1772, "gas"), ("Oxygen", "O", 8, "nonmetal", 1774, "gas"),
    ("Fluorine", "F", 9, "halogen", 1886, "gas"), ("Neon", "Ne", 10, "noble gas", 1898, "gas"),
    ("Sodium", "Na", 11, "alkali metal", 1807, "solid"), ("Magnesium", "Mg", 12, "alkaline earth metal", 1808, "solid"),
    ("Aluminium", "Al", 13, "post-transition metal", 1825, "solid"), ("Silicon", "Si", 14, "metalloid", 1823, "solid"),
    ("Phosphorus", "P", 15, "nonmetal", 1669, "solid"), ("Sulfur", "S", 16, "nonmetal", None, "solid"),
    ("Chlorine", "Cl", 17, "halogen", 1774, "gas"), ("Argon", "Ar", 18, "noble gas", 1894, "gas"),
    ("Potassium", "K", 19, "alkali metal", 1807, "solid"), ("Calcium", "Ca", 20, "alkaline earth metal", 1808, "solid"),
    ("Titanium", "Ti", 22, "transition metal", 1791, "solid"), ("Chromium", "Cr", 24, "transition metal", 1797, "solid"),
    ("Iron", "Fe", 26, "transition metal", None, "solid"), ("Cobalt", "Co", 27, "transition metal", 1735, "solid"),
    ("Nickel", "Ni", 28, "transition metal", 1751, "solid"), ("Copper", "Cu", 29, "transition metal", None, "solid"),
    ("Zinc", "Zn", 30, "transition metal", 1746, "solid"), ("Bromine", "Br", 35, "halogen", 1826, "liquid"),
    ("Krypton", "Kr", 36, "noble gas", 1898, "gas"), ("Silver", "Ag", 47, "transition metal", None, "solid"),
    ("Tin", "Sn", 50, "post-transition metal", None, "solid"), ("Iodine", "I", 53, "halogen", 1811, "solid"),
    ("Xenon", "Xe", 54, "noble gas", 1898, "gas"), ("Tungsten", "W", 74, "transition metal", 1783, "solid"),
    ("Platinum", "Pt", 78, "transition metal", 1748, "solid"), ("Gold", "Au", 79, "transition metal", None, "solid"),
    ("Mercury", "Hg", 80, "transition metal", None, "liquid"), ("Lead", "Pb", 82, "post-transition metal", None, "solid"),
    ("Uranium", "U", 92, "actinide", 1789, "solid"), ("Radon", "Rn", 86, "noble gas", 1899, "gas"),
]
# country, capital, continent, main language, currency
COUNTRIES = [
    ("France", "Paris", "Europe", "French", "euro"), ("Germany", "Berlin", "Europe", "German", "euro"),
    ("Italy", "Rome", "Europe", "Italian", "euro"), ("Spain", "Madrid", "Europe", "Spanish", "euro"),
    ("Portugal", "Lisbon", "Europe", "Portuguese", "euro"), ("Poland", "Warsaw", "Europe", "Polish", "zloty"),
    ("Sweden", "Stockholm", "Europe", "Swedish", "krona"), ("Norway", "Oslo", "Europe", "Norwegian", "krone"),
    ("Greece", "Athens", "Europe", "Greek", "euro"), ("Ireland", "Dublin", "Europe", "Irish and English", "euro"),
    ("Japan", "Tokyo", "Asia", "Japanese", "yen"), ("China", "Beijing", "Asia", "Mandarin Chinese", "renminbi"),
    ("India", "New Delhi", "Asia", "Hindi and English", "rupee"), ("Thailand", "Bangkok", "Asia", "Thai", "baht"),
    ("Vietnam", "Hanoi", "Asia", "Vietnamese", "dong"), ("Indonesia", "Jakarta", "Asia", "Indonesian", "rupiah"),
    ("Turkey", "Ankara", "Asia and Europe", "Turkish", "lira"), ("Egypt", "Cairo", "Africa", "Arabic", "pound"),
    ("Kenya", "Nairobi", "Africa", "Swahili and English", "shilling"), ("Nigeria", "Abuja", "Africa", "English", "naira"),
    ("Ghana", "Accra", "Africa", "English", "cedi"), ("Morocco", "Rabat", "Africa", "Arabic and Berber", "dirham"),
    ("Brazil", "Brasilia", "South America", "Portuguese", "real"), ("Argentina", "Buenos Aires", "South America", "Spanish", "peso"),
    ("Chile", "Santiago", "South America", "Spanish", "peso"), ("Peru", "Lima", "South America", "Spanish", "sol"),
    ("Canada", "Ottawa", "North America", "English and French", "dollar"), ("Mexico", "Mexico City", "North America", "Spanish", "peso"),
    ("Australia", "Canberra", "Oceania", "English", "dollar"), ("New Zealand", "Wellington", "Oceania", "English and Maori", "dollar"),
]

ELEMENT_ARTICLES = ["{name}", "Isotopes of {name}", "Compounds of {name}", "History of {name}",
                    "{name} in industry", "{name} in biology", "Production of {name}"]
COUNTRY_ARTICLES = ["{name}", "History of {name}", "Geography of {name}", "Economy of {name}",
                    "Culture of {name}", "Demographics of {name}", "Transport in {name}", "Education in {name}",
                    "{capital}"]


def _wikitext_article(title: str, facts: list[str], rng: random.Random) -> list[str]:
    """Lines in WikiText-103 raw form: heading, blank lines, paragraphs, ` = = Section = = ` subsections."""
    lines = [f" = {title} = \n", " \n"]
    sections = ["Overview", "Description", "Background", "Notes", "Significance", "Later developments"]
    rng.shuffle(facts)
    for i in range(0, len(facts), 3):
        if i:
            lines += [f" = = {sections[(i // 3) % len(sections)]} = = \n", " \n"]
        paragraph = " ".join(facts[i:i + 3]).replace("-", " @-@ ").replace(",", " ,").replace(".", " .")
        lines += [" " + paragraph + " \n", " \n"]
    return lines


def wikitext_records(rng: random.Random) -> list[dict]:
    lines: list[str] = []
    for name, sym, num, cat, year, state in ELEMENTS:
        found = f"It was first isolated or named in {year}." if year else "It has been known since antiquity."
        for template in ELEMENT_ARTICLES:
            title = template.format(name=name)
            facts = [
                f"{name} is a chemical element with the symbol {sym} and atomic number {num}.",
                f"In the periodic table {name.lower()} is classed as a {cat}.",
                f"At room temperature {name.lower()} is a {state}.", found,
                f"The nucleus of every {name.lower()} atom holds {num} protons.",
                f"The article {title} describes {rng.choice(['its uses', 'its chemistry', 'its discovery', 'its occurrence'])}.",
                f"Like other elements of the {cat} category, {name.lower()} shows characteristic chemical behaviour.",
                f"Its electron count in the neutral atom is {num}, matching its atomic number.",
            ]
            lines += _wikitext_article(title, facts, rng)
    for country, capital, cont, lang, cur in COUNTRIES:
        for template in COUNTRY_ARTICLES:
            title = template.format(name=country, capital=capital)
            facts = [
                f"{country} is a country in {cont}, and its capital is {capital}.",
                f"The main language spoken in {country} is {lang}.",
                f"The currency of {country} is the {cur}.",
                f"{capital} is the seat of the national government of {country}.",
                f"The article {title} is part of a series on {country}.",
                f"Visitors to {capital} often arrive by {rng.choice(['rail', 'air', 'road', 'sea'])}.",
                f"Schools in {country} teach in {lang.split(' and ')[0]}.",
            ]
            lines += _wikitext_article(title, facts, rng)
    return [{"text": line} for line in lines]


TOPICS = [
    ("photosynthesis", "plants turn light, water and carbon dioxide into sugar and oxygen",
     "chlorophyll in the leaves absorbs mostly red and blue light"),
    ("the water cycle", "water evaporates, condenses into clouds and falls again as precipitation",
     "the sun provides the energy that drives evaporation"),
    ("plate tectonics", "the Earth's outer shell is broken into plates that move a few centimetres a year",
     "earthquakes and volcanoes cluster along plate boundaries"),
    ("the human heart", "the heart pumps blood through two circuits, one to the lungs and one to the body",
     "four chambers and four valves keep the blood flowing in one direction"),
    ("fractions", "a fraction names a part of a whole as a numerator over a denominator",
     "equivalent fractions are found by multiplying top and bottom by the same number"),
    ("the scientific method", "scientists ask a question, form a hypothesis and test it with an experiment",
     "a good experiment changes only one variable at a time"),
    ("electric circuits", "current flows only when a circuit forms a closed loop",
     "a resistor limits the current according to Ohm's law"),
    ("the solar system", "eight planets orbit the sun, held by its gravity",
     "the inner planets are rocky while the outer planets are giants of gas and ice"),
    ("cell division", "cells copy their chromosomes and split in a process called mitosis",
     "meiosis produces sex cells with half the usual number of chromosomes"),
    ("climate and weather", "weather is the state of the air on a given day, climate its long-term pattern",
     "scientists average thirty years of records to describe a climate"),
    ("the printing press", "movable type made books cheaper and faster to produce",
     "printed pamphlets spread new ideas across Europe within decades"),
    ("ecosystems", "an ecosystem links living things with their physical surroundings",
     "energy flows from producers to consumers to decomposers"),
    ("probability", "probability measures how likely an event is on a scale from zero to one",
     "the probabilities of all possible outcomes add up to one"),
    ("the immune system", "white blood cells recognise and destroy invading germs",
     "vaccines train the immune system to respond faster"),
    ("sound waves", "sound travels as a pressure wave through air, water or solids",
     "pitch depends on the frequency of the wave and loudness on its amplitude"),
    ("erosion", "wind, water and ice wear rock away and carry the pieces elsewhere",
     "river valleys and sea cliffs are shaped by erosion over thousands of years"),
    ("magnetism", "every magnet has a north and a south pole",
     "like poles repel each other while opposite poles attract"),
    ("the Roman Republic", "Rome was governed by elected magistrates and a senate before the emperors",
     "two consuls were elected each year to lead the state"),
    ("nutrition", "a balanced diet supplies carbohydrates, proteins, fats, vitamins and minerals",
     "fibre helps the digestive system work properly"),
    ("simple machines", "levers, pulleys and ramps let a small force move a large load",
     "what is gained in force is paid for in distance"),
]
AUDIENCES = ["students", "teachers", "parents", "young readers", "anyone curious about science"]
OPENERS = [
    "Have you ever wondered how {topic} works? In this lesson we explain it step by step.",
    "This guide for {audience} introduces {topic} and why it matters.",
    "Understanding {topic} is a key part of many school courses.",
    "Learning about {topic} helps {audience} make sense of the world around them.",
]
MIDDLES = [
    "The main idea is simple: {fact1}.", "Put simply, {fact1}.", "Here is the key point: {fact1}.",
    "An important detail is that {fact2}.", "It also helps to know that {fact2}.",
    "Researchers have studied this for many years, and the evidence is clear.",
    "A common mistake is to memorise the words without understanding the process.",
    "Try drawing a diagram to see how the parts fit together.",
]
CLOSERS = [
    "Key takeaways: {fact1}; {fact2}.", "To review, ask yourself how {topic} connects to everyday life.",
    "Activity: write three questions about {topic} and discuss them with a partner.",
    "Further reading is available in most school libraries.",
]


def fineweb_records(rng: random.Random, n: int) -> list[dict]:
    records = []
    for i in range(n):
        topic, fact1, fact2 = TOPICS[i % len(TOPICS)]
        fill = {"topic": topic, "fact1": fact1, "fact2": fact2, "audience": rng.choice(AUDIENCES)}
        parts = [rng.choice(OPENERS)] + rng.sample(MIDDLES, 4) + [rng.choice(CLOSERS)]
        paragraphs = [" ".join(p.format(**fill) for p in parts[:3]), " ".join(p.format(**fill) for p in parts[3:])]
        text = "\n\n".join(s[0].upper() + s[1:] for s in paragraphs)
        records.append({
            "text": text, "id": f"<urn:uuid:sample-{i:06d}>", "dump": "CC-MAIN-SAMPLE",
            "url": f"https://example.edu/lessons/{topic.replace(' ', '-')}/{i}", "file_path": "sample",
            "language": "en", "language_score": 0.95, "token_count": len(text.split()),
            "score": round(3 + rng.random() * 1.5, 3), "int_score": 3 + rng.randint(0, 1),
        })
    return records


NAMES = ["Maya", "Liam", "Sofia", "Omar", "Chen", "Ava", "Noah", "Priya", "Lucas", "Zara", "Ethan", "Mia"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "stamps", "shells", "cards", "beads"]


def orca_records(rng: random.Random, n: int) -> list[dict]:
    def problem():
        a, b = rng.sample(NAMES, 2)
        item = rng.choice(ITEMS)
        kind = rng.randrange(6)
        x, y, z = rng.randint(12, 90), rng.randint(2, 11), rng.randint(3, 9)
        if kind == 0:
            q = f"{a} has {x} {item}. {a} gives {y} {item} to {b} and then buys {z} more. How many {item} does {a} have now?"
            s = f"{a} starts with {x} {item}. After giving away {y}, {a} has {x} - {y} = {x - y}. After buying {z} more, {a} has {x - y} + {z} = {x - y + z}."
            return q, f"{s} Therefore, {a} has {x - y + z} {item} now."
        if kind == 1:
            q = f"A box holds {y} {item}. {a} fills {z} boxes. How many {item} are there in total?"
            return q, f"Each box holds {y} {item} and there are {z} boxes, so the total is {y} × {z} = {y * z}. The answer is {y * z}."
        if kind == 2:
            total = y * z
            q = f"{a} shares {total} {item} equally among {z} friends. How many {item} does each friend get?"
            return q, f"To share equally we divide: {total} ÷ {z} = {y}. Each friend gets {y} {item}."
        if kind == 3:
            p = rng.choice([10, 20, 25, 50])
            base = rng.randint(2, 20) * 20
            q = f"A jacket costs ${base}. It is on sale for {p}% off. What is the sale price?"
            off = base * p // 100
            return q, f"The discount is {p}% of ${base}, which is {base} × {p}/100 = ${off}. The sale price is {base} - {off} = ${base - off}."
        if kind == 4:
            w = rng.randint(3, 15)
            q = f"A rectangle is {x} cm long and {w} cm wide. What are its area and its perimeter?"
            return q, f"The area is length × width = {x} × {w} = {x * w} square cm. The perimeter is 2 × ({x} + {w}) = {2 * (x + w)} cm."
        speed, hours = rng.randint(30, 90), rng.randint(2, 6)
        q = f"{a} drives at {speed} km per hour for {hours} hours. How far does {a} travel?"
        return q, f"Distance equals speed × time, so {speed} × {hours} = {speed * hours}. {a} travels {speed * hours} km."

    records, seen = [], set()
    while len(records) < n:
        q, ans = problem()
        if q not in seen:
            seen.add(q)
            records.append({"system": "", "question": q, "answer": ans})
    return records


CHARACTERS = ["anna", "james", "lily", "marcus", "eleanor", "sam", "rosa", "daniel", "kate", "victor"]
PLACES = ["the kitchen", "the old barn", "the station", "the garden", "the lake house", "the hallway", "the car"]
BOOK_SENTENCES = [
    "{a} looked at {b} for a long moment .", "`` i do n't know what you mean , '' {a} said .",
    "{a} walked slowly toward {place} .", "the rain had not stopped since morning .",
    "{b} smiled , but the smile did not reach {pos} eyes .", "`` we should go , '' {b} whispered .",
    "{a} felt {pos} heart pounding in {pos} chest .", "somewhere in the distance a dog barked .",
    "{a} opened the door and stepped into {place} .", "`` tell me the truth , '' {a} said quietly .",
    "{b} shook {pos} head and turned away .", "the light from the window fell across the floor .",
    "{a} remembered the summer they had spent by the sea .", "`` it 's not your fault , '' {b} said .",
    "for a while neither of them spoke .", "{a} took a deep breath and nodded .",
    "the clock on the wall ticked loudly .", "{b} reached for {pos} coat .",
    "`` what happened to you ? '' {a} asked .", "{a} could hear footsteps on the stairs .",
]


def bookcorpus_records(rng: random.Random, n_passages: int, per_passage: int) -> list[dict]:
    records = []
    for _ in range(n_passages):
        a, b = rng.sample(CHARACTERS, 2)
        pos = rng.choice(["his", "her"])
        for _ in range(per_passage):
            records.append({"text": rng.choice(BOOK_SENTENCES).format(a=a, b=b, place=rng.choice(PLACES), pos=pos)})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    outputs = {
        "fineweb_edu": fineweb_records(random.Random(1), 600),
        "wikitext103": wikitext_records(random.Random(2)),
        "orca_math": orca_records(random.Random(3), 800),
        "bookcorpus": bookcorpus_records(random.Random(4), 520, 40),
    }
    for name, records in outputs.items():
        write_jsonl(args.out / f"{name}.jsonl", records)
        print(f"{name}: {len(records)} records → {args.out / (name + '.jsonl')}")


if __name__ == "__main__":
    main()
