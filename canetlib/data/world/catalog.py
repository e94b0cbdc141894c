"""Which OpenMoji glyph shows which class: the world's glyph tables and word rules.

* ``CLASS_GLYPHS``: the glyphs of the 20 world classes (PASCAL VOC names and
  order).
* ``PRETRAIN_GLYPHS``: the 613 glyph classes of the
  :class:`~canetlib.data.world.pretraining.PretrainingPool`, none of them one of the 20
  categories or a look-alike, and the rule that chose them.

Exclusion rule of the pretraining glyphs: only single code points of the emoji
object blocks (``PRETRAIN_RANGES``) with a Unicode name are candidates
(OpenMoji's unnamed extras cannot be checked), and a candidate is dropped if it
is used by ``CLASS_GLYPHS``; if a whole word of its name names one of the 20
categories or a look-alike (``CATEGORY_WORDS``: any bird, feline, canine,
bovine, equine, sheep or goat; any person, face, hand or body part; boats, cars
and vans, buses, trains and trams, bikes and scooters, aircraft, bottles,
seats, sofas and beds, tables and plates, potted plants and cacti, screens and
computers); if its drawing shows such a thing although its name does not
(``EXTRA_EXCLUDED``, checked by eye); or if its name marks a symbol rather than
an object (``NON_OBJECT_WORDS``). Other animals, vehicles and objects (fish,
elephants, trucks, rockets, food, tools...) stay in. The list is frozen in
``_PRETRAIN_HEX``; ``tests/test_synthetic.py`` re-checks the rule.

Pure data and name look-ups: nothing here renders a pixel.
"""

from __future__ import annotations

import re
import unicodedata

from canetlib.data.source import PASCAL_CLASSES

# --- the 20 classes -----------------------------------------------------------------------
#: OpenMoji glyphs (hex code points) per PASCAL category, in ``PASCAL_CLASSES`` order. The
#: first glyph of a class is its main glyph (drawn with probability ``main_glyph_prob``).
#: Code points in E000-F8FF are OpenMoji "extras" (no Unicode emoji exists). Glyphs that
#: show two categories at once (a person riding a bicycle or a horse) are not used.
CLASS_GLYPHS: dict[str, tuple[str, ...]] = {
    # airplane, small airplane, airplane departure, airplane arrival
    "aeroplane": ("2708", "1F6E9", "1F6EB", "1F6EC"),
    # bicycle (the cyclist glyphs also show a person, so they are not used)
    "bicycle": ("1F6B2",),
    # bird, dove, eagle, duck, owl, parrot
    "bird": ("1F426", "1F54A", "1F985", "1F986", "1F989", "1F99C"),
    # sailboat, speedboat, passenger ship, ship, canoe
    "boat": ("26F5", "1F6A4", "1F6F3", "1F6A2", "1F6F6"),
    # champagne bottle, baby bottle, lotion bottle, glass bottle (extra), plastic bottle (extra)
    "bottle": ("1F37E", "1F37C", "1F9F4", "E0CB", "E0CC"),
    # bus, oncoming bus, trolleybus, minibus
    "bus": ("1F68C", "1F68D", "1F68E", "1F690"),
    # automobile, sport utility vehicle, taxi, police car, racing car
    "car": ("1F697", "1F699", "1F695", "1F693", "1F3CE"),
    # cat, cat face, grinning cat face
    "cat": ("1F408", "1F431", "1F63A"),
    # chair, seat
    "chair": ("1FA91", "1F4BA"),
    # cow, cow face, ox, water buffalo
    "cow": ("1F404", "1F42E", "1F402", "1F403"),
    # dining table with two chairs (extra), fork and knife with plate
    "diningtable": ("E200", "1F37D"),
    # dog, dog face, poodle, guide dog
    "dog": ("1F415", "1F436", "1F429", "1F9AE"),
    # horse, horse face, carousel horse, unicorn (horse racing also shows a person)
    "horse": ("1F40E", "1F434", "1F3A0", "1F984"),
    # racing motorcycle, motor scooter
    "motorbike": ("1F3CD", "1F6F5"),
    # person standing, pedestrian, runner, adult (bust), person kneeling
    "person": ("1F9CD", "1F6B6", "1F3C3", "1F9D1", "1F9CE"),
    # potted plant, cactus, pine decoration (potted bamboo)
    "pottedplant": ("1FAB4", "1F335", "1F38D"),
    # sheep (ewe), ram
    "sheep": ("1F411", "1F40F"),
    # couch and lamp, armchair (extra)
    "sofa": ("1F6CB", "E141"),
    # train, steam locomotive, high-speed train, railway car, metro
    "train": ("1F686", "1F682", "1F684", "1F683", "1F687"),
    # television, desktop computer
    "tvmonitor": ("1F4FA", "1F5A5"),
}
assert tuple(CLASS_GLYPHS) == PASCAL_CLASSES


