"""Curated English word lists for the generated demo collection (written for tdro, not copied).

`TOPICS`: topic -> 10 common English words; no word belongs to two topics. `NAMES`: given names used as
the entity every query and passage is about. `SYNONYMS`: pairs of near-synonyms for the paraphrase
domain; none of their words is a topic word. `FILLERS`: function words that make texts read like text.
"""

from __future__ import annotations

TOPICS: dict[str, tuple[str, ...]] = {
    "astronomy": (
        "planet", "comet", "orbit", "telescope", "galaxy", "meteor", "moon", "asteroid", "nebula",
        "eclipse",
    ),
    "weather": (
        "rain", "thunder", "cloud", "storm", "fog", "wind", "snow", "frost", "hail", "drizzle",
    ),
    "music": (
        "guitar", "piano", "drum", "violin", "melody", "chorus", "trumpet", "rhythm", "flute", "concert",
    ),
    "ocean": (
        "wave", "tide", "coral", "shark", "reef", "whale", "sailor", "harbor", "anchor", "seaweed",
    ),
    "medicine": (
        "doctor", "nurse", "fever", "pill", "clinic", "injury", "surgeon", "vaccine", "bandage",
        "patient",
    ),
    "sport": (
        "soccer", "tennis", "goal", "referee", "stadium", "racket", "coach", "tournament", "athlete",
        "medal",
    ),
    "computer": (
        "keyboard", "screen", "mouse", "software", "laptop", "printer", "password", "server", "cable",
        "browser",
    ),
    "finance": (
        "bank", "loan", "coin", "budget", "tax", "salary", "invoice", "profit", "debt", "wallet",
    ),
    "kitchen": (
        "oven", "spoon", "kettle", "plate", "knife", "bowl", "pan", "stove", "fork", "cup",
    ),
    "clothing": (
        "shirt", "jacket", "scarf", "boot", "glove", "sweater", "hat", "belt", "sock", "dress",
    ),
    "body": (
        "elbow", "knee", "shoulder", "ankle", "wrist", "spine", "finger", "thumb", "chin", "forehead",
    ),
    "tools": (
        "hammer", "wrench", "saw", "drill", "nail", "screw", "ladder", "chisel", "pliers", "toolbox",
    ),
    "wild_animals": (
        "lion", "tiger", "zebra", "giraffe", "elephant", "monkey", "wolf", "bear", "fox", "rabbit",
    ),
    "birds": (
        "sparrow", "eagle", "parrot", "pigeon", "crow", "hawk", "swan", "duck", "robin", "penguin",
    ),
    "insects": (
        "ant", "bee", "beetle", "butterfly", "spider", "mosquito", "wasp", "moth", "cricket", "ladybug",
    ),
    "colors": (
        "red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "gray", "violet",
    ),
    "fruits": (
        "apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum", "melon",
    ),
    "vegetables": (
        "carrot", "potato", "onion", "cabbage", "lettuce", "pepper", "garlic", "celery", "spinach",
        "turnip",
    ),
    "vehicles": (
        "car", "truck", "bicycle", "bus", "motorcycle", "van", "scooter", "tram", "wagon", "canoe",
    ),
    "house": (
        "roof", "window", "door", "chimney", "attic", "basement", "staircase", "hallway", "porch",
        "garage",
    ),
    "furniture": (
        "chair", "table", "sofa", "bed", "shelf", "desk", "drawer", "wardrobe", "stool", "bench",
    ),
    "geology": (
        "rock", "cliff", "valley", "volcano", "glacier", "canyon", "boulder", "summit", "cave", "pebble",
    ),
    "law": (
        "judge", "lawyer", "court", "jury", "verdict", "witness", "prison", "contract", "police",
        "trial",
    ),
    "art": (
        "painter", "canvas", "brush", "sculpture", "gallery", "portrait", "statue", "easel", "sketch",
        "mural",
    ),
    "science": (
        "atom", "molecule", "magnet", "laboratory", "microscope", "experiment", "electron", "crystal",
        "formula", "chemist",
    ),
    "drinks": (
        "coffee", "tea", "juice", "milk", "soda", "lemonade", "cocoa", "wine", "beer", "syrup",
    ),
    "jobs": (
        "baker", "farmer", "pilot", "plumber", "carpenter", "dentist", "mechanic", "firefighter",
        "butcher", "tailor",
    ),
    "calendar": (
        "monday", "morning", "evening", "winter", "summer", "autumn", "spring", "midnight", "weekend",
        "holiday",
    ),
    "games": (
        "puzzle", "chess", "dice", "kite", "doll", "balloon", "marble", "domino", "toy", "riddle",
    ),
    "mail": (
        "letter", "envelope", "stamp", "parcel", "postcard", "telephone", "message", "radio",
        "newspaper", "magazine",
    ),
    "baking": (
        "bread", "cake", "cookie", "flour", "sugar", "butter", "pie", "dough", "muffin", "honey",
    ),
    "feelings": (
        "happy", "angry", "calm", "nervous", "proud", "lonely", "brave", "jealous", "cheerful",
        "anxious",
    ),
    "farm": (
        "barn", "tractor", "cow", "hay", "pig", "sheep", "plow", "harvest", "goat", "chicken",
    ),
    "forest": (
        "pine", "oak", "moss", "fern", "squirrel", "owl", "deer", "branch", "acorn", "bark",
    ),
    "city": (
        "street", "tower", "subway", "traffic", "bridge", "taxi", "museum", "avenue", "plaza",
        "skyscraper",
    ),
    "travel": (
        "airport", "ticket", "passport", "luggage", "hotel", "flight", "suitcase", "tourist", "map",
        "train",
    ),
    "garden": (
        "flower", "rose", "tulip", "shovel", "seed", "hose", "hedge", "weed", "soil", "daisy",
    ),
    "school": (
        "teacher", "pupil", "homework", "exam", "chalk", "lesson", "classroom", "notebook", "pencil",
        "library",
    ),
}

