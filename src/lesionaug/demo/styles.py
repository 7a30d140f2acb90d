"""The looks the example data can have: skin tones, lesion colours, lighting and artefacts, by name.

``light`` is the first look (fair skin, Fitzpatrick I-III, under a dermatoscope's round window with
pale hairs); ``deep`` is a second one, so a recipe tuned on the example data can be checked on data
that looks otherwise: Fitzpatrick IV-VI skin, lesions darker and closer to the skin's own colour
(vascular ones purple-brown instead of red), a rectangular field lit from one side with a cool or
warm white balance, immersion-gel air bubbles, a ruler's scale or ink dots at the border, and
fewer, darker, curly hairs. The diagnosis-driven looks (``render.LOOKS``) are shared: a style maps
each of their colours to its own, so a melanoma is still the darkest, most varied lesion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RGB = tuple[int, int, int]

# The light style's colours; the lesion looks (render.LOOKS) are written in them.
LIGHT_BROWN: RGB = (172, 118, 78)
BROWN: RGB = (128, 80, 52)
DARK_BROWN: RGB = (80, 48, 32)
BLACK: RGB = (38, 28, 30)
BLUE_GRAY: RGB = (92, 100, 122)
TAN: RGB = (190, 146, 108)
PINK: RGB = (214, 132, 130)
PALE_PINK: RGB = (226, 160, 150)
RED: RGB = (178, 52, 60)
DEEP_RED: RGB = (150, 30, 50)
PURPLE: RGB = (112, 44, 82)
WHITE: RGB = (236, 226, 222)
SEPTA: RGB = (220, 170, 175)  # the pale walls between vascular lacunae
PALE_LINES: RGB = (222, 196, 180)  # the light lines of a negative network
MILIA: RGB = (245, 240, 210)
VEIL: RGB = (110, 130, 160)
HAIR: RGB = (40, 30, 28)
SKIN_TONES: tuple[RGB, ...] = ((236, 196, 176), (222, 170, 146), (204, 150, 120), (228, 176, 168), (186, 130, 100))


@dataclass(frozen=True)
class Style:
    """One look of the example data; ``colours`` maps a light-style colour to this style's."""

    name: str
    skin_tones: tuple[RGB, ...]
    colours: dict[RGB, RGB] = field(default_factory=dict)
    blotch_tint: tuple[int, int, int] = (6, -2, -3)  # colour shift of the skin's blotches (per unit of noise)
    lighting: str = "dermatoscope"  # "dermatoscope": round dark vignette; "side": rectangular field, side light
    hair_rate: float = 1.5  # mean number of hairs per image
    curly_hairs: bool = False
    skin_network: float = 0.0  # strength of the faint pigment network of darker normal skin
    bubbles: float = 0.0  # mean number of immersion-gel air bubbles per image
    ruler: float = 0.0  # probability of a ruler's scale along one border
    ink: float = 0.0  # probability of marker-ink dots along one border (when no ruler)

    def colour(self, rgb: RGB) -> RGB:
        return self.colours.get(rgb, rgb)


LIGHT = Style("light", SKIN_TONES)
DEEP = Style(
    "deep",
    skin_tones=((160, 110, 80), (140, 94, 66), (120, 80, 56), (100, 66, 47), (80, 52, 38)),
    colours={
        LIGHT_BROWN: (92, 60, 42),
        BROWN: (66, 42, 30),
        DARK_BROWN: (44, 29, 23),
        BLACK: (28, 22, 24),
        BLUE_GRAY: (72, 74, 90),
        TAN: (112, 78, 56),
        PINK: (118, 72, 80),
        PALE_PINK: (128, 86, 88),
        RED: (96, 44, 58),
        DEEP_RED: (80, 34, 50),
        PURPLE: (74, 38, 62),
        WHITE: (178, 160, 150),
        SEPTA: (130, 96, 98),
        PALE_LINES: (128, 94, 74),
        MILIA: (196, 184, 160),
        VEIL: (86, 98, 124),
        HAIR: (16, 13, 13),
    },
    blotch_tint=(3, 0, -1),  # darker skin varies mostly in melanin: a red-only shift turns it olive
    lighting="side",
    hair_rate=0.7,
    curly_hairs=True,
    skin_network=0.06,
    bubbles=0.8,
    ruler=0.3,
    ink=0.3,
)
STYLES: dict[str, Style] = {style.name: style for style in (LIGHT, DEEP)}
DEMO_STYLES = tuple(STYLES)
DEFAULT_STYLE = LIGHT.name