# --- the pretraining classes --------------------------------------------------------------
def _word_set(*chunks: str) -> frozenset[str]:
    """The whitespace-separated words of ``chunks``."""
    return frozenset(word for chunk in chunks for word in chunk.split())


#: Code point ranges the pretraining glyphs come from (object-like emoji blocks).
PRETRAIN_RANGES: tuple[tuple[int, int], ...] = (
    (0x2600, 0x26FF),
    (0x1F300, 0x1F5FF),
    (0x1F680, 0x1F6FF),
    (0x1F900, 0x1F9FF),
    (0x1FA70, 0x1FAFF),
)

#: Words of Unicode names that mark a glyph as depicting one of the 20 categories (or a
#: close look-alike: other birds, felines, canines, bovines, equines, sheep/goats, any
#: person, face or body part, seats, trains/trams, screens, bottles, tables).
CATEGORY_WORDS: dict[str, frozenset[str]] = {
    k: frozenset(v.split())
    for k, v in {
        "aeroplane": "AIRPLANE AEROPLANE PLANE AIRCRAFT HELICOPTER DEPARTURE ARRIVAL",
        "bicycle": "BICYCLE BICYCLES BICYCLIST BIKE",
        "bird": "BIRD CHICK CHICKEN ROOSTER HEN EAGLE DOVE DUCK OWL PARROT PENGUIN SWAN "
        "FLAMINGO TURKEY DODO PEACOCK GOOSE POULTRY EGG FEATHER WING NEST",
        "boat": "BOAT SAILBOAT SPEEDBOAT SHIP FERRY CANOE ROWBOAT",
        "bottle": "BOTTLE SAKE LOTION",
        "bus": "BUS BUSSTOP TROLLEYBUS MINIBUS OMNIBUS",
        "car": "AUTOMOBILE CAR CARS TAXI VEHICLE PICKUP AMBULANCE VAN JEEP",
        "cat": "CAT KITTEN LION TIGER LEOPARD CHEETAH",
        "chair": "CHAIR SEAT WHEELCHAIR THRONE",
        "cow": "COW OX BUFFALO BISON BULL CATTLE",
        "diningtable": "TABLE PLATE FORK",
        "dog": "DOG POODLE PUPPY WOLF FOX PAW",
        "horse": "HORSE PONY UNICORN ZEBRA DONKEY CAROUSEL",
        "motorbike": "MOTORCYCLE SCOOTER MOPED RICKSHAW",
        "person": "PERSON PEOPLE PEDESTRIAN PEDESTRIANS MAN WOMAN MEN WOMEN WOMANS MANS BOY GIRL "
        "BABY CHILD CHILDREN ADULT FAMILY COUPLE KISS FACE FACES HAND HANDS FINGER FINGERS "
        "FIST THUMBS HORNS LEG FOOT FOOTPRINTS EAR NOSE EYE EYES MOUTH TONGUE LIPS LIP TOOTH "
        "BONE BRAIN LUNGS ANATOMICAL BICEPS ARM BUST BUSTS SILHOUETTE HEAD OFFICER GUARDSMAN "
        "WORKER PRINCE PRINCESS BRIDE MOTHER FATHER CLAUS MAGE FAIRY VAMPIRE MERPERSON "
        "MERMAID MERMAN ELF GENIE ZOMBIE SUPERHERO SUPERVILLAIN NINJA DANCER DANCING SURFER "
        "SWIMMER SKIER SNOWBOARDER RUNNER LIFTER GOLFER JUGGLING WRESTLERS HANDBALL POLO "
        "CARTWHEEL LOTUS BATH ACCOMMODATION ANGEL TROLL DETECTIVE SLEUTH SHRUG FACEPALM "
        "GESTURE BOWING PREGNANT BREAST FEEDING CROWN DEAF FENCER OGRE GOBLIN SKULL ALIEN "
        "SNOWMAN IMP MASSAGE HAIRCUT HAIR BEARD LEVITATING POINTING SELFIE WRITING NAIL "
        "CLIMBER CLIMBING ROWING SPEAKING BLOND TURBAN OLDER HUGGING STANDING KNEELING "
        "ROBOT ASTRONAUT MONKEY GORILLA ORANGUTAN JACK LANTERN DOLL DOLLS CLOWN BALLET "
        "PALMS SMILING SMILE DISGUISED STATUE MOYAI HANDSHAKE LAUGHING HAMSA X-RAY",
        "pottedplant": "POTTED CACTUS PINE SEEDLING",
        "sheep": "SHEEP RAM EWE GOAT LAMB",
        "sofa": "COUCH SOFA BED",
        "train": "TRAIN RAILWAY LOCOMOTIVE TRAM TRAMWAY METRO MONORAIL HIGH-SPEED STATION "
        "RAIL CABLEWAY COASTER",
        "tvmonitor": "TELEVISION COMPUTER DESKTOP LAPTOP MONITOR SCREEN",
    }.items()
}

