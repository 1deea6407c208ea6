"""Loads the 78-card deck from spreads/data/deck.json (the project's own text)."""

import json
from pathlib import Path

from django.db import migrations

DECK_FILE = Path(__file__).resolve().parent.parent / "data" / "deck.json"


def load_deck(apps, schema_editor):
    Card = apps.get_model("spreads", "Card")
    cards = json.loads(DECK_FILE.read_text(encoding="utf-8"))
    Card.objects.bulk_create(
        Card(
            slug=c["slug"],
            name=c["name"],
            arcana=c["arcana"],
            suit=c["suit"] or "",
            number=c["number"],
            keywords=c["keywords"],
            upright=c["upright"],
            reversed=c["reversed"],
        )
        for c in cards
    )


def unload_deck(apps, schema_editor):
    apps.get_model("spreads", "Card").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("spreads", "0001_initial")]
    operations = [migrations.RunPython(load_deck, unload_deck)]
