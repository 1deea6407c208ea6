"""The querent's question as prompts carry it: on its own lines between a <<< line and a >>>
line (templates/reading/layout.txt), as data the model is told not to take instructions from.

That only holds if the question cannot close the fence early, so the question handed to
templates never has two angle brackets side by side: a run of them is spaced apart
("a >>> b" becomes "a > > > b"), and neither marker can occur inside it. Fullwidth and
small-form angle brackets (U+FF1C, U+FF1E, U+FE64, U+FE65), which a model reads as the
same characters, become < and >, and invisible characters between brackets (zero
width spaces, joiners, direction marks) are dropped so that they cannot hide a run. Anything
else the querent typed, <b>tags</b> or {{ braces }} included, is left as it is.

The guides state the scheme to the model (the sentence after "between the markers").
"""

import re

OPEN, CLOSE = "<<<", ">>>"

_LOOKALIKES = str.maketrans({"\uff1c": "<", "\ufe64": "<", "\uff1e": ">", "\ufe65": ">"})
# Characters that take no space on screen: soft hyphen, combining grapheme joiner, the
# zero-width and direction marks, word joiners and invisible operators, variation selectors
# and the byte order mark.
_INVISIBLE = "\u00ad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufe00-\ufe0f\ufeff"
_RUN = re.compile(f"[<>](?:[{_INVISIBLE}]*[<>])+")
_BRACKET = re.compile("[<>]")


def fence_question(question: str) -> str:
    """The question as templates get it: unchanged, except that no two angle brackets touch."""
    question = question.translate(_LOOKALIKES)
    return _RUN.sub(lambda run: " ".join(_BRACKET.findall(run.group())), question)