#: Words of Unicode names that mark symbols rather than objects (arrows, signs, zodiac,
#: geometric shapes, clock faces, moon phases, hearts...).
NON_OBJECT_WORDS: frozenset[str] = _word_set(
    "SYMBOL SYMBOLS SIGN SQUARE CIRCLE DIAMOND TRIANGLE ARROW ARROWS BUTTON LATIN",
    "LETTER LETTERS INPUT NUMBERS KEYCAP REGIONAL OCLOCK THIRTY MOON HEART MODIFIER",
    "COMPONENT ZODIAC ARIES TAURUS GEMINI CANCER LEO VIRGO LIBRA SCORPIUS SAGITTARIUS",
    "CAPRICORN AQUARIUS PISCES OPHIUCHUS BLACK WHITE LARGE MEDIUM SMALL SIGNAL SPEAKER",
    "TRIGRAM DICE SUIT BALLOT ANTENNA DIGIT MARK KATAKANA IDEOGRAPH",
)

#: Glyphs whose names pass the word rules but whose drawing shows a person, a body
#: part, a face or one of the 20 categories (checked by eye on the OpenMoji 17 glyphs):
#: roller coaster (train-like), delivery van, cable car, restroom, passport control,
#: customs, place of worship, elevator, nazar amulet (eye), identity card (a photo of a
#: person), performing arts (two faces).
EXTRA_EXCLUDED: frozenset[int] = frozenset(
    int(code, 16)
    for code in _word_set("1F3A2 1F69A 1F6A0 1F6BB 1F6C2 1F6C3", "1F6D0 1F6D7 1F9FF 1FAAA 1F3AD")
)


def _name_words(name: str) -> set[str]:
    return set(name.split()) | set(re.split(r"[ \-]+", name))


def depicts_category(unicode_name: str) -> str | None:
    """The PASCAL category a glyph's Unicode name points at, or None (the exclusion
    rule of the pretraining pool, by whole words of the name)."""
    words = _name_words(unicode_name.upper())
    for category, keys in CATEGORY_WORDS.items():
        if words & keys:
            return category
    return None


def is_object_like(unicode_name: str) -> bool:
    """False for symbols (arrows, signs, shapes...) by whole words of the name."""
    return not (_name_words(unicode_name.upper()) & NON_OBJECT_WORDS)


