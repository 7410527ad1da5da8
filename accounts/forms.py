import unicodedata

from allauth.account import forms as allauth_forms
from django import forms
from django.core.exceptions import ValidationError

from accounts.models import User


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["display_name"]
        labels = {"display_name": "Display name"}

    def clean_display_name(self) -> str:
        name = self.cleaned_data["display_name"]
        # Control and format characters (newlines, bidi overrides) would let a name disguise
        # itself or break the layout wherever it is shown.
        if any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in name):
            raise ValidationError("Use letters, numbers, spaces and punctuation only.")
        return name


class LoginForm(allauth_forms.LoginForm):
    """allauth's log-in form, with a label that says what to type."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["login"].label = "Username or email"
        self.fields["remember"].label = "Keep me signed in"