NAMES: tuple[str, ...] = tuple("""
James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara Richard Susan
Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Margaret
Donald Sandra Steven Ashley Paul Kimberly Andrew Emily Joshua Donna Kenneth Michelle Kevin Dorothy
Brian Carol George Amanda Edward Melissa Ronald Deborah Timothy Stephanie Jason Rebecca Jeffrey
Sharon Ryan Laura Jacob Cynthia Gary Kathleen Nicholas Amy Eric Shirley Jonathan Angela Stephen
Helen Larry Anna Justin Brenda Scott Pamela Brandon Nicole Benjamin Emma Samuel Samantha Gregory
Katherine Frank Christine Alexander Debra Raymond Rachel Patrick Catherine Jack Carolyn Dennis Janet
Jerry Ruth Tyler Maria Aaron Heather Jose Diane Adam Virginia Henry Julie Nathan Joyce Douglas
Victoria Zachary Olivia Peter Kelly Kyle Christina Walter Lauren Ethan Joan Jeremy Evelyn Harold
Judith Keith Megan Christian Cheryl Roger Andrea Noah Hannah Gerald Martha Carl Jacqueline Terry
Frances Sean Gloria Austin Ann Arthur Teresa Lawrence Kathryn Jesse Sara Dylan Janice Bryan Jean Joe
Alice Jordan Madison Billy Doris Bruce Abigail Albert Julia Willie Judy Gabriel Grace Logan Denise
Alan Amber Juan Marilyn Wayne Beverly Roy Danielle Ralph Theresa Randy Sophia Eugene Marie Vincent
Diana Russell Brittany Louis Natalie Philip Isabella Bobby Charlotte Johnny Lucy Bradley Alexis
Harry Kayla Oscar Hugo Felix Irene Edith Ivan Leo Nora
""".split())

SYNONYMS: tuple[tuple[str, str], ...] = (
    ("big", "large"), ("small", "tiny"), ("quick", "fast"), ("begin", "start"), ("finish", "complete"),
    ("buy", "purchase"), ("help", "assist"), ("show", "display"), ("glad", "pleased"), ("sad",
    "unhappy"), ("hard", "difficult"), ("easy", "simple"), ("rich", "wealthy"), ("smart", "clever"),
    ("mad", "furious"), ("home", "dwelling"), ("kid", "youngster"), ("road", "highway"), ("talk",
    "speak"), ("look", "gaze"), ("gift", "present"), ("error", "mistake"), ("answer", "reply"), ("ask",
    "inquire"), ("build", "construct"), ("choose", "select"), ("collect", "gather"), ("repair", "fix"),
    ("damage", "harm"), ("enough", "sufficient"), ("shut", "close"), ("nearly", "almost"), ("often",
    "frequently"), ("maybe", "perhaps"), ("quiet", "silent"), ("loud", "noisy"), ("strange", "odd"),
    ("famous", "renowned"), ("ancient", "old"), ("strong", "powerful"), ("weak", "feeble"), ("brief",
    "short"), ("huge", "enormous"), ("tired", "sleepy"), ("wet", "damp"), ("cold", "chilly"), ("hot",
    "scorching"), ("pretty", "beautiful"), ("ugly", "hideous"), ("clean", "tidy"), ("dirty", "filthy"),
    ("idea", "notion"), ("story", "tale"), ("job", "occupation"), ("trip", "journey"), ("fight",
    "battle"), ("shout", "yell"), ("jump", "leap"), ("run", "sprint"), ("walk", "stroll"), ("eat",
    "consume"), ("throw", "toss"), ("grab", "seize"), ("hide", "conceal"), ("find", "discover"),
    ("keep", "retain"), ("leave", "depart"), ("fall", "drop"), ("rise", "ascend"), ("happen", "occur"),
    ("need", "require"), ("want", "desire"), ("like", "enjoy"), ("hate", "detest"), ("allow", "permit"),
    ("stop", "halt"), ("try", "attempt"),
)

FILLERS: tuple[str, ...] = (
    "the", "a", "with", "and", "near", "of", "for", "about", "from", "into", "by", "at",
)
