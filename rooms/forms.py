import unicodedata

from django import forms
from django.core.exceptions import ValidationError


def printable(value: str) -> str:
    if any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in value):
        raise ValidationError("Use letters, numbers, spaces and punctuation only.")
    return value


class RoomForm(forms.Form):
    name = forms.CharField(max_length=80, validators=[printable])
    topic = forms.CharField(
        max_length=200,
        required=False,
        validators=[printable],
        help_text="What the room is for, in a line. Shown in the directory.",
    )
    is_private = forms.BooleanField(
        required=False,
        label="Private room",
        help_text="Only people you invite can find, read and join it.",
    )