#: The pretraining classes: every single-code-point OpenMoji 17 glyph of
#: ``PRETRAIN_RANGES`` with a Unicode 14 name that is object-like, not used by
#: ``CLASS_GLYPHS``, not in ``EXTRA_EXCLUDED`` and for which ``depicts_category`` is
#: None. Frozen here so labels do not move with Python's Unicode database or OpenMoji
#: releases; ``tests/test_synthetic.py`` re-checks the rule.
_PRETRAIN_HEX = """
2601 2602 2604 2614 2615 2618 2626 262A 262F 2638 2668 2692 2693 2694 2695 2696 2697 2699
269C 26B0 26B1 26BD 26BE 26C5 26C8 26CF 26D3 26D4 26E9 26EA 26F0 26F1 26F2 26F3 26F8 26FA
26FD 1F300 1F301 1F302 1F303 1F304 1F305 1F306 1F307 1F308 1F309 1F30A 1F30B 1F30C 1F30D
1F30E 1F30F 1F310 1F31F 1F320 1F321 1F327 1F328 1F329 1F32A 1F32B 1F32E 1F32F 1F330 1F332
1F333 1F334 1F336 1F337 1F338 1F339 1F33A 1F33B 1F33C 1F33F 1F340 1F341 1F342 1F343 1F344
1F345 1F346 1F347 1F348 1F349 1F34A 1F34B 1F34C 1F34D 1F34E 1F34F 1F350 1F351 1F352 1F353
1F354 1F355 1F358 1F359 1F35A 1F35B 1F35C 1F35D 1F35E 1F35F 1F360 1F361 1F362 1F363 1F364
1F365 1F366 1F367 1F368 1F369 1F36A 1F36B 1F36C 1F36D 1F36E 1F36F 1F370 1F371 1F372 1F373
1F375 1F377 1F378 1F379 1F37A 1F37B 1F37F 1F380 1F381 1F382 1F384 1F386 1F387 1F388 1F389
1F38A 1F38B 1F38C 1F38F 1F390 1F392 1F393 1F396 1F397 1F399 1F39A 1F39B 1F39E 1F39F 1F3A1
1F3A3 1F3A4 1F3A5 1F3A6 1F3A7 1F3A8 1F3A9 1F3AA 1F3AB 1F3AC 1F3AE 1F3AF 1F3B0 1F3B1 1F3B2
1F3B3 1F3B4 1F3B5 1F3B6 1F3B7 1F3B8 1F3B9 1F3BA 1F3BB 1F3BC 1F3BD 1F3BE 1F3BF 1F3C0 1F3C1
1F3C5 1F3C6 1F3C8 1F3C9 1F3CF 1F3D0 1F3D1 1F3D2 1F3D4 1F3D5 1F3D6 1F3D7 1F3D8 1F3D9 1F3DA
1F3DB 1F3DC 1F3DD 1F3DE 1F3DF 1F3E0 1F3E1 1F3E2 1F3E3 1F3E4 1F3E5 1F3E6 1F3E7 1F3E8 1F3E9
1F3EA 1F3EB 1F3EC 1F3ED 1F3EF 1F3F0 1F3F5 1F3F7 1F3F8 1F3FA 1F400 1F401 1F407 1F409 1F40A
1F40B 1F40C 1F40D 1F416 1F417 1F418 1F419 1F41A 1F41B 1F41C 1F41D 1F41E 1F41F 1F420 1F421
1F422 1F428 1F42A 1F42B 1F42C 1F433 1F43F 1F453 1F454 1F455 1F456 1F457 1F458 1F459 1F45B
1F45C 1F45D 1F45F 1F460 1F47B 1F484 1F488 1F489 1F48A 1F48D 1F48E 1F490 1F492 1F495 1F49E
1F4A1 1F4A3 1F4A7 1F4A9 1F4AC 1F4AD 1F4B0 1F4B1 1F4B3 1F4B8 1F4BC 1F4BD 1F4BE 1F4BF 1F4C0
1F4C1 1F4C2 1F4C3 1F4C4 1F4C5 1F4C6 1F4C7 1F4C8 1F4C9 1F4CA 1F4CB 1F4CC 1F4CD 1F4CE 1F4CF
1F4D0 1F4D1 1F4D2 1F4D3 1F4D4 1F4D5 1F4D6 1F4D7 1F4D8 1F4D9 1F4DA 1F4DB 1F4DC 1F4DD 1F4DE
1F4DF 1F4E0 1F4E2 1F4E3 1F4E4 1F4E5 1F4E6 1F4E8 1F4EA 1F4EB 1F4EC 1F4ED 1F4EE 1F4EF 1F4F0
1F4F1 1F4F3 1F4F4 1F4F5 1F4F7 1F4F8 1F4F9 1F4FB 1F4FC 1F4FD 1F4FF 1F50B 1F50C 1F50F 1F510
1F511 1F512 1F513 1F514 1F515 1F516 1F525 1F526 1F527 1F528 1F529 1F52A 1F52B 1F52C 1F52D
1F52E 1F52F 1F531 1F54B 1F54C 1F54D 1F54E 1F56F 1F570 1F573 1F576 1F577 1F578 1F579 1F587
1F58A 1F58B 1F58C 1F58D 1F5A8 1F5B2 1F5BC 1F5C2 1F5C3 1F5C4 1F5D1 1F5D2 1F5D3 1F5DC 1F5DD
1F5DE 1F5E1 1F5E8 1F5EF 1F5FA 1F5FB 1F5FC 1F680 1F692 1F69B 1F69C 1F6A5 1F6A6 1F6A9 1F6AA
1F6BD 1F6BE 1F6BF 1F6C1 1F6C4 1F6C5 1F6CD 1F6CE 1F6D2 1F6D5 1F6D6 1F6DD 1F6DE 1F6DF 1F6E0
1F6E1 1F6E2 1F6E3 1F6F0 1F6F7 1F6F8 1F6F9 1F6FC 1F93F 1F940 1F941 1F942 1F943 1F944 1F945
1F947 1F948 1F949 1F94A 1F94B 1F94C 1F94D 1F94E 1F94F 1F950 1F951 1F952 1F953 1F954 1F955
1F956 1F957 1F958 1F959 1F95B 1F95C 1F95D 1F95E 1F95F 1F960 1F961 1F962 1F963 1F964 1F965
1F966 1F967 1F968 1F969 1F96A 1F96B 1F96C 1F96D 1F96F 1F97B 1F97C 1F97D 1F97E 1F97F 1F980
1F982 1F987 1F988 1F98B 1F98C 1F98E 1F98F 1F990 1F991 1F994 1F995 1F996 1F997 1F998 1F999
1F99B 1F99D 1F99E 1F99F 1F9A0 1F9A1 1F9A3 1F9A5 1F9A6 1F9A8 1F9AA 1F9AB 1F9AD 1F9AF 1F9BA
1F9C0 1F9C1 1F9C2 1F9C3 1F9C4 1F9C5 1F9C6 1F9C7 1F9C8 1F9C9 1F9CA 1F9CB 1F9E2 1F9E3 1F9E4
1F9E5 1F9E6 1F9E7 1F9E8 1F9E9 1F9EA 1F9EB 1F9EC 1F9ED 1F9EE 1F9EF 1F9F0 1F9F1 1F9F2 1F9F3
1F9F5 1F9F6 1F9F7 1F9F8 1F9F9 1F9FA 1F9FB 1F9FC 1F9FD 1F9FE 1FA71 1FA72 1FA73 1FA74 1FA78
1FA79 1FA7A 1FA7C 1FA80 1FA81 1FA82 1FA83 1FA84 1FA85 1FA90 1FA92 1FA93 1FA94 1FA95 1FA96
1FA97 1FA98 1FA99 1FA9A 1FA9B 1FA9C 1FA9D 1FA9E 1FA9F 1FAA0 1FAA1 1FAA2 1FAA3 1FAA4 1FAA5
1FAA6 1FAA7 1FAA8 1FAA9 1FAAB 1FAB0 1FAB1 1FAB2 1FAB3 1FAB5 1FAB8 1FAD0 1FAD1 1FAD2 1FAD3
1FAD4 1FAD5 1FAD6 1FAD7 1FAD8 1FAD9 1FAE7
"""
PRETRAIN_GLYPHS: tuple[str, ...] = tuple(_PRETRAIN_HEX.split())


def glyph_text(hexcode: str) -> str:
    """The text of a glyph: its hex code point(s), ``-``-separated, as characters."""
    return "".join(chr(int(part, 16)) for part in hexcode.split("-"))


def glyph_name(hexcode: str) -> str:
    """Unicode name of a single-code-point glyph (``"U+XXXX"`` when unknown)."""
    try:
        return unicodedata.name(glyph_text(hexcode))
    except (ValueError, TypeError):
        return f"U+{hexcode}"

