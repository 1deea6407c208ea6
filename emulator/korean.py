"""The emulator's Korean: card names and keywords, and sentences to read them with.

A request asks for Korean when its system prompt (the guide) is written in Korean, as the
platform's Korean templates are. The prompt still names cards in English (the deck's names),
so each English name maps to its Korean name and keywords here. A minor card's keywords
come from its suit and its rank, which is how the minor arcana are read anyway.
"""

from __future__ import annotations

import random
import re

HANGUL = re.compile(r"[\uac00-\ud7a3]")

MAJOR = {
    "The Fool": ("바보", ["새로운 시작", "자유", "믿음의 도약"]),
    "The Magician": ("마법사", ["의지", "재능", "실행력"]),
    "The High Priestess": ("여사제", ["직관", "숨은 지혜", "고요함"]),
    "The Empress": ("여황제", ["풍요", "돌봄", "창조"]),
    "The Emperor": ("황제", ["질서", "책임", "안정"]),
    "The Hierophant": ("교황", ["전통", "가르침", "신념"]),
    "The Lovers": ("연인", ["사랑", "선택", "조화"]),
    "The Chariot": ("전차", ["전진", "의지력", "승리"]),
    "Strength": ("힘", ["용기", "인내", "부드러운 힘"]),
    "The Hermit": ("은둔자", ["성찰", "고독", "내면의 빛"]),
    "Wheel of Fortune": ("운명의 수레바퀴", ["변화", "순환", "기회"]),
    "Justice": ("정의", ["공정함", "진실", "균형"]),
    "The Hanged Man": ("매달린 사람", ["멈춤", "관점의 전환", "내려놓음"]),
    "Death": ("죽음", ["끝과 시작", "변화", "정리"]),
    "Temperance": ("절제", ["균형", "인내", "조율"]),
    "The Devil": ("악마", ["집착", "유혹", "속박"]),
    "The Tower": ("탑", ["갑작스러운 변화", "깨달음", "무너짐"]),
    "The Star": ("별", ["희망", "회복", "영감"]),
    "The Moon": ("달", ["불안", "꿈", "무의식"]),
    "The Sun": ("태양", ["기쁨", "성공", "활력"]),
    "Judgement": ("심판", ["부름", "각성", "새 출발"]),
    "The World": ("세계", ["완성", "성취", "통합"]),
}
SUITS = {
    "Wands": ("완드", ["열정", "행동"]),
    "Cups": ("컵", ["감정", "관계"]),
    "Swords": ("소드", ["생각", "결단"]),
    "Pentacles": ("펜타클", ["현실", "재물"]),
}
RANKS = {
    "Ace": ("에이스", "씨앗"),
    "Two": ("2", "선택"),
    "Three": ("3", "성장"),
    "Four": ("4", "안정"),
    "Five": ("5", "갈등"),
    "Six": ("6", "회복"),
    "Seven": ("7", "도전"),
    "Eight": ("8", "움직임"),
    "Nine": ("9", "결실 직전"),
    "Ten": ("10", "마무리"),
    "Page": ("페이지", "배움"),
    "Knight": ("나이트", "추진"),
    "Queen": ("퀸", "성숙"),
    "King": ("킹", "통솔"),
}

CARD_LINES = [
    "{title} 카드는 {keywords}의 기운을 보여 줍니다.",
    "{title} 카드가 나왔습니다. 이 카드는 {keywords}에 대해 말합니다.",
    "여기서 {title} 카드는 {keywords}을(를) 가리킵니다.",
    "{title} 카드가 이 자리의 중심에서 {keywords}의 메시지를 전합니다.",
]
UPRIGHT = [
    "이 흐름을 믿고 한 걸음 내디뎌도 좋습니다.",
    "지금 당신 안에 이미 그 힘이 있습니다.",
    "서두르지 않아도 길은 열리고 있습니다.",
]
REVERSED = [
    "다만 역방향으로 나와, 그 기운이 막혀 있거나 안으로 향해 있음을 알려 줍니다.",
    "역방향인 만큼, 잠시 멈추어 무엇이 흐름을 막고 있는지 살펴보세요.",
]
REFLECTIONS = [
    "{keyword}이(가) 요즘 당신의 하루 어디에 나타나는지 살펴보세요.",
    "{keyword}에 대해 서두르지 말고 조용히 생각해 볼 시간을 가지세요.",
    "{keyword}을(를) 판결이 아니라 품고 다니는 질문으로 여겨 보세요.",
    "작고 꾸준한 선택이 {keyword}에 대해 더 많은 것을 알려 줄 것입니다.",
    "{keyword}이(가) 불편하게 느껴진다면, 그 불편함에도 귀 기울여 볼 만합니다.",
    "오늘 {keyword}을(를) 다 해결하지 않아도 괜찮습니다. 이름을 붙이는 것으로 충분합니다.",
]
OPENINGS = [
    "카드가 분명하게 말하고 있습니다.",
    "이 스프레드가 보여 주는 흐름을 함께 살펴보겠습니다.",
    "이번 리딩에는 하나의 뚜렷한 실마리가 흐르고 있습니다.",
]
CLOSINGS = [
    "이 카드들은 함께, 의도를 가지고 움직이라고 권합니다.",
    "무엇을 결정하든 차분한 마음에서 나오도록 하세요.",
    "다음 걸음은 당신이 정할 몫입니다. 희망을 가지고 나아가세요.",
]
GENERIC = ["변화", "인내", "명료함", "용기", "쉼", "정직", "성장"]


def wanted(system_text: str) -> bool:
    """Whether the request asks for Korean: its guide is written in Korean."""
    return bool(HANGUL.search(system_text))


def name_and_keywords(english: str) -> tuple[str, list[str]]:
    if english in MAJOR:
        return MAJOR[english]
    rank, _, suit = english.partition(" of ")
    if suit in SUITS and rank in RANKS:
        suit_ko, suit_words = SUITS[suit]
        rank_ko, rank_word = RANKS[rank]
        return f"{suit_ko} {rank_ko}", [rank_word, *suit_words]
    return english, list(GENERIC[:2])


def card_paragraph(rng: random.Random, english: str, is_reversed: bool, min_chars: int) -> str:
    name, keywords = name_and_keywords(english)
    title = f"{name}(역방향)" if is_reversed else name
    sentences = [
        rng.choice(CARD_LINES).format(title=title, keywords=", ".join(keywords)),
        rng.choice(REVERSED if is_reversed else UPRIGHT),
    ]
    reflections = rng.sample(REFLECTIONS, len(REFLECTIONS))
    while len(" ".join(sentences)) < min_chars and reflections:
        sentences.append(reflections.pop().format(keyword=rng.choice(keywords)))
    return " ".join(sentences)


def reading(rng: random.Random, cards: list[tuple[str, bool]], min_chars: int) -> str:
    """A free-text Korean answer about `cards` (English name, reversed), of at least
    min_chars characters when the reflections allow."""
    paragraphs = [rng.choice(OPENINGS)]
    for english, is_reversed in cards:
        paragraphs.append(card_paragraph(rng, english, is_reversed, 0))
    keywords = [k for english, _ in cards for k in name_and_keywords(english)[1]] or GENERIC
    length = sum(len(p) + 2 for p in paragraphs)
    while length < min_chars:
        paragraph = " ".join(
            rng.choice(REFLECTIONS).format(keyword=rng.choice(keywords)) for _ in range(3)
        )
        paragraphs.append(paragraph)
        length += len(paragraph) + 2
    paragraphs.append(rng.choice(CLOSINGS))
    return "\n\n".join(paragraphs)
