from django.db import migrations

SPREADS = [
    {
        "slug": "three_card",
        "name": "Three Card",
        "description": "Past, present and future: a quick look along the line of time.",
        "batch_size": 3,
        "max_concurrent_calls": 5,
        "max_tokens": 2048,
        "positions": [
            ("Past", "What has shaped the situation and still echoes in it."),
            ("Present", "Where the querent stands now and what is most alive."),
            ("Future", "Where things lead if the present course holds."),
        ],
    },
    {
        "slug": "celtic_cross",
        "name": "Celtic Cross",
        "description": "The classic ten-card spread: a cross of six cards beside a staff of four.",
        "batch_size": 3,
        "max_concurrent_calls": 5,
        "max_tokens": 2048,
        "positions": [
            ("The Present", "The heart of the matter: the situation as it stands."),
            ("The Challenge", "What crosses the querent: the obstacle or tension to work with."),
            ("The Foundation", "The root beneath the situation, often unconscious."),
            ("The Recent Past", "What is passing away but still colours the present."),
            ("The Crown", "The conscious aim: what the querent hopes for or strives towards."),
            ("The Near Future", "What is approaching in the coming weeks."),
            ("The Self", "The querent's attitude and how they hold themselves in this."),
            ("The Environment", "Other people and outside influences around the matter."),
            ("Hopes and Fears", "What the querent longs for and dreads, often the same thing."),
            ("The Outcome", "Where the energies point if nothing changes."),
        ],
    },
    {
        "slug": "horoscope",
        "name": "Horoscope",
        "description": "Twelve cards, one for each astrological house: a year or a whole life at a glance.",
        "batch_size": 4,
        "max_concurrent_calls": 6,
        "max_tokens": 4096,
        "positions": [
            ("First House: Self", "Identity, appearance and how one meets the world."),
            ("Second House: Resources", "Money, possessions and what one values."),
            ("Third House: Communication", "Speech, learning, siblings and the near surroundings."),
            ("Fourth House: Home", "Family, roots and the private foundations of life."),
            ("Fifth House: Pleasure", "Creativity, romance, play and children."),
            ("Sixth House: Work and Health", "Daily work, routines, service and the body."),
            ("Seventh House: Partnership", "Marriage, close partners and open adversaries."),
            ("Eighth House: Transformation", "Shared resources, intimacy, endings and rebirth."),
            ("Ninth House: Horizons", "Travel, higher learning, belief and meaning."),
            ("Tenth House: Vocation", "Career, reputation and one's place in the world."),
            ("Eleventh House: Community", "Friends, groups and hopes for the future."),
            ("Twelfth House: The Hidden", "Solitude, the unconscious and what is kept unseen."),
        ],
    },
]


def seed(apps, schema_editor):
    Spread = apps.get_model("spreads", "Spread")
    Position = apps.get_model("spreads", "Position")
    for data in SPREADS:
        positions = data["positions"]
        fields = {k: v for k, v in data.items() if k != "positions"}
        spread = Spread.objects.create(card_count=len(positions), supports_parallel=True, **fields)
        Position.objects.bulk_create(
            Position(spread=spread, index=i, name=name, meaning=meaning)
            for i, (name, meaning) in enumerate(positions, start=1)
        )


def unseed(apps, schema_editor):
    apps.get_model("spreads", "Spread").objects.filter(
        slug__in=[s["slug"] for s in SPREADS]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("spreads", "0002_load_deck")]
    operations = [migrations.RunPython(seed, unseed)]
