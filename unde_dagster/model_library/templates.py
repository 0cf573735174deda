"""Templates (gender × age_range × body_type × pose × style) and their prompt, from the seed.

Template id: the five values joined by `_`, spaces as `-`
(`female_20-30_average_front-standing_professional`); safe as an S3 key part.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

GENDERS = ("male", "female")
AGE_RANGES = ("20-30", "30-40", "40-50")
BODY_TYPES = ("slim", "average", "athletic", "plus-size")
POSES = ("front standing", "side", "walking", "sitting")
STYLES = ("professional", "casual", "editorial")

PROMPT = (
    "Fashion model, {gender}, {age_range} years old, body type: {body_type}, "
    "pose: {pose}, style: {style} photo, full body shot, "
    "neutral white/gray background, professional studio lighting, "
    "high quality, 8k, detailed, clean composition"
)


@dataclass(frozen=True)
class Template:
    gender: str
    age_range: str
    body_type: str
    pose: str
    style: str

    @property
    def template_id(self) -> str:
        parts = (self.gender, self.age_range, self.body_type, self.pose, self.style)
        return "_".join(p.replace(" ", "-") for p in parts)

    @property
    def prompt(self) -> str:
        return PROMPT.format(gender=self.gender, age_range=self.age_range,
                             body_type=self.body_type, pose=self.pose, style=self.style)


@cache
def all_templates() -> dict[str, Template]:
    """All 288 templates by id, in the seed's order of the value lists."""
    combos = itertools.product(GENDERS, AGE_RANGES, BODY_TYPES, POSES, STYLES)
    templates = (Template(*combo) for combo in combos)
    return {t.template_id: t for t in templates}


def template(template_id: str) -> Template:
    try:
        return all_templates()[template_id]
    except KeyError:
        raise KeyError(f"unknown model template {template_id!r}") from None
